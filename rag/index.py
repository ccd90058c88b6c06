"""Index: the on-disk, versioned FAISS index.

Layout of an index folder::

    index/
      CURRENT          name of the live version (switched atomically)
      lock             held by the one writer
      v000007/         one complete version
        manifest.json  format, model, dimension, chunk settings, counts,
                       sha256 and size of every file, article content hashes
        articles.jsonl one article a line: metadata, text, sentence spans
        chunks.npy     int64 rows: article row, start, end, first/last sentence
        chunks.faiss   chunk vectors (inner product on normalized vectors)
        sentences.npy  float16 sentence vectors, each article's rows contiguous

A version is written beside the live one under a temporary name, fsynced,
renamed into place, and only then named in CURRENT (write, fsync,
os.replace, fsync the folder): a crash at any moment leaves the last good
version usable.
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
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np

from .errors import IndexBusy, IndexCorrupt, IndexMissing
from .types import Article, Span

FORMAT = 1
FILES = ("articles.jsonl", "chunks.npy", "chunks.faiss", "sentences.npy")
KEEP_VERSIONS = 2


@dataclass
class Snapshot:
    """One loaded index version. Row numbers tie the arrays together:
    chunk row i is FAISS id i; article row a owns sentence rows
    ``sentence_start[a]`` .. ``sentence_start[a] + len(sentences[a]) - 1``."""

    articles: list[Article]
    sentences: list[tuple[Span, ...]]
    chunks: np.ndarray  # (n_chunks, 5) int64
    chunk_index: object  # faiss.Index
    sentence_vectors: np.ndarray  # (n_sentences, dim) float16
    manifest: dict = field(default_factory=dict)
    version: str = ""
    warning: str = ""  # set when the live version was bad and an older one was loaded

    def __post_init__(self) -> None:
        self.row_of = {a.id: i for i, a in enumerate(self.articles)}
        counts = np.array([len(s) for s in self.sentences], dtype=np.int64)
        self.sentence_start = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64) \
            if len(counts) else np.zeros(0, dtype=np.int64)

    def chunk_vectors(self) -> np.ndarray:
        n = self.chunk_index.ntotal
        return self.chunk_index.reconstruct_n(0, n) if n else np.zeros((0, self.dim), np.float32)

    @property
    def dim(self) -> int:
        return int(self.manifest.get("dim", self.sentence_vectors.shape[1]))


def empty_snapshot(dim: int) -> Snapshot:
    import faiss

    return Snapshot([], [], np.zeros((0, 5), np.int64), faiss.IndexFlatIP(dim),
                    np.zeros((0, dim), np.float16), manifest={"dim": dim})


# ---- reading ---------------------------------------------------------------

def current_version(root: Path) -> str:
    try:
        return (root / "CURRENT").read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        raise IndexMissing(f"{root}: no index here; build one with: rag build seeds/ --index {root}") from None


def load(root: str | os.PathLike, verify: bool = True) -> Snapshot:
    """Load the live version; if it fails its checks, the newest older version
    that passes, with ``Snapshot.warning`` saying so."""
    root = Path(root)
    live = current_version(root)
    try:
        return load_version(root, live, verify)
    except IndexCorrupt as err:
        for older in reversed(list_versions(root)):
            if older < live:
                with contextlib.suppress(IndexCorrupt):
                    snap = load_version(root, older, verify)
                    snap.warning = f"{err}; using the previous version {older} instead"
                    return snap
        raise


def list_versions(root: Path) -> list[str]:
    return sorted(p.name for p in root.glob("v[0-9]*") if p.is_dir())


def load_version(root: Path, version: str, verify: bool = True) -> Snapshot:
    import faiss

    folder = root / version
    manifest = read_manifest(folder)
    if verify:
        problems = check_files(folder, manifest)
        if problems:
            raise IndexCorrupt(f"{folder}: {problems[0]}")
    try:
        articles, sentences = _read_articles(folder / "articles.jsonl")
        chunks = np.load(folder / "chunks.npy", allow_pickle=False)
        sentence_vectors = np.load(folder / "sentences.npy", allow_pickle=False)
        chunk_index = faiss.read_index(str(folder / "chunks.faiss"))
    except (OSError, ValueError, RuntimeError, KeyError, json.JSONDecodeError) as err:
        raise IndexCorrupt(f"{folder}: unreadable: {str(err).splitlines()[0]}") from None
    snap = Snapshot(articles, sentences, chunks, chunk_index, sentence_vectors, manifest, version)
    problem = _check_counts(snap)
    if problem:
        raise IndexCorrupt(f"{folder}: {problem}")
    return snap


def read_manifest(folder: Path) -> dict:
    try:
        manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise IndexCorrupt(f"{folder}: missing manifest.json (CURRENT names a version that is gone)") from None
    except (OSError, ValueError) as err:
        raise IndexCorrupt(f"{folder}/manifest.json: unreadable ({err})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise IndexCorrupt(f"{folder}/manifest.json: unknown format {manifest.get('format')!r}"
                           f" (this rag reads format {FORMAT}); rebuild with rag build --full")
    return manifest


def check_files(folder: Path, manifest: dict) -> list[str]:
    """Every problem with the version's files, each naming the file."""
    problems = []
    for name, expected in manifest.get("files", {}).items():
        path = folder / name
        if not path.exists():
            problems.append(f"{name} is missing")
        elif path.stat().st_size != expected["size"]:
            problems.append(f"{name} has {path.stat().st_size} bytes, the manifest says {expected['size']}")
        elif _sha256(path) != expected["sha256"]:
            problems.append(f"{name} fails its checksum (corrupted)")
    missing = set(FILES) - set(manifest.get("files", {}))
    problems.extend(f"manifest lists no {name}" for name in sorted(missing))
    return problems


def _check_counts(snap: Snapshot) -> str:
    m = snap.manifest
    n_sent = sum(len(s) for s in snap.sentences)
    facts = {"articles": len(snap.articles), "chunks": len(snap.chunks),
             "vectors": snap.chunk_index.ntotal, "sentences": n_sent,
             "sentence_vectors": len(snap.sentence_vectors)}
    for key, value in facts.items():
        if m.get("counts", {}).get(key) != value:
            return f"{key}: found {value}, the manifest says {m.get('counts', {}).get(key)}"
    if snap.chunk_index.d != m.get("dim") or snap.sentence_vectors.shape[1:] != (m.get("dim"),):
        return f"vector dimension does not match the manifest's {m.get('dim')}"
    return ""


def _read_articles(path: Path) -> tuple[list[Article], list[tuple[Span, ...]]]:
    articles, sentences = [], []
    with open(path, encoding="utf-8") as stream:
        for line in stream:
            record = json.loads(line)
            sentences.append(tuple(Span(s, e) for s, e in record.pop("sentences")))
            articles.append(Article(**record))
    return articles, sentences


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# ---- writing ---------------------------------------------------------------

@contextlib.contextmanager
def writer_lock(root: Path, wait: float = 0.0) -> Iterator[None]:
    """Hold the index's one writer lock; wait up to ``wait`` seconds for it."""
    root.mkdir(parents=True, exist_ok=True)
    with open(root / "lock", "a+") as handle:
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
    """Write ``snap`` as a new version and make it live. Call under ``writer_lock``."""
    root.mkdir(parents=True, exist_ok=True)
    _clean_temporaries(root)
    versions = list_versions(root)
    version = f"v{int(versions[-1][1:]) + 1 if versions else 1:06d}"
    temp = root / f".tmp-{version}-{os.getpid()}"
    temp.mkdir()
    _write_files(temp, snap)
    manifest = dict(manifest, format=FORMAT, version=version,
                    files={name: {"sha256": _sha256(temp / name), "size": (temp / name).stat().st_size}
                           for name in FILES},
                    counts={"articles": len(snap.articles), "chunks": len(snap.chunks),
                            "vectors": snap.chunk_index.ntotal,
                            "sentences": sum(len(s) for s in snap.sentences),
                            "sentence_vectors": len(snap.sentence_vectors)})
    _write_durably(temp / "manifest.json", json.dumps(manifest, indent=1).encode("utf-8"))
    _fsync_dir(temp)
    os.rename(temp, root / version)
    _fsync_dir(root)
    _write_durably(root / "CURRENT.tmp", (version + "\n").encode("utf-8"))
    os.replace(root / "CURRENT.tmp", root / "CURRENT")
    _fsync_dir(root)
    _drop_old_versions(root, keep=version)
    return version


def _write_files(folder: Path, snap: Snapshot) -> None:
    import faiss

    lines = io.StringIO()
    for article, spans in zip(snap.articles, snap.sentences):
        record = asdict(article)
        record["sentences"] = [[s.start, s.end] for s in spans]
        lines.write(json.dumps(record, ensure_ascii=False) + "\n")
    _write_durably(folder / "articles.jsonl", lines.getvalue().encode("utf-8"))
    _write_durably(folder / "chunks.npy", _npy_bytes(snap.chunks.astype(np.int64)))
    _write_durably(folder / "sentences.npy", _npy_bytes(snap.sentence_vectors.astype(np.float16)))
    _write_durably(folder / "chunks.faiss", faiss.serialize_index(snap.chunk_index).tobytes())


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


def _clean_temporaries(root: Path) -> None:
    # Only the lock holder writes, so any temporary folder left is from a crashed writer.
    for temp in root.glob(".tmp-*"):
        shutil.rmtree(temp, ignore_errors=True)
    with contextlib.suppress(FileNotFoundError):
        (root / "CURRENT.tmp").unlink()


def _drop_old_versions(root: Path, keep: str) -> None:
    versions = [v for v in list_versions(root) if v <= keep]
    for old in versions[:-KEEP_VERSIONS]:
        try:
            shutil.rmtree(root / old)
        except OSError as err:  # a reader on another OS may still hold it; try next time
            print(f"rag: could not remove old version {root / old}: {err}", file=sys.stderr)


def check_version(root: Path, version: str) -> list[str]:
    """Every problem found with one version, for ``rag check``."""
    folder = root / version
    try:
        manifest = read_manifest(folder)
    except IndexCorrupt as err:
        return [str(err)]
    problems = check_files(folder, manifest)
    if not problems:
        try:
            load_version(root, version, verify=False)
        except IndexCorrupt as err:
            problems.append(str(err))
    return problems
