"""Check news dev question files against the AllSides corpus, and count them.

    .venv/bin/python bench/check_questions.py tests/data/news-dev-questions-2.jsonl \
        --corpus ../shared/data/allsides-12k.jsonl.gz

Each line is {"q", "kind", "story", "split", "expect": {article ID: span | [spans] | null}}
or an off-topic {"q", "abstain": true}. Older files may lack kind/story/split:
those lines are counted as "unlabelled" and the per-story checks skip them.
Errors (one line each, naming file and line) make the exit status 1. A span must
be verbatim in content_original and in the text the product indexes from it
(rag.ingest.make_article), and lie inside one of that text's sentences as the
product splits them (rag.chunk.split_sentences: the answer is one sentence, so a
span across two can never be matched whole), and be 5-20 words long; on
unlabelled lines, written before those last two rules, they are only warnings.
"""
from __future__ import annotations

import argparse
import gzip
import json
import re
import sys
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rag.chunk import split_sentences  # noqa: E402
from rag.ingest import make_article  # noqa: E402

KINDS = {"factoid", "yesno", "why", "paraphrase"}
SPLITS = {"train", "test"}
SIDES = {"left", "center", "right"}
KEYS = {"q", "kind", "story", "split", "expect", "abstain"}


@dataclass
class Report:
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    kinds: Counter = field(default_factory=Counter)
    splits: Counter = field(default_factory=Counter)
    stories: Counter = field(default_factory=Counter)
    cells: int = 0
    nulls: int = 0
    abstain: int = 0


def load_corpus(path: Path) -> dict[str, dict]:
    try:
        with gzip.open(path, "rt", encoding="utf-8") as stream:
            return {a["ID"]: a for a in map(json.loads, stream)}
    except (OSError, ValueError, KeyError) as err:
        sys.exit(f"{path}: cannot read the corpus ({err})")


def read_heldout(path: Path) -> set[str]:
    try:
        return set(path.read_text(encoding="utf-8").split())
    except OSError as err:
        sys.exit(f"{path}: cannot read the held-out IDs ({err.strerror})")


def spans_of(value) -> list[str] | None:
    """The expected spans of one cell, None for a silent side; raises on a bad shape."""
    if value is None:
        return None
    spans = [value] if isinstance(value, str) else value
    if not isinstance(spans, list) or not spans or not all(isinstance(s, str) and s.strip() for s in spans):
        raise ValueError("a cell must be a non-empty string, a non-empty list of them, or null")
    return spans


def in_one_sentence(text: str, span: str) -> bool:
    """Some occurrence of ``span`` lies inside a single sentence of ``text``."""
    sentences = split_sentences(text)
    start = text.find(span)
    while start >= 0:
        end = start + len(span)
        if any(s.start <= start and end <= s.end for s in sentences):
            return True
        start = text.find(span, start + 1)
    return False


def check_cell(where: str, article: dict, spans: list[str], strict: bool, rep: Report) -> None:
    text = article["content_original"]
    indexed = make_article(text, {}, article["ID"], where).text  # cleaned as the product ingests it
    complain = rep.errors if strict else rep.warnings
    for span in spans:
        if span not in text:
            rep.errors.append(f"{where}: not verbatim in {article['ID']}: {span!r}")
            continue
        if span not in indexed:
            rep.errors.append(f"{where}: not in {article['ID']} as the product indexes it (rag.ingest): {span!r}")
            continue
        words = len(span.split())
        if not 5 <= words <= 20:
            complain.append(f"{where}: span of {words} words (want 5-20): {span!r}")
        if not in_one_sentence(indexed, span):
            complain.append(f"{where}: span crosses a sentence break in {article['ID']}: {span!r}")


def check_line(where: str, item, corpus: dict, heldout: set[str], rep: Report) -> tuple[str, set[str]] | None:
    """Check one question; returns (story, its article IDs) for labelled questions."""
    if not isinstance(item, dict) or not isinstance(item.get("q"), str) or not item["q"].strip():
        rep.errors.append(f"{where}: needs a JSON object with a non-empty string 'q'")
        return None
    if unknown := set(item) - KEYS:
        rep.errors.append(f"{where}: unknown keys {sorted(unknown)}")
    if item.get("abstain"):
        rep.abstain += 1
        if item.get("expect"):
            rep.errors.append(f"{where}: an abstain question must not have 'expect'")
        return None
    kind, split, story = item.get("kind"), item.get("split"), item.get("story")
    if kind is not None and kind not in KINDS:
        rep.errors.append(f"{where}: kind {kind!r} is not one of {sorted(KINDS)}")
    if split is not None and split not in SPLITS:
        rep.errors.append(f"{where}: split {split!r} is not one of {sorted(SPLITS)}")
    if story is not None and (not isinstance(story, str) or not re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)*", story)):
        rep.errors.append(f"{where}: story {story!r} is not a short lower-case slug")
        story = None
    rep.kinds[kind or "unlabelled"] += 1
    rep.splits[split or "unlabelled"] += 1
    rep.stories[story or "unlabelled"] += 1
    expect = item.get("expect")
    if not isinstance(expect, dict) or not expect:
        rep.errors.append(f"{where}: needs a non-empty 'expect' object (or 'abstain': true)")
        return None
    answered = 0
    for article_id, value in expect.items():
        if article_id in heldout:
            rep.errors.append(f"{where}: {article_id} is a held-out article")
            continue
        if article_id not in corpus:
            rep.errors.append(f"{where}: {article_id} is not in the corpus")
            continue
        try:
            spans = spans_of(value)
        except ValueError as err:
            rep.errors.append(f"{where}: {article_id}: {err}")
            continue
        rep.cells += 1
        if spans is None:
            rep.nulls += 1
        else:
            answered += 1
            check_cell(where, corpus[article_id], spans, kind is not None, rep)
    if not answered:
        rep.errors.append(f"{where}: no article answers it (every cell is null)")
    return (story, set(expect)) if story else None


def check_stories(path: Path, lines: list[tuple[int, dict, str, set[str]]], corpus: dict, rep: Report) -> None:
    """A story is asked of the same left, center and right articles on every line, all in one split."""
    by_story: dict[str, list] = defaultdict(list)
    for number, item, story, ids in lines:
        by_story[story].append((number, item, ids))
    for story, rows in by_story.items():
        first, _, ids = rows[0]
        for number, item, other in rows[1:]:
            if other != ids:
                rep.errors.append(f"{path}:{number}: story {story} names other articles than line {first}")
        sides = Counter(corpus[i]["bias_text"] for i in ids if i in corpus)
        if set(sides) != SIDES or len(ids) != 3:
            has = ", ".join(f"{side} {n}" for side, n in sorted(sides.items()))
            rep.errors.append(f"{path}:{first}: story {story} needs one left, one center and one right article, "
                              f"has {has}")
        if len({item.get("split") for _, item, _ in rows}) > 1:
            rep.errors.append(f"{path}:{first}: story {story} is split across train and test")


def check_file(path: Path, corpus: dict, heldout: set[str], rep: Report) -> None:
    try:
        raw = path.read_text(encoding="utf-8").splitlines()
    except OSError as err:
        sys.exit(f"{path}: cannot read ({err.strerror})")
    labelled, seen = [], {}
    for number, line in enumerate(raw, 1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        try:
            item = json.loads(line)
        except ValueError:
            rep.errors.append(f"{where}: not JSON")
            continue
        if isinstance(item, dict) and isinstance(item.get("q"), str):
            if item["q"] in seen:
                rep.errors.append(f"{where}: same question as line {seen[item['q']]}")
            seen.setdefault(item["q"], number)
        if found := check_line(where, item, corpus, heldout, rep):
            labelled.append((number, item, *found))
    check_stories(path, labelled, corpus, rep)


def print_report(name: str, rep: Report, verbose: bool) -> None:
    questions = sum(rep.kinds.values())
    stories = len(set(rep.stories) - {"unlabelled"})
    print(f"== {name}: {questions} questions, {rep.abstain} off-topic, {stories} stories")
    for title, counts in (("kind", rep.kinds), ("split", rep.splits)):
        shares = (f"{k} {v} ({v / max(questions, 1):.0%})" for k, v in sorted(counts.items()))
        print(f"  by {title}: " + ", ".join(shares))
    share = rep.nulls / max(rep.cells, 1)
    print(f"  cells: {rep.cells}, null {rep.nulls} ({share:.0%})")
    print("  by story: " + ", ".join(f"{k} {v}" for k, v in sorted(rep.stories.items())))
    for warning in rep.warnings if verbose else rep.warnings[:5]:
        print(f"  warning: {warning}")
    if len(rep.warnings) > 5 and not verbose:
        print(f"  ... {len(rep.warnings) - 5} more warnings (--verbose)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("questions", nargs="+", type=Path, help="question files (JSON lines)")
    parser.add_argument("--corpus", type=Path, default=Path("../shared/data/allsides-12k.jsonl.gz"))
    parser.add_argument("--heldout", type=Path, help="held-out IDs (default: heldout-ids.txt beside the corpus)")
    parser.add_argument("--verbose", action="store_true", help="print every warning")
    args = parser.parse_args(argv)
    corpus = load_corpus(args.corpus)
    heldout = read_heldout(args.heldout or args.corpus.parent / "heldout-ids.txt")
    failed = False
    for path in args.questions:
        rep = Report()
        check_file(path, corpus, heldout, rep)
        print_report(str(path), rep, args.verbose)
        for error in rep.errors:
            print(f"error: {error}", file=sys.stderr)
        failed |= bool(rep.errors)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
