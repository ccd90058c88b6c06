"""One settings record; per-call arguments override it."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Settings:
    # Embedding model: the bundled all-MiniLM-L6-v2 (384-d, 256-wordpiece window).
    model: str = "sentence-transformers/all-MiniLM-L6-v2"
    # Chunk size in cl100k tokens: big enough for context, small enough to stay on one point.
    chunk_tokens: int = 200
    # Sentences repeated at the start of the next chunk, so no answer falls between chunks.
    overlap_sentences: int = 1
    # Quotes returned per viewpoint.
    k: int = 3
    # Passages retrieved per viewpoint before picking answer sentences: 12 puts the answer
    # sentence among the candidates for 97% of SQuAD tune questions (8: 96%), for ~1 ms more.
    passages: int = 12
    # How answer sentences are scored. "features": the first scorer (rag/scorer.json:
    # similarities and word overlap). "reranker": its best candidates are read again,
    # question and sentence together, by the cross-encoder trained in this repo
    # (rag/rerank.py). Not the default: on the news dev test split it ranks no better at
    # the top (hit@1 0.326 vs 0.319) while abstaining far more (silent sides 0.83 vs 0.45,
    # answering sides 0.64 vs 0.85), and on the seed questions it is worse (hit@1 0.57 vs
    # 0.66), at ~6x the latency (BENCHMARKS.md, "Answer reranker").
    scorer: str = "features"
    # Candidates per viewpoint the reranker reads (the first scorer's best; at least k): each
    # costs ~2-5 ms of int8 model time per question on 2 cores (one pair a run, two at once).
    rerank: int = 6
    # A quote's score is the probability that it answers the question; below this a viewpoint
    # "does not address" it. None: the active scorer's own threshold, chosen with its
    # calibration on the news dev set's train split (rag/models/reranker.json; for
    # "features", rag/scorer.json's 0.2).
    min_score: float | None = None
    # Metadata field that makes the viewpoints (falls back to source, title, id).
    group_by: str = "viewpoint"
    # Columns listed in full; the rest are counted in ``more_viewpoints``.
    max_viewpoints: int = 12
    # Sentence vectors (the answer scorer's): "chunk" pools each sentence's token vectors
    # from its chunk's forward pass (one model pass per chunk, about 6x fewer texts than
    # encoding every sentence again); "separate" encodes each sentence on its own.
    sentence_vectors: str = "chunk"
    # Articles embedded per model call batch.
    batch_size: int = 32
    # Embedding backend: onnx-int8 (fastest, default for new indexes), onnx-fp32 (= torch's
    # vectors), torch; "auto" uses the one matching the index's vectors (see embedders.default_embedder).
    embedder: str = "auto"
    # Chunk vectors above which the index is IVF (approximate) instead of flat (exact): exact
    # search costs ~0.06 ms per 1k vectors per viewpoint on 2 cores, ~12 ms at this size.
    ann_threshold: int = 200_000
    # IVF lists scanned for an unfiltered search; a viewpoint holding a share s of the chunks
    # scans nprobe/s lists. 256 of 4096 at 1M vectors: recall@10 0.98, ~57 ms for 3 viewpoints
    # (BENCHMARKS.md, issue 7).
    ann_nprobe: int = 256
