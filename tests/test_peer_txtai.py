"""bench/peer_txtai.py's chunk hand-over: txtai is handed exactly the chunks
``rag build`` indexes (no peer venv needed; the tiny hash embedder)."""
from __future__ import annotations

import sys

import pytest

from conftest import ROOT, SEEDS

sys.path.insert(0, str(ROOT / "bench"))
import peer_txtai  # noqa: E402


def test_handed_chunks_are_the_built_ones(tmp_path, hash_embedder):
    import rag

    records = peer_txtai.chunk_records([SEEDS], embedder=hash_embedder)
    rag.build([SEEDS], index=tmp_path / "ix", embedder=hash_embedder, progress=False)
    snap = rag.open(tmp_path / "ix", embedder=hash_embedder).snapshot()
    from rag.lexical import chunk_texts

    assert sorted(r["text"] for r in records) == sorted(chunk_texts(snap.articles, snap.chunks))
    assert {r["viewpoint"] for r in records} == {"pro-Russia", "pro-Ukraine"}
    assert len({r["id"] for r in records}) == len(records)
    peer_txtai.check_aligned(len(records), len(records), len(records))
    with pytest.raises(SystemExit, match="chunk counts differ"):
        peer_txtai.check_aligned(len(records), len(records) - 1, len(records))
