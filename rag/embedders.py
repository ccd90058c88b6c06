"""Which embedder to use: the bundled MiniLM on one of its backends. Kept apart
from embed.py so that embed (the torch model and pooling) and onnx_embed (which
builds on it) import in one direction only."""
from __future__ import annotations

from .embed import Embedder, MiniLM
from .errors import RagError

BACKENDS = ("onnx-int8", "onnx-fp32", "torch")
DEFAULT_BACKEND = "onnx-int8"  # ~2x torch at the same answer quality (BENCHMARKS.md, issue 7)


def make_embedder(backend: str, batch_size: int = 32) -> Embedder:
    """The bundled MiniLM on one backend: ``onnx-int8``, ``onnx-fp32`` or ``torch``.

    >>> make_embedder("onnx-fp32").name == make_embedder("torch").name  # the same vectors
    True
    """
    if backend == "torch":
        return MiniLM(batch_size=batch_size)
    if backend in ("onnx-int8", "onnx-fp32"):
        from .onnx_embed import OnnxMiniLM  # onnxruntime loads only when chosen

        return OnnxMiniLM(quantized=backend == "onnx-int8", batch_size=batch_size)
    raise RagError(f"unknown embedder {backend!r}; choose one of auto, {', '.join(BACKENDS)}")


def default_embedder(settings=None, model: str | None = None) -> Embedder:
    """The embedder ``settings.embedder`` names. ``auto`` picks one whose vectors
    match ``model``, the name the store says built it (int8 for an int8 index; fp32
    ONNX, which equals torch, for a torch or fp32 index, so questions never need
    torch), else the default.

    >>> default_embedder().backend
    'onnx-int8'
    >>> default_embedder(model="sentence-transformers/all-MiniLM-L6-v2").backend
    'onnx-fp32'
    """
    backend = getattr(settings, "embedder", "auto")
    batch_size = getattr(settings, "batch_size", 32)
    if backend == "auto":
        backend = {MiniLM.name: "onnx-fp32", MiniLM.name + "+int8": "onnx-int8"}.get(model, DEFAULT_BACKEND)
    return make_embedder(backend, batch_size)
