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
from pathlib import Path
from typing import Sequence

import numpy as np

from . import ann, commit, segment
from . import index as store
from .catalog import Catalog
from ..settings import Settings
from ..types import Article, Embedded

# When segments are merged (see ``merge_runs``): an update writes one small segment,
# and these keep the count and the dead weight of segments bounded.
MAX_SEGMENTS = 8  # more than this many: the newest are merged
MERGE_RATIO = 4  # a segment at least 1/4 the size of the one before it is merged into it
MAX_DELETED = 0.25  # a segment with more than this share of its articles deleted is rewritten without them


def write_version(root: Path, old: Catalog, the_plan, fresh: dict, vectors: Embedded, manifest: dict,
                  settings: Settings, rewrite: frozenset = frozenset()) -> tuple[str, int]:
    """Write the version ``the_plan`` (build.Plan) makes of ``old``: its rows
    written anew in one new segment, with the chunks and vectors of those
    embedded now (``fresh``, ``vectors``: build.embed_articles); ``manifest``
    holds what the new manifest says beyond its rows; the old segments named in
    ``rewrite`` are written anew even if nothing in them changed. Call under
    the writer lock. Returns (version, chunk count)."""
    dim = manifest["dim"]
    gone = set(the_plan.drop) | {a.id for a in the_plan.write if a.id in old.row_of}  # stored rows not kept
    new = _new_part(old, the_plan.write, fresh, vectors, dim)
    kept = [_Kept(old, held, entry, gone, held.name in rewrite)
            for held, entry in zip(old.segments, old.manifest.get("segments", ()))]
    live = {key: sum(k.live[key] for k in kept) + n for key, n in new.counts().items()}

    ivf = live["chunks"] >= max(settings.ann_threshold, 1)
    centroids = old.centroids if ivf and old.centroids is not None \
        and len(old.centroids) == ann.lists_for(live["chunks"]) else None
    retrain = ivf and centroids is None
    runs = merge_runs([k.size for k in kept] + [len(new.articles) + len(new.sentence_vectors)])
    reshape = retrain or (not ivf and old.centroids is not None)
    if reshape:  # the chunk index changes kind or list count: everything in one new segment
        runs = [[i for run in runs for i in run]] if runs else []
    items: list = []
    for run in runs:
        if len(run) == 1 and run[0] < len(kept) and not kept[run[0]].dirty and not reshape:
            items.append(kept[run[0]].entry)  # stays on disk as it is
            continue
        parts = [old.part(kept[i].held).without(kept[i].gone) for i in run if i < len(kept)]
        if run[-1] == len(kept):
            parts.append(new if centroids is None else replace(new, lists=ann.assign(centroids, new.vectors),
                                                               centroids=centroids))
        if centroids is None:  # their lists refer to centroids this version does not keep
            parts = [replace(p, lists=None, centroids=None) for p in parts]
        part = segment.concat(parts, dim)
        if retrain:
            centroids = ann.train(part.vectors, dim)
            part = replace(part, lists=ann.assign(centroids, part.vectors), centroids=centroids)
        items.append(part)
    manifest = dict(manifest, chunk_index=ann.kind(centroids if ivf else None, settings.ann_nprobe),
                    counts=dict(live, vectors=live["chunks"], sentence_vectors=live["sentences"]))
    return commit.write(root, manifest, items), live["chunks"]


class _Kept:
    """An old segment in the new version: its manifest entry with the newly
    deleted ids added, its live row counts, and whether it must be rewritten."""

    def __init__(self, old: Catalog, held: segment.Segment, entry: dict, gone: set[str], rewrite: bool = False):
        rows = [r for r in held.articles if old.ids[r] in gone]
        self.held, self.gone = held, {old.ids[r] for r in rows}
        self.entry = dict(entry, deleted=sorted(held.deleted | self.gone))
        self.live = {"articles": len(held.articles) - len(rows),
                     "chunks": len(held.chunks) - int(old.chunk_counts[rows].sum()),
                     "sentences": len(held.sentences) - int(old.sentence_counts[rows].sum())}
        self.size = self.live["articles"] + self.live["sentences"]
        self.dirty = rewrite or len(self.entry["deleted"]) > MAX_DELETED * entry["counts"]["articles"]


def outdated_segments(old: Catalog) -> frozenset:
    """The segments of ``old`` written by an older rag: without term counts (loading
    counts their words from the text each time) or without a catalog (an update
    reads them whole). Rewriting them stores both."""
    return frozenset(s.name for s in old.segments if s.terms is None or segment.CATALOG_FILE not in s.files)


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


def _new_part(old: Catalog, articles: Sequence[Article], fresh: dict, vectors: Embedded, dim: int) -> segment.Part:
    """The rows of ``articles``: embedded now (in ``fresh`` and ``vectors``), or
    copied from ``old`` when only their metadata changed."""
    tables, chunk_vectors, sentence_lists, sentence_vectors = [], [], [], []
    for row, article in enumerate(articles):
        if article.id in fresh:
            sentences, chunks = fresh[article.id]
            table = np.array([[row, c.start, c.end, c.first_sentence, c.last_sentence] for c in chunks],
                             dtype=np.int64).reshape(-1, 5)
            new_chunks, new_sentences = vectors.of(article.id)
        else:  # same text, other metadata: its vectors are reused
            _, sentences, table, new_chunks, new_sentences = old.rows(old.row_of[article.id])
            table[:, 0] = row
        chunk_vectors.append(new_chunks)
        sentence_vectors.append(new_sentences)
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
