"""The stores side by side in one run (issue 14): the local folder and one or more
Milvus stores, on the seeds and on an AllSides slice, with the same embedder.

- agreement: the same question asked of each; per (question, side): the same quotes
  (doc id and span, in order), the same first quote, the same abstention;
- build: articles/s of a fresh build, and the seconds of it spent in the model;
- add one article (in process, an ``Index`` kept open), median of ``--repeats``;
- warm ask p50/p95 over the questions, asked ``--repeats`` times, interleaved;
- each viewpoint's dense top 12: one grouped search (``group_by_field``), one search per
  viewpoint, one search over all split by viewpoint (the store's way).

``--store server`` (the default) starts a milvus-lite 3.2 server here (a Python
re-implementation of Milvus's protocol) and stops it by its pid at the end;
``--store embedded`` opens a file with Milvus Lite 2.5's embedded C++ engine, which needs
pymilvus 2.5 and milvus-lite 2.5 (``bench/milvus25-venv.sh`` makes a venv with them);
``--store milvus://HOST:PORT`` names a running server. Give ``--store`` more than once to
compare several in the same run.

``--stand-in`` builds the slice with seeded random vectors instead of the model (every
article still chunked for real; scale_bench.StandIn), so that all of allsides-12k fits in
a session on a CPU: the stores' own costs are measured at full size, the model's cost is
measured on ``--model-sample`` articles and projected to the slice's chunks, and every
question and every added article afterwards goes through the real model.

    python bench/store_bench.py --articles 1000
    bash bench/milvus25-venv.sh /tmp/mv25
    /tmp/mv25/bin/python bench/store_bench.py --articles 12000 --stand-in --store server --store embedded
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


class StandIn:
    """scale_bench's stand-in vectors for the build; the real model once ``real`` is set."""

    def __init__(self, real):
        from scale_bench import StandIn as Random

        self.random, self.real = Random(), None
        self.model = real
        self.name, self.dim, self.max_tokens, self.backend = "stand-in-384", 384, real.max_tokens, "stand-in"

    def token_spans(self, texts):
        return (self.real or self.random).token_spans(texts)

    def encode(self, texts, progress=False):
        return (self.real or self.random).encode(texts, progress)


def start_server(folder: Path) -> tuple[subprocess.Popen, str]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    # milvus-lite 3.2's server command: the project's .venv's (a milvus-lite 2.5 venv has a
    # `milvus-lite` of its own, a dump tool), else beside this Python, else on PATH
    project = ROOT / ".venv/bin/milvus-lite"
    exe = str(project) if project.exists() else (
        shutil.which("milvus-lite", path=os.path.dirname(sys.executable)) or "milvus-lite")
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


def agreement(local, other, questions: list[str]) -> dict:
    n = same = first = abstain = whole = 0
    for question in questions:
        a, b = cells(local.ask(question)), cells(other.ask(question))
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


def grouped_vs_per_viewpoint(store, vector, repeats: int) -> dict:
    """Dense top 12 of every viewpoint three ways: one grouped search (``group_size=12``), one
    filtered search per viewpoint, one search over all viewpoints (24 a viewpoint: the store's
    way, split by viewpoint afterwards). Seconds of each, and how many hits the grouped one
    returned (Milvus Lite 2.5 ignores ``group_size``: one a viewpoint)."""
    meta = store._live_meta()
    labels = [label for label, n in meta["groups"]["viewpoint"].items() if n > 0]
    name, data = store.name("chunks"), [vector.tolist()]
    times: dict[str, list[float]] = {"grouped": [], "separate": [], "shared": []}
    for _ in range(repeats):
        started = time.perf_counter()
        found = store.client.search(name, data=data, anns_field="vector", limit=len(labels),
                                    group_by_field="viewpoint", group_size=12, strict_group_size=False,
                                    output_fields=["doc_id"], consistency_level="Strong")
        times["grouped"].append(time.perf_counter() - started)
        started = time.perf_counter()
        for label in labels:
            store.client.search(name, data=data, anns_field="vector", limit=12,
                                filter=f"viewpoint == {json.dumps(label)}", output_fields=["doc_id"],
                                consistency_level="Strong")
        times["separate"].append(time.perf_counter() - started)
        started = time.perf_counter()
        store.client.search(name, data=data, anns_field="vector", limit=24 * len(labels), output_fields=["viewpoint"],
                            consistency_level="Strong")
        times["shared"].append(time.perf_counter() - started)
    return {**times, "labels": len(labels), "grouped_hits": len(found[0])}


def ms(values: list[float], q: float) -> float:
    values = sorted(values)
    return 1000 * values[min(len(values) - 1, int(q * len(values)))]


def milvus_stores(wanted: list[str], tmp: Path) -> tuple[dict[str, str], list[subprocess.Popen]]:
    """Each Milvus store ``--store`` names (a label -> its address) and the servers started for them."""
    bases, servers = {}, []
    for want in wanted:
        if want == "server":
            server, base = start_server(tmp)
            servers.append(server)
            bases["milvus-lite 3.2 server"] = base
        elif want == "embedded":
            from importlib.metadata import version

            bases[f"embedded engine (milvus-lite {version('milvus-lite')})"] = f"milvus://{tmp}/embedded.db"
        else:
            bases[want] = want.rstrip("/")
    return bases, servers


def model_cost(real, articles: int, tmp: Path) -> float:
    """Seconds in the model per chunk, building the first ``articles`` of the slice for real."""
    real.seconds = 0.0
    _, seconds, report = build([corpus_slice(articles, tmp / "sample")], str(tmp / "sample-index"), real, FIELDS)
    return seconds / report.chunks


def describe(label: str, base: str) -> str:
    if label.startswith("milvus-lite 3.2"):
        return f"{label}: started by the script (a Python re-implementation of Milvus's protocol)"
    if label.startswith("embedded"):
        return f"{label}: Milvus's C++ engine in a file (`{base}`), AUTOINDEX, no partition key (milvus#43163)"
    return f"{label}: the server at {base}"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--articles", type=int, default=1000, help="AllSides articles in the slice")
    ap.add_argument("--store", action="append",
                    help="server (start milvus-lite 3.2 here; the default), embedded (Milvus Lite 2.5's C++ "
                         "engine in a file), or milvus://HOST:PORT; give it more than once to compare several")
    ap.add_argument("--stand-in", action="store_true",
                    help="build the slice with stand-in vectors, project the model's cost (see the docstring)")
    ap.add_argument("--model-sample", type=int, default=150, help="with --stand-in: articles built for real")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--no-write", action="store_true", help="print, do not write BENCHMARKS.md")
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import pymilvus
    import rag
    from rag.embedders import default_embedder

    questions = [json.loads(line)["q"] for f in QUESTION_FILES for line in (ROOT / f).open()]
    seed_questions = [json.loads(line)["q"] for line in (ROOT / QUESTION_FILES[0]).open()]
    tmp = Path(tempfile.mkdtemp(prefix="store-bench-"))
    bases, servers = milvus_stores(args.store or ["server"], tmp)
    prefix = "bench"  # collections bench_seeds_*, bench_slice_*
    real = Timed(default_embedder())
    stand_in = StandIn(real.inner) if args.stand_in else None
    embedder = Timed(stand_in) if stand_in else real
    try:
        seeds = {}
        where = {"local": str(tmp / "seeds"), **{label: f"{base}/{prefix}_seeds" for label, base in bases.items()}}
        for place in where.values():
            build([ROOT / "seeds"], place, real)
        opened = {label: rag.open(place, embedder=real) for label, place in where.items()}
        for label in bases:
            seeds[label] = agreement(opened["local"], opened[label], seed_questions)
        per_chunk = model_cost(real, args.model_sample, tmp) if stand_in else 0.0
        source = corpus_slice(args.articles, tmp)
        where = {"local": str(tmp / "slice"), **{label: f"{base}/{prefix}_slice" for label, base in bases.items()}}
        built = {}
        for label, place in where.items():
            embedder.seconds = 0.0
            built[label] = build([source], place, embedder, FIELDS)
            print(f"{label}: built {args.articles} articles in {built[label][0]:.1f} s "
                  f"({built[label][1]:.1f} s in the {'stand-in' if stand_in else 'model'})", file=sys.stderr)
        if stand_in:
            stand_in.real = real.inner  # questions and added articles: the real model from here on
        indexes = {label: rag.open(place, embedder=embedder) for label, place in where.items()}
        sliced = {label: agreement(indexes["local"], indexes[label], questions) for label in bases}
        asked = asks(indexes, questions, args.repeats)
        print("asked", file=sys.stderr)
        added = add_one(indexes, tmp, args.repeats)
        vector = real.encode(["Did Russia make big concessions?"])[0]
        grouped = {label: grouped_vs_per_viewpoint(indexes[label].store, vector, 5 * args.repeats) for label in bases}
        chunks = built["local"][2].chunks
    finally:
        for server in servers:
            stop(server)
        shutil.rmtree(tmp, ignore_errors=True)
    body = report(args, bases, built, added, asked, seeds, sliced, grouped, chunks, per_chunk,
                  len(seed_questions), len(questions), embedder, real.backend, pymilvus.__version__)
    print(body)
    if not args.no_write:
        write_result("Stores: the local folder and Milvus (issue 14)" + (
            f", {args.articles:,} articles, stand-in vectors" if stand_in else ""), body)


def report(args, bases, built, added, asked, seeds, sliced, grouped, chunks, per_chunk, n_seed, n_questions,
           embedder, real_backend, client_version) -> str:
    labels = ["local", *bases]
    model = per_chunk * chunks  # with --stand-in: the model's projected seconds for the slice

    def build_s(label: str) -> float:
        seconds, in_model, _ = built[label]
        return seconds - in_model + model if args.stand_in else seconds

    def row(name: str, cell, ratio) -> str:
        return "| " + " | ".join([name, *(cell(label) + ("" if label == "local" else f" ({ratio(label):.2f}×)")
                                        for label in labels)]) + " |"

    built_cell = (lambda label: f"{built[label][0] - built[label][1]:.1f} + {model:.0f} projected in the model"
                  ) if args.stand_in else (lambda label: f"{built[label][0]:.1f} ({built[label][1]:.1f} in the model)")
    lines = [
        f"Embedder: {embedder.backend} ({embedder.name}), the same object for every store"
        + (f"; the slice's vectors are stand-ins, the model's cost for it projected from building the first "
           f"{args.model_sample} articles for real ({per_chunk * 1000:.0f} ms a chunk in the model); questions and "
           f"added articles go through the real model ({real_backend})"
           if args.stand_in else "") + f". pymilvus {client_version}. Milvus stores:",
        "",
        *(f"- {describe(label, base)}" for label, base in bases.items()),
        "",
        "| | " + " | ".join(labels) + " |",
        "| --- |" + " --- |" * len(labels),
        row(f"build {args.articles:,} AllSides articles ({chunks:,} chunks), s"
            + (" (store + model); Milvus: throughput ratio" if args.stand_in else "; Milvus: throughput ratio"),
            built_cell, lambda label: build_s("local") / build_s(label)),
        row(f"add one article (in process), s, median (min–max) of {args.repeats}",
            lambda label: spread(added[label]),
            lambda label: statistics.median(added[label]) / statistics.median(added["local"])),
        row(f"warm ask p50 / p95, ms ({len(asked['local'])} asks); Milvus: p50 ratio",
            lambda label: f"{ms(asked[label], .5):.0f} / {ms(asked[label], .95):.0f}",
            lambda label: ms(asked[label], .5) / ms(asked["local"], .5)),
        "",
        "Agreement with the local folder (the same question asked of both; a cell is one side of one question):",
        "",
        "| store | corpus | questions identical | cells | same quotes | same first quote | same abstention |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for label in bases:
        for name, a in ((f"seeds ({n_seed} seed questions)", seeds[label]),
                        (f"{args.articles:,} AllSides articles ({n_questions} seed + AllSides questions)",
                         sliced[label])):
            lines.append(f"| {label} | {name} | {a['questions_identical']} of {a['questions']} | {a['cells']} | "
                         f"{a['quotes_identical']} | {a['first_quote_identical']} | {a['abstention_identical']} |")
    lines.append("")
    for label, g in grouped.items():
        lines.append(f"{label}: dense top 12 of each of {g['labels']} viewpoints on the slice, "
                     f"{len(g['shared'])} times, median: one grouped search (`group_by_field=\"viewpoint\"`, "
                     f"`group_size=12`) {statistics.median(g['grouped']) * 1000:.0f} ms, returning "
                     f"{g['grouped_hits']} hits; one filtered search per viewpoint "
                     f"{statistics.median(g['separate']) * 1000:.0f} ms; one search of "
                     f"{24 * g['labels']} over all, split by viewpoint (the store's way) "
                     f"{statistics.median(g['shared']) * 1000:.0f} ms.")
    lines += ["", "(The store runs one dense and one BM25 search over all viewpoints, 72 hits a viewpoint (twice "
              "the 36 a side fuses), "
              "splits them by viewpoint and fuses each side's two rankings itself; a side short of hits gets "
              "its own searches. `hybrid_search` fuses before any split, and a grouped search cannot stand in: "
              "Milvus Lite 2.5 returns one hit a group whatever `group_size` says.)"]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
