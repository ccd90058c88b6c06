"""The ONNX Runtime embedding path (issue 7): same vectors as torch, the
exported file reused, and ``rag ask`` answering without importing torch."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import ROOT, SEEDS

SENTENCES = ["Did Russia make big concessions?",
             "The senator said the tax bill would raise the deficit by $1.9 trillion over ten years.",
             "Short.",
             "Critics argue that the new border policy separates families and violates asylum law, "
             "while supporters say it restores order at the southern border after years of neglect.",
             "How do I bake sourdough bread?"]


@pytest.fixture(scope="session")
def xdg_cache(tmp_path_factory) -> Path:
    """A private cache home: the export happens here once per test session."""
    return tmp_path_factory.mktemp("xdg-cache")


@pytest.fixture(scope="session")
def onnx_models(xdg_cache):
    from rag.onnx_embed import OnnxMiniLM

    cache = xdg_cache / "rag-viewpoints" / "onnx"
    return {"fp32": OnnxMiniLM(quantized=False, cache=cache), "int8": OnnxMiniLM(quantized=True, cache=cache)}


@pytest.mark.slow
@pytest.mark.parametrize("precision, floor", [("fp32", 0.9999), ("int8", 0.98)])
def test_onnx_vectors_agree_with_torch(model, onnx_models, precision, floor):
    ours = onnx_models[precision].encode(SENTENCES)
    torch_vectors = model.encode(SENTENCES)
    assert ours.shape == (len(SENTENCES), 384) and ours.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)
    cosine = (ours * torch_vectors).sum(axis=1)
    assert cosine.min() >= floor, cosine


@pytest.mark.slow
def test_batching_by_length_does_not_change_vectors(onnx_models):
    embedder = onnx_models["fp32"]
    together = embedder.encode(SENTENCES)  # padded to the longest in one batch
    alone = np.stack([embedder.encode([s])[0] for s in SENTENCES])
    np.testing.assert_allclose(together, alone, atol=2e-5)
    assert embedder.encode([]).shape == (0, 384)


@pytest.mark.slow
def test_text_past_the_window_is_cut_like_sentence_transformers(model, onnx_models):
    long = " ".join(["viewpoint"] * 400)  # 400 wordpieces: past the 256 window
    cosine = float(onnx_models["fp32"].encode([long])[0] @ model.encode([long])[0])
    assert cosine > 0.9999


@pytest.mark.slow
def test_exported_file_is_reused(onnx_models, monkeypatch):
    from rag import onnx_embed

    paths = {p: m.ensure_model_file() for p, m in onnx_models.items()}
    stamps = {p: path.stat().st_mtime_ns for p, path in paths.items()}

    def no_export(*args):
        raise AssertionError("exported again although the file was there")

    monkeypatch.setattr(onnx_embed, "_export", no_export)
    monkeypatch.setattr(onnx_embed, "_quantize", no_export)
    for precision, path in paths.items():
        again = onnx_embed.OnnxMiniLM(quantized=precision == "int8", cache=path.parent)
        assert again.ensure_model_file() == path
        assert again.encode(["still works"]).shape == (1, 384)
        assert path.stat().st_mtime_ns == stamps[precision]
    assert not list(paths["fp32"].parent.glob(".*.part"))  # no temporaries left behind


def test_model_file_name_is_keyed_by_precision_and_versions(tmp_path):
    from rag.onnx_embed import OnnxMiniLM

    fp32, int8 = OnnxMiniLM(quantized=False, cache=tmp_path), OnnxMiniLM(quantized=True, cache=tmp_path)
    assert fp32.model_file.parent == tmp_path and fp32.model_file != int8.model_file
    assert "fp32" in fp32.model_file.name and "int8" in int8.model_file.name
    assert fp32.name == "sentence-transformers/all-MiniLM-L6-v2"  # same vectors as torch: same name
    assert int8.name != fp32.name  # int8 vectors differ slightly: an index records which


def _write_manifest(root: Path, model: str) -> None:
    (root / "v000001").mkdir(parents=True)
    (root / "v000001" / "manifest.json").write_text(json.dumps({"model": model}))
    (root / "CURRENT").write_text("v000001\n")


@pytest.mark.parametrize("model, expected", [("sentence-transformers/all-MiniLM-L6-v2", "onnx-fp32"),
                                             ("sentence-transformers/all-MiniLM-L6-v2+int8", "onnx-int8"),
                                             (None, "onnx-int8")])
def test_auto_embedder_matches_the_index(tmp_path, model, expected):
    from rag.embedders import default_embedder
    from rag.settings import Settings
    from rag.store.index import built_with

    if model:
        _write_manifest(tmp_path, model)
    assert built_with(tmp_path) == model
    assert default_embedder(Settings(), built_with(tmp_path)).backend == expected
    assert default_embedder(Settings(embedder="torch"), built_with(tmp_path)).backend == "torch"


def test_unknown_embedder_is_one_clear_error():
    from rag.embedders import make_embedder
    from rag.errors import RagError

    with pytest.raises(RagError, match="unknown embedder 'gpu'.*onnx-int8"):
        make_embedder("gpu")


ASK_AND_REPORT = """
import json, sys
from rag.cli import main
code = main(["ask", "Did Russia make big concessions?", "--index", sys.argv[1], "--json"])
heavy = sorted(m for m in ("torch", "sentence_transformers", "transformers") if m in sys.modules)
print(json.dumps({"code": code, "heavy": heavy, "onnxruntime": "onnxruntime" in sys.modules}), file=sys.stderr)
"""


def _ask_in_subprocess(index: Path, xdg_cache: Path) -> tuple[dict, dict]:
    env = dict(os.environ, XDG_CACHE_HOME=str(xdg_cache), HF_HUB_OFFLINE="1")
    done = subprocess.run([sys.executable, "-c", ASK_AND_REPORT, str(index)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stderr.strip().splitlines()[-1])
    assert report["code"] == 0, done.stderr
    return json.loads(done.stdout), report


@pytest.mark.slow
def test_rag_ask_on_a_torch_built_index_does_not_import_torch(seed_index_dir, onnx_models, xdg_cache):
    onnx_models["fp32"].ensure_model_file()  # a machine that has answered before has the file
    answer, report = _ask_in_subprocess(seed_index_dir, xdg_cache)
    assert report == {"code": 0, "heavy": [], "onnxruntime": True}
    assert {v["viewpoint"] for v in answer["viewpoints"]} == {"pro-Russia", "pro-Ukraine"}


@pytest.mark.slow
def test_int8_index_records_its_embedder_and_is_asked_with_it(tmp_path, onnx_models, xdg_cache, model):
    import rag
    from rag.errors import RagError

    folder = tmp_path / "index"
    rag.build([SEEDS], index=folder, embedder=onnx_models["int8"], progress=False)
    manifest = rag.open(folder, embedder=onnx_models["int8"]).snapshot().manifest
    assert manifest["embedder"] == "onnx-int8"
    assert manifest["model"] == "sentence-transformers/all-MiniLM-L6-v2+int8"
    answer, report = _ask_in_subprocess(folder, xdg_cache)
    assert report["heavy"] == [] and report["code"] == 0
    top = {v["viewpoint"]: v["answers"][0]["text"] for v in answer["viewpoints"]}
    assert "concessions" in top["pro-Russia"]
    with pytest.raises(RagError, match="rebuild with rag build --full"):
        rag.open(folder, embedder=model)  # fp32 queries against int8 vectors: refused, not mixed


# ---- sentence vectors from the chunk's own forward pass ----------------------

CHUNK = ("Putin agreed only to a limited ceasefire. He refused the full one that Kyiv had accepted. "
         "The call lasted about ninety minutes.")


def _sentence_spans(text: str) -> list[tuple[int, int]]:
    from rag.chunk import split_sentences

    return [(s.start, s.end) for s in split_sentences(text)]


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["fp32", "int8", "torch"])
def test_encode_chunks_gives_the_chunk_vector_and_one_vector_per_sentence(model, onnx_models, backend):
    embedder = model if backend == "torch" else onnx_models[backend]
    texts = [CHUNK, SENTENCES[3]]
    spans = [_sentence_spans(CHUNK), [(0, len(SENTENCES[3]))]]
    chunks, pooled = embedder.encode_chunks(texts, spans)
    np.testing.assert_allclose(chunks, embedder.encode(texts), atol=2e-5)  # the same forward pass
    assert [p.shape for p in pooled] == [(3, 384), (1, 384)]
    np.testing.assert_allclose(np.linalg.norm(pooled[0], axis=1), 1.0, atol=1e-5)
    # each sentence's pooled vector is nearest to that sentence encoded alone
    alone = embedder.encode([CHUNK[s:e] for s, e in spans[0]])
    assert ((pooled[0] @ alone.T).argmax(axis=1) == np.arange(3)).all()
    # a span covering the whole text pools every token but [CLS]/[SEP]: close to the text's vector
    assert float(pooled[1][0] @ chunks[1]) > 0.97


@pytest.mark.slow
def test_torch_and_onnx_fp32_pool_the_same_sentence_vectors(model, onnx_models):
    spans = [_sentence_spans(CHUNK)]
    _, torch_pooled = model.encode_chunks([CHUNK], spans)
    _, onnx_pooled = onnx_models["fp32"].encode_chunks([CHUNK], spans)
    assert (torch_pooled[0] * onnx_pooled[0]).sum(axis=1).min() > 0.9999


@pytest.mark.slow
def test_build_embeds_each_chunk_once_and_no_sentence_alone(tmp_path, onnx_models):
    """The default sentence_vectors="chunk": the model sees chunks only, and the
    stored sentence vectors are the pooled ones (one per sentence, unit length)."""
    import rag
    from rag.build import chunk_settings

    embedder = onnx_models["int8"]
    seen = []
    original = embedder.encode_chunks

    def counting(texts, spans, progress=False):
        seen.extend(texts)
        return original(texts, spans, progress)

    embedder.encode_chunks = counting
    embedder.encode = lambda texts, progress=False: pytest.fail(f"encoded alone: {texts[:2]}")
    try:
        rag.build([SEEDS], index=tmp_path / "index", embedder=embedder, progress=False)
    finally:
        del embedder.encode_chunks, embedder.encode
    snap = rag.open(tmp_path / "index", embedder=embedder).snapshot()
    assert len(seen) == len(snap.chunks)
    assert len(snap.sentence_vectors) == sum(len(s) for s in snap.sentences)
    np.testing.assert_allclose(np.linalg.norm(snap.sentence_vectors.astype(np.float32), axis=1), 1.0, atol=2e-3)
    assert snap.manifest["chunking"] == chunk_settings(rag.Settings(), embedder)
    assert snap.manifest["chunking"]["sentence_vectors"] == "chunk"
