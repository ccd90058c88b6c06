"""The chunk index: exact (flat) search while it is small, an inverted-file
ANN index (IVF-Flat) above ``Settings.ann_threshold`` vectors.

Why IVF and not HNSW: every version rebuilds the FAISS index from its
vectors (build.py), so build cost matters more than a few points of speed.
IVF trains once (k-means on a sample) and later versions reuse those
centroids, so adding articles to a 1M-vector index costs one pass of list
assignment; an HNSW graph would be rebuilt insertion by insertion. IVF also
filters cleanly: the per-viewpoint ``IDSelector`` is checked while scanning
the lists, before any distance is ranked, and ``nprobe`` grows for a small
viewpoint so it keeps about as many candidates as a big one (a viewpoint with
a few dozen chunks is searched exhaustively, exactly like the flat index).
"""
from __future__ import annotations

import math

import numpy as np


def build_index(vectors: np.ndarray, dim: int, threshold: int, nprobe: int, previous=None):
    """A FAISS index over ``vectors`` (normalized, so inner product = cosine):
    flat below ``threshold`` rows, else IVF-Flat, reusing the trained centroids
    of ``previous`` when it is an IVF index of the same list count.

    >>> import numpy as np
    >>> type(build_index(np.eye(4, dtype=np.float32), 4, threshold=100, nprobe=8)).__name__
    'IndexFlatIP'
    """
    import faiss

    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    if len(vectors) < max(threshold, 1):
        index = faiss.IndexFlatIP(dim)
    else:
        nlist = lists_for(len(vectors))
        old = faiss.downcast_index(previous) if previous is not None else None
        if isinstance(old, faiss.IndexIVFFlat) and old.nlist == nlist and old.d == dim:
            index = faiss.clone_index(old)  # same centroids: no k-means again
            index.reset()
        else:
            index = faiss.IndexIVFFlat(faiss.IndexFlatIP(dim), dim, nlist, faiss.METRIC_INNER_PRODUCT)
            index.cp.niter = 10
            sample = _sample(vectors, 40 * nlist)
            index.train(sample)
        index.nprobe = nprobe
    if len(vectors):
        index.add(vectors)
    if isinstance(index, faiss.IndexIVF):
        index.make_direct_map()  # reconstruct(id) for rows found by other means (BM25)
    return index


def lists_for(n: int) -> int:
    """Inverted lists for ``n`` vectors: about 4·sqrt(n), a power of two, with at
    least 40 training vectors per list (k-means needs them).

    >>> lists_for(1_000_000), lists_for(250_000), lists_for(100)
    (4096, 2048, 2)
    """
    lists = int(2 ** round(math.log2(max(4 * math.sqrt(max(n, 1)), 16))))
    return max(1, min(lists, n // 40))


def _sample(vectors: np.ndarray, n: int) -> np.ndarray:
    if len(vectors) <= n:
        return vectors
    rows = np.random.default_rng(0).choice(len(vectors), n, replace=False)  # seeded: builds repeat
    return vectors[np.sort(rows)]


def describe(index) -> dict:
    """What the manifest records about the chunk index."""
    import faiss

    index = faiss.downcast_index(index)
    if isinstance(index, faiss.IndexIVFFlat):
        return {"type": "ivf-flat", "nlist": int(index.nlist), "nprobe": int(index.nprobe),
                "metric": "inner_product"}
    return {"type": "flat", "metric": "inner_product"}


def search_params(index, rows: np.ndarray, selector):
    """Search parameters restricting the search to ``rows`` (filter before ranking).
    For IVF, ``nprobe`` scales with how small a share of the index ``rows`` is."""
    import faiss

    ivf = faiss.try_extract_index_ivf(index)
    if ivf is None:
        return faiss.SearchParameters(sel=selector)
    share = len(rows) / max(index.ntotal, 1)
    nprobe = min(ivf.nlist, math.ceil(ivf.nprobe / max(share, 1e-9)))
    return faiss.SearchParametersIVF(sel=selector, nprobe=nprobe)
