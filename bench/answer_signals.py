"""How far each answer signal gets on the news dev set, threshold aside: where the
answering sentence ranks among a side's candidates by the first scorer and by the
reranker, what a news-trained combination of them reaches, and how well a side-level
model tells answering from silent sides.

    .venv/bin/python bench/answer_signals.py tests/data/news-dev-questions*.jsonl --index /tmp/news-dev-index

Everything is fitted on the train split (the combinations: its calibration stories, which
the reranker never trained on) and reported on the test split, which nothing here sees.
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
from rag.evaluate import _matches, read_questions  # noqa: E402
from rag.settings import Settings  # noqa: E402

DEPTHS = (1, 3, 6, 10, 16)


@dataclasses.dataclass
class Cell:
    """One (question, side): every candidate in first-scorer order, with its label."""

    split: str
    calibration: bool  # a calibration story (train split, never trained on)
    answerable: bool
    first: np.ndarray  # first scorer's probability
    features: np.ndarray  # its feature rows
    logits: np.ndarray  # the reranker's, for the first ``depth`` candidates
    labels: np.ndarray
    maxsim: np.ndarray  # the first ``depth`` candidates' late-interaction score (``maxsim``)


def maxsim(embedder, question: str, sentences: list[str]) -> np.ndarray:
    """ColBERT-style, untrained: the mean over the question's wordpieces of their best cosine
    to any of the sentence's, with the bi-encoder's token vectors (swap ~ exchange)."""
    tokens = {}
    texts = [question] + sentences
    for rows, hidden, mask, _ in embedder._forward(texts, False):
        for r, row in enumerate(rows.tolist()):
            h = hidden[r, 1:int(mask[r].sum()) - 1]  # without [CLS] and [SEP]
            tokens[row] = h / np.maximum(np.linalg.norm(h, axis=1, keepdims=True), 1e-9)
    return np.array([float((tokens[0] @ tokens[i].T).max(1).mean()) for i in range(1, len(texts))])


def collect(ix, items: list[dict], depth: int, model: rerank.Reranker) -> list[Cell]:
    from rag.onnx_embed import OnnxMiniLM

    scorer, out, embedder = load_scorer(), [], OnnxMiniLM(quantized=True)
    for item in items:
        found = ix.retrieve(item["q"])
        snap = found.snap
        expected = {snap.articles[snap.row_of[d]].group(ix.settings.group_by): (d, e)
                    for d, e in (item.get("expect") or {}).items() if d in snap.row_of}
        for label, passages in found.sides.items():
            if label not in expected:
                continue
            doc_id, want = expected[label]
            cands = candidates(snap, found.query, passages, found.lexical)
            first = scorer.probability(cands.features) if len(cands.rows) else np.zeros(0)
            order = np.argsort(-first, kind="stable")
            texts = candidate_texts(snap, cands, order)
            docs = [snap.articles[int(snap.chunks[cands.chunk_rows[i]][0])].id for i in order.tolist()]
            labels = np.array([float(want is not None and d == doc_id and _matches(want, t))
                               for d, t in zip(docs, texts)])
            read = candidate_texts(snap, cands, order[:depth], model.context)
            out.append(Cell(item.get("split", ""), reranker_data.calibration_story(item), want is not None,
                            first[order], cands.features[order], model.logits(found.query.text, read), labels,
                            maxsim(embedder, item["q"], texts[:depth])))
    return out


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-6, 1 - 1e-6)
    return np.log(p / (1 - p))


def combined(cell: Cell, n: int) -> np.ndarray:
    """Per candidate (the first ``n``): reranker logit and first logit, each also as its gap
    to the side's best, 1/rank by each, and the first scorer's features."""
    logits, first = cell.logits[:n], _logit(cell.first[:n])
    n = len(logits)
    by_rerank = np.empty(n)
    by_rerank[np.argsort(-logits, kind="stable")] = 1 / np.arange(1, n + 1)
    return np.column_stack([logits, logits - logits.max(), first, first - first.max(), by_rerank,
                            1 / np.arange(1, n + 1), cell.features[:n], cell.maxsim[:n],
                            cell.maxsim[:n] - cell.maxsim[:n].max()])


def at(cells: list[Cell], score, n: int) -> float:
    """Share of answerable cells whose best candidate (of the first ``n``) by ``score`` answers."""
    hits = [bool(len(c.labels)) and c.labels[:n][int(np.argmax(score(c, n)))] == 1 for c in cells if c.answerable]
    return round(float(np.mean(hits)), 3)


def reach(cells: list[Cell], n: int) -> float:
    return round(float(np.mean([bool(len(c.labels)) and c.labels[:n].max() == 1 for c in cells if c.answerable])), 3)


def fit(x: np.ndarray, y: np.ndarray, **kw):
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=3000, **kw)).fit(x, y)


def side_row(cell: Cell, calibration: rerank.Calibration, n: int) -> np.ndarray:
    if not len(cell.labels):
        return np.zeros(6)
    blend = calibration.probability(cell.logits[:n], cell.first[:n])
    best = np.sort(cell.first)[::-1]
    logits = np.sort(cell.logits[:n])[::-1]
    return np.array([addresses(cell.first.tolist()), addresses(blend.tolist()), best[0],
                     best[min(1, len(best) - 1)], logits[0], logits[min(1, len(logits) - 1)]])


def balanced(said: list[bool], cells: list[Cell]) -> dict:
    answered = float(np.mean([s for s, c in zip(said, cells) if c.answerable]))
    abstained = float(np.mean([not s for s, c in zip(said, cells) if not c.answerable]))
    return {"answered": round(answered, 3), "silent_abstained": round(abstained, 3),
            "balanced": round((answered + abstained) / 2, 3)}


def report(cells: list[Cell], depth: int) -> dict:
    train = [c for c in cells if c.split == "train" and len(c.labels)]
    calib = [c for c in train if c.calibration]
    test = [c for c in cells if c.split == "test"]
    out = {"test_answerable_cells": sum(c.answerable for c in test), "test_silent_cells": sum(not c.answerable for c in test),
           "answer_among_all_candidates": reach(test, 10**6),
           "first_scorer_reach": {n: reach(test, n) for n in DEPTHS if n <= depth},
           "reranker_reach": {n: round(float(np.mean([bool(len(c.labels)) and c.labels[np.argsort(-c.logits)[:n]].max() == 1
                                                      for c in test if c.answerable])), 3) for n in DEPTHS if n <= depth},
           "cosine@1_all_candidates": at(test, lambda c, n: c.features[:, 0], 10**6),
           "maxsim@1": at(test, lambda c, n: c.maxsim[:n], depth)}
    # the first scorer refitted on the news train split (every story): its features alone
    news_first = fit(np.concatenate([c.features for c in train]), np.concatenate([c.labels for c in train]))
    out["first_scorer_refit_on_news_reach"] = {n: at_refit(test, news_first, n) for n in DEPTHS if n <= depth}
    ranked = {}
    for n in (6, 10, depth):
        shipped = rerank.load().calibration
        ranked[n] = {"first": at(test, lambda c, m: c.first[:m], n), "reranker": at(test, lambda c, m: c.logits[:m], n),
                     "shipped_blend": at(test, lambda c, m: shipped.probability(c.logits[:m], c.first[:m]), n)}
        for name, cols in (("refit_blend", slice(0, 4)), ("refit_all_but_maxsim", slice(0, -2)),
                           ("refit_all_signals", slice(None))):
            x = np.concatenate([combined(c, n)[:, cols] for c in calib])
            model = fit(x, np.concatenate([c.labels[:len(c.logits[:n])] for c in calib]))
            ranked[n][name] = at(test, lambda c, m, model=model, cols=cols: model.decision_function(combined(c, m)[:, cols]), n)
    out["top1_by_depth"] = ranked
    shipped = rerank.load().calibration
    sides = {"first_scorer": balanced([addresses(c.first.tolist()) >= load_threshold() for c in test], test),
             "shipped_blend": balanced([side_row(c, shipped, 6)[1] >= shipped.threshold for c in test], test)}
    x = np.array([side_row(c, shipped, 6) for c in calib])
    model = fit(x, np.array([c.answerable for c in calib]), class_weight="balanced")
    sides["side_model"] = balanced(model.predict(np.array([side_row(c, shipped, 6) for c in test])).tolist(), test)
    out["side_decision"] = sides
    return out


def at_refit(cells: list[Cell], model, n: int) -> float:
    hits = []
    for c in cells:
        if c.answerable:
            if not len(c.labels):
                hits.append(False)
                continue
            order = np.argsort(-model.decision_function(c.features), kind="stable")[:n]
            hits.append(bool(c.labels[order].max() == 1))
    return round(float(np.mean(hits)), 3)


def load_threshold() -> float:
    from rag.answer import threshold

    return threshold(Settings())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("questions", nargs="+", type=Path)
    parser.add_argument("--data", type=Path, default=news_corpus.ALLSIDES)
    parser.add_argument("--index", type=Path, default=Path("/tmp/news-dev-index"))
    parser.add_argument("--depth", type=int, default=16, help="candidates per side the reranker reads")
    args = parser.parse_args()
    items = [item for path in args.questions for item in read_questions(path)]
    ix = news_corpus.open_index(args.data, items, args.index,
                                settings=dataclasses.replace(Settings(), scorer="features", min_score=0.0))
    cells = collect(ix, items, args.depth, rerank.load())
    print(json.dumps(report(cells, args.depth), indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
