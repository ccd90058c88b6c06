"""How a reader puts an IVF chunk index together from segments: the approaches
compared on random unit vectors (the cost depends on sizes, not values).

    python bench/ivf_assembly_bench.py --vectors 250000 --segments 2

Segments store each vector's inverted list (rag/segment.py), so the index is
filled list by list with no centroid search (``ann.assemble``). The
alternatives: re-assign every vector to its nearest centroid on load, or
store one serialized IVF index per segment and combine them with
``merge_from`` (which cannot carry the direct map ``reconstruct`` needs, so
it is rebuilt after the merge).
"""
from __future__ import annotations

import argparse
import time

import numpy as np

from common import write_result


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--vectors", type=int, default=250_000)
    ap.add_argument("--segments", type=int, default=2)
    ap.add_argument("--dim", type=int, default=384)
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()

    import faiss

    from rag.store import ann

    rng = np.random.default_rng(0)
    x = rng.standard_normal((args.vectors, args.dim)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    started = time.perf_counter()
    centroids = ann.train(x, args.dim)
    train_s = time.perf_counter() - started
    lists = ann.assign(centroids, x)
    cuts = np.linspace(0, len(x), args.segments + 1).astype(int)
    blocks = [slice(a, b) for a, b in zip(cuts[:-1], cuts[1:])]
    timings = {}

    started = time.perf_counter()
    stored = ann.assemble(args.dim, [x[b] for b in blocks], [lists[b] for b in blocks], centroids, 256)
    timings["stored lists (`ann.assemble`, `add_core`)"] = time.perf_counter() - started

    started = time.perf_counter()
    ann.assemble(args.dim, [x[b] for b in blocks], [ann.assign(centroids, x[b]) for b in blocks], centroids, 256)
    timings["re-assign every vector on load"] = time.perf_counter() - started

    serialized = []
    for b in blocks:
        one = ann.assemble(args.dim, [x[b]], [lists[b]], centroids, 256)
        one.set_direct_map_type(faiss.DirectMap.NoMap)  # merge_from refuses indexes with a direct map
        serialized.append(faiss.serialize_index(one))
    started = time.perf_counter()
    merged = faiss.deserialize_index(serialized[0])
    for blob in serialized[1:]:
        merged.merge_from(faiss.deserialize_index(blob), merged.ntotal)
    merged.make_direct_map()
    timings["per-segment IVF files, deserialize + `merge_from`"] = time.perf_counter() - started

    started = time.perf_counter()
    ann.vectors_of(stored), ann.lists_of(stored)
    reuse_s = time.perf_counter() - started
    same = np.array_equal(stored.search(x[:20], 10)[1], merged.search(x[:20], 10)[1])
    rows = "\n".join(f"| {name} | {seconds:.2f} |" for name, seconds in timings.items())
    body = (f"{args.vectors:,} random {args.dim}-d unit vectors in {args.segments} segments, "
            f"{len(centroids)} lists (trained once: {train_s:.0f} s); both built indexes return the same "
            f"neighbours: {same}.\n\n| putting the IVF index together | s |\n|---|---|\n{rows}\n\n"
            f"Taking a held index's vectors and lists back out (a reader reusing its segments): {reuse_s:.2f} s.")
    print(body)
    if not args.no_write:
        write_result("IVF chunk index from segments", body)


if __name__ == "__main__":
    main()
