"""Embedding speed and quality per backend: torch (sentence-transformers),
ONNX Runtime fp32 and int8, on the same real chunks of allsides-12k, in the
same run, interleaved round by round so load changes hit every backend alike.

    python bench/embed_bench.py --articles 100 --repeats 3 --squad
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from common import SQUAD, chunk_texts, spread, write_result

BACKENDS = ("torch", "onnx-fp32", "onnx-int8")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--articles", type=int, default=100, help="allsides articles whose chunks are embedded")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--squad", action="store_true", help="also answer squad2-dev-tune with each backend")
    ap.add_argument("--squad-only", action="store_true", help="skip the speed rounds")
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()

    from rag.embed import MiniLM
    from rag.embedders import make_embedder

    with tempfile.TemporaryDirectory() as tmp:
        chunks, _ = chunk_texts(args.articles, MiniLM().token_spans, Path(tmp))
    tokens = [len(t) for t in MiniLM().token_spans(chunks)]
    embedders = {b: make_embedder(b, args.batch_size) for b in BACKENDS}
    if args.squad_only:
        return squad(args, embedders)
    for e in embedders.values():
        e.encode(chunks[:8])  # load and warm up outside the timing
    rates = {b: [] for b in BACKENDS}
    ratios = {b: [] for b in BACKENDS}
    vectors = {}
    with tqdm(total=args.repeats * len(BACKENDS), desc="rounds x backends") as bar:
        for _ in range(args.repeats):
            seconds = {}
            for b, e in embedders.items():
                started = time.perf_counter()
                vectors[b] = e.encode(chunks)
                seconds[b] = time.perf_counter() - started
                rates[b].append(len(chunks) / seconds[b])
                bar.update()
            for b in BACKENDS:
                ratios[b].append(seconds["torch"] / seconds[b])

    ref = vectors["torch"]
    sims = ref @ ref.T
    np.fill_diagonal(sims, -1)
    ref_top = np.argsort(-sims, axis=1)[:, :10]
    rows = []
    for b in BACKENDS:
        cos = (vectors[b] * ref).sum(axis=1)
        s = vectors[b] @ vectors[b].T
        np.fill_diagonal(s, -1)
        top = np.argsort(-s, axis=1)[:, :10]
        overlap = np.mean([len(set(a) & set(r)) / 10 for a, r in zip(top, ref_top)])
        rows.append(f"| {b} | {spread(rates[b])} | {spread(ratios[b])} | {cos.mean():.4f} | {cos.min():.4f} "
                    f"| {overlap:.3f} |")
    table = ["| backend | chunks/s, median (min–max) | speed vs torch, same round | cosine to torch, mean "
             "| min | top-10 neighbour overlap with torch |", "|---|---|---|---|---|---|", *rows]
    body = (f"{len(chunks)} chunks of the first {args.articles} articles (median {statistics.median(tokens):.0f} "
            f"wordpieces, as the builder cuts them), batch size {args.batch_size}, {args.repeats} rounds; "
            "ORT and torch both use all usable cores.\n\n" + "\n".join(table))
    print(body)

    if args.squad:
        body += squad(args, embedders, write=False)
    if not args.no_write:
        write_result("Embedding backends", body)


def squad(args, embedders, write: bool = True) -> str:
    from rag.evaluate import eval_squad

    qrows = ["| backend | questions | hit@1 | hit@3 | MRR@10 | build + answer, s |", "|---|---|---|---|---|---|"]
    for b in tqdm(("torch", "onnx-int8"), desc="squad2-dev-tune"):  # onnx-fp32 gives torch's vectors
        started = time.perf_counter()
        m = eval_squad(SQUAD, embedder=embedders[b])
        qrows.append(f"| {b} | {m['questions']} | {m['hit@1']:.4f} | {m['hit@3']:.4f} | {m['mrr@10']:.4f} "
                     f"| {time.perf_counter() - started:.0f} |")
    quality = "\n".join(qrows)
    print(quality)
    text = ("\n\nAnswer quality on `squad2-dev-tune.json` (`rag.evaluate.eval_squad`: answer-sentence hit "
            "over the whole corpus, one viewpoint):\n\n" + quality)
    if write and not args.no_write:
        write_result("Answer quality per embedding backend", text)
    return text


if __name__ == "__main__":
    main()
