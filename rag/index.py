"""Index: the on-disk, versioned FAISS index.

Layout of an index folder::

    index/
      CURRENT          "v000007 <sha256 of its manifest.json>": the live version
      lock             held by the one writer
      v000007/         one complete version
        manifest.json  format, model, dimension, chunk settings, counts,
                       sha256 and size of every file, article content hashes,
                       the version it replaced
        articles.jsonl one article a line: metadata, text, sentence spans
        chunks.npy     int64 rows: article row, start, end, first/last sentence
        chunks.faiss   chunk vectors (inner product on normalized vectors)
        sentences.npy  float16 sentence vectors, each article's rows contiguous

A version is written beside the live one under a temporary name, fsynced,
renamed into place, and only then named in CURRENT (write, fsync,
os.replace, fsync the folder): a crash at any moment leaves the last good
version usable. Every byte a reader uses is covered by a checksum: the data
files by the manifest, the manifest by CURRENT. Writing lives in commit.py.
"""
from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import re
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from .errors import IndexCorrupt, IndexMissing
from .types import Article, Span

FORMAT = 1
FILES = ("articles.jsonl", "chunks.npy", "chunks.faiss", "sentences.npy")
_VERSION = re.compile(r"v[0-9]{6,}\Z")
_SHA256 = re.compile(r"[0-9a-f]{64}\Z")


@dataclass(frozen=True, eq=False)
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
        counts = np.array([len(s) for s in self.sentences], dtype=np.int64)
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64) \
            if len(counts) else np.zeros(0, dtype=np.int64)
        object.__setattr__(self, "row_of", {a.id: i for i, a in enumerate(self.articles)})
        object.__setattr__(self, "sentence_start", starts)

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


# ---- the pointer -------------------------------------------------------------

def read_pointer(root: Path) -> tuple[str, str]:
    """(live version, sha256 of its manifest) from CURRENT; the checksum is
    "" for an index written before CURRENT carried one."""
    try:
        raw = (Path(root) / "CURRENT").read_bytes()
    except FileNotFoundError:
        if list_versions(root):  # versions but no pointer: damaged, not absent
            raise IndexCorrupt(f"{Path(root) / 'CURRENT'}: missing, though versions "
                               f"{', '.join(list_versions(root))} are here") from None
        raise IndexMissing(f"{root}: no index here; build one with: rag build seeds/ --index {root}") from None
    except OSError as err:
        raise IndexCorrupt(f"{Path(root) / 'CURRENT'}: unreadable ({err.strerror})") from None
    parts = raw.decode("ascii", "replace").split()
    if not (1 <= len(parts) <= 2 and _VERSION.match(parts[0])
            and (len(parts) == 1 or _SHA256.match(parts[1]))):
        raise IndexCorrupt(f"{Path(root) / 'CURRENT'}: damaged (it should name a version, e.g. v000001)")
    return parts[0], (parts[1] if len(parts) == 2 else "")


def current_version(root: Path) -> str:
    return read_pointer(root)[0]


def list_versions(root: Path) -> list[str]:
    return sorted(p.name for p in Path(root).glob("v[0-9]*") if p.is_dir() and _VERSION.match(p.name))


# ---- reading -----------------------------------------------------------------

def load(root: str | os.PathLike, verify: bool = True) -> Snapshot:
    """Load the live version; if it fails its checks, the newest older version
    that passes, with ``Snapshot.warning`` saying so.

    >>> load("no-such-index")
    Traceback (most recent call last):
    rag.errors.IndexMissing: no-such-index: no index here; build one with: rag build seeds/ --index no-such-index
    """
    root = Path(root)
    for _ in range(5):
        try:
            live, sha = read_pointer(root)
        except IndexCorrupt as err:  # which version was live is unknown: the newest good one
            return _fallback(root, err, list_versions(root), "")
        try:
            return load_version(root, live, verify, sha)
        except IndexCorrupt as err:
            with contextlib.suppress(IndexCorrupt, IndexMissing):
                if read_pointer(root) != (live, sha):
                    continue  # a writer switched versions while we read (and dropped ours): reload
            return _fallback(root, err, [v for v in list_versions(root) if v < live], sha)
    raise IndexCorrupt(f"{root}: the live version keeps changing while it is read; try again")


def _fallback(root: Path, err: IndexCorrupt, candidates: list[str], sha: str) -> Snapshot:
    # The version whose manifest CURRENT vouches for first (only its name was damaged), then newest first.
    candidates = sorted(candidates, key=lambda v: (bool(sha) and manifest_sha(root / v) == sha, v))
    for older in reversed(candidates):
        with contextlib.suppress(IndexCorrupt):
            snap = load_version(root, older)
            return replace(snap, warning=f"{err}; using the previous version {older} instead")
    raise IndexCorrupt(f"{err}; no older good version to fall back to: rebuild with rag build --full")


def load_version(root: Path, version: str, verify: bool = True, expected_sha: str = "") -> Snapshot:
    """Load one version. Each file is read once, and the very bytes parsed are
    the bytes checked against the manifest (no check-then-read gap)."""
    import faiss

    folder = Path(root) / version
    manifest = read_manifest(folder, expected_sha)
    blobs = {}
    for name in FILES:
        blobs[name] = _read(folder / name)
        problem = _file_problem(blobs[name], manifest["files"][name]) if verify else ""
        if problem:
            raise IndexCorrupt(f"{folder / name}: {problem}")
    try:
        articles, sentences = _parse_articles(blobs["articles.jsonl"])
        chunks = np.load(io.BytesIO(blobs["chunks.npy"]), allow_pickle=False)
        sentence_vectors = np.load(io.BytesIO(blobs["sentences.npy"]), allow_pickle=False)
        chunk_index = faiss.deserialize_index(np.frombuffer(blobs["chunks.faiss"], dtype=np.uint8))
    except (ValueError, RuntimeError, KeyError, TypeError, IndexError) as err:
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise IndexCorrupt(f"{folder}: unreadable: {reason}") from None
    snap = Snapshot(articles, sentences, chunks, chunk_index, sentence_vectors, manifest, version)
    problem = _check_counts(snap)
    if problem:
        raise IndexCorrupt(f"{folder}: {problem}")
    return snap


def read_manifest(folder: Path, expected_sha: str = "") -> dict:
    """The version's manifest, checked against CURRENT's checksum when given
    and for the shape every reader relies on."""
    path = folder / "manifest.json"
    raw = _read(path, gone="CURRENT names a version that is gone" if not folder.exists() else "missing")
    if expected_sha and hashlib.sha256(raw).hexdigest() != expected_sha:
        raise IndexCorrupt(f"{path}: does not match the checksum in CURRENT (corrupted or edited)")
    try:
        manifest = json.loads(raw.decode("utf-8"))
    except ValueError as err:
        raise IndexCorrupt(f"{path}: unreadable ({err})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        found = manifest.get("format") if isinstance(manifest, dict) else None
        raise IndexCorrupt(f"{path}: unknown format {found!r} (this rag reads format {FORMAT});"
                           " rebuild with rag build --full")
    files, counts = manifest.get("files"), manifest.get("counts")
    ok = (isinstance(files, dict) and isinstance(counts, dict) and isinstance(manifest.get("dim"), int)
          and all(isinstance(files.get(n), dict) and isinstance(files[n].get("size"), int)
                  and isinstance(files[n].get("sha256"), str) for n in FILES))
    if not ok:
        raise IndexCorrupt(f"{path}: malformed (files, counts or dim missing)")
    return manifest


def _read(path: Path, gone: str = "missing") -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise IndexCorrupt(f"{path}: {gone}") from None
    except OSError as err:
        raise IndexCorrupt(f"{path}: unreadable ({err.strerror})") from None


def _file_problem(data: bytes, expected: dict) -> str:
    if len(data) != expected["size"]:
        return f"has {len(data)} bytes, the manifest says {expected['size']} (truncated or appended to)"
    if hashlib.sha256(data).hexdigest() != expected["sha256"]:
        return "fails its checksum (corrupted)"
    return ""


def manifest_sha(folder: Path) -> str:
    """sha256 of a version's manifest: what CURRENT records beside its name."""
    try:
        return hashlib.sha256((folder / "manifest.json").read_bytes()).hexdigest()
    except OSError:
        return ""


def _check_counts(snap: Snapshot) -> str:
    """Do the parts agree with the manifest and with each other? Rows that
    point outside their article would cite the wrong text: refuse them."""
    m = snap.manifest
    n_sent = sum(len(s) for s in snap.sentences)
    facts = {"articles": len(snap.articles), "chunks": len(snap.chunks),
             "vectors": snap.chunk_index.ntotal, "sentences": n_sent,
             "sentence_vectors": len(snap.sentence_vectors)}
    for key, value in facts.items():
        if m["counts"].get(key) != value:
            return f"{key}: found {value}, the manifest says {m['counts'].get(key)}"
    if snap.chunk_index.d != m["dim"] or snap.sentence_vectors.shape[1:] != (m["dim"],):
        return f"vector dimension does not match the manifest's {m['dim']}"
    if len(snap.chunks) != snap.chunk_index.ntotal:
        return "chunk records and vectors differ in number"
    if len(snap.chunks):
        c = snap.chunks
        if c.ndim != 2 or c.shape[1] != 5:
            return f"chunks.npy has shape {c.shape}, not (n, 5)"
        rows = c[:, 0]
        if rows.min() < 0 or rows.max() >= len(snap.articles):
            return "a chunk points at no article"
        lengths = np.array([len(a.text) for a in snap.articles], dtype=np.int64)[rows]
        n_sentences = np.array([len(s) for s in snap.sentences], dtype=np.int64)[rows]
        if not (np.all((0 <= c[:, 1]) & (c[:, 1] < c[:, 2]) & (c[:, 2] <= lengths))
                and np.all((0 <= c[:, 3]) & (c[:, 3] <= c[:, 4]) & (c[:, 4] < n_sentences))):
            return "a chunk's span or sentences lie outside its article"
    return ""


def _parse_articles(data: bytes) -> tuple[list[Article], list[tuple[Span, ...]]]:
    articles, sentences = [], []
    for line in data.split(b"\n"):  # b"\n" only: U+2028 may appear raw inside a record
        if not line:
            continue
        record = json.loads(line)
        article = Article(**{k: v for k, v in record.items() if k != "sentences"})
        spans = tuple(Span(int(s), int(e)) for s, e in record["sentences"])
        if any(not 0 <= s.start < s.end <= len(article.text) for s in spans):
            raise ValueError(f"article {article.id!r}: a sentence span lies outside its text")
        articles.append(article)
        sentences.append(spans)
    return articles, sentences


# ---- checking ----------------------------------------------------------------

def check_version(root: Path, version: str) -> list[str]:
    """Every problem found with one version, for ``rag check``; each names its file.
    A live version with problems also says which older version readers use instead."""
    root = Path(root)
    folder = root / version
    live, sha = (None, "")
    with contextlib.suppress(IndexCorrupt, IndexMissing):
        live, sha = read_pointer(root)
    try:
        manifest = read_manifest(folder, sha if version == live else "")
    except IndexCorrupt as err:
        problems = [str(err)]
    else:
        problems = []
        for name in FILES:
            try:
                problem = _file_problem(_read(folder / name), manifest["files"][name])
            except IndexCorrupt as err:
                problem = str(err).rpartition(": ")[2]
            if problem:
                problems.append(f"{folder / name}: {problem}")
        if not problems:
            try:
                load_version(root, version, verify=False)
            except IndexCorrupt as err:
                problems.append(str(err))
    if problems and version == live:
        with contextlib.suppress(IndexCorrupt, IndexMissing):
            snap = load(root)
            problems.append(f"readers use the previous version {snap.version} instead (it passes its checks)")
    return problems


# Writing (commit, lock, cleanup) lives in commit.py; re-exported for callers of index.write.
from .commit import write, writer_lock  # noqa: E402,F401
