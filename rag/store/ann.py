"""The chunk index: exact (flat) search while it is small, an inverted-file
ANN index (IVF-Flat) above ``Settings.ann_threshold`` vectors.

Why IVF and not HNSW: IVF trains once (k-means on a sample) and every later
vector only needs its nearest centroid, its "list". Segments (segment.py)
store each chunk vector with its list and the centroids, so a reader puts the
index together from its segments without searching a single centroid
(``assemble``), and adding articles to a 1M-vector index costs one pass of
list assignment for the new vectors only; an HNSW graph would be rebuilt
insertion by insertion. IVF also filters cleanly: the per-viewpoint
``IDSelector`` is checked while scanning the lists, before any distance is
ranked, and ``nprobe`` grows for a small viewpoint so it keeps about as many
candidates as a big one (a viewpoint with a few dozen chunks is searched
exhaustively, exactly like the flat index).
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np


def build_index(vectors: np.ndarray, dim: int, threshold: int, nprobe: int, previous=None):
    """A FAISS index over ``vectors`` (normalized, so inner product = cosine):
    flat below ``threshold`` rows, else IVF-Flat, reusing the trained centroids
    of ``previous`` when it is an IVF index of the same list count.

    >>> import numpy as np
    >>> type(build_index(np.eye(4, dtype=np.float32), 4, threshold=100, nprobe=8)).__name__
    'IndexFlatIP'
    """
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    if len(vectors) < max(threshold, 1):
        return assemble(dim, [vectors])
    centroids = centroids_of(previous) if previous is not None else None
    if centroids is None or len(centroids) != lists_for(len(vectors)) or centroids.shape[1] != dim:
        centroids = train(vectors, dim)  # same list count: the same centroids, no k-means again
    return assemble(dim, [vectors], [assign(centroids, vectors)], centroids, nprobe)


def train(vectors: np.ndarray, dim: int) -> np.ndarray:
    """IVF centroids for ``vectors``: k-means on a seeded sample, ``lists_for(n)`` of them."""
    import faiss

    index = faiss.IndexIVFFlat(faiss.IndexFlatIP(dim), dim, lists_for(len(vectors)), faiss.METRIC_INNER_PRODUCT)
    index.cp.niter = 10
    index.train(np.ascontiguousarray(_sample(vectors, 40 * index.nlist), dtype=np.float32))
    return centroids_of(index)


def assign(centroids: np.ndarray, vectors: np.ndarray) -> np.ndarray:
    """The inverted list (nearest centroid by inner product) of each vector."""
    import faiss

    if not len(vectors):
        return np.zeros(0, np.int64)
    quantizer = faiss.IndexFlatIP(centroids.shape[1])
    quantizer.add(np.ascontiguousarray(centroids, dtype=np.float32))
    return quantizer.search(np.ascontiguousarray(vectors, dtype=np.float32), 1)[1][:, 0].astype(np.int64)


def assemble(dim: int, vectors: Sequence[np.ndarray], lists: Sequence[np.ndarray] | None = None,
             centroids: np.ndarray | None = None, nprobe: int = 1):
    """One FAISS index over the vector blocks in order (ids 0..n-1): flat when
    ``centroids`` is None, else IVF-Flat with each vector put straight into its
    given list. Each vector is copied once, into FAISS's own memory."""
    import faiss

    total = sum(len(v) for v in vectors)
    if centroids is None:
        index = faiss.IndexFlatIP(dim)
        if total:
            index.codes.resize(total * dim * 4)  # sized once, filled in place: no concatenated copy
            index.ntotal = total
            out = faiss.rev_swig_ptr(index.get_xb(), total * dim).reshape(total, dim)
            at = 0
            for block in vectors:
                out[at:at + len(block)] = block
                at += len(block)
        return index
    quantizer = faiss.IndexFlatIP(dim)
    quantizer.add(np.ascontiguousarray(centroids, dtype=np.float32))
    index = faiss.IndexIVFFlat(quantizer, dim, len(centroids), faiss.METRIC_INNER_PRODUCT)
    index.is_trained = True
    index.nprobe = nprobe
    index.make_direct_map()  # reconstruct(id) for rows found by other means (BM25)
    for block, where in zip(vectors, lists):
        if len(block):
            block = np.ascontiguousarray(block, dtype=np.float32)
            where = np.ascontiguousarray(where, dtype=np.int64)
            index.add_core(len(block), faiss.swig_ptr(block), None, faiss.swig_ptr(where))
    return index


def vectors_of(index) -> np.ndarray:
    """All vectors of ``index`` in id order: a view of a flat index's memory (valid
    while the index lives and is not changed), a copy for IVF."""
    import faiss

    n, dim = index.ntotal, index.d
    if not n:
        return np.zeros((0, dim), np.float32)
    flat = faiss.downcast_index(index)
    if isinstance(flat, faiss.IndexFlat):
        return faiss.rev_swig_ptr(flat.get_xb(), n * dim).reshape(n, dim)
    return index.reconstruct_n(0, n)


def lists_of(index) -> np.ndarray | None:
    """The inverted list of each vector of an IVF index in id order; None for flat."""
    import faiss

    ivf = faiss.try_extract_index_ivf(index)
    if ivf is None:
        return None
    if ivf.direct_map.type == faiss.DirectMap.Array:
        return faiss.vector_to_array(ivf.direct_map.array) >> 32  # entries are list << 32 | offset
    out = np.empty(ivf.ntotal, np.int64)
    for number in range(ivf.nlist):
        size = ivf.invlists.list_size(number)
        if size:
            out[faiss.rev_swig_ptr(ivf.invlists.get_ids(number), size)] = number
    return out


def centroids_of(index) -> np.ndarray | None:
    import faiss

    ivf = faiss.try_extract_index_ivf(index)
    return None if ivf is None else ivf.quantizer.reconstruct_n(0, ivf.nlist)


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
    """What the manifest records about a chunk index."""
    return kind(centroids_of(index), getattr(index, "nprobe", 0))


def kind(centroids: np.ndarray | None, nprobe: int) -> dict:
    """What the manifest records about the chunk index: flat, or IVF with these centroids."""
    if centroids is not None:
        return {"type": "ivf-flat", "nlist": int(len(centroids)), "nprobe": int(nprobe),
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
