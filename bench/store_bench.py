"""The two stores side by side in one run (issue 14): the local folder and a Milvus
server, on the seeds and on an AllSides slice, with the same embedder.

- agreement: the same question asked of both; per (question, side): the same quotes
  (doc id and span, in order), the same first quote, the same abstention;
- build: articles/s of a fresh build, and the seconds of it spent in the model;
- add one article (in process, an ``Index`` kept open), median of ``--repeats``;
- warm ask p50/p95 over the questions, asked ``--repeats`` times, interleaved;
- one grouped search (``group_by_field`` on viewpoint) against one search per viewpoint.

Without ``--store`` it starts its own milvus-lite server (stopped by its pid at the end).

    python bench/store_bench.py --articles 1000
    python bench/store_bench.py --articles 1000 --store milvus://127.0.0.1:19530
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import FIELDS, ROOT, corpus_slice, spread, write_result

QUESTION_FILES = ("tests/data/seed-questions.jsonl", "tests/data/allsides-questions.jsonl")


class Timed:
    """Wraps an embedder and adds up the seconds spent in the model."""

    def __init__(self, inner):
        self.inner, self.seconds = inner, 0.0
        self.name, self.dim, self.max_tokens = inner.name, inner.dim, inner.max_tokens
        self.backend = getattr(inner, "backend", inner.name)

    def token_spans(self, texts):
        started = time.perf_counter()
        try:
            return self.inner.token_spans(texts)
        finally:
            self.seconds += time.perf_counter() - started

    def encode(self, texts, progress=False):
        started = time.perf_counter()
        try:
            return self.inner.encode(texts, progress)
        finally:
            self.seconds += time.perf_counter() - started


def start_server(folder: Path) -> tuple[subprocess.Popen, str]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    exe = shutil.which("milvus-lite", path=os.path.dirname(sys.executable)) or "milvus-lite"
    server = subprocess.Popen([exe, "server", "--data-dir", str(folder / "db"), "--host", "127.0.0.1",
                               "--port", str(port)], stdout=open(folder / "server.log", "wb"),
                              stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return server, f"milvus://127.0.0.1:{port}"
        except OSError:
            if server.poll() is not None:
                break
            time.sleep(0.2)
    stop(server)
    raise SystemExit("milvus-lite server did not start: see " + str(folder / "server.log"))


def stop(server: subprocess.Popen) -> None:
    os.kill(server.pid, signal.SIGTERM)
    try:
        server.wait(10)
    except subprocess.TimeoutExpired:
        os.kill(server.pid, signal.SIGKILL)
        server.wait()


def cells(answer) -> dict[str, tuple[bool, tuple]]:
    return {v.viewpoint: (v.abstained, tuple((q.doc_id, q.start, q.end) for q in v.answers))
            for v in answer.viewpoints}


def agreement(local, milvus, questions: list[str]) -> dict:
    n = same = first = abstain = whole = 0
    for question in questions:
        a, b = cells(local.ask(question)), cells(milvus.ask(question))
        whole += a == b
        for side in set(a) | set(b):
            n += 1
            x, y = a.get(side, (None, ())), b.get(side, (None, ()))
            same += x == y
            first += x[1][:1] == y[1][:1]
            abstain += x[0] == y[0]
    return {"questions": len(questions), "questions_identical": whole, "cells": n, "quotes_identical": same,
            "first_quote_identical": first, "abstention_identical": abstain}


def build(paths, where: str, embedder, fields=None) -> tuple[float, float, object]:
    import rag

    started = time.perf_counter()
    report = rag.build(paths, index=where, fields=fields, embedder=embedder, progress=False)
    return time.perf_counter() - started, embedder.seconds, report


def asks(indexes: dict, questions: list[str], repeats: int) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {name: [] for name in indexes}
    for name, ix in indexes.items():  # warm: the first question loads what each needs
        ix.ask(questions[0])
    for _ in range(repeats):
        for question in questions:
            for name, ix in indexes.items():  # interleaved: the same load on both
                started = time.perf_counter()
                ix.ask(question)
                times[name].append(time.perf_counter() - started)
    return times


def add_one(indexes: dict, folder: Path, repeats: int) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {name: [] for name in indexes}
    for n in range(repeats):
        for name, ix in indexes.items():
            path = folder / f"{name}-budget-{n}.md"
            path.write_text(f"---\ntitle: Budget talks, day {n}\nviewpoint: Center\nsource: bench\n---\n"
                            f"Budget talks continued for a {n}th day on Tuesday, and the vote was delayed again.\n\n"
                            f"The Senate leader said negotiators were close to a deal on spending {n}.\n",
                            encoding="utf-8")
            started = time.perf_counter()
            report = ix.add([path], progress=False)
            times[name].append(time.perf_counter() - started)
            assert report.embedded_articles == 1, report
    return times


def grouped_vs_per_viewpoint(store, vector, repeats: int) -> tuple[list[float], list[float], int]:
    """Dense top 12 of every viewpoint: one grouped search, or one filtered search per viewpoint."""
    meta = store._live_meta()
    labels = [label for label, n in meta["groups"]["viewpoint"].items() if n > 0]
    name, data = store.name("chunks"), [vector.tolist()]
    grouped, separate = [], []
    for _ in range(repeats):
        started = time.perf_counter()
        store.client.search(name, data=data, anns_field="vector", limit=len(labels), group_by_field="viewpoint",
                            group_size=12, strict_group_size=False, output_fields=["doc_id"],
                            consistency_level="Strong")
        grouped.append(time.perf_counter() - started)
        started = time.perf_counter()
        for label in labels:
            store.client.search(name, data=data, anns_field="vector", limit=12, filter=f"viewpoint == {json.dumps(label)}",
                                output_fields=["doc_id"], consistency_level="Strong")
        separate.append(time.perf_counter() - started)
    return grouped, separate, len(labels)


def ms(values: list[float], q: float) -> float:
    values = sorted(values)
    return 1000 * values[min(len(values) - 1, int(q * len(values)))]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--articles", type=int, default=1000, help="AllSides articles in the slice")
    ap.add_argument("--store", help="a Milvus server, milvus://HOST:PORT (default: start a milvus-lite server here)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--no-write", action="store_true", help="print, do not write BENCHMARKS.md")
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import rag
    from rag.embedders import default_embedder

    questions = [json.loads(line)["q"] for f in QUESTION_FILES for line in (ROOT / f).open()]
    seed_questions = [json.loads(line)["q"] for line in (ROOT / QUESTION_FILES[0]).open()]
    tmp = Path(tempfile.mkdtemp(prefix="store-bench-"))
    server, base = (None, args.store.rstrip("/")) if args.store else start_server(tmp)
    prefix = "bench"  # collections bench_seeds_*, bench_slice_*
    embedder = Timed(default_embedder())
    lines = []
    try:
        # the seeds
        stores = {"local": str(tmp / "seeds"), "milvus": f"{base}/{prefix}_seeds"}
        for where in stores.values():
            build([ROOT / "seeds"], where, embedder)
        seeds = agreement(*(rag.open(w, embedder=embedder) for w in stores.values()), seed_questions)
        # the slice
        source = corpus_slice(args.articles, tmp)
        stores = {"local": str(tmp / "slice"), "milvus": f"{base}/{prefix}_slice"}
        built = {}
        for name, where in stores.items():
            embedder.seconds = 0.0
            built[name] = build([source], where, embedder, FIELDS)
            print(f"{name}: built {args.articles} articles in {built[name][0]:.1f} s "
                  f"({built[name][1]:.1f} s in the model)", file=sys.stderr)
        indexes = {name: rag.open(where, embedder=embedder) for name, where in stores.items()}
        sliced = agreement(indexes["local"], indexes["milvus"], questions)
        asked = asks(indexes, questions, args.repeats)
        added = add_one(indexes, tmp, args.repeats)
        vector = embedder.encode(["Did Russia make big concessions?"])[0]
        grouped, separate, n_labels = grouped_vs_per_viewpoint(indexes["milvus"].store, vector, 5 * args.repeats)
        chunks = built["local"][2].chunks
    finally:
        if server is not None:
            stop(server)
        shutil.rmtree(tmp, ignore_errors=True)

    rate = {name: args.articles / seconds for name, (seconds, _, _) in built.items()}
    lines += [
        f"Embedder: {embedder.backend} ({embedder.name}), the same object for both stores. Milvus: "
        + ("milvus-lite 3.2.2's server started by the script (a Python re-implementation of Milvus's "
           "protocol; no C++ engine)" if server is not None else f"the server at {base}") + ", pymilvus "
        + __import__("pymilvus").__version__ + ".",
        "",
        "| | local folder | Milvus | Milvus / local |",
        "| --- | --- | --- | --- |",
        f"| build {args.articles:,} AllSides articles ({chunks:,} chunks), s | {built['local'][0]:.1f} "
        f"({built['local'][1]:.1f} in the model) | {built['milvus'][0]:.1f} ({built['milvus'][1]:.1f} in the model) "
        f"| throughput {rate['milvus'] / rate['local']:.2f}× |",
        f"| add one article (in process), s, median (min–max) of {args.repeats} | {spread(added['local'])} "
        f"| {spread(added['milvus'])} | {statistics.median(added['milvus']) / statistics.median(added['local']):.2f}× |",
        f"| warm ask p50 / p95, ms ({len(asked['local'])} asks) | {ms(asked['local'], .5):.0f} / "
        f"{ms(asked['local'], .95):.0f} | {ms(asked['milvus'], .5):.0f} / {ms(asked['milvus'], .95):.0f} "
        f"| p50 {ms(asked['milvus'], .5) / ms(asked['local'], .5):.2f}× |",
        "",
        "Agreement (the same question asked of both stores; a cell is one side of one question):",
        "",
        "| corpus | questions identical | cells | same quotes | same first quote | same abstention |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for name, a in ((f"seeds ({len(seed_questions)} seed questions)", seeds),
                    (f"{args.articles:,} AllSides articles ({len(questions)} seed + AllSides questions)", sliced)):
        lines.append(f"| {name} | {a['questions_identical']} of {a['questions']} | {a['cells']} | "
                     f"{a['quotes_identical']} | {a['first_quote_identical']} | {a['abstention_identical']} |")
    lines += ["", f"Dense top 12 of each of {n_labels} viewpoints on the slice, {len(grouped)} times: one grouped "
              f"search (`group_by_field=\"viewpoint\"`, `group_size=12`) {statistics.median(grouped) * 1000:.0f} ms "
              f"median, against one filtered search per viewpoint {statistics.median(separate) * 1000:.0f} ms "
              "(the store searches per viewpoint: hybrid search has no grouping, and each side needs its own "
              "BM25 ranking)."]
    body = "\n".join(lines)
    print(body)
    if not args.no_write:
        write_result("Stores: the local folder and Milvus (issue 14)", body)


if __name__ == "__main__":
    main()
