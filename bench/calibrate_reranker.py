"""Calibrate the reranker on the news dev questions' train split, and report the
calibration on the test split.

    .venv/bin/python bench/calibrate_reranker.py tests/data/news-dev-questions*.jsonl \
        --index /tmp/news-dev-index --write

For every question of the split, each viewpoint's candidates are found as
``rag ask`` finds them, the first scorer's best ``--rerank`` (default ``Settings.rerank``) are read by
the reranker, and each is labelled: it answers when it comes from the side's
expected article and holds an expected span (a side expected to be silent has
none). A Platt scaling over (reranker logit, first scorer's logit) is fitted on
those sentences of the train split; the side threshold is then chosen on the
train split's cells: the one with the best balanced accuracy between answering
sides that answer and silent sides that abstain. ``--write`` stores both in
rag/models/reranker.json; the test split is only reported (a reliability table
and the side decision at the chosen threshold).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import numpy as np  # noqa: E402

import news_corpus  # noqa: E402
import reranker_data  # noqa: E402
from rag import rerank  # noqa: E402
from rag.answer import addresses, candidate_texts, candidates, load_scorer  # noqa: E402
from rag.engine import Index  # noqa: E402
from rag.evaluate import _matches, read_questions  # noqa: E402
from rag.settings import Settings  # noqa: E402

THRESHOLDS = np.round(np.arange(0.05, 0.96, 0.025), 3)


@dataclasses.dataclass
class Cell:
    """One (question, side): its reranked candidates and whether each answers."""

    kind: str  # the question's kind
    answerable: bool  # the side's article addresses the question
    logits: np.ndarray
    first: np.ndarray
    labels: np.ndarray


def collect(ix: Index, items: list[dict], n: int, model: rerank.Reranker) -> list[Cell]:
    scorer = load_scorer()
    out = []
    for item in items:
        found = ix.retrieve(item["q"])
        snap = found.snap
        expected_by_label = {}
        for doc_id, expected in (item.get("expect") or {}).items():
            if doc_id in snap.row_of:
                expected_by_label[snap.articles[snap.row_of[doc_id]].group(ix.settings.group_by)] = (doc_id, expected)
        for label, passages in found.sides.items():
            if label not in expected_by_label:
                continue
            doc_id, expected = expected_by_label[label]
            cands = candidates(snap, found.query, passages, found.lexical)
            if not len(cands.rows):
                out.append(Cell(item.get("kind", "unlabelled"), expected is not None, np.zeros(0), np.zeros(0),
                                np.zeros(0)))
                continue
            first = scorer.probability(cands.features)
            top = np.argsort(-first, kind="stable")[:n]
            texts = candidate_texts(snap, cands, top)
            docs = [snap.articles[int(snap.chunks[cands.chunk_rows[i]][0])].id for i in top.tolist()]
            labels = np.array([float(expected is not None and d == doc_id and _matches(expected, t))
                               for d, t in zip(docs, texts)])
            read = candidate_texts(snap, cands, top, model.context)  # what the model reads
            out.append(Cell(item.get("kind", "unlabelled"), expected is not None,
                            model.logits(found.query.text, read), first[top], labels))
    return out


def fit(cells: list[Cell]) -> tuple[float, float, float]:
    from sklearn.linear_model import LogisticRegression

    x = np.concatenate([_features(c) for c in cells if len(c.labels)])
    y = np.concatenate([c.labels for c in cells if len(c.labels)])
    model = LogisticRegression(C=1.0).fit(x, y)
    return float(model.coef_[0][0]), float(model.coef_[0][1]), float(model.intercept_[0])


def _features(cell: Cell) -> np.ndarray:
    first = np.clip(cell.first, 1e-6, 1 - 1e-6)
    return np.column_stack([cell.logits, np.log(first / (1 - first))])


def side_scores(cells: list[Cell], calibration: rerank.Calibration) -> list[tuple[Cell, np.ndarray, float]]:
    out = []
    for cell in cells:
        p = calibration.probability(cell.logits, cell.first) if len(cell.labels) else np.zeros(0)
        out.append((cell, p, addresses(p.tolist())))
    return out


def decisions(scored, t: float) -> dict:
    answer = [(c, p, s) for c, p, s in scored if c.answerable]
    silent = [(c, p, s) for c, p, s in scored if not c.answerable]
    top1 = [bool(len(p) and c.labels[int(np.argmax(p))] == 1 and s >= t) for c, p, s in answer]
    top3 = [bool(len(p) and c.labels[np.argsort(-p)[:3]].max() == 1 and s >= t) for c, p, s in answer]
    reachable = [bool(len(c.labels) and c.labels.max() == 1) for c, _, _ in answer]
    return {"answer_cells": len(answer), "silent_cells": len(silent),
            "reachable": round(float(np.mean(reachable)), 3) if reachable else None,
            "hit@1": round(float(np.mean(top1)), 3) if top1 else None,
            "hit@3": round(float(np.mean(top3)), 3) if top3 else None,
            "answered": round(float(np.mean([s >= t for _, _, s in answer])), 3) if answer else None,
            "silent_abstained": round(float(np.mean([s < t for _, _, s in silent])), 3) if silent else None}


def ranking(cells: list[Cell], calibration: rerank.Calibration) -> dict:
    """Which score puts an answering sentence first, threshold aside (answerable cells):
    the first scorer alone, the reranker alone, and the calibrated blend of both."""
    cells = [c for c in cells if c.answerable]
    def at1(score):
        return round(float(np.mean([bool(len(c.labels)) and c.labels[int(np.argmax(score(c)))] == 1
                                    for c in cells])), 3) if cells else None
    return {"first@1": at1(lambda c: c.first), "reranker@1": at1(lambda c: c.logits),
            "blend@1": at1(lambda c: calibration.probability(c.logits, c.first))}


def choose(scored) -> float:
    """Best balanced accuracy of the side decision (ties: the lower threshold)."""
    def balanced(t):
        d = decisions(scored, t)
        return ((d["answered"] or 0) + (d["silent_abstained"] or 0)) / 2
    return float(max(THRESHOLDS, key=lambda t: (round(balanced(t), 4), -t)))


def reliability(scored, bins=(0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0001)) -> list[dict]:
    """Calibration curve of every reranked sentence: predicted vs observed share answering."""
    p = np.concatenate([p for _, p, _ in scored if len(p)])
    y = np.concatenate([c.labels for c, p, _ in scored if len(p)])
    rows = []
    for lo, hi in zip(bins, bins[1:]):
        inside = (p >= lo) & (p < hi)
        if inside.any():
            rows.append({"bin": f"{lo:.1f}-{min(hi, 1):.1f}", "sentences": int(inside.sum()),
                         "predicted": round(float(p[inside].mean()), 3), "observed": round(float(y[inside].mean()), 3)})
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("questions", nargs="+", type=Path)
    parser.add_argument("--data", type=Path, default=news_corpus.ALLSIDES)
    parser.add_argument("--index", type=Path, default=Path("/tmp/news-dev-index"))
    parser.add_argument("--distractors", type=int, default=news_corpus.DISTRACTORS)
    parser.add_argument("--model", type=Path, default=rerank.MODEL_FILE)
    parser.add_argument("--rerank", type=int, default=Settings().rerank,
                        help="candidates per side the reranker reads (default: the setting's)")
    parser.add_argument("--write", action="store_true", help="store the calibration in rag/models/reranker.json")
    args = parser.parse_args()
    items = [item for path in args.questions for item in read_questions(path)]
    ix = news_corpus.open_index(args.data, items, args.index, args.distractors,
                             dataclasses.replace(Settings(), scorer="features", min_score=0.0))
    n = args.rerank
    config = json.loads(rerank.CONFIG_FILE.read_text(encoding="utf-8"))
    model = rerank.Reranker(args.model, rerank.CONFIG_FILE)
    by_split = {"train": collect(ix, [i for i in items if i.get("split") == "train"
                                      and reranker_data.calibration_story(i)], n, model),
                "test": collect(ix, [i for i in items if i.get("split") == "test"], n, model)}
    a, b, c = fit(by_split["train"])
    provisional = rerank.Calibration(a, b, c, 0.5)
    train = side_scores(by_split["train"], provisional)
    t = choose(train)
    calibration = rerank.Calibration(a, b, c, t)
    report = {"calibration": dataclasses.asdict(calibration), "rerank": n,
              "train": decisions(side_scores(by_split["train"], calibration), t),
              "test": decisions(side_scores(by_split["test"], calibration), t),
              "test_reliability": reliability(side_scores(by_split["test"], calibration)),
              "train_sweep": {float(x): decisions(train, x) for x in THRESHOLDS[::4]}}
    report["test_ranking"] = ranking(by_split["test"], calibration)
    kinds = sorted({cell.kind for cell in by_split["test"]})
    report["test_by_kind"] = {k: decisions(side_scores([x for x in by_split["test"] if x.kind == k], calibration), t)
                              for k in kinds}
    print(json.dumps(report, indent=1))
    if args.write:
        config.update(calibration=dataclasses.asdict(calibration),
                      calibrated_on=[p.name for p in args.questions], calibrated_split="train",
                      calibration_cells={"train": report["train"], "test": report["test"]},
                      test_reliability=report["test_reliability"])
        rerank.CONFIG_FILE.write_text(json.dumps(config, indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
