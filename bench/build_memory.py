"""Peak memory of a full build of allsides-12k (or a slice), phase by phase,
without the model: every article is loaded and chunked for real (the real
wordpiece tokenizer), but the vectors come from a stand-in with the real
int8 embedder's interface (``encode_chunks`` pools one vector per sentence of
each chunk, so the build takes the same "chunk" path), returning cheap
deterministic unit vectors of the real shapes and dtypes. The arrays built,
copied and written are the same sizes as in the real build; only the model
is missing, and its own memory (the ONNX Runtime session and its working
memory) is measured apart, in a child process, and added.

    python bench/build_memory.py                 # all 11,998 articles, ~5-8 min
    python bench/build_memory.py --articles 3000 --no-write --work /tmp/w --keep /tmp/idx

(``--work`` builds in a fixed folder, so two code versions write byte-comparable
files: each article records its path.)

RSS is sampled every 20 ms inside each phase (the build's own functions,
wrapped); ``ru_maxrss`` is the exact high-water mark of the whole process.
"""
from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import zlib
from pathlib import Path

import numpy as np

from common import ALLSIDES, FIELDS, ROOT, corpus_slice, write_result

PAGE = os.sysconf("SC_PAGE_SIZE")


def rss() -> int:
    with open("/proc/self/statm") as stream:
        return int(stream.read().split()[1]) * PAGE


def max_rss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def high_water() -> int:
    """This process's own peak RSS (VmHWM). In a child, ``ru_maxrss`` can be its
    parent's: Linux carries the forked copy's RSS across exec."""
    with open("/proc/self/status") as stream:
        return next(int(line.split()[1]) * 1024 for line in stream if line.startswith("VmHWM:"))


def gb(n: float) -> str:
    return f"{n / 1e9:.2f}"


def stand_in():
    """The int8 embedder with its model replaced by a table of unit vectors, picked by the text's crc32."""
    from rag.onnx_embed import OnnxMiniLM

    table = np.random.default_rng(0).standard_normal((1024, 384)).astype(np.float32)
    table /= np.linalg.norm(table, axis=1, keepdims=True)

    class StandIn(OnnxMiniLM):
        def model(self):
            raise AssertionError("the stand-in never runs the model")

        def encode(self, texts, progress=False):
            return table[[zlib.crc32(t.encode()) % len(table) for t in texts]].reshape(-1, self.dim)

        def encode_chunks(self, texts, spans, progress=False):
            keys = [zlib.crc32(t.encode()) for t in texts]
            pooled = [table[(k + 1 + np.arange(len(s))) % len(table)] for k, s in zip(keys, spans)]
            return self.encode(texts), pooled  # float32 (n, dim), one float32 (len(spans[i]), dim) each

    return StandIn(quantized=True)


class Phases:
    """Wraps the build's functions; a thread samples RSS into the innermost running phase."""

    def __init__(self):
        self.stack: list[str] = []
        self.rows: dict[str, dict] = {}
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self.done.wait(0.02):
            if self.stack:
                row = self.rows[self.stack[-1]]
                row["sampled"] = max(row["sampled"], rss())

    def wrap(self, module, attr: str, name: str) -> None:
        inner = getattr(module, attr)

        def wrapped(*args, **kwargs):
            row = self.rows.setdefault(name, {"sampled": 0, "seconds": 0.0, "start": rss()})
            self.stack.append(name)
            row["sampled"] = max(row["sampled"], rss())
            started = time.perf_counter()
            try:
                return inner(*args, **kwargs)
            finally:
                row["seconds"] += time.perf_counter() - started
                row["sampled"] = max(row["sampled"], rss())
                row["maxrss"] = max_rss()
                self.stack.pop()

        setattr(module, attr, wrapped)


def model_cost(n_articles: int) -> dict:
    """In a child: RSS added by the real int8 session on the first articles' chunks
    (the tokenizer, which the stand-in also loads, is in the base)."""
    out = subprocess.run([sys.executable, __file__, "--model-child", str(n_articles)], cwd=ROOT,
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def model_child(n_articles: int) -> None:
    from rag.ingest import load
    from rag.onnx_embed import OnnxMiniLM
    from rag.settings import Settings

    build = importlib.import_module("rag.build")
    embedder = OnnxMiniLM(quantized=True)
    folder = Path(tempfile.mkdtemp(prefix="rag-mem-model-"))
    articles = load([corpus_slice(n_articles, folder)], {"id": "ID", **FIELDS}).articles
    fresh = build.chunk_all(articles, embedder, Settings(), progress=False)
    embedder._truncating_tokenizer  # noqa: B018 - loaded in the base, like the stand-in's
    base = rss()
    started = time.perf_counter()
    vectors = build.embed_articles(articles, fresh, embedder, Settings(), progress=False)
    chunks = sum(len(fresh[a.id][1]) for a in articles)
    shutil.rmtree(folder, ignore_errors=True)
    print(json.dumps({"base": base, "peak": high_water(), "after": rss(), "chunks": chunks,
                      "seconds": time.perf_counter() - started}))
    del vectors


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--articles", type=int, default=0, help="the first N articles (default: all)")
    ap.add_argument("--model-articles", type=int, default=100,
                    help="articles the real model embeds in the child that measures its memory (0: skip)")
    ap.add_argument("--label", default="", help="added to the BENCHMARKS.md heading, e.g. before/after")
    ap.add_argument("--keep", help="copy the index here (to compare files between code versions)")
    ap.add_argument("--work", help="build in this folder (emptied first) instead of a new temporary one")
    ap.add_argument("--no-write", action="store_true")
    ap.add_argument("--model-child", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.model_child:
        return model_child(args.model_child)

    import rag
    from rag import engine
    from rag.store import assemble, commit
    from rag.store import index as store

    build = importlib.import_module("rag.build")  # ``rag.build`` the name is the function
    from tqdm import tqdm

    phases = Phases()
    phases.wrap(engine, "load", "load articles")
    phases.wrap(build, "chunk_all", "chunk")
    phases.wrap(build, "embed_articles", "embed (stand-in)")
    phases.wrap(assemble, "_new_part", "assemble: new part")
    phases.wrap(commit, "write", "write segment + commit")
    phases.wrap(build.assemble, "write_version", "assemble + write")

    if args.work:  # a fixed folder: the articles' paths, hence the files' bytes, repeat
        shutil.rmtree(args.work, ignore_errors=True)
        Path(args.work).mkdir(parents=True)
    tmp = Path(args.work or tempfile.mkdtemp(prefix="rag-mem-"))
    corpus = corpus_slice(args.articles, tmp) if args.articles else ALLSIDES
    embedder = stand_in()
    embedder._truncating_tokenizer  # noqa: B018 - the real encode_chunks tokenizes with it
    ix = rag.Index(tmp / "index", rag.Settings(), embedder)
    start_rss = rss()
    phases.thread.start()
    started = time.perf_counter()
    with tqdm(total=1, desc="build (stand-in vectors)", leave=False) as bar:
        report = ix.rebuild([corpus], {"id": "ID", **FIELDS}, progress=True)
        bar.update(1)
    seconds = time.perf_counter() - started
    phases.done.set()
    peak = max_rss()
    manifest = json.loads((ix.root / store.current_version(ix.root) / "manifest.json").read_text())
    counts = manifest["counts"]
    on_disk = sum(f["size"] for s in manifest["segments"] for f in s["files"].values())
    if args.keep:
        shutil.copytree(ix.root, args.keep, dirs_exist_ok=True)
    shutil.rmtree(tmp, ignore_errors=True)

    rows = ["| phase | seconds | RSS at start, GB | peak RSS sampled in it, GB "
            "| process high-water mark after it, GB |", "|---|---|---|---|---|"]
    for name, row in phases.rows.items():
        rows.append(f"| {name} | {row['seconds']:.0f} | {gb(row['start'])} | {gb(row['sampled'])} "
                    f"| {gb(row['maxrss'])} |")
    model = model_cost(args.model_articles) if args.model_articles else None
    added = model["peak"] - model["base"] if model else 0
    body = (f"{counts['articles']:,} articles, {counts['chunks']:,} chunks, {counts['sentences']:,} sentence "
            f"vectors ({report.embedded_articles:,} embedded; chunk vectors float32, sentence vectors float16, "
            f"{manifest['dim']}-d); segment files {on_disk / 1e6:.0f} MB. Stand-in build {seconds:.0f} s; "
            f"RSS {gb(start_rss)} GB before it (Python, numpy, the tokenizer).\n\n" + "\n".join(rows)
            + f"\n\n**Peak RSS (ru_maxrss) of the build with stand-in vectors: {gb(peak)} GB.**")
    if model:
        body += (f" The real int8 model adds {gb(added)} GB on top (a child process: ONNX Runtime "
                 f"session and working memory, peak while embedding {model['chunks']} chunks of the first "
                 f"{args.model_articles} articles in {model['seconds']:.0f} s, over its RSS with the tokenizer "
                 f"loaded), so a real build peaks near **{gb(peak + added)} GB**, assuming the model's "
                 "memory stays the same for more chunks (it runs 2,048 chunks per call, one batch at a time).")
    print(body)
    if not args.no_write:
        name = f"Peak memory building {counts['articles']:,} articles (issue 7)"
        write_result(name + (f": {args.label}" if args.label else ""), body)


if __name__ == "__main__":
    with contextlib.suppress(BrokenPipeError):
        main()
