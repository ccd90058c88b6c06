"""The news dev corpus: the AllSides articles the questions name, plus distractor
articles of every side (fixed seed), so each viewpoint's column mixes topics as in
real use. Held-out IDs (../shared/data/heldout-ids.txt) are never included."""
from __future__ import annotations

import gzip
import json
import random
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
ALLSIDES = DATA / "allsides-12k.jsonl.gz"
FIELDS = {"id": "ID", "text": "content_original", "viewpoint": "bias_text"}
DISTRACTORS = 300


def heldout() -> set[str]:
    path = DATA / "heldout-ids.txt"
    return set(path.read_text(encoding="utf-8").split()) if path.exists() else set()


def write_corpus(source: Path, named: set[str], distractors: int, target: Path, seed: int = 7) -> int:
    """The named articles and ``distractors`` others drawn at random; returns the count."""
    lines = gzip.open(source, "rt", encoding="utf-8").read().splitlines()
    skip = heldout()
    ids = [json.loads(line)["ID"] for line in lines]
    pool = [i for i, doc in enumerate(ids) if doc not in named and doc not in skip]
    chosen = set(random.Random(seed).sample(pool, min(distractors, len(pool))))
    chosen |= {i for i, doc in enumerate(ids) if doc in named}
    target.write_text("".join(lines[i] + "\n" for i in sorted(chosen)), encoding="utf-8")
    return len(chosen)


def open_index(source: Path, items: list[dict], index: Path, distractors: int = DISTRACTORS, settings=None):
    """An Index over the corpus for ``items`` (built once, reused while tuning)."""
    from rag.engine import Index

    named = {key for item in items for key in item.get("expect") or {}}
    ix = Index(index, settings)
    if not (index / "CURRENT").exists():
        index.parent.mkdir(parents=True, exist_ok=True)
        corpus = index.parent / f"{index.name}-articles.jsonl"
        write_corpus(source, named, distractors, corpus)
        ix.rebuild([corpus], FIELDS, progress=True)
    return ix
