"""Commit: write a new index version beside the live one and switch to it
atomically; one writer at a time; clean up what crashed writers left and the
segments no kept version uses.

The order is what makes a crash harmless: each new segment is written under a
temporary name, fsynced and renamed into place (a name no version mentions
yet); then the version's manifest likewise; and only then CURRENT is replaced
(write, fsync, ``os.replace``, fsync the folder). Until that last rename,
readers and the next writer see the old version; after it, the new one.
Segments are never changed once renamed into place, so versions share them.
"""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import BinaryIO, Callable, Iterator, Sequence

from . import segment as seg
from ..errors import IndexBusy, IndexCorrupt, IndexMissing, RagError
from .index import list_versions, read_pointer
from .manifest import FORMAT, SEGMENT_NAME
from .segment import Part


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


def write(root: Path, manifest: dict, segments: Sequence[Part | dict]) -> str:
    """Make a new version of ``segments`` in order live; return its name. A
    ``Part`` is written as a new segment; a dict is the manifest entry of a
    segment already on disk (kept as is, with its ``deleted`` ids updated by
    the caller). ``manifest`` carries the live ``counts`` and ``previous``,
    the version it was built from, kept (with the new one) when old versions
    are dropped. Call under ``writer_lock``."""
    root = Path(root)
    folder = root / "segments"
    folder.mkdir(parents=True, exist_ok=True)
    live = _live(root)
    _clean_leftovers(root, live)
    versions = list_versions(root)
    version = f"v{int(versions[-1][1:]) + 1 if versions else 1:06d}"
    previous = manifest.get("previous") or live
    number = max((int(p.name[1:]) for p in folder.glob("s[0-9]*") if SEGMENT_NAME.match(p.name)), default=0)
    temp = root / f".tmp-{version}-{os.getpid()}"
    written: list[Path] = []
    try:
        entries = []
        for item in segments:
            if isinstance(item, dict):
                entries.append(item)
                continue
            number += 1
            name = f"s{number:06d}"
            entries.append({"name": name, "counts": item.counts(), "deleted": [],
                            "files": _write_segment(folder, name, item)})
            written.append(folder / name)
        if written:
            _fsync_dir(folder)
        manifest = dict(manifest, format=FORMAT, version=version, previous=previous, segments=entries)
        manifest_bytes = json.dumps(manifest, indent=1, ensure_ascii=False).encode("utf-8")
        temp.mkdir()
        _write_durably(temp / "manifest.json", manifest_bytes)
        _fsync_dir(temp)
        os.rename(temp, root / version)
        _fsync_dir(root)
    except OSError as err:  # e.g. a full disk: nothing was switched, the live version stands
        for path in [temp, *written, *folder.glob(f".tmp-*-{os.getpid()}")]:
            shutil.rmtree(path, ignore_errors=True)
        raise RagError(f"{root}: could not write a new version ({err.strerror or err}); "
                       "the index is as it was") from None
    pointer = f"{version} {hashlib.sha256(manifest_bytes).hexdigest()}\n"
    _write_durably(root / "CURRENT.tmp", pointer.encode("ascii"))
    os.replace(root / "CURRENT.tmp", root / "CURRENT")  # the commit point
    _fsync_dir(root)
    _drop_old_versions(root, keep={version, previous} - {""})
    _collect_segments(root)
    return version


def _write_segment(folder: Path, name: str, part: Part) -> dict[str, dict]:
    """Write one segment durably under its final name; return each file's sha256 and size.
    Each file goes to disk as it is made (``seg.writers``): the bytes of a big
    segment are never all in memory beside its arrays."""
    temp = folder / f".tmp-{name}-{os.getpid()}"
    temp.mkdir()
    files = {file: _write_durably(temp / file, write) for file, write in seg.writers(part).items()}
    _fsync_dir(temp)
    os.rename(temp, folder / name)
    return files


def _live(root: Path) -> str:
    """The version CURRENT names, or "" for a new index or a damaged pointer."""
    try:
        return read_pointer(root)[0]
    except (IndexMissing, IndexCorrupt):
        return ""


def _write_durably(path: Path, data: bytes | Callable[[BinaryIO], None]) -> dict:
    """Write ``data`` (bytes, or a function that writes them to a stream) and fsync
    it; return its sha256 and size, hashed on the way to disk."""
    with open(path, "wb") as stream:
        out = _Hashing(stream)
        if isinstance(data, bytes):
            out.write(data)
        else:
            data(out)
        stream.flush()
        os.fsync(stream.fileno())
    return {"sha256": out.sha.hexdigest(), "size": out.size}


class _Hashing:
    """A write-only stream that hashes and counts what it passes on."""

    def __init__(self, stream: BinaryIO):
        self.stream, self.sha, self.size = stream, hashlib.sha256(), 0

    def write(self, data: bytes) -> int:
        self.sha.update(data)
        self.size += memoryview(data).nbytes
        return self.stream.write(data)


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _clean_leftovers(root: Path, live: str) -> None:
    """Remove what a crashed writer left. Only the lock holder writes, so a
    temporary folder, a CURRENT.tmp, a version newer than the live one
    (renamed into place, never named in CURRENT), or a segment that no
    version lists is debris no reader uses."""
    for temp in [*root.glob(".tmp-*"), *(root / "segments").glob(".tmp-*")]:
        shutil.rmtree(temp, ignore_errors=True)
    with contextlib.suppress(FileNotFoundError):
        (root / "CURRENT.tmp").unlink()
    if live and (root / live).is_dir():
        for orphan in (v for v in list_versions(root) if v > live):
            shutil.rmtree(root / orphan, ignore_errors=True)
    _collect_segments(root)


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


def _collect_segments(root: Path) -> None:
    """Remove the segments no version folder lists. A version whose manifest
    cannot be read might list any of them: then nothing is removed this time."""
    used: set[str] = set()
    for version in list_versions(root):
        try:
            manifest = json.loads((root / version / "manifest.json").read_bytes())
            used.update(s["name"] for s in manifest.get("segments", ()))
        except (OSError, ValueError, TypeError, KeyError, AttributeError):
            return
    for path in (root / "segments").glob("s[0-9]*"):
        if SEGMENT_NAME.match(path.name) and path.name not in used:
            try:
                shutil.rmtree(path)
            except OSError as err:  # harmless, tried again next time
                print(f"rag: could not remove unused segment {path}: {err}", file=sys.stderr)
