"""Train the answer-sentence scorer (rag/scorer.json) on the SQuAD tune split.

    .venv/bin/python bench/train_scorer.py ../shared/data/squad2-dev-tune.json
    .venv/bin/python bench/news_dev.py ../shared/data/allsides-12k.jsonl.gz --write-threshold

(the second line replaces the threshold picked here by the one the news/opinion dev set
picks; both gave 0.2 for the current scorer).

Candidates come from the product's own retrieval (hybrid, per viewpoint):

* a global pool (all 8 articles as one viewpoint): what ``rag eval squad`` ranks;
* per-article pools (each article its own viewpoint): the question's own article,
  where sentences holding a gold answer are positives, and two other articles,
  whose sentences are all negatives: a side that is not about the question.

Cross-validation holds out whole articles (4 folds of 2), so no question, or
article, is scored by a model that saw it. Prints CV hit@1/@3/MRR on the
global pool and, per threshold, the per-viewpoint answer/abstain accuracy;
then fits on everything and writes the weights as JSON.
"""
from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rag.answer import FEATURES, SCORER_FILE, Query, addresses, candidates, content_terms, expand  # noqa: E402
from rag.embed import MiniLM  # noqa: E402
from rag.evaluate import squad_index  # noqa: E402
from rag.lexical import for_snapshot  # noqa: E402
from rag.retrieve import Groups, group_chunks, search_groups  # noqa: E402
from rag.settings import Settings  # noqa: E402

THRESHOLDS = (0.05, 0.1, 0.125, 0.15, 0.175, 0.2, 0.25, 0.3, 0.4, 0.5)


def collect(squad: Path, cache: Path, passages: int = Settings.passages):
    """Feature rows: (features, label, question number, article, pool) arrays."""
    model = MiniLM()
    ix, questions = squad_index(squad, cache / "squad-index", embedder=model)
    from rag.evaluate import read_squad

    _, questions = read_squad(squad, impossible=True)
    snap, lexical = ix.snapshot(), for_snapshot(ix.snapshot())
    vectors_file = cache / "squad-questions.npy"
    if vectors_file.exists():
        vectors = np.load(vectors_file)
    else:
        vectors = model.encode([q.question for q in questions])
        np.save(vectors_file, vectors)
    everything = Groups(("all",), np.zeros(len(snap.chunks), np.int64))
    per_article = group_chunks(snap, "id")
    article_of = {label: g for g, label in enumerate(per_article.labels)}
    rng = random.Random(4)
    rows = []  # (features, labels, question, article, pool) per pool
    for n, (item, vector) in enumerate(zip(questions, vectors)):
        query = Query(item.question, vector.astype(np.float32), content_terms(item.question), item.question)
        bm25 = lexical.scores(item.question)
        own = article_of[item.doc_id]
        pools = []
        if item.answers:
            pools.append(("global", everything, 0))
        others = rng.sample([g for g in range(len(per_article.labels)) if g != own], 2)
        pools += [("own", per_article, own)] + [("other", per_article, g) for g in others]
        for pool, groups, g in pools:
            found_passages = search_groups(snap, query.vector, groups, passages, 99, bm25)[g]
            found = candidates(snap, query, found_passages, lexical)
            labels = np.array([_holds(snap, int(r), item.answers) if pool != "other" else False
                               for r in found.rows], dtype=bool)
            rows.append((found.features, labels, n, item.doc_id, pool, bool(item.answers)))
    return rows


def _holds(snap, row: int, answers) -> bool:
    article_row = int(np.searchsorted(snap.sentence_start, row, side="right") - 1)
    span = snap.sentences[article_row][row - int(snap.sentence_start[article_row])]
    text = snap.articles[article_row].text[span.start:span.end]
    return any(a in text for a in answers)


def fit(pools, c: float = 1.0):
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    # unanswerable questions' own-article pools are held out of training: their
    # sentences are on topic by design, and only measured as abstention cases
    x = np.concatenate([p[0] for p in pools if p[4] != "own" or p[5]]).astype(np.float64)
    y = np.concatenate([p[1] for p in pools if p[4] != "own" or p[5]])
    scaler = StandardScaler().fit(x)
    model = LogisticRegression(C=c, max_iter=2000).fit(scaler.transform(x), y)
    return scaler, model


def probability(scaler, model, x):
    return model.predict_proba(scaler.transform(x))[:, 1] if len(x) else np.zeros(0)


def evaluate(pools, scaler, model) -> dict:
    ranks, decisions = [], {t: [] for t in THRESHOLDS}
    briers = []
    for x, y, _, _, pool, answerable in pools:
        p = probability(scaler, model, x)
        if pool == "global":
            order = np.argsort(-p, kind="stable")
            hit = np.flatnonzero(y[order])
            ranks.append(int(hit[0]) + 1 if len(hit) else 0)
            briers.append(np.mean((p - y) ** 2) if len(p) else 0.0)
            continue
        best = addresses(p.tolist())
        should_answer = pool == "own" and answerable and bool(y.any())
        kind = "answer" if should_answer else ("unanswerable" if pool == "own" else "other")
        if pool == "own" and answerable and not y.any():
            continue  # retrieval missed the answer: not an abstention question
        for t in THRESHOLDS:
            decisions[t].append((kind, (best >= t) == should_answer))
    n = max(len(ranks), 1)
    out = {"hit@1": sum(r == 1 for r in ranks) / n, "hit@3": sum(1 <= r <= 3 for r in ranks) / n,
           "mrr": sum(1 / r for r in ranks if r) / n, "retrieval_recall": sum(r > 0 for r in ranks) / n,
           "brier": float(np.mean(briers))}
    for t, items in decisions.items():
        for kind in ("answer", "other", "unanswerable"):
            right = [ok for k, ok in items if k == kind]
            out[f"t={t} {kind}"] = sum(right) / max(len(right), 1)
    return out


def _digits(values) -> list[float]:
    """Seven significant digits: products of features have scales far below 1e-6 apart."""
    return [float(f"{v:.7g}") for v in values]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("squad", type=Path)
    parser.add_argument("--cache", type=Path, default=Path("/tmp/rag-train-cache"))
    parser.add_argument("--c", type=float, default=1.0, help="inverse regularization strength")
    # Degree 2 (C 0.03) gains on SQuAD CV (hit@1 +0.011, hit@3 +0.005) but loses 5 of 82
    # hit@1 cells on the news/opinion dev set at C 0.03 and 0.01 (BENCHMARKS.md): not shipped.
    parser.add_argument("--degree", type=int, default=1, choices=(1, 2),
                        help="2: the features and their pairwise products too (answer.expand)")
    parser.add_argument("--out", type=Path, default=SCORER_FILE)
    parser.add_argument("--passages", type=int, default=Settings.passages, help="passages per viewpoint")
    args = parser.parse_args()
    args.cache.mkdir(parents=True, exist_ok=True)
    started = time.time()
    pools = collect(args.squad, args.cache, args.passages)
    pools = [(expand(p[0].astype(np.float64), args.degree), *p[1:]) for p in pools]
    print(f"collected {len(pools)} pools in {time.time() - started:.0f}s", file=sys.stderr)
    articles = sorted({p[3] for p in pools})
    folds = [articles[i::4] for i in range(4)]
    scores = []
    for held in folds:
        scaler, model = fit([p for p in pools if p[3] not in held], args.c)
        scores.append(evaluate([p for p in pools if p[3] in held], scaler, model))
    cv = {key: round(float(np.mean([s[key] for s in scores])), 4) for key in scores[0]}
    print(json.dumps(cv, indent=1))
    # One threshold: the best balance between answering where the answer is and
    # abstaining where the side is about something else (SQuAD 2's adversarial
    # unanswerable questions are reported, not optimized: near-misses by design).
    threshold = max(THRESHOLDS, key=lambda t: cv[f"t={t} answer"] + cv[f"t={t} other"])
    print(f"threshold {threshold}", file=sys.stderr)
    scaler, model = fit(pools, args.c)
    args.out.write_text(json.dumps({
        "features": list(FEATURES), "mean": _digits(scaler.mean_),
        "scale": _digits(scaler.scale_), "coef": _digits(model.coef_[0]),
        "intercept": round(float(model.intercept_[0]), 6), "degree": args.degree, "c": args.c,
        "threshold": threshold,
        "trained_on": args.squad.name, "cv_by_article_4_folds": cv}, indent=1) + "\n")
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
