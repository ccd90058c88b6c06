"""Build, update and ask on a real slice (or all) of allsides-12k.

    python bench/build_bench.py --articles 300 --repeats 3 --backends onnx-int8 torch

Per backend, interleaved round by round: a full build, and the raw ``encode``
of exactly the texts that build embedded (the pipeline's overhead is the
difference); then adding one article to the index, and warm in-process asks.
``--index DIR`` instead measures add/ask on an existing index (e.g. the 12k).
"""
from __future__ import annotations

import argparse
import json
import resource
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from tqdm import tqdm

from common import FIELDS, corpus_slice, spread, write_result

QUESTIONS = ["Did Russia make big concessions?", "What happened to the tax bill in the Senate?",
             "Should the border wall be funded?", "What did the Supreme Court decide on abortion?",
             "How did the president respond to the shooting?", "Is inflation caused by government spending?",
             "What are the risks of the Iran nuclear deal?", "Who won the midterm elections?",
             "Did the FBI investigate the campaign?", "What is the impact of tariffs on China?",
             "Why did the government shut down?", "What do critics say about the health care law?"]


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def folder_mb(folder: Path) -> float:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) / 2 ** 20


def version_mb(snap) -> float:
    """Size of the segment files a loaded version uses (shared segments counted once)."""
    from rag.store.index import size_of

    return size_of(snap.manifest) / 2 ** 20


def texts_of(index, slice_path: Path) -> list[str]:
    """The texts a full build sends through the model: its chunks, and with
    ``sentence_vectors="separate"`` (or an embedder that cannot pool) every sentence too."""
    from rag.build import chunk_all, sentence_mode
    from rag.ingest import load

    articles = load([slice_path], FIELDS).articles
    fresh = chunk_all(articles, index.embedder, index.settings, progress=False)
    separate = sentence_mode(index.settings, index.embedder) == "separate"
    texts = []
    for a in articles:
        sentences, chunks = fresh[a.id]
        texts += [a.text[c.start:c.end] for c in chunks]
        texts += [a.text[s.start:s.end] for s in sentences] if separate else []
    return texts


def ask_latency(ix, repeats: int) -> list[float]:
    ix.ask("warm up")
    seconds = []
    for _ in tqdm(range(repeats), desc="ask rounds", leave=False):
        for q in QUESTIONS:
            started = time.perf_counter()
            ix.ask(q)
            seconds.append(time.perf_counter() - started)
    return seconds


def add_one(ix, folder: Path, n: int) -> tuple[float, int]:
    """Add a new article (a new id and text each time, so none is skipped as unchanged)."""
    article = folder / f"one-more-{n}.md"
    article.write_text(f"---\nviewpoint: Center\nsource: bench\n---\nOne more article, number {n}\n\n" +
                       f"Congress debated budget number {n} again on Tuesday, and the vote was delayed. " * 12)
    started = time.perf_counter()
    report = ix.add([article], progress=False)
    return time.perf_counter() - started, report.embedded_articles


def pct(values, q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--articles", type=int, default=300)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--backends", nargs="+", default=["onnx-int8", "torch"])
    ap.add_argument("--index", help="measure add/ask on this existing index instead of building")
    ap.add_argument("--ask-repeats", type=int, default=5)
    ap.add_argument("--keep", help="copy the first backend's index here (e.g. for ann_bench.py)")
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()

    import rag
    from rag.embedders import make_embedder

    if args.index:
        return existing(args)
    tmp = Path(tempfile.mkdtemp(prefix="rag-bench-"))
    slice_path = corpus_slice(args.articles, tmp)
    indexes = {b: rag.Index(tmp / b, rag.Settings(), make_embedder(b)) for b in args.backends}
    for ix in indexes.values():
        ix.embedder.encode(["warm up the model"])
    texts = {b: texts_of(ix, slice_path) for b, ix in indexes.items()}
    build_s = {b: [] for b in indexes}
    encode_s = {b: [] for b in indexes}
    with tqdm(total=args.repeats * len(indexes), desc="rounds x backends") as bar:
        for _ in range(args.repeats):
            for b, ix in indexes.items():
                started = time.perf_counter()
                ix.rebuild([slice_path], FIELDS, full=True, progress=False)
                build_s[b].append(time.perf_counter() - started)
                started = time.perf_counter()
                ix.embedder.encode(texts[b])
                encode_s[b].append(time.perf_counter() - started)
                bar.update()
    rows = []
    for b, ix in indexes.items():
        n = len(texts[b])
        ratio = [e / s for e, s in zip(encode_s[b], build_s[b])]
        snap = ix.snapshot()
        rows.append(f"| {b} | {n} ({len(snap.chunks)} chunks) | {spread(n / s for s in build_s[b])} "
                    f"| {spread(n / s for s in encode_s[b])} | {spread(ratio)} | {version_mb(snap):.1f} |")
    speed = {b: statistics.median(len(texts[b]) / s for s in build_s[b]) for b in indexes}
    table = ["| backend | texts embedded | build, texts/s | raw encode of the same texts, texts/s "
             "| pipeline ÷ raw encode (same round) | index on disk, MB |", "|---|---|---|---|---|---|", *rows]
    lat_rows = ["| backend | add one article, s (median of 3) | articles embedded by the add "
                "| ask p50, ms | ask p95, ms | asks |", "|---|---|---|---|---|---|"]
    for b, ix in indexes.items():
        adds = [add_one(ix, tmp, n) for n in range(3)]
        seconds = ask_latency(ix, args.ask_repeats)
        lat_rows.append(f"| {b} | {statistics.median(a[0] for a in adds):.2f} | {max(a[1] for a in adds)} "
                        f"| {1000 * pct(seconds, 0.5):.0f} | {1000 * pct(seconds, 0.95):.0f} | {len(seconds)} |")
    body = (f"Full builds (`Index.rebuild(full=True)`: ingest, chunk, embed, write) of the first {args.articles} "
            f"articles, {args.repeats} rounds, each followed by the raw `encode` of the same texts.\n\n"
            + "\n".join(table)
            + (f"\n\nBuild speed, int8 over torch (medians): {speed['onnx-int8'] / speed['torch']:.2f}x."
               if {"onnx-int8", "torch"} <= set(speed) else "")
            + f"\n\nThen on that index: adding one article, and warm in-process asks ({len(QUESTIONS)} questions "
            f"x {args.ask_repeats}, viewpoint = bias_text):\n\n" + "\n".join(lat_rows)
            + f"\n\nPeak RSS of the whole bench process: {peak_rss_mb():.0f} MB.")
    print(body)
    if not args.no_write:
        write_result(f"Build, add and ask on {args.articles} articles", body)
    if args.keep:
        shutil.copytree(tmp / args.backends[0], args.keep, dirs_exist_ok=True)
    shutil.rmtree(tmp, ignore_errors=True)


def existing(args) -> None:
    import rag

    root = Path(args.index)
    ix = rag.open(root)
    stats = ix.stats()
    started = time.perf_counter()
    snap = ix.snapshot()
    load_s = time.perf_counter() - started
    seconds = ask_latency(ix, args.ask_repeats)
    tmp = Path(tempfile.mkdtemp(prefix="rag-bench-"))
    copy = tmp / "index"
    shutil.copytree(root / snap.version, copy / snap.version)
    for segment in snap.manifest["segments"]:  # the version's segments, shared with other versions
        shutil.copytree(root / "segments" / segment["name"], copy / "segments" / segment["name"])
    (copy / "CURRENT").write_text((root / "CURRENT").read_text())
    other = rag.Index(copy, ix.settings)
    other.snapshot()
    adds = [add_one(other, tmp, n) for n in range(3)]
    manifest = snap.manifest
    body = (f"Index `{root}`: {stats['articles']} articles, {stats['chunks']} chunks, {stats['sentences']} "
            f"sentences; embedder {manifest.get('embedder')}, chunk index {json.dumps(manifest.get('chunk_index'))}; "
            f"{version_mb(snap):.0f} MB on disk; loaded in {load_s:.1f} s.\n\n"
            f"| ask p50, ms | ask p95, ms | asks | add one article, s (median of 3) | articles embedded by the add |\n"
            f"|---|---|---|---|---|\n| {1000 * pct(seconds, 0.5):.0f} | {1000 * pct(seconds, 0.95):.0f} "
            f"| {len(seconds)} | {statistics.median(a[0] for a in adds):.2f} | {max(a[1] for a in adds)} |\n\n"
            f"Peak RSS of the bench process: {peak_rss_mb():.0f} MB.")
    print(body)
    if not args.no_write:
        write_result(f"Add and ask on {stats['articles']} articles", body)
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
