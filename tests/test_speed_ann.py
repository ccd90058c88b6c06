"""ANN above the size threshold (issue 7): the index switches to IVF, says so in
its manifest, and per-viewpoint retrieval still filters before it ranks."""
from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest

WORDS = ("tax border climate vaccine election court senate tariff energy school police "
         "budget inflation housing troops ukraine russia china market union").split()
VIEWPOINTS = {"left": 40, "center": 40, "right": 40, "fringe": 1}  # fringe: a tiny share


def _corpus(folder: Path) -> Path:
    rng = random.Random(7)
    lines = []
    for viewpoint, count in VIEWPOINTS.items():
        for n in range(count):
            sentences = [" ".join(rng.choice(WORDS) for _ in range(12)).capitalize() + "."
                         for _ in range(rng.randint(3, 9))]
            lines.append({"id": f"{viewpoint}-{n}", "text": " ".join(sentences), "viewpoint": viewpoint})
    path = folder / "corpus.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return path


def _manifest(index: Path) -> dict:
    from rag.store.index import current_version

    return json.loads((index / current_version(index) / "manifest.json").read_text())


@pytest.fixture()
def flat_and_ivf(tmp_path, hash_embedder):
    import rag

    corpus = _corpus(tmp_path)
    flat = rag.Index(tmp_path / "flat", rag.Settings(), hash_embedder)
    ivf = rag.Index(tmp_path / "ivf", rag.Settings(ann_threshold=50, ann_nprobe=1), hash_embedder)
    flat.rebuild([corpus], progress=False)
    ivf.rebuild([corpus], progress=False)
    return flat, ivf, tmp_path


def test_manifest_records_the_index_type(flat_and_ivf):
    flat, ivf, _ = flat_and_ivf
    assert _manifest(flat.root)["chunk_index"] == {"type": "flat", "metric": "inner_product"}
    recorded = _manifest(ivf.root)["chunk_index"]
    assert recorded["type"] == "ivf-flat" and recorded["nlist"] > 1 and recorded["nprobe"] == 1
    import faiss

    assert isinstance(faiss.downcast_index(ivf.snapshot().chunk_index), faiss.IndexIVFFlat)


@pytest.mark.parametrize("question", ["tax budget inflation", "troops ukraine russia", "school police court"])
def test_ivf_answers_match_flat_and_stay_in_their_viewpoint(flat_and_ivf, question):
    flat, ivf, _ = flat_and_ivf
    a, b = flat.ask(question), ivf.ask(question)
    assert [v.viewpoint for v in a.viewpoints] == [v.viewpoint for v in b.viewpoints]
    assert "fringe" in [v.viewpoint for v in b.viewpoints]  # one article of 121: still searched
    for va, vb in zip(a.viewpoints, b.viewpoints):
        assert [q.doc_id for q in vb.answers] == [q.doc_id for q in va.answers]
        assert all(q.doc_id.startswith(vb.viewpoint + "-") for q in vb.answers)


def test_small_viewpoint_probes_more_lists():
    import faiss

    from rag.store.ann import build_index, search_params

    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((4000, 16)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    index = build_index(vectors, 16, threshold=1000, nprobe=2)
    few, most = np.arange(10), np.arange(3000)
    assert search_params(index, few, faiss.IDSelectorBatch(few)).nprobe == index.nlist  # exhaustive
    assert search_params(index, most, faiss.IDSelectorBatch(most)).nprobe == 3
    scores, ids = index.search(vectors[:1], 5, params=search_params(index, few, faiss.IDSelectorBatch(few)))
    exact = np.argsort(-(vectors[few] @ vectors[0]))[:5]
    assert ids[0].tolist() == few[exact].tolist()


def test_adding_to_an_ivf_index_keeps_its_centroids(flat_and_ivf, hash_embedder):
    import faiss

    _, ivf, folder = flat_and_ivf
    before = faiss.downcast_index(ivf.snapshot().chunk_index)
    centroids = before.quantizer.reconstruct_n(0, before.nlist)
    article = folder / "new.md"
    article.write_text("---\nviewpoint: left\n---\nA new tax on tariff energy budget. " * 3)
    report = ivf.add([article], progress=False)
    assert report.embedded_articles == 1
    after = faiss.downcast_index(ivf.snapshot().chunk_index)
    assert after.ntotal > before.ntotal
    np.testing.assert_array_equal(after.quantizer.reconstruct_n(0, after.nlist), centroids)
    assert ivf.ask("new tax tariff").viewpoints  # still answers
