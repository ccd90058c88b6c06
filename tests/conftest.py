"""Shared fixtures. The real model loads once per session; the seed index is
built once per session into a temporary folder (tests that change an index
copy it first)."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

ROOT = Path(__file__).resolve().parents[1]
SEEDS = ROOT / "seeds"
SHARED_DATA = ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def model():
    """The real bundled all-MiniLM-L6-v2."""
    from rag.embed import MiniLM

    return MiniLM()


@pytest.fixture()
def hash_embedder():
    from rag.embed import HashEmbedder

    return HashEmbedder()


@pytest.fixture(scope="session")
def seed_index_dir(tmp_path_factory, model) -> Path:
    """The seed corpus indexed with the real model (read-only: copy before changing)."""
    import rag

    folder = tmp_path_factory.mktemp("seed-index") / "index"
    rag.build([SEEDS], index=folder, embedder=model, progress=False)
    return folder


@pytest.fixture(scope="session")
def seed_index(seed_index_dir, model):
    import rag

    return rag.open(seed_index_dir, embedder=model)


@pytest.fixture()
def writable_seed_index(seed_index_dir, tmp_path) -> Path:
    """A private copy of the seed index that a test may change."""
    target = tmp_path / "index"
    shutil.copytree(seed_index_dir, target)
    return target


def require_shared_data(name: str) -> Path:
    path = SHARED_DATA / name
    if not path.exists():
        pytest.skip(f"{path} not found: this test needs ../shared/data (see its README)")
    return path
