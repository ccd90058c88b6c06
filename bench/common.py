"""Shared bits of the bench scripts: corpus slices, repeat statistics, the
machine line, and writing one subsection of BENCHMARKS.md without touching
anyone else's sections."""
from __future__ import annotations

import gzip
import os
import platform
import re
import shlex
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
ALLSIDES = DATA / "allsides-12k.jsonl.gz"
SQUAD = DATA / "squad2-dev-tune.json"
FIELDS = {"text": "content_original", "viewpoint": "bias_text"}
BENCHMARKS = ROOT / "BENCHMARKS.md"
SECTION = "## Latest bench runs"  # below the dashboard, above the history

sys.path.insert(0, str(ROOT))


def corpus_slice(n: int, folder: Path, skip: int = 0) -> Path:
    """The first ``n`` articles of allsides-12k (after ``skip``) as a JSONL file."""
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"allsides-{skip}-{n}.jsonl"
    with gzip.open(ALLSIDES, "rt", encoding="utf-8") as src, open(target, "w", encoding="utf-8") as out:
        for i, line in enumerate(src):
            if i >= skip + n:
                break
            if i >= skip:
                out.write(line)
    return target


def chunk_texts(n_articles: int, tokens_of, folder: Path) -> tuple[list[str], list[str]]:
    """The chunk texts and sentence texts the builder would embed for a slice."""
    from rag.chunk import chunk_article
    from rag.ingest import load
    from rag.settings import Settings

    s = Settings()
    chunks, sentences = [], []
    for article in load([corpus_slice(n_articles, folder)], FIELDS).articles:
        c = chunk_article(article, tokens_of, s.chunk_tokens, s.overlap_sentences, 254)
        chunks += [article.text[x.start:x.end] for x in c.chunks]
        sentences += [article.text[x.start:x.end] for x in c.sentences]
    return chunks, sentences


def spread(values) -> str:
    """median (min–max)"""
    values = list(values)
    return f"{statistics.median(values):.3g} ({min(values):.3g}–{max(values):.3g})"


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = " / ".join(f"{x:.1f}" for x in os.getloadavg())
    return (f"{platform.node() or 'host'}: {cpu}, {len(os.sched_getaffinity(0))} cores usable, "
            f"Python {platform.python_version()}; load average at the end (1/5/15 min) {load} — "
            "the cores were shared with other engineers' test runs, so absolute rates are noisy; "
            "ratios come from the same run, interleaved")


def command() -> str:
    """The command line as typed, quoted where an argument has spaces (copy-paste runs it)."""
    return "python " + shlex.join([os.path.relpath(sys.argv[0], ROOT), *sys.argv[1:]])


def write_result(name: str, body: str, section: str = SECTION) -> None:
    """Replace (or add) ``### name`` under ``section`` of BENCHMARKS.md ("Latest bench
    runs" unless told; a section not there yet is added at the end)."""
    text = BENCHMARKS.read_text(encoding="utf-8") if BENCHMARKS.exists() else "# Benchmarks\n"
    block = f"### {name}\n\n`{command()}`\n\nMachine: {machine()}.\n\n{body.strip()}\n"
    if section not in text:
        text = text.rstrip("\n") + f"\n\n{section}\n\n"
    start = text.index(section) + len(section)
    nxt = re.search(r"^## ", text[start:], flags=re.M)
    end = start + nxt.start() if nxt else len(text)
    part = text[start:end]
    pattern = re.compile(rf"^### {re.escape(name)}\n.*?(?=^### |\Z)", flags=re.M | re.S)
    if pattern.search(part):
        part = pattern.sub(lambda _: block + "\n", part)
    else:
        part = part.rstrip("\n") + "\n\n" + block + "\n"
    text = text[:start] + part + text[end:].lstrip("\n") if not nxt else \
        text[:start] + part + text[end:]
    tmp = BENCHMARKS.with_suffix(".md.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, BENCHMARKS)
    print(f"wrote '### {name}' to {BENCHMARKS}")
