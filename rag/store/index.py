"""Index: the on-disk, versioned FAISS index, read and verified.

Layout of an index folder::

    index/
      CURRENT          "v000007 <sha256 of its manifest.json>": the live version
      lock             held by the one writer
      v000007/
        manifest.json  format, model, dimension, chunk settings, chunk index kind,
                       live counts, the version it replaced, and its segments in
                       order: each one's name, row counts, sha256 and size of
                       every file, and the ids of its articles this version no
                       longer serves (removed, or replaced in a newer segment)
      segments/
        s000003/       immutable rows of some articles (segment.py): articles.jsonl,
                       chunks.npy, vectors.npy, sentences.npy (+ IVF lists), word
                       counts, and catalog.json (what a writer plans from: catalog.py)

Versions share segments: an update writes only a small new segment and a new
manifest (assemble.py, commit.py). Every byte a reader uses is covered by a
checksum: the manifest by CURRENT, each segment file by the manifest. A
version is written beside the live one, fsynced, renamed into place, and only
then named in CURRENT: a crash at any moment leaves the last good version
usable. Loading joins the segments' live rows into one ``Snapshot`` with
global row numbers; a loader given the snapshot it already holds (``reuse``)
takes the segments it has from memory and reads only the new ones.
"""
from __future__ import annotations

import contextlib
import os
import re
import threading
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from . import ann
from . import segment as seg
from ..errors import IndexCorrupt, IndexMissing, IndexOutdated, RagError
from .manifest import FORMAT, file_problem, manifest_sha, read_file, read_json, read_manifest  # noqa: F401
from .segment import FILES, Part, Segment  # noqa: F401  (FILES: the files of a segment)
from ..types import Article, Spans

_VERSION = re.compile(r"v[0-9]{6,}\Z")
_SHA256 = re.compile(r"[0-9a-f]{64}\Z")


@dataclass(frozen=True, eq=False)
class Snapshot:
    """One loaded index version. Row numbers tie the arrays together:
    chunk row i is FAISS id i; article row a owns sentence rows
    ``sentence_start[a]`` .. ``sentence_start[a] + len(sentences[a]) - 1``."""

    articles: list[Article]
    sentences: Spans  # per article row, its sentence spans (lists of tuples of Span are turned into Spans)
    chunks: np.ndarray  # (n_chunks, 5) int64
    chunk_index: object  # faiss.Index
    sentence_vectors: np.ndarray  # (n_sentences, dim) float16
    manifest: dict = field(default_factory=dict)
    version: str = ""
    warning: str = ""  # set when the live version was bad and an older one was loaded
    segments: tuple[Segment, ...] = ()  # where each segment's live rows sit, in order

    def __post_init__(self) -> None:
        object.__setattr__(self, "sentences", Spans.of(self.sentences))
        object.__setattr__(self, "row_of", {a.id: i for i, a in enumerate(self.articles)})
        object.__setattr__(self, "sentence_start", self.sentences.starts[:-1])

    def chunk_vectors(self) -> np.ndarray:
        n = self.chunk_index.ntotal
        return self.chunk_index.reconstruct_n(0, n) if n else np.zeros((0, self.dim), np.float32)

    def part(self, segment: Segment, vectors: np.ndarray | None = None,
             lists: np.ndarray | None = None, centroids: np.ndarray | None = None) -> Part:
        """The live rows of one of its segments, as views (no copy). ``vectors``,
        ``lists`` and ``centroids`` are those of the whole chunk index, when the
        caller has them at hand (``ann.vectors_of`` and friends)."""
        a, c, s = segment.articles, segment.chunks, segment.sentences
        vectors = ann.vectors_of(self.chunk_index) if vectors is None else vectors
        chunks = self.chunks[c.start:c.stop] - np.array([a.start, 0, 0, 0, 0], dtype=np.int64)
        return Part(self.articles[a.start:a.stop], self.sentences[a.start:a.stop], chunks,
                    vectors[c.start:c.stop], self.sentence_vectors[s.start:s.stop],
                    None if lists is None else lists[c.start:c.stop], centroids, segment.terms)

    @property
    def dim(self) -> int:
        return int(self.manifest.get("dim", self.sentence_vectors.shape[1]))


def empty_snapshot(dim: int) -> Snapshot:
    import faiss

    return Snapshot([], [], np.zeros((0, 5), np.int64), faiss.IndexFlatIP(dim),
                    np.zeros((0, dim), np.float16), manifest={"dim": dim})


def size_of(manifest: dict) -> int:
    """Bytes of the segment files a version uses."""
    return sum(f["size"] for s in manifest.get("segments", ()) for f in s["files"].values())


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

def load(root: str | os.PathLike, verify: bool = True, reuse: Snapshot | None = None) -> Snapshot:
    """Load the live version; if it fails its checks, the newest older version
    that passes, with ``Snapshot.warning`` saying so. Segments that ``reuse``
    (a snapshot loaded earlier) already holds are taken from it, not read
    again; ``reuse`` itself is returned if it is still the live version.

    >>> load("no-such-index")
    Traceback (most recent call last):
    rag.errors.IndexMissing: no-such-index: no index here; build one with: rag build seeds/ --index no-such-index
    """
    root = Path(root)
    for _ in range(5):
        try:
            live, sha = read_pointer(root)
        except IndexCorrupt as err:  # which version was live is unknown: the newest good one
            return _fallback(root, err, list_versions(root), "", reuse)
        try:
            return load_version(root, live, verify, sha, reuse)
        except IndexOutdated:
            raise  # not damage: no older version would be newer in format (Index.upgrade converts it)
        except IndexCorrupt as err:
            with contextlib.suppress(IndexCorrupt, IndexMissing):
                if read_pointer(root) != (live, sha):
                    continue  # a writer switched versions while we read (and dropped ours): reload
            return _fallback(root, err, [v for v in list_versions(root) if v < live], sha, reuse)
    raise IndexCorrupt(f"{root}: the live version keeps changing while it is read; try again")


def _fallback(root: Path, err: IndexCorrupt, candidates: list[str], sha: str, reuse: Snapshot | None) -> Snapshot:
    # The version whose manifest CURRENT vouches for first (only its name was damaged), then newest first.
    candidates = sorted(candidates, key=lambda v: (bool(sha) and manifest_sha(root / v) == sha, v))
    for older in reversed(candidates):
        with contextlib.suppress(IndexCorrupt):
            snap = load_version(root, older, reuse=reuse)
            return replace(snap, warning=f"{err}; using the previous version {older} instead")
    raise IndexCorrupt(f"{err}; no older good version to fall back to: rebuild with rag build --full")


def load_version(root: Path, version: str, verify: bool = True, expected_sha: str = "",
                 reuse: Snapshot | None = None) -> Snapshot:
    """Load one version. Each segment file is read once, and the very bytes
    parsed are the bytes checked against the manifest (no check-then-read gap).
    A segment found in ``reuse`` with the same files (same checksums: segments
    never change) and no row it lacks is taken from memory instead."""
    root = Path(root)
    manifest = read_manifest(root / version, expected_sha)
    if reuse is not None and reuse.version == version and reuse.manifest == manifest:
        return replace(reuse, warning="") if reuse.warning else reuse  # the same object keeps its caches
    dim, kind = manifest["dim"], manifest["chunk_index"]
    nlist = kind["nlist"] if kind["type"] == "ivf-flat" else None
    held = _reusable(reuse, dim, nlist)
    parts = []
    for entry in manifest["segments"]:
        deleted = frozenset(entry["deleted"])
        mine = held(entry)
        if mine is None:
            part = read_segment(root / "segments" / entry["name"], entry, dim, nlist, verify)
        else:
            part = mine[0]
            deleted = deleted - mine[1]  # rows the held snapshot already left out
        parts.append(part.without(deleted))
    try:
        snap = _assemble(parts, manifest, version, nprobe=kind.get("nprobe", 1))
    except (ValueError, RuntimeError) as err:
        raise IndexCorrupt(f"{root / version}: segments do not fit together ({err})") from None
    problem = _check_counts(snap)
    if problem:
        raise IndexCorrupt(f"{root / version / 'manifest.json'}: {problem}")
    return snap


def _reusable(reuse: Snapshot | None, dim: int, nlist: int | None):
    """A lookup: manifest entry -> (its live rows from ``reuse``, the ids
    ``reuse`` already left out), or None when the segment must be read."""
    if reuse is None or not reuse.segments or reuse.dim != dim:
        return lambda entry: None
    by_name = {s.name: s for s in reuse.segments}
    centroids = ann.centroids_of(reuse.chunk_index)
    if (None if centroids is None else len(centroids)) != nlist:
        return lambda entry: None
    whole: dict = {}

    def held(entry: dict):
        mine = by_name.get(entry["name"])
        if mine is None or mine.files != entry["files"] or not mine.deleted <= set(entry["deleted"]):
            return None
        if not whole:  # the whole chunk index once, only if some segment is reused
            whole.update(vectors=ann.vectors_of(reuse.chunk_index), lists=ann.lists_of(reuse.chunk_index))
        return reuse.part(mine, whole["vectors"], whole["lists"], centroids), mine.deleted

    return held


def read_segment(folder: Path, entry: dict, dim: int, nlist: int | None, verify: bool = True) -> Part:
    """One segment's rows, its files checked against ``entry`` (from the manifest).
    The checksums are computed in a thread while the rows are parsed (hashing
    lets go of the interpreter; at 12k articles each takes about half a second);
    a file that fails its checksum is reported before anything the parse found."""
    blobs = {name: read_file(folder / name) for name in entry["files"]}
    problems: list[str] = []

    def check() -> None:
        for name, expected in entry["files"].items():
            problem = file_problem(blobs[name], expected)
            if problem:
                problems.append(f"{folder / name}: {problem}")
                return

    checking = threading.Thread(target=check, name="rag-verify", daemon=True)
    if verify:
        checking.start()
    try:
        with warnings.catch_warnings():  # damaged bytes can make numpy warn before the checksum says why
            warnings.simplefilter("ignore")
            part, unreadable = seg.decode(blobs), ""
    except Exception as err:  # noqa: BLE001 (bytes that may fail their checksum: anything can break)
        part, unreadable = None, str(err).splitlines()[0] if str(err) else type(err).__name__
    if verify:
        checking.join()
    if problems:
        raise IndexCorrupt(problems[0])
    if part is None:
        raise IndexCorrupt(f"{folder}: unreadable: {unreadable}")
    problem = part.problem(entry["counts"], dim, nlist) or _catalog_problem(blobs, part)
    if problem:
        raise IndexCorrupt(f"{folder}: {problem}")
    return part


def _catalog_problem(blobs: dict[str, bytes], part: Part) -> str:
    """A writer plans from the catalog alone (catalog.py): it must describe the rows read here."""
    if seg.CATALOG_FILE not in blobs:
        return ""
    try:
        catalog = seg.read_catalog(blobs[seg.CATALOG_FILE])
    except ValueError as err:
        return f"{seg.CATALOG_FILE} unreadable: {str(err).splitlines()[0]}"
    return seg.catalog_problem(catalog, part) if catalog is not None else ""


def _assemble(parts: list[Part], manifest: dict, version: str, nprobe: int) -> Snapshot:
    """One snapshot from the segments' live rows, in order: global row numbers and one chunk index."""
    dim = manifest["dim"]
    joined = seg.concat(parts, dim, vectors=False)
    centroids = joined.centroids
    if any(p.centroids is not None and not np.array_equal(p.centroids, centroids) for p in parts):
        raise ValueError("their IVF centroids differ")
    index = ann.assemble(dim, [p.vectors for p in parts], [p.lists for p in parts], centroids, nprobe)
    segments, at = [], np.zeros(3, np.int64)
    for entry, part in zip(manifest["segments"], parts):
        size = np.array([len(part.articles), len(part.chunks), len(part.sentence_vectors)])
        end = at + size
        segments.append(Segment(entry["name"], entry["files"], frozenset(entry["deleted"]),
                                *(range(int(a), int(b)) for a, b in zip(at, end)), terms=part.terms))
        at = end
    return Snapshot(joined.articles, joined.sentences, joined.chunks, index, joined.sentence_vectors,
                    manifest, version, segments=tuple(segments))


def _check_counts(snap: Snapshot) -> str:
    """Do the joined rows agree with the manifest's live counts? (Each segment's
    own rows were checked against its entry when it was read.)"""
    m = snap.manifest
    facts = {"articles": len(snap.articles), "chunks": len(snap.chunks), "vectors": snap.chunk_index.ntotal,
             "sentences": int(snap.sentences.counts.sum()), "sentence_vectors": len(snap.sentence_vectors)}
    for key, value in facts.items():
        if m["counts"].get(key) != value:
            return f"{key}: found {value}, the manifest says {m['counts'].get(key)}"
    if snap.chunk_index.d != m["dim"] or snap.sentence_vectors.shape[1:] != (m["dim"],):
        return f"vector dimension does not match the manifest's {m['dim']}"
    if len(snap.row_of) != len(snap.articles):
        return "an article id is live in two segments"
    return ""


# ---- checking ----------------------------------------------------------------

def check_version(root: Path, version: str) -> list[str]:
    """Every problem found with one version, for ``rag check``; each names its file.
    A live version with problems also says which older version readers use instead."""
    root = Path(root)
    live, sha = (None, "")
    with contextlib.suppress(IndexCorrupt, IndexMissing):
        live, sha = read_pointer(root)
    try:
        manifest = read_manifest(root / version, sha if version == live else "")
    except IndexCorrupt as err:
        problems = [str(err)]
    else:
        problems = []
        for entry in manifest["segments"]:
            folder = root / "segments" / entry["name"]
            for name, expected in entry["files"].items():
                try:
                    problem = file_problem(read_file(folder / name), expected)
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


def built_with(root: str | os.PathLike) -> str | None:
    """The model name in the live manifest of an index folder, whatever its format, or
    None (no index yet, or one too damaged to say): the engine picks its embedder from it."""
    try:
        manifest = read_json(Path(root) / current_version(Path(root)))
    except (OSError, RagError):
        return None
    return manifest.get("model") if isinstance(manifest, dict) else None
