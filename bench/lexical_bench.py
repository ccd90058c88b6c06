"""BM25 for a loaded index version: from the word counts its segments store
(what ``rag`` does now) against counting the words from the text (what an
index without stored counts costs), same process, interleaved; then cold
``rag ask`` processes on the index.

    python bench/lexical_bench.py --index /tmp/bench/index-12k --repeats 3
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time

from tqdm import tqdm

from common import ROOT, spread, write_result


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--index", required=True)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()

    from rag.store import index as store
    from rag import lexical

    started = time.perf_counter()
    snap = store.load(args.index)
    load_s = time.perf_counter() - started
    if any(s.terms is None for s in snap.segments):
        sys.exit(f"{args.index}: some segments have no stored word counts; run rag upgrade --index {args.index}")
    texts = lexical.chunk_texts(snap.articles, snap.chunks)
    stored, counted = [], []
    for _ in tqdm(range(args.repeats), desc="rounds"):
        started = time.perf_counter()
        lexical.of_terms(lexical.snapshot_terms(snap))
        stored.append(time.perf_counter() - started)
        started = time.perf_counter()
        lexical.build(texts)
        counted.append(time.perf_counter() - started)
    cold = []
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    for _ in tqdm(range(args.repeats), desc="cold rag ask"):
        started = time.perf_counter()
        subprocess.run([sys.executable, "-m", "rag", "ask", "Did Russia make big concessions?", "--index",
                        args.index], check=True, capture_output=True, env=env, cwd=ROOT)
        cold.append(time.perf_counter() - started)
    ratio = statistics.median(c / s for c, s in zip(counted, stored))
    body = (f"Index `{args.index}`: {len(snap.articles)} articles, {len(snap.chunks)} chunks; loaded and verified "
            f"in {load_s:.1f} s.\n\n| BM25 for the loaded version | seconds, median (min–max) |\n|---|---|\n"
            f"| from the stored word counts (`lexical.of_terms`) | {spread(stored)} |\n"
            f"| counting the words from the text first (what a segment without stored counts costs) | {spread(counted)} |\n\n"
            f"Stored counts are {ratio:.0f}x faster (same round). A cold `rag ask QUESTION --index "
            f"{args.index}` process (load, verify, BM25, model, answer): {spread(cold)} s.")
    print(body)
    if not args.no_write:
        write_result(f"BM25 from stored word counts at {len(snap.articles)} articles", body)


if __name__ == "__main__":
    main()
