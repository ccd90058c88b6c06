"""Retrieve: the best passages of each viewpoint, searched separately so one
side's many articles cannot crowd out another's few. Filters (by source,
date) restrict the candidate set before ranking, never after."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from .index import Snapshot


@dataclass(frozen=True)
class Filters:
    """Restrict which articles may answer. Empty means no restriction."""

    sources: tuple[str, ...] = ()
    date_from: str = ""  # ISO dates compare as strings: "2025-03-01"
    date_to: str = ""

    def allows(self, source: str, date: str) -> bool:
        if self.sources and source not in self.sources:
            return False
        if self.date_from and (not date or date[:10] < self.date_from):
            return False
        return not (self.date_to and (not date or date[:10] > self.date_to))


@dataclass(frozen=True)
class Passage:
    chunk_row: int
    score: float  # cosine similarity of chunk and query


@dataclass(frozen=True)
class Groups:
    """Articles grouped into viewpoints: ``labels[g]`` names group g and
    ``chunk_group[i]`` is the group of chunk row i (-1: filtered out)."""

    labels: tuple[str, ...]
    chunk_group: np.ndarray


def group_chunks(snap: Snapshot, by: str, filters: Filters | None = None) -> Groups:
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
                  max_groups: int) -> dict[int, list[Passage]]:
    """Top ``per_group`` passages of each group, for at most ``max_groups``
    groups (those with the best passages when there are more)."""
    wanted: Sequence[int] = range(len(groups.labels))
    if len(groups.labels) > max_groups:
        wanted = _best_groups(snap, query, groups, max_groups)
    return {g: _search(snap, query, np.flatnonzero(groups.chunk_group == g), per_group) for g in wanted}


def _best_groups(snap: Snapshot, query: np.ndarray, groups: Groups, max_groups: int) -> list[int]:
    """The groups whose best passage scores highest, found with one wide search."""
    allowed = np.flatnonzero(groups.chunk_group >= 0)
    k = min(len(allowed), max(256, 16 * max_groups))
    order: list[int] = []
    for hit in _search(snap, query, allowed, k):
        g = int(groups.chunk_group[hit.chunk_row])
        if g not in order:
            order.append(g)
            if len(order) == max_groups:
                return order
    # fewer groups in the wide search than columns: fill with the rest in label order
    return order + [g for g in range(len(groups.labels)) if g not in order][:max_groups - len(order)]


def _search(snap: Snapshot, query: np.ndarray, rows: np.ndarray, k: int) -> list[Passage]:
    import faiss

    k = min(k, len(rows))
    if k == 0:
        return []
    params = faiss.SearchParameters()
    selector = faiss.IDSelectorBatch(rows.astype(np.int64))
    params.sel = selector
    scores, ids = snap.chunk_index.search(query.reshape(1, -1).astype(np.float32), k, params=params)
    # FAISS pads with id -1 when it has fewer than k results: never a citation.
    return [Passage(int(i), float(s)) for s, i in zip(scores[0], ids[0]) if i >= 0]
