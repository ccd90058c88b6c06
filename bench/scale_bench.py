"""Ask and add at the size of all of allsides-12k without embedding it: every
article is chunked for real, but vectors come from a stand-in embedder
(seeded random unit vectors, 384-d, the real model's shape). Search, answer
scoring, loading and writing cost the same for any vector values, so the
timings hold; the quotes are meaningless. The one real embedding the add
needs (one article, onnx-int8) is timed on its own and added.

    python bench/scale_bench.py --articles 12000
"""
from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from build_bench import QUESTIONS, ask_latency, folder_mb, pct, peak_rss_mb
from common import FIELDS, corpus_slice, write_result


class StandIn:
    """The bundled model's tokenizer and shape, random vectors (seeded by the text)."""

    def __init__(self):
        from rag.embed import MiniLM

        self.inner = MiniLM()
        self.name, self.dim, self.max_tokens = "stand-in-384", 384, self.inner.max_tokens
        self.backend = "stand-in"

    def token_spans(self, texts):
        return self.inner.token_spans(texts)

    def encode(self, texts, progress=False):
        out = np.empty((len(texts), self.dim), np.float32)
        for i, t in enumerate(texts):
            seed = int.from_bytes(hashlib.blake2b(t.encode(), digest_size=8).digest(), "little")
            out[i] = np.random.default_rng(seed).standard_normal(self.dim)
        return out / np.linalg.norm(out, axis=1, keepdims=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--articles", type=int, default=12000)
    ap.add_argument("--ask-repeats", type=int, default=5)
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()

    import rag
    from rag.store import index as store
    from rag.embedders import make_embedder

    tmp = Path(tempfile.mkdtemp(prefix="rag-scale-"))
    corpus = corpus_slice(args.articles, tmp)
    ix = rag.Index(tmp / "index", rag.Settings(), StandIn())
    started = time.perf_counter()
    report = ix.rebuild([corpus], FIELDS, progress=True)
    build_s = time.perf_counter() - started
    snap = ix.snapshot()
    size = store.size_of(snap.manifest) / 2 ** 20
    seconds = ask_latency(ix, args.ask_repeats)
    adds, written = [], []

    def live_manifest() -> dict:
        return json.loads((ix.root / store.current_version(ix.root) / "manifest.json").read_text())

    for n in range(3):  # back to back, as a script adding files one by one would
        article = tmp / f"one-more-{n}.md"
        article.write_text(f"---\nviewpoint: Center\n---\nOne more, number {n}\n\n"
                           + f"Congress debated budget number {n} again, and the vote was delayed. " * 12)
        before = {s["name"] for s in live_manifest()["segments"]}
        started = time.perf_counter()
        added = ix.add([article], progress=False)
        adds.append((time.perf_counter() - started, added.embedded_articles))
        written.append(sum(f["size"] for s in live_manifest()["segments"] if s["name"] not in before
                           for f in s["files"].values()) + (ix.root / added.version / "manifest.json").stat().st_size)
    started = time.perf_counter()
    final = ix.snapshot().manifest  # the reader picks up the last add: reads only the segments it lacks
    reload_s = time.perf_counter() - started
    started = time.perf_counter()
    ix.ask(QUESTIONS[0])  # the first question on the new version (its BM25 index is built per version)
    first_ask_s = time.perf_counter() - started
    real = make_embedder("onnx-int8")
    real.encode(["warm up"])
    from rag.build import chunk_all
    from rag.ingest import load

    one = load([article]).articles[0]
    sentences, chunks = chunk_all([one], real, rag.Settings(), False)[one.id]
    texts = [one.text[c.start:c.end] for c in chunks] + [one.text[s.start:s.end] for s in sentences]
    started = time.perf_counter()
    real.encode(texts)
    embed_s = time.perf_counter() - started
    add_s = statistics.median(a[0] for a in adds)
    body = (f"{len(snap.articles):,} articles ({report.chunks:,} chunks, {len(snap.sentence_vectors):,} sentences; "
            f"chunk index {json.dumps(snap.manifest.get('chunk_index'))}); index on disk {size:.0f} MB "
            f"(the live version's segments; the whole folder after the adds, with the previous version: "
            f"{folder_mb(ix.root):.0f} MB); stand-in build (chunking and writing, no model) {build_s:.0f} s.\n\n"
            f"| ask p50, ms | ask p95, ms | asks | add one article, s (median of 3, stand-in vectors) "
            f"| + embedding it with onnx-int8, s | add, total, s | articles embedded by each add "
            f"| bytes written by each add |\n"
            f"|---|---|---|---|---|---|---|---|\n"
            f"| {1000 * pct(seconds, 0.5):.0f} | {1000 * pct(seconds, 0.95):.0f} | {len(seconds)} | {add_s:.2f} "
            f"| {embed_s:.2f} | {add_s + embed_s:.2f} | {max(a[1] for a in adds)} "
            f"| {' / '.join(f'{w / 1024:.0f} KB' for w in written)} |\n\n"
            f"Each add: {', '.join(f'{a[0]:.2f} s' for a in adds)}; articles per segment after them: "
            f"{[s['counts']['articles'] for s in final['segments']]}. A reader holding the version before the "
            f"adds picks up the last one in {reload_s:.2f} s (reading only the new segments); its first "
            f"question on it takes {first_ask_s:.1f} s (BM25 is built per loaded version, lexical.py). "
            f"The ask timings include encoding each question with the stand-in (~0.1 ms), not the model: add "
            f"the question-encoding time of the ask rows above (onnx-int8). Peak RSS: {peak_rss_mb():.0f} MB.")
    print(body)
    if not args.no_write:
        write_result(f"Ask and add at {len(snap.articles):,} articles (stand-in vectors)", body)
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
