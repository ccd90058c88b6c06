"""Catalog: the live version as a writer needs it, without reading its text or vectors.

Planning an update needs each stored article's id, content hash, path and a
digest of its metadata; marking rows deleted needs its chunk and sentence
counts. Every segment stores these in its ``catalog.json`` (segment.py), so
``rag add`` of one article to a 12k-article index reads the manifest and the
catalogs (about 2 MB) instead of the whole index (700 MB), and reads a
segment's rows only when the update rewrites them: a merge, or an article
whose metadata alone changed (its vectors are copied).

The segment files it does not read are still checked against their
checksums, in a thread while the new articles are embedded, and ``check``
waits for that before the new version is committed: a damaged index is never
built upon (the caller then loads it the careful way, which falls back to
the last good version).
"""
from __future__ import annotations

import bisect
import mmap
import threading
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Callable

import numpy as np

from . import ann
from . import segment as seg
from ..errors import IndexCorrupt, IndexMissing, IndexOutdated
from .index import Snapshot, read_pointer, read_segment
from .manifest import file_problem, read_checked, read_manifest
from .segment import Part, Segment
from ..types import Article, Span


@dataclass(frozen=True, eq=False)
class Catalog:
    """The rows of one version, by global row number (as in its Snapshot):
    what each article is, and where its rows sit; the rows themselves on demand."""

    version: str
    manifest: dict
    segments: tuple[Segment, ...]  # each one's live rows, in order
    ids: list[str]
    content_hashes: list[str]
    paths: list[str]
    chunk_counts: np.ndarray  # chunks per article row
    sentence_counts: np.ndarray  # sentences per article row
    centroids: np.ndarray | None  # IVF: the centroids every segment's lists refer to
    read_part: Callable[[Segment], Part]  # the live rows of one segment
    digest_of: Callable[[int], str]  # segment.meta_digest of an article row
    check: Callable[[], None] = lambda: None  # raises IndexCorrupt if what was not read is damaged
    warning: str = ""
    _parts: dict = field(default_factory=dict)
    _articles: list = field(default_factory=list)  # the articles, when the version is in memory

    @cached_property
    def row_of(self) -> dict[str, int]:
        return {i: row for row, i in enumerate(self.ids)}

    @property
    def n_chunks(self) -> int:
        return int(self.chunk_counts.sum())

    def part(self, segment: Segment) -> Part:
        """The live rows of one of its segments (read and checked once, if not in memory)."""
        return self._segment(segment)[0]

    def rows(self, row: int) -> tuple[Article, tuple[Span, ...], np.ndarray, np.ndarray, np.ndarray]:
        """One stored article with its rows: (article, sentence spans, chunk
        table rows, chunk vectors, sentence vectors), the table's article
        column as it was."""
        at = bisect.bisect_right([s.articles.start for s in self.segments], row) - 1
        segment = self.segments[at]
        (part, sentence_start, chunk_rows), local = self._segment(segment), row - segment.articles.start
        mine, first, spans = chunk_rows(local), sentence_start[local], part.sentences[local]
        return (part.articles[local], spans, part.chunks[mine], part.vectors[mine],
                part.sentence_vectors[first:first + len(spans)])

    def _segment(self, segment: Segment) -> tuple:
        """(part, each article's first sentence row, article -> its chunk rows), made once:
        scanning the chunk table for every reused article would cost articles x chunks."""
        if segment.name not in self._parts:
            part = self.read_part(segment)
            starts = part.sentences.starts
            order = np.argsort(part.chunks[:, 0], kind="stable")
            keys = part.chunks[order, 0]

            def chunk_rows(local: int) -> np.ndarray:
                lo, hi = np.searchsorted(keys, [local, local + 1])
                return order[lo:hi]

            self._parts[segment.name] = (part, starts, chunk_rows)
        return self._parts[segment.name]

    def article(self, row: int) -> Article:
        return self._articles[row] if self._articles else self.rows(row)[0]


def of_snapshot(snap: Snapshot) -> Catalog:
    """The catalog of a version already in memory: nothing is read."""
    whole: dict = {}

    def read_part(segment: Segment) -> Part:
        if not whole:  # the chunk index as arrays, once (views of the snapshot's index)
            whole.update(vectors=ann.vectors_of(snap.chunk_index), lists=ann.lists_of(snap.chunk_index))
        return snap.part(segment, whole["vectors"], whole["lists"], ann.centroids_of(snap.chunk_index))

    a = snap.articles
    return Catalog(snap.version, snap.manifest, snap.segments, [x.id for x in a], [x.content_hash for x in a],
                   [x.path for x in a], np.bincount(snap.chunks[:, 0], minlength=len(a)),
                   snap.sentences.counts, ann.centroids_of(snap.chunk_index),
                   read_part, lambda row: seg.meta_digest(a[row]), warning=snap.warning, _articles=a)


def load(root: str | Path) -> Catalog | None:
    """The live version's catalog from its manifest and its segments' catalog
    files, checking the rest of every segment in a thread (``check``); None
    when that cannot be done (a segment without a catalog, of an older release;
    anything unreadable): the caller loads the version whole instead."""
    root = Path(root)
    try:
        live, sha = read_pointer(root)
        manifest = read_manifest(root / live, sha)
        catalogs = [_segment_catalog(root / "segments" / e["name"], e) for e in manifest["segments"]]
    except (IndexCorrupt, IndexMissing, IndexOutdated):
        return None
    if any(c is None for c in catalogs):
        return None
    columns: dict[str, list] = {key: [] for key in seg.CATALOG_KEYS}
    segments, at = [], np.zeros(3, np.int64)
    for entry, catalog in zip(manifest["segments"], catalogs):
        deleted = set(entry["deleted"])
        keep = [i for i, doc in enumerate(catalog["ids"]) if doc not in deleted]
        for key in seg.CATALOG_KEYS:
            columns[key] += [catalog[key][i] for i in keep]
        size = np.array([len(keep), sum(catalog["chunks"][i] for i in keep),
                         sum(catalog["sentences"][i] for i in keep)])
        segments.append(Segment(entry["name"], entry["files"], frozenset(deleted),
                                *(range(int(a), int(b)) for a, b in zip(at, at + size))))
        at = at + size
    counts = manifest["counts"]
    if [int(x) for x in at] != [counts.get("articles"), counts.get("chunks"), counts.get("sentences")] \
            or len(set(columns["ids"])) != len(columns["ids"]):
        return None  # the catalogs disagree with the manifest, or an id is live twice: the careful load says why
    nlist = manifest["chunk_index"].get("nlist") if manifest["chunk_index"]["type"] == "ivf-flat" else None
    dim = manifest["dim"]
    try:
        centroids = _centroids(root, manifest) if nlist else None
    except IndexCorrupt:
        return None
    digests = columns["meta_digests"]
    checker = _Checker(root, manifest)

    def read_part(segment: Segment) -> Part:
        entry = next(e for e in manifest["segments"] if e["name"] == segment.name)
        return read_segment(root / "segments" / segment.name, entry, dim, nlist).without(segment.deleted)

    return Catalog(live, manifest, tuple(segments), columns["ids"], columns["content_hashes"], columns["paths"],
                   np.array(columns["chunks"], dtype=np.int64), np.array(columns["sentences"], dtype=np.int64),
                   centroids, read_part, digests.__getitem__, checker.check)


def _segment_catalog(folder: Path, entry: dict) -> dict | None:
    expected = entry["files"].get(seg.CATALOG_FILE)
    if expected is None:
        return None
    try:
        catalog = seg.read_catalog(read_checked(folder / seg.CATALOG_FILE, expected))
    except (IndexCorrupt, ValueError):
        return None
    return catalog if catalog is not None and _fits(catalog, entry) else None


def _fits(catalog: dict, entry: dict) -> bool:
    """Do the catalog's rows add up to the segment's counts in the manifest?"""
    counts = entry["counts"]
    return (len(catalog["ids"]) == counts["articles"] and sum(catalog["chunks"]) == counts["chunks"]
            and sum(catalog["sentences"]) == counts["sentences"])


def _centroids(root: Path, manifest: dict) -> np.ndarray:
    entry = manifest["segments"][0]
    data = read_checked(root / "segments" / entry["name"] / "centroids.npy", entry["files"]["centroids.npy"])
    return seg._npy(data, np.float32)


class _Checker:
    """Checks every segment file of a version against the manifest, in a thread
    started now; ``check`` waits for it and raises IndexCorrupt on the first problem."""

    def __init__(self, root: Path, manifest: dict):
        self.problem = ""
        self.files = [(root / "segments" / e["name"] / name, expected)
                      for e in manifest["segments"] for name, expected in e["files"].items()
                      if name != seg.CATALOG_FILE]  # the catalogs were checked as they were read
        self.thread = threading.Thread(target=self._run, name="rag-check", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        for path, expected in self.files:
            self.problem = _file_problem(path, expected)
            if self.problem:
                return

    def check(self) -> None:
        self.thread.join()
        if self.problem:
            raise IndexCorrupt(self.problem)


def _file_problem(path: Path, expected: dict) -> str:
    """``manifest.file_problem`` of a file, named. The file is mapped, not read:
    hashing a mapping copies nothing and lets the embedding thread run."""
    try:
        with open(path, "rb") as stream:
            if stream.seek(0, 2) == 0:  # an empty file cannot be mapped
                problem = file_problem(b"", expected)
            else:
                with mmap.mmap(stream.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
                    problem = file_problem(mapped, expected)
    except OSError as err:
        return f"{path}: unreadable ({err.strerror})"
    return f"{path}: {problem}" if problem else ""
