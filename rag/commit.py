"""Commit: write a new index version beside the live one and switch to it
atomically; one writer at a time; clean up what crashed writers left.

The order is what makes a crash harmless: the version is written under a
temporary name and fsynced, renamed into place (a name CURRENT does not
mention yet), the folder fsynced, and only then CURRENT is replaced (write,
fsync, ``os.replace``, fsync the folder). Until that last rename, readers and
the next writer see the old version; after it, the new one.
"""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import io
import json
import os
import shutil
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Iterator

import numpy as np

from .errors import IndexBusy, IndexCorrupt, IndexMissing, RagError
from .index import FORMAT, Snapshot, list_versions, read_pointer


@contextlib.contextmanager
def writer_lock(root: Path, wait: float = 0.0) -> Iterator[None]:
    """Hold the index's one writer lock; wait up to ``wait`` seconds for it.
    The kernel releases it when the holder dies, even by SIGKILL.

    >>> import tempfile
    >>> with writer_lock(Path(tempfile.mkdtemp())):
    ...     pass
    """
    root = Path(root)
    try:
        root.mkdir(parents=True, exist_ok=True)
        handle = open(root / "lock", "a+")
    except OSError as err:
        raise RagError(f"{root}: cannot write the index here ({err.strerror})") from None
    with handle:
        deadline = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise IndexBusy(f"{root}: another build or update is writing this index; "
                                    "try again when it finishes") from None
                time.sleep(0.1)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def write(root: Path, snap: Snapshot, manifest: dict) -> str:
    """Write ``snap`` as a new version and make it live; return its name.
    Call under ``writer_lock``. ``manifest["previous"]`` names the version it
    was built from, kept (with the new one) when old versions are dropped."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    live = _live(root)
    _clean_leftovers(root, live)
    versions = list_versions(root)
    version = f"v{int(versions[-1][1:]) + 1 if versions else 1:06d}"
    previous = manifest.get("previous") or live
    temp = root / f".tmp-{version}-{os.getpid()}"
    try:
        temp.mkdir()
        files = _write_files(temp, snap)
        manifest = dict(manifest, format=FORMAT, version=version, previous=previous, files=files,
                        counts={"articles": len(snap.articles), "chunks": len(snap.chunks),
                                "vectors": snap.chunk_index.ntotal,
                                "sentences": sum(len(s) for s in snap.sentences),
                                "sentence_vectors": len(snap.sentence_vectors)})
        manifest_bytes = json.dumps(manifest, indent=1, ensure_ascii=False).encode("utf-8")
        _write_durably(temp / "manifest.json", manifest_bytes)
        _fsync_dir(temp)
        os.rename(temp, root / version)
        _fsync_dir(root)
    except OSError as err:  # e.g. a full disk: nothing was switched, the live version stands
        shutil.rmtree(temp, ignore_errors=True)
        raise RagError(f"{root}: could not write a new version ({err.strerror or err}); "
                       "the index is as it was") from None
    pointer = f"{version} {hashlib.sha256(manifest_bytes).hexdigest()}\n"
    _write_durably(root / "CURRENT.tmp", pointer.encode("ascii"))
    os.replace(root / "CURRENT.tmp", root / "CURRENT")  # the commit point
    _fsync_dir(root)
    _drop_old_versions(root, keep={version, previous} - {""})
    return version


def _live(root: Path) -> str:
    """The version CURRENT names, or "" for a new index or a damaged pointer."""
    try:
        return read_pointer(root)[0]
    except (IndexMissing, IndexCorrupt):
        return ""


def _write_files(folder: Path, snap: Snapshot) -> dict[str, dict]:
    """Write the data files; return each one's sha256 and size for the manifest."""
    import faiss

    lines = io.StringIO()
    for article, spans in zip(snap.articles, snap.sentences):
        record = asdict(article)
        record["sentences"] = [[s.start, s.end] for s in spans]
        lines.write(json.dumps(record, ensure_ascii=False) + "\n")
    blobs = {"articles.jsonl": lines.getvalue().encode("utf-8"),
             "chunks.npy": _npy_bytes(snap.chunks.astype(np.int64)),
             "sentences.npy": _npy_bytes(snap.sentence_vectors.astype(np.float16)),
             "chunks.faiss": faiss.serialize_index(snap.chunk_index).tobytes()}
    for name, data in blobs.items():
        _write_durably(folder / name, data)
    return {name: {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}
            for name, data in blobs.items()}


def _npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def _write_durably(path: Path, data: bytes) -> None:
    with open(path, "wb") as stream:
        stream.write(data)
        stream.flush()
        os.fsync(stream.fileno())


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _clean_leftovers(root: Path, live: str) -> None:
    """Remove what a crashed writer left. Only the lock holder writes, so a
    temporary folder, a CURRENT.tmp, or a version newer than the live one
    (renamed into place, never named in CURRENT) is debris no reader uses."""
    for temp in root.glob(".tmp-*"):
        shutil.rmtree(temp, ignore_errors=True)
    with contextlib.suppress(FileNotFoundError):
        (root / "CURRENT.tmp").unlink()
    if live and (root / live).is_dir():
        for orphan in (v for v in list_versions(root) if v > live):
            shutil.rmtree(root / orphan, ignore_errors=True)


def _drop_old_versions(root: Path, keep: set[str]) -> None:
    """Keep the new version and the one it replaced; a reader still loading
    an older one notices CURRENT moved and reloads (index.load)."""
    newest = max(keep)
    for old in list_versions(root):
        if old in keep or old > newest:
            continue
        try:
            shutil.rmtree(root / old)
        except OSError as err:  # e.g. permissions; harmless, tried again next time
            print(f"rag: could not remove old version {root / old}: {err}", file=sys.stderr)

