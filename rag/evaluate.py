"""Evaluate: measure answers against known ones (``rag eval``).

Two kinds of test set:

* SQuAD-format JSON: each article becomes one document, all in one viewpoint,
  so the answer sentence must be found across the whole corpus. A quote is
  right when it contains a gold answer string. Only answerable questions count.
* Question sets, one JSON object a line::

    {"q": "...", "expect": {"<doc id prefix>": "expected span" | ["span", "or another"] | null}}
    {"q": "...", "abstain": true}                   # off-topic: every side abstains
    {"q": "...", "topic": "immigration"}            # every side quotes that topic

  A side's cell is right at top 1 when it answers and its first quote contains
  the expected span (or lies inside it); ``null`` means the side is silent and
  is right when it abstains. A line may also carry ``kind`` (one of ``KINDS``),
  ``story`` (any label) and ``split`` (``train`` or ``test``): the report breaks
  its cells down by kind and by side (the viewpoint of the expected article),
  and ``split`` picks the questions of one part.
"""
from __future__ import annotations

import json
import os
import re
import statistics
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from .errors import RagError

SQUAD_VIEWPOINT = "squad"
KINDS = ("factoid", "yesno", "why", "paraphrase")
SPLITS = ("train", "test")
UNLABELLED = "unlabelled"  # the kind of a question line without one


@dataclass(frozen=True)
class SquadQuestion:
    question: str
    answers: tuple[str, ...]
    doc_id: str


def read_squad(path: str | os.PathLike, impossible: bool = False) -> tuple[list[dict], list[SquadQuestion]]:
    """Articles (as JSONL records) and the answerable questions of a SQuAD file
    (with ``impossible``, the unanswerable ones too, with no answers)."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))["data"]
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise RagError(f"{path}: not a SQuAD-format JSON file ({err})") from None
    records, questions = [], []
    for article in data:
        doc_id = re.sub(r"\W+", "-", article["title"]).strip("-").lower()
        text = "\n\n".join(p["context"].strip() for p in article["paragraphs"])
        records.append({"id": doc_id, "title": article["title"].replace("_", " "), "text": text,
                        "viewpoint": SQUAD_VIEWPOINT})
        for paragraph in article["paragraphs"]:
            for qa in paragraph["qas"]:
                golds = tuple(dict.fromkeys(a["text"] for a in qa.get("answers", []) if a["text"].strip()))
                if (not qa.get("is_impossible") and golds) or (impossible and qa.get("is_impossible")):
                    questions.append(SquadQuestion(qa["question"], () if qa.get("is_impossible") else golds,
                                                   doc_id))
    return records, questions


def squad_index(path: str | os.PathLike, index: str | os.PathLike, embedder=None, settings=None):
    """Index the articles of a SQuAD file into ``index`` (reused when unchanged)."""
    from .engine import Index

    records, questions = read_squad(path)
    folder = Path(index)
    folder.mkdir(parents=True, exist_ok=True)
    corpus = folder.parent / f"{folder.name}-corpus.jsonl"
    corpus.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    ix = Index(folder, settings, embedder)
    ix.rebuild([corpus], progress=False)
    return ix, questions


def eval_squad(path: str | os.PathLike, index: str | os.PathLike | None = None, limit: int = 0,
               embedder=None, settings=None) -> dict:
    """Answer-sentence hit@1, hit@3, MRR@10 and ask latency on a SQuAD file
    (``limit``: that many questions, spread evenly)."""
    with tempfile.TemporaryDirectory() as tmp:
        ix, questions = squad_index(path, index or Path(tmp) / "index", embedder, settings)
        if limit:  # spread evenly over the file, so every article is represented
            questions = questions[::max(1, len(questions) // limit)][:limit]
        ix.ask("warm up the model")
        ranks, seconds = [], []
        for item in questions:
            started = time.perf_counter()
            answer = ix.ask(item.question, k=10)
            seconds.append(time.perf_counter() - started)
            quotes = answer.viewpoints[0].answers if answer.viewpoints else ()
            ranks.append(next((n for n, quote in enumerate(quotes, 1)
                               if any(gold in quote.text for gold in item.answers)), 0))
    return {"questions": len(ranks), **_rank_metrics(ranks), **_latency(seconds)}


def _rank_metrics(ranks: list[int]) -> dict:
    n = max(len(ranks), 1)
    return {"hit@1": round(sum(r == 1 for r in ranks) / n, 4),
            "hit@3": round(sum(1 <= r <= 3 for r in ranks) / n, 4),
            "mrr@10": round(sum(1 / r for r in ranks if r) / n, 4)}


def _latency(seconds: list[float]) -> dict:
    if not seconds:
        return {}
    ordered = sorted(seconds)
    return {"latency_ms_median": round(1000 * statistics.median(ordered), 1),
            "latency_ms_p95": round(1000 * ordered[int(0.95 * (len(ordered) - 1))], 1)}


def read_questions(path: str | os.PathLike) -> list[dict]:
    items = []
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except OSError as err:
        raise RagError(f"{path}: cannot read ({err.strerror})") from None
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except ValueError:
            raise RagError(f"{path}:{number}: not a JSON object") from None
        if not isinstance(item, dict) or not isinstance(item.get("q"), str):
            raise RagError(f"{path}:{number}: needs a string 'q'")
        for key, allowed in (("kind", KINDS), ("split", SPLITS)):
            if key in item and item[key] not in allowed:
                raise RagError(f"{path}:{number}: '{key}' is {item[key]!r}, not one of {', '.join(allowed)}")
        if not isinstance(item.get("story", ""), str):
            raise RagError(f"{path}:{number}: 'story' must be a string")
        items.append(item)
    return items


def questions_of(paths: str | os.PathLike | Sequence[str | os.PathLike], split: str | None = None) -> list[dict]:
    """The question lines of one or several files, only those of ``split`` when given."""
    paths = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
    items = [item for path in paths for item in read_questions(path)]
    if split is None:
        return items
    if split not in SPLITS:
        raise RagError(f"--split {split}: not one of {', '.join(SPLITS)}")
    chosen = [item for item in items if item.get("split") == split]
    if not chosen:
        raise RagError(f"{', '.join(map(str, paths))}: no question has split {split!r}")
    return chosen


@dataclass(frozen=True)
class Cell:
    """One side of one question: answerable (``rank`` of the first right quote,
    0 for none) or silent (``expected`` None)."""

    kind: str
    side: str
    answerable: bool
    rank: int
    abstained: bool


def cell_metrics(cells: Sequence[Cell]) -> dict:
    """hit@1, hit@3 and answered (the side did not abstain) over the answerable
    cells; silent_abstained over the silent ones.

    >>> cell_metrics([Cell("why", "left", True, 1, False), Cell("why", "left", True, 0, True),
    ...               Cell("why", "left", False, 0, True)])
    {'answerable_cells': 2, 'hit@1': 0.5, 'hit@3': 0.5, 'answered': 0.5, 'silent_cells': 1, 'silent_abstained': 1.0}
    """
    answerable = [c for c in cells if c.answerable]
    silent = [c for c in cells if not c.answerable]
    n, m = max(len(answerable), 1), max(len(silent), 1)
    return {"answerable_cells": len(answerable),
            "hit@1": round(sum(c.rank == 1 for c in answerable) / n, 4),
            "hit@3": round(sum(1 <= c.rank <= 3 for c in answerable) / n, 4),
            "answered": round(sum(not c.abstained for c in answerable) / n, 4),
            "silent_cells": len(silent),
            "silent_abstained": round(sum(c.abstained for c in silent) / m, 4)}


def _breakdown(cells: Sequence[Cell], key) -> dict:
    groups: dict[str, list[Cell]] = defaultdict(list)
    for cell in cells:
        groups[key(cell)].append(cell)
    return {name: cell_metrics(groups[name]) for name in sorted(groups)}


def _norm(text: str) -> str:
    return " ".join(re.sub(r"[“”\"’‘']", "'", text).lower().split())


def _matches(expected: str | list[str], quote: str) -> bool:
    """The quote holds the expected span (or one of several), or lies inside it."""
    quote = _norm(quote)
    spans = [_norm(e) for e in ([expected] if isinstance(expected, str) else expected)]
    return any(e and (e in quote or quote in e) for e in spans)


def eval_questions(paths: str | os.PathLike | Sequence[str | os.PathLike], ix, group_by: str | None = None,
                   split: str | None = None) -> dict:
    """Per-side hit@1/@3, abstention on silent sides, off-topic abstention; the
    same by question kind (``by_kind``) and by side (``by_side``). ``paths``: one
    question file or several; ``split``: only the questions of that split."""
    items = questions_of(paths, split)
    articles = ix.articles()
    by = group_by or ix.settings.group_by
    cells, off_topic, topical, seconds, misses = [], [], [], [], []
    side_of: dict[str, str] = {}  # expected doc id prefix -> its viewpoint label
    ix.ask("warm up the model")
    for item in items:
        started = time.perf_counter()
        answer = ix.ask(item["q"], group_by=group_by)
        seconds.append(time.perf_counter() - started)
        columns = {v.viewpoint: v for v in answer.viewpoints}
        if item.get("abstain"):
            off_topic.append(all(v.abstained for v in answer.viewpoints))
            if not off_topic[-1]:
                misses.append({"q": item["q"], "wrong": "answered an off-topic question"})
        for prefix, expected in (item.get("expect") or {}).items():
            if prefix not in side_of:
                labels = [a.group(by) for a in articles if a.id.startswith(prefix)]
                if not labels:
                    raise RagError(f"{', '.join(map(str, _listed(paths)))}: no article id starts with {prefix!r}")
                side_of[prefix] = labels[0]
            column = columns.get(side_of[prefix])
            abstained = bool(column is None or column.abstained)
            kind = item.get("kind", UNLABELLED)
            if expected is None:
                cells.append(Cell(kind, side_of[prefix], False, 0, abstained))
                if not abstained:
                    misses.append({"q": item["q"], "side": prefix, "wrong": "did not abstain",
                                   "quote": column.answers[0].text, "score": column.answers[0].score})
                continue
            quotes = [] if abstained else list(column.answers)
            rank = next((n for n, q in enumerate(quotes, 1) if _matches(expected, q.text)), 0)
            cells.append(Cell(kind, side_of[prefix], True, rank, abstained))
            if rank != 1:
                misses.append({"q": item["q"], "side": prefix, "wrong": f"rank {rank or 'none'}",
                               "abstained": bool(column and column.abstained),
                               "quote": column.answers[0].text if column and column.answers else ""})
        if item.get("topic"):
            for column in answer.viewpoints:
                top = column.answers[0] if column.answers and not column.abstained else None
                topic = ix.article(top.doc_id).meta.get("topic") if top else None
                topical.append(topic == item["topic"])
    report = {"questions": len(items), **cell_metrics(cells),
              "off_topic_questions": len(off_topic),
              "off_topic_abstained": round(sum(off_topic) / max(len(off_topic), 1), 4)}
    if split:
        report["split"] = split
    if topical:
        report.update(topic_cells=len(topical), on_topic=round(sum(topical) / len(topical), 4))
    return {**report, **_latency(seconds), "by_kind": _breakdown(cells, lambda c: c.kind),
            "by_side": _breakdown(cells, lambda c: c.side), "misses": misses}


def _listed(paths) -> list:
    return [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)


def table(report: dict) -> str:
    """The report of ``eval_questions`` as a small text table.

    >>> row = {"answerable_cells": 2, "hit@1": 0.5, "hit@3": 1.0, "answered": 1.0,
    ...        "silent_cells": 1, "silent_abstained": 0.0}
    >>> print(table({**row, "off_topic_questions": 0, "by_kind": {}, "by_side": {"left": row}}))
                     cells  hit@1  hit@3  answered  silent  abstained
    all                  2   0.50   1.00      1.00       1       0.00
    side left            2   0.50   1.00      1.00       1       0.00
    """
    lines = [f"{'':<16}{'cells':>6}{'hit@1':>7}{'hit@3':>7}{'answered':>10}{'silent':>8}{'abstained':>11}"]
    rows = [("all", report)] + [(f"kind {k}", v) for k, v in report.get("by_kind", {}).items()] \
        + [(f"side {k}", v) for k, v in report.get("by_side", {}).items()]
    for name, r in rows:
        lines.append(f"{name[:16]:<16}{r['answerable_cells']:>6}{r['hit@1']:>7.2f}{r['hit@3']:>7.2f}"
                     f"{r['answered']:>10.2f}{r['silent_cells']:>8}{r['silent_abstained']:>11.2f}")
    if report.get("off_topic_questions"):
        lines.append(f"off-topic questions: {report['off_topic_questions']}, "
                     f"all sides abstained on {report['off_topic_abstained']:.2f}")
    if "latency_ms_median" in report:
        lines.append(f"ask latency: median {report['latency_ms_median']} ms, p95 {report['latency_ms_p95']} ms")
    if report.get("misses"):
        lines.append(f"{len(report['misses'])} misses (--json lists them)")
    return "\n".join(lines)
