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


STORES = ("local", "milvus")  # the two backends every contract test runs on
_prefixes = iter(range(1, 1 << 30))


@pytest.fixture(scope="session")
def milvus_seed_store(milvus_server, model) -> str:
    """The seed corpus indexed with the real model on the test Milvus server
    (read-only: build a fresh prefix to change one)."""
    import rag

    uri = f"{milvus_server}/seeds"
    rag.build([SEEDS], index=uri, embedder=model, progress=False)
    return uri


@pytest.fixture(scope="session")
def milvus_seed_index(milvus_seed_store, model):
    import rag

    return rag.open(milvus_seed_store, embedder=model)


@pytest.fixture(params=STORES)
def any_seed_index(request):
    """The seed index on each backend in turn: the local folder, then the Milvus server."""
    return request.getfixturevalue("seed_index" if request.param == "local" else "milvus_seed_index")


@pytest.fixture(params=STORES)
def empty_store(request, tmp_path) -> str:
    """Where a test may build an index of its own, on each backend in turn: a new folder,
    or a new collection prefix on the test Milvus server."""
    if request.param == "local":
        return str(tmp_path / "index")
    return f"{request.getfixturevalue('milvus_server')}/t{next(_prefixes)}"


@pytest.fixture()
def writable_seed_store(empty_store, model) -> str:
    """A private seed index on each backend (built with the real model) that a test may change."""
    import rag

    rag.build([SEEDS], index=empty_store, embedder=model, progress=False)
    return empty_store


def small_collection(milvus_server: str, name: str, **options):
    """A client of the test server, with a collection ``name`` of its own (a VARCHAR id and a
    4-d vector, not rag's schema) made on it; returns the client."""
    from pymilvus import DataType, MilvusClient

    client = MilvusClient(uri="http://" + milvus_server.removeprefix("milvus://"))
    schema = client.create_schema(auto_id=False)
    schema.add_field("id", DataType.VARCHAR, is_primary=True, max_length=64)
    schema.add_field("vector", DataType.FLOAT_VECTOR, dim=4)
    index = client.prepare_index_params()
    index.add_index("vector", index_type="AUTOINDEX", metric_type="IP")
    client.create_collection(name, schema=schema, index_params=index, **options)
    return client


def require_shared_data(name: str) -> Path:
    path = SHARED_DATA / name
    if not path.exists():
        pytest.skip(f"{path} not found: this test needs ../shared/data (see its README)")
    return path


@pytest.fixture(scope="session")
def milvus_server(tmp_path_factory):
    """A real milvus-lite 3.2 gRPC server (Milvus's protocol) on a free local port,
    for the Milvus backend (issue 14). Yields its ``milvus://127.0.0.1:PORT`` address;
    stopped by its pid at the end of the session."""
    import signal
    import socket
    import subprocess
    import sys
    import time

    exe = shutil.which("milvus-lite", path=os.path.dirname(sys.executable)) or shutil.which("milvus-lite")
    if exe is None:
        pytest.fail("milvus-lite is not installed: pip install -e '.[test]'")
    with socket.socket() as probe:  # a free port: bind to 0, read it back, release it
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    data = tmp_path_factory.mktemp("milvus")
    log = open(data / "server.log", "wb")
    server = subprocess.Popen([exe, "server", "--data-dir", str(data / "db"), "--host", "127.0.0.1",
                               "--port", str(port)], stdout=log, stderr=subprocess.STDOUT)
    try:
        _wait_for_port(port, server, deadline=time.monotonic() + 60)
        yield f"milvus://127.0.0.1:{port}"
    finally:
        os.kill(server.pid, signal.SIGTERM)
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            os.kill(server.pid, signal.SIGKILL)
            server.wait()
        log.close()


def _wait_for_port(port: int, server, deadline: float) -> None:
    import socket
    import time

    while time.monotonic() < deadline:
        if server.poll() is not None:
            pytest.fail(f"milvus-lite server exited with {server.returncode} before listening")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.2)
    pytest.fail(f"milvus-lite server not listening on port {port} after 60 s")
