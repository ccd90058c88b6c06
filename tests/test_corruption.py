"""Damage each index file in each way (flip a byte, truncate, append, delete),
change the model id or dimension, point CURRENT at a missing version: every
case gives a clear outcome, either an error naming the file or a fall back to
the previous good version with a warning; never a crash, a wrong vector or a
citation of the wrong chunk. FAISS's -1 padding never becomes a citation."""
import hashlib
import json
import os
import subprocess
import sys
from dataclasses import replace

import numpy as np
import pytest

import rag
from rag.store import commit
from rag.store import index as store
from rag.embed import HashEmbedder
from rag.errors import IndexCorrupt, RagError
from rag.store.segment import CATALOG_FILE, TERM_FILES
from rag.settings import Settings
from rag.types import Span
from tests.conftest import ROOT, SEEDS

FILES = ["CURRENT", "manifest.json", *store.FILES, *TERM_FILES, CATALOG_FILE]
QUESTION = "Did Russia make big concessions?"


def flip(path):
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


def truncate(path):
    path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])


def append(path):
    path.write_bytes(path.read_bytes() + b"\x00garbage\n")


def delete(path):
    path.unlink()


DAMAGE = {"flip": flip, "truncate": truncate, "append": append, "delete": delete}


def target(index, name):
    """The file ``name`` of the live version: its manifest, or a file of its newest segment
    (in ``two_versions`` that segment is the live version's own; the first is shared)."""
    live = store.current_version(index)
    if name in ("CURRENT", "manifest.json"):
        return index / name if name == "CURRENT" else index / live / name
    newest = json.loads((index / live / "manifest.json").read_text())["segments"][-1]["name"]
    return index / "segments" / newest / name


def shown(index, path):
    """How messages name a file: its path from the index folder on."""
    return str(path.relative_to(index.parent))


@pytest.fixture()
def two_versions(tmp_path, hash_embedder):
    """v000001 (the seeds) and v000002 (the seeds and one more article, live)."""
    index = tmp_path / "index"
    rag.build([SEEDS], index=index, embedder=hash_embedder, progress=False)
    extra = tmp_path / "extra.md"
    extra.write_text("---\nviewpoint: neutral\n---\nGrain exports rose sharply this year.\n", encoding="utf-8")
    rag.Index(index, embedder=hash_embedder).add([extra], progress=False)
    return index


def assert_answers_verbatim(ix):
    snap = ix.snapshot()
    for view in ix.ask(QUESTION).viewpoints:
        for quote in view.answers:
            assert snap.articles[snap.row_of[quote.doc_id]].text[quote.start:quote.end] == quote.text


@pytest.mark.parametrize("how", DAMAGE)
@pytest.mark.parametrize("name", FILES)
def test_damaged_live_version_falls_back_to_the_previous_one_saying_so(two_versions, hash_embedder, name, how):
    path = target(two_versions, name)
    DAMAGE[how](path)
    snap = store.load(two_versions)
    if name == "CURRENT":
        # which version was live is not known for sure: the newest good one, with a warning
        assert snap.version in ("v000001", "v000002") and "CURRENT" in snap.warning
    else:
        assert snap.version == "v000001" and "using the previous version v000001" in snap.warning
        assert shown(two_versions, path) in snap.warning and "\n" not in snap.warning
        problems = store.check_version(two_versions, "v000002")
        assert any(f"{shown(two_versions, path)}:" in p for p in problems)
        assert problems[-1] == "readers use the previous version v000001 instead (it passes its checks)"
    ix = rag.open(two_versions, embedder=hash_embedder)
    assert_answers_verbatim(ix)  # still answers, and from the version it loaded


@pytest.mark.parametrize("how", DAMAGE)
@pytest.mark.parametrize("name", FILES[1:])
def test_damaged_only_version_is_a_clear_error(tmp_path, hash_embedder, name, how):
    index = tmp_path / "index"
    rag.build([SEEDS], index=index, embedder=hash_embedder, progress=False)
    DAMAGE[how](target(index, name))
    with pytest.raises(IndexCorrupt) as err:
        rag.open(index, embedder=hash_embedder).ask(QUESTION)
    message = str(err.value)
    assert "\n" not in message and (name in message) and "rebuild with rag build --full" in message
    # an update refuses to build on it; a full rebuild recovers
    with pytest.raises(IndexCorrupt, match="rebuild with rag build --full"):
        rag.Index(index, embedder=hash_embedder).add([SEEDS], progress=False)
    report = rag.build([SEEDS], index=index, full=True, embedder=hash_embedder, progress=False)
    assert report.version and not store.load(index).warning
    assert_answers_verbatim(rag.open(index, embedder=hash_embedder))


@pytest.mark.parametrize("seed", range(3))
def test_any_single_flipped_byte_anywhere_is_caught(tmp_path, hash_embedder, seed):
    index = tmp_path / "index"
    rag.build([SEEDS], index=index, embedder=hash_embedder, progress=False)
    rng = np.random.default_rng(seed)
    for name in FILES[1:]:
        path = target(index, name)
        original = path.read_bytes()
        for _ in range(20):
            data = bytearray(original)
            data[rng.integers(len(data))] ^= 1 << int(rng.integers(8))
            path.write_bytes(bytes(data))
            with pytest.raises(IndexCorrupt, match=name):
                store.load(index)
        path.write_bytes(original)
    assert store.load(index).version == "v000001"


@pytest.mark.parametrize("how", DAMAGE)
def test_damaged_pointer_to_an_intact_only_version(tmp_path, hash_embedder, how):
    index = tmp_path / "index"
    rag.build([SEEDS], index=index, embedder=hash_embedder, progress=False)
    if how == "flip":  # one hex digit of the manifest checksum changed: it cannot vouch for v000001
        pointer = bytearray((index / "CURRENT").read_bytes())
        middle = len(pointer) // 2
        pointer[middle] = ord("0") if pointer[middle] != ord("0") else ord("1")
        (index / "CURRENT").write_bytes(bytes(pointer))
    else:
        DAMAGE[how](index / "CURRENT")
    if how == "flip":
        with pytest.raises(IndexCorrupt, match="manifest.json: does not match the checksum in CURRENT"):
            rag.open(index, embedder=hash_embedder)
    else:  # unreadable or missing pointer: the newest good version, saying so
        snap = store.load(index)
        assert snap.version == "v000001" and f"{index}/CURRENT: " in snap.warning
        assert_answers_verbatim(rag.open(index, embedder=hash_embedder))
    # either way the next full build makes a clean, vouched-for version
    assert rag.build([SEEDS], index=index, full=True, embedder=hash_embedder, progress=False).version == "v000002"
    assert not store.load(index).warning


def test_pointer_to_a_missing_version(two_versions, hash_embedder):
    live, sha = store.read_pointer(two_versions)
    (two_versions / "CURRENT").write_text(f"v000009 {sha}\n")
    snap = store.load(two_versions)
    # the version CURRENT vouches for by its manifest checksum is found despite the wrong name
    assert snap.version == "v000002" and "v000009/manifest.json: CURRENT names a version that is gone" in snap.warning
    (two_versions / "CURRENT").write_text("v000009\n")
    assert store.load(two_versions).version == "v000002"  # no checksum: the newest older good one
    for version in ("v000001", "v000002"):
        os.rename(two_versions / version, two_versions / f"gone-{version}")
    with pytest.raises(IndexCorrupt, match="v000009/manifest.json: CURRENT names a version that is gone"):
        rag.open(two_versions, embedder=hash_embedder)


def test_a_different_model_or_dimension_is_a_clear_error(tmp_path, hash_embedder):
    index = tmp_path / "index"
    rag.build([SEEDS], index=index, embedder=hash_embedder, progress=False)
    other_dim = HashEmbedder(dim=32)
    with pytest.raises(RagError, match=r"built with hash-bow \(64-d\) but asked with hash-bow \(32-d\); "
                                       r"rebuild with rag build --full"):
        rag.open(index, embedder=other_dim)
    other_model = HashEmbedder()
    other_model.name = "another-model"
    with pytest.raises(RagError, match=r"built with hash-bow \(64-d\) but asked with another-model \(64-d\)"):
        rag.open(index, embedder=other_model).ask(QUESTION)
    with pytest.raises(IndexCorrupt, match=r"not another-model \(64-d\); rebuild with rag build --full"):
        rag.Index(index, embedder=other_model).add([SEEDS], progress=False)
    # --full rebuilds with the new model
    assert rag.build([SEEDS], index=index, full=True, embedder=other_dim, progress=False).embedded_articles == 2
    assert rag.open(index, embedder=other_dim).snapshot().dim == 32


def rewrite_manifest(index, **changes):
    """Edit the live manifest and re-sign it in CURRENT, as a consistent (but wrong) writer would."""
    live = store.current_version(index)
    path = index / live / "manifest.json"
    manifest = dict(json.loads(path.read_text()), **changes)
    path.write_text(json.dumps(manifest))
    (index / "CURRENT").write_text(f"{live} {hashlib.sha256(path.read_bytes()).hexdigest()}\n")


def test_a_manifest_whose_model_or_dimension_changed(tmp_path, hash_embedder):
    index = tmp_path / "index"
    rag.build([SEEDS], index=index, embedder=hash_embedder, progress=False)
    rewrite_manifest(index, model="sentence-transformers/all-MiniLM-L6-v2")
    with pytest.raises(RagError, match="built with sentence-transformers/all-MiniLM-L6-v2 .* asked with hash-bow"):
        rag.open(index, embedder=hash_embedder)
    rewrite_manifest(index, model=hash_embedder.name, dim=384)
    with pytest.raises(IndexCorrupt, match="vector dimension does not match the manifest's 384"):
        store.load(index)


def test_records_that_point_outside_their_article_are_refused(tmp_path, hash_embedder):
    """Checksums vouch for the bytes; these checks vouch that a (buggy) writer's
    rows cannot cite text outside their article."""
    index = tmp_path / "index"
    rag.build([SEEDS], index=index, embedder=hash_embedder, progress=False)
    snap = store.load(index)
    part = snap.part(snap.segments[0])
    bad = part.chunks.copy()
    bad[0, 2] = len(part.articles[bad[0, 0]].text) + 5
    with commit.writer_lock(index):
        commit.write(index, dict(snap.manifest, previous="v000001"), [replace(part, chunks=bad)])
    loaded = store.load(index)
    assert loaded.version == "v000001" and "a chunk's span or sentences lie outside its article" in loaded.warning
    assert "segments/s000002: " in loaded.warning


@pytest.mark.parametrize("span", [(-1, 5), (5, 5), (0, 10**6)])
def test_sentence_spans_outside_their_article_are_refused(tmp_path, hash_embedder, span):
    """Spans are checked all at once when a segment is read (they become tuples only when asked for)."""
    index = tmp_path / "index"
    rag.build([SEEDS], index=index, embedder=hash_embedder, progress=False)
    snap = store.load(index)
    part = snap.part(snap.segments[0])
    spans = [list(s) for s in part.sentences]
    spans[1][2] = Span(*span)  # the second article's third sentence
    with commit.writer_lock(index):
        commit.write(index, dict(snap.manifest, previous="v000001"), [replace(part, sentences=spans)])
    loaded = store.load(index)
    assert loaded.version == "v000001" and "a sentence span lies outside its text" in loaded.warning
    assert f"article {part.articles[1].id!r}" in loaded.warning
    assert list(loaded.sentences) == list(snap.sentences)


def test_a_damaged_segment_shared_by_both_versions_is_named_for_each(two_versions, hash_embedder):
    """The seeds' segment is used by v000001 and v000002: both are damaged, so
    there is nothing to fall back to; `rag check` names the file for either."""
    shared = two_versions / "segments" / "s000001" / "sentences.npy"
    flip(shared)
    for version in ("v000001", "v000002"):
        problems = store.check_version(two_versions, version)
        assert f"{shared}: fails its checksum (corrupted)" in problems
    with pytest.raises(IndexCorrupt) as err:
        rag.open(two_versions, embedder=hash_embedder)
    assert str(err.value) == (f"{shared}: fails its checksum (corrupted); no older good version to fall "
                              "back to: rebuild with rag build --full")
    rag.build([SEEDS], index=two_versions, full=True, embedder=hash_embedder, progress=False)
    assert_answers_verbatim(rag.open(two_versions, embedder=hash_embedder))


def test_an_old_format_index_is_named_and_a_full_rebuild_works_even_when_it_is_unreadable(tmp_path, hash_embedder):
    """A format-1 index is refused in one line that names rag upgrade (tests/test_upgrade.py
    converts a real one); this one has no articles.jsonl, so only --full can replace it."""
    index = tmp_path / "index"
    (index / "v000001").mkdir(parents=True)
    manifest = json.dumps({"format": 1, "model": hash_embedder.name, "dim": 64, "files": {}}).encode()
    (index / "v000001" / "manifest.json").write_bytes(manifest)
    (index / "CURRENT").write_text(f"v000001 {hashlib.sha256(manifest).hexdigest()}\n")
    with pytest.raises(IndexCorrupt) as err:
        rag.open(index, embedder=hash_embedder)
    assert f"{index}/v000001/manifest.json: an index in the old format 1" in str(err.value)
    assert "rag upgrade --index" in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(IndexCorrupt) as err:
        rag.build([SEEDS], index=index, embedder=hash_embedder, progress=False)
    assert "articles.jsonl: missing" in str(err.value) and str(err.value).endswith("rebuild with rag build --full")
    report = rag.build([SEEDS], index=index, full=True, embedder=hash_embedder, progress=False)
    assert report.version == "v000002" and len(store.load(index).articles) == 2


def test_faiss_minus_one_padding_never_becomes_a_citation(tmp_path, hash_embedder, monkeypatch):
    index = tmp_path / "index"
    rag.build([SEEDS], index=index, embedder=hash_embedder, progress=False)
    ix = rag.open(index, embedder=hash_embedder, settings=Settings(passages=500, k=50))
    snap = ix.snapshot()
    vectors = snap.chunk_vectors()
    query = hash_embedder.encode([QUESTION])
    _, ids = snap.chunk_index.search(query, len(vectors) + 5)
    assert (ids[0] == -1).sum() == 5  # FAISS pads with -1 when asked for more than it holds
    assert_answers_verbatim(ix)


def test_ivf_minus_one_padding_never_becomes_a_citation(tmp_path, hash_embedder, monkeypatch):
    import faiss

    pytest.importorskip("rag.store.ann", reason="IVF chunk indexes arrive with rag/store/ann.py")
    index = tmp_path / "index"
    rag.build([SEEDS], index=index, embedder=hash_embedder, progress=False)
    ix = rag.open(index, embedder=hash_embedder, settings=Settings(passages=500, k=50))
    snap = ix.snapshot()
    vectors = snap.chunk_vectors()
    query = hash_embedder.encode([QUESTION])
    # An IVF index probing one list of two returns -1 for every slot it cannot fill.
    ivf = faiss.IndexIVFFlat(faiss.IndexFlatIP(snap.dim), snap.dim, 2, faiss.METRIC_INNER_PRODUCT)
    ivf.train(np.tile(vectors, (40, 1)))
    ivf.add(vectors)
    ivf.nprobe = 1
    ivf.make_direct_map()
    assert (ivf.search(query, len(vectors))[1] == -1).any()
    padded = replace(snap, chunk_index=ivf)
    monkeypatch.setattr(ix, "snapshot", lambda: padded)
    answer = ix.ask(QUESTION)
    for view in answer.viewpoints:
        for quote in view.answers:
            assert quote.doc_id in snap.row_of
            assert snap.articles[snap.row_of[quote.doc_id]].text[quote.start:quote.end] == quote.text


@pytest.mark.slow
def test_cli_check_and_ask_on_damaged_indexes_with_the_real_model(writable_seed_index, model, tmp_path):
    """End to end: `rag check` names the damaged file; `rag ask` answers from
    the previous version with a warning, or fails in one line when there is none."""
    def cli(*args):
        return subprocess.run([sys.executable, "-m", "rag", *map(str, args)], cwd=ROOT, capture_output=True,
                              text=True, timeout=300, env=dict(os.environ, HF_HUB_OFFLINE="1"))

    index = writable_seed_index
    flip(index / "segments" / "s000001" / "vectors.npy")
    check = cli("check", "--index", index)
    assert check.returncode == 1
    assert check.stderr.splitlines() == [f"rag: check: {index}/segments/s000001/vectors.npy: fails its checksum "
                                         "(corrupted)"]
    ask = cli("ask", QUESTION, "--index", index, "--json")
    assert ask.returncode == 1 and ask.stdout == ""
    assert ask.stderr.splitlines() == [f"rag: error: {index}/segments/s000001/vectors.npy: fails its checksum "
                                       "(corrupted); no older good version to fall back to: "
                                       "rebuild with rag build --full"]
    assert rag.build([SEEDS], index=index, full=True, embedder=model, progress=False).version == "v000002"
    extra = tmp_path / "extra.md"
    extra.write_text("---\nviewpoint: neutral\n---\nGrain exports rose sharply this year.\n", encoding="utf-8")
    assert rag.Index(index, embedder=model).add([extra], progress=False).version == "v000003"
    own = target(index, "sentences.npy")  # the segment of the added article, v000003's own
    truncate(own)
    ask = cli("ask", QUESTION, "--index", index, "--json")
    assert ask.returncode == 0, ask.stderr
    assert f"{own}: has " in ask.stderr and "using the previous version v000002" in ask.stderr
    answer = json.loads(ask.stdout)
    assert {v["viewpoint"] for v in answer["viewpoints"]} == {"pro-Russia", "pro-Ukraine"}
    foreign = tmp_path / "hash-index"
    rag.build([SEEDS], index=foreign, embedder=HashEmbedder(), progress=False)
    wrong = cli("ask", QUESTION, "--index", foreign)
    [line] = wrong.stderr.splitlines()
    assert wrong.returncode == 1 and line.startswith(f"rag: error: {foreign}: built with hash-bow (64-d) but asked "
                                                     "with sentence-transformers/all-MiniLM-L6-v2")
    assert line.endswith("(384-d); rebuild with rag build --full")
