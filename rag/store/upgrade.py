"""Upgrade: an index written by an older rag (format 1, one complete folder
per version) is read as its articles alone, so the next write embeds them
again in today's format. Nothing is lost: format 1 kept every article's text
and metadata in its live version's articles.jsonl, checked here against the
checksums in its manifest, the manifest against CURRENT."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..errors import IndexCorrupt
from .index import Snapshot, read_pointer
from .manifest import file_problem, read_file, read_json
from ..types import Article

OLD_FORMAT = 1


def outdated_snapshot(root: Path, dim: int, model: str) -> Snapshot:
    """The live format-1 version of ``root`` as articles without rows or vectors.
    Its chunk settings say "format 1", so a build from it re-embeds every article."""
    import faiss

    live, sha = read_pointer(root)
    folder = Path(root) / live
    manifest = read_json(folder, sha)
    try:
        if manifest.get("format") != OLD_FORMAT:
            raise ValueError(f"format {manifest.get('format')!r}, not {OLD_FORMAT}")
        data = read_file(folder / "articles.jsonl")
        problem = file_problem(data, manifest["files"]["articles.jsonl"])
        if problem:
            raise IndexCorrupt(f"{folder / 'articles.jsonl'}: {problem}")
        articles = [Article(**{k: v for k, v in json.loads(line).items() if k != "sentences"})
                    for line in data.split(b"\n") if line]
    except (ValueError, KeyError, TypeError, AttributeError) as err:
        raise IndexCorrupt(f"{folder}: cannot read this format-1 version ({err})") from None
    return Snapshot(articles, [()] * len(articles), np.zeros((0, 5), np.int64), faiss.IndexFlatIP(dim),
                    np.zeros((0, dim), np.float16),
                    manifest={"dim": dim, "model": model, "chunking": {"index_format": OLD_FORMAT}},
                    version=live)
