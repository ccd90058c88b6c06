"""Exact vs IVF search at ~1M vectors made from real embeddings: an index's own
chunk and sentence vectors, plus perturbed copies of them (unit noise of norm
``--noise``, renormalized) up to ``--total``. Queries are real questions
(news questions and squad2-dev-tune questions) embedded with the index's
embedder. Every search is per viewpoint (the index's bias_text groups, copies
keep their source's group), filtered with an IDSelector as ``rag ask`` does,
and recall@10 compares the IVF hits with the exact hits of the same viewpoint.

    python bench/ann_bench.py --index /tmp/allsides-12k --total 1000000
"""
from __future__ import annotations

import argparse
import json
import time

import numpy as np
from tqdm import tqdm

from common import SQUAD, spread, write_result
from build_bench import QUESTIONS


def real_vectors(root: str):
    import rag

    ix = rag.open(root)
    snap = ix.snapshot()
    labels = {}
    article_group = np.array([labels.setdefault(a.group("viewpoint"), len(labels)) for a in snap.articles])
    chunk_groups = article_group[snap.chunks[:, 0]]
    counts = np.array([len(s) for s in snap.sentences])
    sentence_groups = np.repeat(article_group, counts)
    vectors = np.concatenate([snap.chunk_vectors(), snap.sentence_vectors.astype(np.float32)])
    return ix, vectors, np.concatenate([chunk_groups, sentence_groups]), tuple(labels), len(snap.chunks)


def grow(vectors: np.ndarray, groups: np.ndarray, total: int, noise: float):
    rng = np.random.default_rng(0)
    out = np.empty((total, vectors.shape[1]), np.float32)
    n = min(total, len(vectors))
    out[:n] = vectors[:n]
    out_groups = np.empty(total, np.int64)
    out_groups[:n] = groups[:n]
    at = n
    with tqdm(total=total - n, desc="perturbed copies", leave=False) as bar:
        while at < total:
            m = min(len(vectors), total - at, 100_000)
            src = rng.integers(0, len(vectors), m)
            delta = rng.standard_normal((m, vectors.shape[1])).astype(np.float32)
            delta *= noise / np.linalg.norm(delta, axis=1, keepdims=True)
            block = vectors[src] + delta
            out[at:at + m] = block / np.linalg.norm(block, axis=1, keepdims=True)
            out_groups[at:at + m] = groups[src]
            at += m
            bar.update(m)
    return out, out_groups


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--index", required=True, help="an index built from allsides (viewpoint = bias_text)")
    ap.add_argument("--total", type=int, default=1_000_000)
    ap.add_argument("--noise", type=float, default=0.3, help="norm of the noise added to each copy")
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--nprobe", type=int, nargs="+", default=[8, 16, 32])
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()

    import faiss

    from rag.store.ann import build_index, describe, search_params

    ix, base, base_groups, labels, n_chunks = real_vectors(args.index)
    vectors, groups = grow(base, base_groups, args.total, args.noise)
    del base
    squad = [q["question"] for a in json.load(open(SQUAD))["data"] for p in a["paragraphs"] for q in p["qas"]]
    texts = (QUESTIONS + squad)[:args.queries]
    started = time.perf_counter()
    queries = ix.embedder.encode(texts)
    encode_ms = 1000 * (time.perf_counter() - started) / len(texts)
    rows = {g: np.flatnonzero(groups == g) for g in range(len(labels))}
    selectors = {g: faiss.IDSelectorBatch(r) for g, r in rows.items()}

    flat = faiss.IndexFlatIP(vectors.shape[1])
    flat.add(vectors)
    truth, flat_ms = {}, []
    for g in tqdm(rows, desc="exact, batched", leave=False):
        truth[g] = flat.search(queries, 10, params=faiss.SearchParameters(sel=selectors[g]))[1]
    for q in tqdm(queries[:50], desc="exact, one by one", leave=False):
        started = time.perf_counter()
        for g in rows:
            flat.search(q[None], 10, params=faiss.SearchParameters(sel=selectors[g]))
        flat_ms.append(1000 * (time.perf_counter() - started))
    del flat

    started = time.perf_counter()
    ivf = build_index(vectors, vectors.shape[1], threshold=0, nprobe=args.nprobe[0])
    build_s = time.perf_counter() - started
    lines = ["| nprobe (unfiltered) | recall@10, mean over queries x viewpoints | worst viewpoint's mean "
             "| search per question (all viewpoints), ms: median (min–max) | p95 |", "|---|---|---|---|---|"]
    for nprobe in args.nprobe:
        ivf.nprobe = nprobe
        recalls = {g: [] for g in rows}
        ms = []
        for i, q in enumerate(tqdm(queries, desc=f"ivf nprobe={nprobe}", leave=False)):
            started = time.perf_counter()
            found = {g: ivf.search(q[None], 10, params=search_params(ivf, rows[g], selectors[g]))[1][0]
                     for g in rows}
            ms.append(1000 * (time.perf_counter() - started))
            for g in rows:
                recalls[g].append(len(set(found[g]) & set(truth[g][i])) / 10)
        every = [r for rs in recalls.values() for r in rs]
        worst = min(np.mean(rs) for rs in recalls.values())
        lines.append(f"| {nprobe} | {np.mean(every):.3f} | {worst:.3f} | {spread(ms)} | {np.percentile(ms, 95):.0f} |")
        print(lines[-1], flush=True)
    shares = ", ".join(f"{labels[g]} {len(r) / len(groups):.0%}" for g, r in rows.items())
    body = (f"{len(groups):,} vectors: the {n_chunks:,} chunk and {len(base_groups) - n_chunks:,} sentence vectors "
            f"of `{args.index}`, then perturbed copies (noise norm {args.noise}, renormalized). "
            f"Viewpoints: {shares}. {len(texts)} real questions, each searched once per viewpoint with its "
            f"IDSelector (filter before ranking), top 10. IVF: {json.dumps(describe(ivf))}, built in {build_s:.0f} s "
            f"(k-means on a sample + adding all).\n\n"
            f"Exact (flat) per question, all viewpoints: {spread(flat_ms)} ms (50 questions). "
            f"Question encoding: {encode_ms:.1f} ms per question.\n\n" + "\n".join(lines))
    print(body)
    if not args.no_write:
        write_result(f"ANN at {len(groups):,} vectors", body)


if __name__ == "__main__":
    main()
