"""Assemble: the next version from the one before and the rows an update made.

The articles that are new or changed go into one new segment; every other
article stays in the segment that holds it, and the manifest marks the old
rows of changed or removed articles deleted. Nothing already on disk is
written or read again, unless ``merge_runs`` merges small segments (or
rewrites mostly deleted ones), or the chunk index changes kind or list count
(flat <-> IVF, ``ann.lists_for``): then everything becomes one segment.
"""
from __future__ import annotations

from dataclasses import replace
from functools import cached_property
from pathlib import Path
from typing import Sequence

import numpy as np

from . import ann, segment
from . import index as store
from .index import Snapshot
from .settings import Settings
from .types import Article, Embedded

# When segments are merged (see ``merge_runs``): an update writes one small segment,
# and these keep the count and the dead weight of segments bounded.
MAX_SEGMENTS = 8  # more than this many: the newest are merged
MERGE_RATIO = 4  # a segment at least 1/4 the size of the one before it is merged into it
MAX_DELETED = 0.25  # a segment with more than this share of its articles deleted is rewritten without them


def write_version(root: Path, old: Snapshot, articles: Sequence[Article], fresh: dict, vectors: Embedded,
                  manifest: dict, settings: Settings, rewrite: frozenset = frozenset()) -> tuple[str, int]:
    """Write the version that holds ``articles`` (in order), built from ``old``;
    ``fresh`` and ``vectors`` hold the chunks and vectors of those embedded now
    (build.embed_articles), ``manifest`` what the new manifest says beyond its
    rows; the old segments named in ``rewrite`` are written anew even if
    nothing in them changed. Call under the writer lock. Returns (version, chunk count)."""
    dim = manifest["dim"]
    whole = _Whole(old)
    stays = {a.id for a in articles if a.id not in fresh and a.id in old.row_of
             and old.articles[old.row_of[a.id]] == a}
    new = _new_part(old, [a for a in articles if a.id not in stays], fresh, vectors, dim, whole)
    chunks_of = np.bincount(old.chunks[:, 0], minlength=len(old.articles))  # chunks per old article row
    kept = [_Kept(old, held, entry, stays, chunks_of, held.name in rewrite)
            for held, entry in zip(old.segments, old.manifest.get("segments", ()))]
    live = {key: sum(k.live[key] for k in kept) + n for key, n in new.counts().items()}

    ivf = live["chunks"] >= max(settings.ann_threshold, 1)
    centroids = whole.centroids if ivf and whole.centroids is not None \
        and len(whole.centroids) == ann.lists_for(live["chunks"]) else None
    retrain = ivf and centroids is None
    runs = merge_runs([k.size for k in kept] + [len(new.articles) + len(new.sentence_vectors)])
    reshape = retrain or (not ivf and whole.centroids is not None)
    if reshape:  # the chunk index changes kind or list count: everything in one new segment
        runs = [[i for run in runs for i in run]] if runs else []
    items: list = []
    for run in runs:
        if len(run) == 1 and run[0] < len(kept) and not kept[run[0]].dirty and not reshape:
            items.append(kept[run[0]].entry)  # stays on disk as it is
            continue
        lists = whole.lists if centroids is not None else None
        parts = [old.part(kept[i].held, whole.vectors, lists, centroids).without(kept[i].gone)
                 for i in run if i < len(kept)]
        if run[-1] == len(kept):
            parts.append(new if centroids is None else replace(new, lists=ann.assign(centroids, new.vectors),
                                                               centroids=centroids))
        part = segment.concat(parts, dim)
        if retrain:
            centroids = ann.train(part.vectors, dim)
            part = replace(part, lists=ann.assign(centroids, part.vectors), centroids=centroids)
        items.append(part)
    manifest = dict(manifest, chunk_index=ann.kind(centroids if ivf else None, settings.ann_nprobe),
                    counts=dict(live, vectors=live["chunks"], sentence_vectors=live["sentences"]))
    return store.write(root, manifest, items), live["chunks"]  # commit.write


class _Kept:
    """An old segment in the new version: its manifest entry with the newly
    deleted ids added, its live row counts, and whether it must be rewritten."""

    def __init__(self, old: Snapshot, held: segment.Segment, entry: dict, stays: set[str], chunks_of: np.ndarray,
                 rewrite: bool = False):
        rows = [r for r in held.articles if old.articles[r].id not in stays]
        self.held, self.gone = held, {old.articles[r].id for r in rows}
        self.entry = dict(entry, deleted=sorted(held.deleted | self.gone))
        self.live = {"articles": len(held.articles) - len(rows),
                     "chunks": len(held.chunks) - int(sum(chunks_of[r] for r in rows)),
                     "sentences": len(held.sentences) - sum(len(old.sentences[r]) for r in rows)}
        self.size = self.live["articles"] + self.live["sentences"]
        self.dirty = rewrite or len(self.entry["deleted"]) > MAX_DELETED * entry["counts"]["articles"]


def without_terms(snap: Snapshot) -> frozenset:
    """The segments of ``snap`` written without term counts (by an older rag):
    loading counts their words from the text each time; rewriting them stores the counts."""
    return frozenset(s.name for s in snap.segments if s.terms is None)


def merge_runs(sizes: Sequence[int]) -> list[list[int]]:
    """Which segments (by position, oldest first; the last is the new one) are
    written together as one, given their live sizes (articles + sentences); a
    segment with no live rows is dropped. Walking from the oldest, a segment
    at least 1/MERGE_RATIO the size of the run before it joins that run, so
    each segment ends up under a quarter of the one before it: few segments
    (about log4 of the corpus over the smallest), and a typical update
    rewrites only its own few rows plus a small tail now and then; the big
    first segment is rewritten only when the rest together reach a quarter
    of it. Never more than MAX_SEGMENTS. (A run of one old segment is then
    kept on disk as it is, unless over MAX_DELETED of it is deleted.)

    >>> merge_runs([1000, 100, 10])          # a small new segment stays alone
    [[0], [1], [2]]
    >>> merge_runs([1000, 100, 30])          # 30 >= 100/4: merged with the one before
    [[0], [1, 2]]
    >>> merge_runs([1000, 0, 10])            # every row of the middle one deleted
    [[0], [2]]
    """
    runs: list[list[int]] = []

    def size(run: list[int]) -> int:
        return sum(sizes[i] for i in run)

    for i, n in enumerate(sizes):
        if n == 0:
            continue
        runs.append([i])
        while len(runs) > 1 and MERGE_RATIO * size(runs[-1]) >= size(runs[-2]):
            runs[-2:] = [runs[-2] + runs[-1]]
    while len(runs) > MAX_SEGMENTS:
        runs[-2:] = [runs[-2] + runs[-1]]
    return runs


class _Whole:
    """The old version's whole chunk index as arrays, fetched once and only if needed."""

    def __init__(self, snap: Snapshot):
        self.snap = snap
        self.centroids = ann.centroids_of(snap.chunk_index)

    @cached_property
    def vectors(self) -> np.ndarray:
        return ann.vectors_of(self.snap.chunk_index)  # a view of the old index: valid while it lives

    @cached_property
    def lists(self) -> np.ndarray | None:
        return ann.lists_of(self.snap.chunk_index)

    @cached_property
    def chunk_rows(self):
        return _rows_by_article(self.snap.chunks)


def _new_part(old: Snapshot, articles: list[Article], fresh: dict, vectors: Embedded, dim: int,
              whole: _Whole) -> segment.Part:
    """The rows of ``articles``: embedded now (in ``fresh`` and ``vectors``), or
    copied from ``old`` when only their metadata changed."""
    tables, chunk_vectors, sentence_lists, sentence_vectors = [], [], [], []
    for row, article in enumerate(articles):
        if article.id in fresh:
            sentences, chunks = fresh[article.id]
            table = np.array([[row, c.start, c.end, c.first_sentence, c.last_sentence] for c in chunks],
                             dtype=np.int64).reshape(-1, 5)
            new_chunks, new_sentences = vectors.of(article.id)
            chunk_vectors.append(new_chunks)
            sentence_vectors.append(new_sentences)
        else:  # same text, other metadata: its vectors are reused
            old_row = old.row_of[article.id]
            rows = whole.chunk_rows(old_row)
            table = old.chunks[rows]  # fancy indexing copies
            table[:, 0] = row
            chunk_vectors.append(whole.vectors[rows])
            first, sentences = old.sentence_start[old_row], old.sentences[old_row]
            sentence_vectors.append(old.sentence_vectors[first:first + len(sentences)])
        tables.append(table)
        sentence_lists.append(tuple(sentences))
    table = np.concatenate(tables) if tables else np.zeros((0, 5), np.int64)
    if [a.id for a in articles] == list(vectors.rows):  # exactly the articles embedded now, in order:
        return segment.Part(list(articles), sentence_lists, table,  # their arrays as they are, no copy
                            vectors.chunk_vectors, vectors.sentence_vectors)
    return segment.Part(list(articles), sentence_lists, table,
                        _stack(chunk_vectors, dim, np.float32), _stack(sentence_vectors, dim, np.float16))


def _stack(arrays: list, dim: int, dtype) -> np.ndarray:
    return np.concatenate(arrays).astype(dtype, copy=False) if arrays else np.zeros((0, dim), dtype)


def _rows_by_article(chunks: np.ndarray):
    """A lookup from article row to its chunk rows, built once: scanning the
    whole chunk table for every reused article would cost articles x chunks."""
    order = np.argsort(chunks[:, 0], kind="stable")
    keys = chunks[order, 0]

    def rows(article_row: int) -> np.ndarray:
        lo, hi = np.searchsorted(keys, [article_row, article_row + 1])
        return order[lo:hi]

    return rows
