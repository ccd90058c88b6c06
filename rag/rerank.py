"""Rerank: a cross-encoder that reads the question and a candidate sentence
together and scores whether the sentence answers it.

The answer stage's first scorer (answer.py) sees the question and a sentence
only through their separate vectors and shared words, so it cannot tell "Did
Russia make big concessions?" is answered by "Putin has given the least he
could possibly get away with". This model can: it is the bundled
all-MiniLM-L6-v2 cut to its first layers and fine-tuned on (question,
sentence, answers it?) pairs by ``bench/train_reranker.py`` (model card:
``rag/models/reranker.md``). It runs on ONNX Runtime, int8, shipped inside the
package; it loads on the first question, and questions never import torch.

Its raw score (a logit) becomes a probability through a calibration fitted on
the news dev questions' train split (``bench/calibrate_reranker.py``), stored
with the threshold below which a side "does not address" the question in
``rag/models/reranker.json``.
"""
from __future__ import annotations

import functools
import json
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

MODELS = Path(__file__).with_name("models")
MODEL_FILE = MODELS / "reranker-int8.onnx"
CONFIG_FILE = MODELS / "reranker.json"


@dataclass(frozen=True)
class Calibration:
    """P(sentence answers) = sigmoid(a * reranker logit + b * first-scorer logit + c) (Platt
    scaling over both scores: the first scorer still knows the sentence's passage and
    neighbours, which the reranker does not read)."""

    a: float
    b: float
    c: float
    threshold: float  # a side whose best quotes reach this addresses the question

    def probability(self, logits: np.ndarray, first: np.ndarray) -> np.ndarray:
        first = np.clip(first, 1e-6, 1 - 1e-6)
        z = self.a * logits + self.b * np.log(first / (1 - first)) + self.c
        return 1.0 / (1.0 + np.exp(-z))


def segment(sentence: str, context: str = "") -> str:
    """What the model reads after the question: the candidate, then (for a model trained
    with context) the sentence before it, behind a [SEP]; truncation cuts the context first.

    >>> segment("That body ignored it.", "The House met.")
    'That body ignored it. [SEP] The House met.'
    """
    return f"{sentence} [SEP] {context}" if context else sentence


def in_order(sentences: Sequence[str]) -> list[str]:
    """``segment`` of each sentence with the one before it, for sentences in document order."""
    return [segment(s, before) for before, s in zip([""] + list(sentences[:-1]), sentences)]


class Reranker:
    """The shipped cross-encoder on ONNX Runtime.

    >>> from rag.rerank import Reranker
    >>> r = Reranker()                                             # doctest: +SKIP
    >>> r.logits("Was there a prisoner swap?", ["An exchange of 175 prisoners of war took place."])  # doctest: +SKIP
    array([3.1...], dtype=float32)
    """

    def __init__(self, model_file: str | os.PathLike = MODEL_FILE, config_file: str | os.PathLike = CONFIG_FILE,
                 threads: int = 0):
        self.model_file = Path(model_file)
        self.config = json.loads(Path(config_file).read_text(encoding="utf-8"))
        self.max_length = int(self.config["max_length"])
        self.context = bool(self.config.get("context", False))  # trained to read the sentence before (segment)
        self.calibration = Calibration(**self.config["calibration"])
        self.threads = threads or len(os.sched_getaffinity(0))
        self._session = None
        self._tokenizer = None
        self._lock = threading.Lock()

    def _load(self):
        with self._lock:
            if self._session is None:
                import onnxruntime as ort
                from tokenizers import Tokenizer

                from .embed import MiniLM

                # the reranker keeps the bundled model's vocabulary: its tokenizer file serves
                tokenizer = Tokenizer.from_file(str(Path(MiniLM()._path) / "tokenizer.json"))
                tokenizer.no_padding()
                tokenizer.enable_truncation(self.max_length, strategy="only_second")
                options = ort.SessionOptions()
                # One thread per run, ``threads`` runs at once (logits): a single pair is too
                # small to split across cores (18 pairs: 43 ms this way, 55 ms with 2 threads a run).
                options.intra_op_num_threads = 1
                options.inter_op_num_threads = 1
                options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
                self._session = ort.InferenceSession(str(self.model_file), options,
                                                     providers=["CPUExecutionProvider"])
                self._tokenizer = tokenizer
        return self._session, self._tokenizer

    def logits(self, question: str, sentences: Sequence[str]) -> np.ndarray:
        """One raw score per sentence (higher: more likely to answer ``question``)."""
        if not len(sentences):
            return np.zeros(0, dtype=np.float32)
        session, tokenizer = self._load()
        # One pair a run: int8 activations are quantized per batch, so padding and batchmates
        # moved a pair's logit by up to ~0.35 (tests/test_rerank.py); alone, it never moves.
        def one(e) -> float:
            feed = {"input_ids": np.array([e.ids], np.int64), "attention_mask": np.ones((1, len(e.ids)), np.int64),
                    "token_type_ids": np.array([e.type_ids], np.int64)}
            return float(session.run(None, feed)[0].reshape(-1)[0])

        encoded = tokenizer.encode_batch([(question, s) for s in sentences])
        if self.threads == 1 or len(encoded) == 1:
            return np.array([one(e) for e in encoded], dtype=np.float32)
        return np.array(list(_pool(self.threads).map(one, encoded)), dtype=np.float32)

    def probability(self, question: str, sentences: Sequence[str], first: np.ndarray) -> np.ndarray:
        """Calibrated P(each sentence answers), given the first scorer's probabilities."""
        return self.calibration.probability(self.logits(question, sentences), np.asarray(first, np.float64))


@functools.lru_cache(maxsize=None)
def _pool(threads: int):
    from concurrent.futures import ThreadPoolExecutor  # ORT releases the GIL while it runs

    return ThreadPoolExecutor(threads, thread_name_prefix="rerank")


@functools.lru_cache(maxsize=2)
def load(model_file: Path = MODEL_FILE, config_file: Path = CONFIG_FILE) -> Reranker:
    return Reranker(model_file, config_file)


# ---- making the shipped file (needs torch; bench/train_reranker.py --export) ----------------

def export(trained: str | os.PathLike, target: str | os.PathLike = MODEL_FILE) -> Path:
    """Export a trained model folder (``save_pretrained``) to ONNX and quantize it to int8:
    every MatMul per output channel and the word embeddings (the largest tensor), so the
    file stays small enough to ship inside the package."""
    import tempfile
    import warnings

    import torch
    from transformers import AutoModelForSequenceClassification

    from .onnx_embed import INPUTS, OPSET, _atomic, _quantize

    class Logits(torch.nn.Module):
        def __init__(self, model):
            super().__init__()
            self.model = model

        def forward(self, input_ids, attention_mask, token_type_ids):
            return self.model(input_ids=input_ids, attention_mask=attention_mask,
                              token_type_ids=token_type_ids).logits

    model = AutoModelForSequenceClassification.from_pretrained(trained, attn_implementation="eager").eval()
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        fp32 = Path(tmp) / "fp32.onnx"
        example = tuple(torch.ones(2, 8, dtype=torch.long) for _ in INPUTS)
        axes = {name: {0: "batch", 1: "tokens"} for name in INPUTS} | {"logits": {0: "batch"}}
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            torch.onnx.export(Logits(model), example, str(fp32), dynamo=False, input_names=list(INPUTS),
                              output_names=["logits"], dynamic_axes=axes, opset_version=OPSET)
        _atomic(target, lambda temp: _quantize(fp32, temp, ("MatMul", "Gather")))
    return target

