"""Warm ``ask`` latency with and without the reranker, interleaved, on one index.

    .venv/bin/python bench/rerank_latency.py --index /tmp/news-dev-index --repeats 5

Each round asks every question once with ``scorer="features"`` (the first scorer
alone) and once with ``scorer="reranker"``, alternating which goes
first; prints p50/p95 of each and their ratio.
"""
from __future__ import annotations

import argparse
import json
import statistics
import time
from dataclasses import replace

from build_bench import QUESTIONS
from common import command, machine

from rag.engine import Index
from rag.settings import Settings


def p95(values):
    ordered = sorted(values)
    return ordered[int(0.95 * (len(ordered) - 1))]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--index", required=True)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    modes = {"features": Index(args.index, replace(Settings(), scorer="features")),
             "reranker": Index(args.index, replace(Settings(), scorer="reranker"))}
    modes["reranker"].embedder = modes["features"].embedder  # one model in memory, the same vectors
    for ix in modes.values():
        ix.ask("warm up the model and the reranker")
    times = {m: [] for m in modes}
    for r in range(args.repeats):
        order = list(modes) if r % 2 == 0 else list(modes)[::-1]
        for q in QUESTIONS:
            for m in order:
                started = time.perf_counter()
                modes[m].ask(q)
                times[m].append(1000 * (time.perf_counter() - started))
    report = {m: {"p50_ms": round(statistics.median(t), 1), "p95_ms": round(p95(t), 1), "asks": len(t)}
              for m, t in times.items()}
    report["ratio_p50"] = round(report["reranker"]["p50_ms"] / report["features"]["p50_ms"], 2)
    stats = modes["reranker"].stats()
    print(json.dumps({"command": command(), "machine": machine(), "articles": stats["articles"],
                      "chunks": stats["chunks"], **report}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
