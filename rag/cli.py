"""The command line: the Python API with flags. Errors become one line on
stderr and a non-zero exit; ``--json`` prints the same dataclasses."""
from __future__ import annotations

import argparse
import json
import os
import sys
import textwrap
from dataclasses import asdict
from typing import Sequence

from .errors import RagError

EXIT_ERROR = 1
EXIT_REJECTED = 3  # the update was written, but some inputs were rejected (listed on stderr)


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="rag", description="Answer questions per viewpoint, "
                                  "in verbatim quotes with citations, from a corpus of articles.")
    sub = top.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, help: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help, description=help)
        p.add_argument("--index", "--store", dest="index", default=os.environ.get("RAG_STORE") or "index",
                       help="index folder, or a Milvus server: milvus://HOST:PORT[/PREFIX] "
                       "(default: $RAG_STORE, else index)")
        return p

    p = command("build", "index the articles under PATHS (default: seeds/); only new or changed "
                "articles are embedded, articles no longer present are removed")
    p.add_argument("paths", nargs="*", default=["seeds"], metavar="PATHS")
    _write_options(p)
    p.add_argument("--full", action="store_true", help="rebuild from nothing")

    p = command("add", "add or update the articles under PATHS, keeping the rest")
    p.add_argument("paths", nargs="+", metavar="PATHS")
    _write_options(p)

    p = command("remove", "remove articles by id")
    p.add_argument("ids", nargs="+", metavar="DOC_ID")
    p.add_argument("--dry-run", action="store_true", help="show what would change, write nothing")

    p = command("ask", "answer QUESTION per viewpoint ('-' reads one question a line from stdin)")
    p.add_argument("question", metavar="QUESTION")
    p.add_argument("--k", type=int, default=None, help="quotes per viewpoint (default: 3)")
    p.add_argument("--by", default=None, help="metadata field that makes the viewpoints "
                   "(default: viewpoint; e.g. source)")
    p.add_argument("--json", action="store_true", help="print JSON (one object a line with '-')")
    _scorer_option(p)

    p = command("show", "print one article with its metadata")
    p.add_argument("doc_id", metavar="DOC_ID")
    p.add_argument("--json", action="store_true")

    p = command("stats", "print what the index holds")
    p.add_argument("--json", action="store_true")

    command("check", "verify the index: checksums, counts, model")

    p = command("upgrade", "convert an index written by an older rag, keeping every article "
                "(format 1: each is embedded again)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")

    p = command("eval", "measure answer quality: 'squad FILE.json' (answer-sentence hit@k, MRR, "
                "latency; builds its own index, kept in --index when given) or 'questions FILE.jsonl...' "
                "(per side, kind and viewpoint)")
    p.add_argument("kind", choices=("squad", "questions"))
    p.add_argument("files", nargs="+", metavar="FILE")
    p.add_argument("--limit", type=int, default=0, help="squad: N questions spread evenly over the file")
    p.add_argument("--by", default=None, help="questions: metadata field that makes the viewpoints")
    p.add_argument("--split", default=None, choices=("train", "test"),
                   help="questions: only the questions of this split")
    p.add_argument("--json", action="store_true", help="print the full report (misses included) as JSON")
    _scorer_option(p)
    p.set_defaults(index=None)

    p = command("serve", "start the web app")
    p.add_argument("--host", default=None)
    p.add_argument("--port", type=int, default=None)
    return top


def _scorer_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--scorer", default=None, choices=("features", "reranker"),
                   help="how answer sentences are scored (default: features; reranker: the "
                   "cross-encoder in rag/models, slower)")


def _write_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--field", action="append", default=[], metavar="NAME=KEY",
                   help="read field NAME from key KEY of JSONL records, "
                   "e.g. --field text=content_original --field viewpoint=bias_text")
    p.add_argument("--dry-run", action="store_true", help="show what would change, write nothing")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except RagError as err:
        print(f"rag: error: {err}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("rag: interrupted; the index is as it was before this command", file=sys.stderr)
        return 130


def _settings(args):
    """Settings from the flags that set them (``--scorer``); None: the defaults."""
    from .settings import Settings

    scorer = getattr(args, "scorer", None)
    return Settings(scorer=scorer) if scorer else None


def _index(args, index: str | None = None):
    from .engine import Index

    return Index(index or args.index, _settings(args))


def cmd_build(args) -> int:
    from .ingest import parse_fields

    fields = parse_fields(args.field)
    if args.command == "build":
        report = _index(args).rebuild(args.paths, fields, full=args.full, dry_run=args.dry_run,
                                      progress=not args.quiet)
    else:
        report = _index(args).add(args.paths, fields, dry_run=args.dry_run, progress=not args.quiet)
    return _print_report(report, args.dry_run)


def cmd_upgrade(args) -> int:
    report = _index(args).upgrade(progress=not args.quiet)
    if not report.version:
        print(f"{args.index}: already in the current format ({report.unchanged} articles); nothing to do")
        return 0
    done = (f"{report.embedded_articles} articles embedded again" if report.embedded_articles
            else "word counts and catalogs stored (no article embedded again)")
    print(f"{args.index}: converted; {done}, {report.chunks} chunks; index version {report.version}")
    return 0


def cmd_remove(args) -> int:
    return _print_report(_index(args).remove(args.ids, dry_run=args.dry_run), args.dry_run)


def _print_report(report, dry_run: bool) -> int:
    verb = "would be" if dry_run else ""
    for label, ids in (("added", report.added), ("changed", report.changed), ("removed", report.removed)):
        if ids:
            shown = ", ".join(ids[:8]) + (f" … (+{len(ids) - 8})" if len(ids) > 8 else "")
            print(f"{label}{' (dry run)' if dry_run else ''}: {len(ids)}: {shown}")
    for dup, first in report.duplicates:
        print(f"duplicate: {dup} has the same text as {first}; skipped")
    summary = (f"{len(report.added)} added, {len(report.changed)} changed, {len(report.removed)} removed, "
               f"{report.unchanged} unchanged; {report.embedded_articles} articles embedded")
    if dry_run:
        print(f"dry run: {summary} {verb}; nothing written")
    elif report.version:
        print(f"{summary}; {report.chunks} chunks; index version {report.version}")
    else:
        print(f"nothing changed ({report.unchanged} articles, {report.chunks} chunks)")
    for rejected in report.rejected:
        print(f"rag: rejected: {rejected.path}: {rejected.reason}", file=sys.stderr)
    return EXIT_REJECTED if report.rejected else 0


def cmd_ask(args) -> int:
    ix = _index(args)
    questions = (line.strip() for line in sys.stdin) if args.question == "-" else [args.question]
    for question in questions:
        if not question:
            continue
        answer = ix.ask(question, k=args.k, group_by=args.by)
        if args.json:
            print(json.dumps(asdict(answer), ensure_ascii=False), flush=True)
        else:
            print(format_answer(answer), flush=True)
    return 0


def format_answer(answer) -> str:
    lines = [f"Q: {answer.question}", ""]
    for view in answer.viewpoints:
        if view.abstained:
            lines.append(f"[{view.viewpoint}] does not address this")
            lines.append("")
            continue
        lines.append(f"[{view.viewpoint}]")
        for n, quote in enumerate(view.answers, 1):
            body = textwrap.fill(f"“{quote.text}”", width=88, initial_indent=f"  {n}. ",
                                 subsequent_indent="     ")
            lines.append(body)
            cite = ", ".join(x for x in (quote.title, quote.source, quote.date) if x)
            lines.append(f"     — {cite} [{quote.doc_id} {quote.start}:{quote.end}] score {quote.score:.2f}")
        lines.append("")
    if answer.more_viewpoints:
        lines.append(f"(+{answer.more_viewpoints} more viewpoints not shown)")
    return "\n".join(lines).rstrip() + "\n"


def cmd_show(args) -> int:
    article = _index(args).article(args.doc_id)
    if args.json:
        print(json.dumps(asdict(article), ensure_ascii=False))
        return 0
    for key in ("id", "title", "source", "viewpoint", "date", "url", "path"):
        if getattr(article, key):
            print(f"{key}: {getattr(article, key)}")
    for key, value in article.meta.items():
        print(f"{key}: {value}")
    print()
    print(article.text)
    return 0


def cmd_stats(args) -> int:
    stats = _index(args).stats()
    if args.json:
        print(json.dumps(stats, ensure_ascii=False))
        return 0
    for key, value in stats.items():
        if key == "viewpoints":
            print("viewpoints:")
            for label, count in list(value.items())[:20]:
                print(f"  {label}: {count} articles")
            if len(value) > 20:
                print(f"  … and {len(value) - 20} more")
        else:
            print(f"{key}: {value}")
    return 0


def cmd_check(args) -> int:
    from .engine import open_store

    store = open_store(args.index)
    checked, problems = store.check()
    if problems:
        for problem in problems:
            print(f"rag: check: {problem}", file=sys.stderr)  # each problem names its file
        return EXIT_ERROR
    print(f"{store}: {checked} ok")
    return 0


def cmd_serve(args) -> int:
    import app  # the Gradio app lives at the project root

    app.main(["--index", args.index]
             + (["--host", args.host] if args.host else []) + (["--port", str(args.port)] if args.port else []))
    return 0


def cmd_eval(args) -> int:
    from . import evaluate

    if args.kind == "squad":
        if len(args.files) > 1 or args.split:
            raise RagError("eval squad: takes one FILE and no --split")
        report = evaluate.eval_squad(args.files[0], args.index, limit=args.limit, settings=_settings(args))
        text = "\n".join(f"{key}: {value}" for key, value in report.items())
    else:
        report = evaluate.eval_questions(args.files, _index(args, args.index or "index"), args.by, args.split)
        text = evaluate.table(report)
    print(json.dumps(report, ensure_ascii=False, indent=1) if args.json else text)
    return 0


COMMANDS = {"eval": cmd_eval, "build": cmd_build, "add": cmd_build, "remove": cmd_remove, "ask": cmd_ask,
            "show": cmd_show, "stats": cmd_stats, "check": cmd_check, "serve": cmd_serve,
            "upgrade": cmd_upgrade}
