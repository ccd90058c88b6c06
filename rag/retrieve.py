"""Retrieve: the best passages of each viewpoint, searched separately so one
side's many articles cannot crowd out another's few. Filters (by source,
date) restrict the candidate set before ranking, never after.

Hybrid: within a viewpoint, the dense (FAISS) ranking and the BM25 ranking
are fused by reciprocal rank, so a passage that shares the question's rare
words (names, numbers) is found even when its vector is not the closest."""
from __future__ import annotations

import functools

from dataclasses import dataclass
from typing import Hashable, Sequence

import numpy as np

from .dates import iso_day
from .store import ann
from .store.ann import search_params
from .store.index import Snapshot


@dataclass(frozen=True)
class Filters:
    """Restrict which articles may answer. Empty means no restriction."""

    sources: tuple[str, ...] = ()
    date_from: str = ""  # a day, as sources write them: "2025-03-01", "3/1/25"
    date_to: str = ""

    @functools.cached_property
    def _days(self) -> tuple[str, str]:  # the bounds read once, not once per article
        return iso_day(self.date_from), iso_day(self.date_to)

    def allows(self, source: str, date: str) -> bool:
        if self.sources and source not in self.sources:
            return False
        if not (self.date_from or self.date_to):
            return True
        first, last = self._days
        day = iso_day(date)  # days, not strings: "12/29/17" is after "2017-01-01"
        if self.date_from and (not day or day < first):
            return False
        return not (self.date_to and (not day or day > last))


# Reciprocal rank fusion constant (Cormack et al. 2009): damps the top ranks' weight.
RRF_K = 60
# Each ranking contributes this many times ``per_group`` candidates to the fusion.
DEPTH = 3


@dataclass(frozen=True)
class Passage:
    chunk_row: int
    score: float  # cosine similarity of chunk and query
    rank: int = 1  # 1-based rank within its viewpoint after fusion


@dataclass(frozen=True)
class Found:
    """What a store's search hands the answer stage: each viewpoint's passages, with the
    rows they point into (``snap``: the whole live version locally; from Milvus, only
    the articles hit) and the term weights the answer scorer reads (``lexical``)."""

    snap: Snapshot
    lexical: object  # lexical.Lexical
    sides: dict[str, list[Passage]]  # viewpoint label -> its passages, best first
    more: int  # viewpoints left out beyond ``Settings.max_viewpoints``


@dataclass(frozen=True)
class Groups:
    """Articles grouped into viewpoints: ``labels[g]`` names group g and
    ``chunk_group[i]`` is the group of chunk row i (-1: filtered out)."""

    labels: tuple[str, ...]
    chunk_group: np.ndarray

    def members(self, g: int) -> np.ndarray:
        """The chunk rows of group ``g`` (found once per grouping)."""
        found = self.__dict__.setdefault("_members", {})
        if g not in found:
            found[g] = np.flatnonzero(self.chunk_group == g)
        return found[g]


# Groupings kept per loaded version: the app asks with a handful of (field, filters) pairs.
_KEEP_GROUPINGS = 8


def group_chunks(snap: Snapshot, by: str, filters: Filters | None = None) -> Groups:
    """The viewpoint of every chunk; computed once per loaded version and
    (field, filters), since it walks every article (about 7 ms at 12k)."""
    memo = snap.__dict__.setdefault("_groupings", {})
    found = memo.get((by, filters))
    if found is None:
        found = memo[(by, filters)] = _group(snap, by, filters)
        while len(memo) > _KEEP_GROUPINGS:
            memo.pop(next(iter(memo)), None)
    return found


def _group(snap: Snapshot, by: str, filters: Filters | None) -> Groups:
    labels: dict[str, int] = {}
    article_group = np.empty(len(snap.articles), dtype=np.int64)
    for row, article in enumerate(snap.articles):
        if filters and not filters.allows(article.source, article.date):
            article_group[row] = -1
            continue
        article_group[row] = labels.setdefault(article.group(by), len(labels))
    chunk_group = article_group[snap.chunks[:, 0]] if len(snap.chunks) else np.zeros(0, np.int64)
    return Groups(tuple(labels), chunk_group)


def search_groups(snap: Snapshot, query: np.ndarray, groups: Groups, per_group: int,
                  max_groups: int, lexical: np.ndarray | None = None) -> dict[int, list[Passage]]:
    """Top ``per_group`` passages of each group, for at most ``max_groups``
    groups (those with the best passages when there are more). ``lexical``
    holds a BM25 score per chunk row; without it the ranking is dense only."""
    exact = _exact_scores(snap, query)
    wanted: Sequence[int] = range(len(groups.labels))
    if len(groups.labels) > max_groups:
        wanted = _best_groups(snap, query, groups, max_groups, exact)
    found = {}
    for g in wanted:
        rows = groups.members(g)
        dense = _search(snap, query, rows, per_group if lexical is None else DEPTH * per_group, exact)
        found[g] = dense[:per_group] if lexical is None else _fuse(snap, query, dense, rows, lexical,
                                                                  per_group, exact)
    return found


def _fuse(snap: Snapshot, query: np.ndarray, dense: list[Passage], rows: np.ndarray,
          lexical: np.ndarray, k: int, exact: np.ndarray | None = None) -> list[Passage]:
    """Reciprocal rank fusion of the dense hits and the BM25 hits among ``rows``."""
    top = rows[_top(lexical[rows], DEPTH * k)]
    top = top[lexical[top] > 0]  # a passage with no question word is no lexical hit
    best = reciprocal_rank([[p.chunk_row for p in dense], top.tolist()], k)
    cosine = {p.chunk_row: p.score for p in dense}
    missing = [row for row in best if row not in cosine]
    if missing:  # lexical-only hits: their cosine, for the answer scorer
        found = exact[missing] if exact is not None else _chunk_vectors(snap, missing) @ query
        cosine.update(zip(missing, found.tolist()))
    return [Passage(row, float(cosine[row]), rank) for rank, row in enumerate(best, 1)]


def reciprocal_rank(rankings: Sequence[Sequence[Hashable]], k: int) -> list:
    """The ``k`` best items of ``rankings`` (each best first) by reciprocal rank fusion; a tie
    keeps the first ranking's order (the dense one's: the closer passage first). Both stores
    fuse with this, so they rank the same hits the same way."""
    fused: dict[Hashable, float] = {}
    for ranking in rankings:
        for rank, item in enumerate(ranking):
            fused[item] = fused.get(item, 0.0) + 1.0 / (RRF_K + rank + 1)
    return sorted(fused, key=lambda item: -fused[item])[:k]

def _chunk_vectors(snap: Snapshot, rows: list[int]) -> np.ndarray:
    try:
        return snap.chunk_index.reconstruct_batch(np.array(rows, dtype=np.int64))
    except RuntimeError:  # an index kind without a direct map: its sentences' mean instead
        out = []
        for row in rows:
            article, _, _, first, last = (int(v) for v in snap.chunks[row])
            base = int(snap.sentence_start[article])
            mean = snap.sentence_vectors[base + first:base + last + 1].astype(np.float32).mean(axis=0)
            out.append(mean / (np.linalg.norm(mean) or 1.0))
        return np.array(out, dtype=np.float32)


def _best_groups(snap: Snapshot, query: np.ndarray, groups: Groups, max_groups: int,
                 exact: np.ndarray | None) -> list[int]:
    """The groups whose best passage scores highest, found with one wide search."""
    allowed = np.flatnonzero(groups.chunk_group >= 0)
    k = min(len(allowed), max(256, 16 * max_groups))
    order: list[int] = []
    for hit in _search(snap, query, allowed, k, exact):
        g = int(groups.chunk_group[hit.chunk_row])
        if g not in order:
            order.append(g)
            if len(order) == max_groups:
                return order
    # fewer groups in the wide search than columns: fill with the rest in label order
    return order + [g for g in range(len(groups.labels)) if g not in order][:max_groups - len(order)]


def _top(scores: np.ndarray, k: int) -> np.ndarray:
    """Positions of the ``k`` highest ``scores``, best first (ties: lower position
    first), without sorting them all."""
    k = min(k, len(scores))
    top = np.argpartition(-scores, k - 1)[:k] if 0 < k < len(scores) else np.arange(len(scores))
    return top[np.lexsort((top, -scores[top]))]


def _exact_scores(snap: Snapshot, query: np.ndarray) -> np.ndarray | None:
    """The cosine of ``query`` with every chunk, for a flat (exact) index: one
    matrix-vector product serves every viewpoint, where a filtered FAISS search
    per viewpoint costs a pass over all vectors plus an id set built each time.
    None for an IVF index, which is searched per viewpoint (``_search``)."""
    vectors = snap.__dict__.get("_flat_vectors")
    if vectors is None:
        import faiss

        flat = isinstance(faiss.downcast_index(snap.chunk_index), faiss.IndexFlat)
        vectors = snap.__dict__["_flat_vectors"] = ann.vectors_of(snap.chunk_index) if flat else False
    return None if vectors is False else vectors @ query.astype(np.float32)


def _search(snap: Snapshot, query: np.ndarray, rows: np.ndarray, k: int,
            exact: np.ndarray | None = None) -> list[Passage]:
    """The ``k`` chunks among ``rows`` closest to ``query``: from ``exact`` (every
    chunk's cosine) when given, else a FAISS search restricted to ``rows``."""
    k = min(k, len(rows))
    if k == 0:
        return []
    if exact is not None:
        top = _top(exact[rows], k)
        return [Passage(int(rows[i]), float(exact[rows[i]])) for i in top]
    import faiss

    selector = faiss.IDSelectorBatch(rows.astype(np.int64))
    params = search_params(snap.chunk_index, rows, selector)  # IVF above Settings.ann_threshold
    scores, ids = snap.chunk_index.search(query.reshape(1, -1).astype(np.float32), k, params=params)
    # FAISS pads with id -1 when it has fewer than k results: never a citation.
    return [Passage(int(i), float(s)) for s, i in zip(scores[0], ids[0]) if i >= 0]
