"""Segments (issue 7): an update writes one small new segment and a manifest,
never rewriting or re-reading the segments it shares with the version before;
removals are tombstones; merges and compaction keep answers the same; the
segments no kept version lists are collected."""
import hashlib
import io
import json
import os
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import pytest

import rag
from rag.store import commit
from rag.store import index as store
from rag.store.assemble import MAX_SEGMENTS, merge_runs
from rag.lexical import for_snapshot
from rag.lexical import tokens
from rag.store.segment import CATALOG_FILE, FILES, IVF_FILES, TERM_FILES, Part, decode, encode, writers
from rag.types import Article, Span

QUESTIONS = ["tax budget inflation", "troops ukraine russia", "school police court", "grain exports ports"]
WORDS = ("tax border climate vaccine election court senate tariff energy school police "
         "budget inflation housing troops ukraine russia china market union grain ports").split()


def write_article(folder: Path, name: str, body: str, viewpoint: str = "left") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.md"
    path.write_text(f"---\ntitle: {name}\nviewpoint: {viewpoint}\n---\n{body}\n", encoding="utf-8")
    return path


def body(n: int, sentences: int = 6) -> str:
    rng = np.random.default_rng(n)
    return " ".join(" ".join(rng.choice(WORDS, 10)).capitalize() + "." for _ in range(sentences))


@pytest.fixture()
def corpus(tmp_path):
    """30 articles over three viewpoints."""
    folder = tmp_path / "corpus"
    for n in range(30):
        write_article(folder, f"base-{n:02d}", body(n), ("left", "center", "right")[n % 3])
    return folder


@pytest.fixture()
def ix(corpus, tmp_path, hash_embedder):
    rag.build([corpus], index=tmp_path / "index", embedder=hash_embedder, progress=False)
    return rag.open(tmp_path / "index", embedder=hash_embedder)


def manifest(index: Path, version: str = "") -> dict:
    return json.loads((index / (version or store.current_version(index)) / "manifest.json").read_text())


ALL_FILES = (*FILES, *TERM_FILES, CATALOG_FILE)  # a flat segment's files


def segment_files(index: Path) -> dict:
    return {str(p.relative_to(index)): (p.stat().st_ino, p.stat().st_mtime_ns, p.stat().st_size)
            for p in (index / "segments").rglob("*") if p.is_file()}


def answers(ix) -> list:
    for_snapshot(ix.snapshot())  # BM25 ready: the answers do not depend on when it finished building
    return [asdict(ix.ask(q)) for q in QUESTIONS]


def test_an_add_writes_one_small_segment_and_leaves_the_others_untouched(ix, tmp_path, monkeypatch):
    index = ix.root
    before = segment_files(index)
    written, read = [], []
    real_write, real_read = commit._write_durably, store.read_file

    def spy(path, data):
        entry = real_write(path, data)
        written.append((path, entry["size"]))
        return entry

    monkeypatch.setattr(commit, "_write_durably", spy)
    monkeypatch.setattr(store, "read_file", lambda path, *a, **k: read.append(path) or real_read(path, *a, **k))
    report = ix.add([write_article(tmp_path / "new", "salmon", "Salmon quotas were halved.", "center")],
                    progress=False)
    assert report.version == "v000002" and report.embedded_articles == 1
    segments = manifest(index)["segments"]
    assert [s["name"] for s in segments] == ["s000001", "s000002"]
    assert segments[0] == manifest(index, "v000001")["segments"][0]  # shared, checksums carried over
    assert segments[1]["counts"] == {"articles": 1, "chunks": 1, "sentences": 1}
    # what was written: the new segment's files, the manifest, the pointer; nothing of s000001
    names = sorted(f"{p.parent.name.split('-')[1] if p.parent.name.startswith('.tmp') else p.parent.name}/{p.name}"
                   for p, _ in written)
    assert names == sorted([*(f"s000002/{f}" for f in ALL_FILES), "v000002/manifest.json",
                            f"{index.name}/CURRENT.tmp"])
    assert sum(n for _, n in written) < 0.1 * sum(size for _, _, size in before.values())
    # nothing of the old segment was read (hence hashed) again, and its files are the very same
    assert not [p for p in read if "segments" in p.parts]
    after = segment_files(index)
    assert {k: v for k, v in after.items() if k.startswith("segments/s000001/")} == before
    assert ix.ask("salmon quotas halved").viewpoints[0].answers[0].doc_id == "salmon"
    # the writer's next snapshot read the new segment only
    assert [p.parent.name for p in read if "segments" in p.parts] == ["s000002"] * len(ALL_FILES)


def test_a_remove_is_a_tombstone_and_the_article_leaves_every_answer(ix, hash_embedder):
    index = ix.root
    cited = {q.doc_id for a in map(ix.ask, QUESTIONS) for v in a.viewpoints for q in v.answers}
    gone = sorted(cited)[0]
    before = segment_files(index)
    assert ix.remove([gone]).version == "v000002"
    assert segment_files(index) == before  # no segment written: the manifest says what is deleted
    assert manifest(index)["segments"][0]["deleted"] == [gone]
    for reader in (ix, rag.open(index, embedder=hash_embedder)):  # held in memory, and loaded afresh
        assert gone not in reader.snapshot().row_of and len(reader.snapshot().articles) == 29
        assert all(q.doc_id != gone for a in map(reader.ask, QUESTIONS) for v in a.viewpoints for q in v.answers)
    assert store.check_version(index, "v000002") == []


def test_a_changed_article_moves_to_the_new_segment(ix, corpus, hash_embedder):
    write_article(corpus, "base-04", "Grain exports collapsed and ports stayed closed.", "center")
    report = rag.build([corpus], index=ix.root, embedder=hash_embedder, progress=False)
    assert report.changed == ("base-04",) and report.embedded_articles == 1
    segments = manifest(ix.root)["segments"]
    assert segments[0]["deleted"] == ["base-04"] and segments[1]["counts"]["articles"] == 1
    assert ix.article("base-04").text == "Grain exports collapsed and ports stayed closed."
    top = ix.ask("grain exports collapsed ports closed").viewpoints[0].answers[0]
    assert top.doc_id == "base-04" and top.text in ix.article("base-04").text


def test_merges_and_compaction_keep_answers_identical(ix, corpus, hash_embedder):
    for n in range(12):  # one article per update: small segments that merge as they grow
        ix.add([write_article(corpus, f"more-{n:02d}", body(100 + n), ("left", "right")[n % 2])], progress=False)
        assert len(manifest(ix.root)["segments"]) <= MAX_SEGMENTS
    segments = manifest(ix.root)["segments"]
    assert len(segments) > 1 and any(s["counts"]["articles"] > 1 for s in segments[1:])  # some were merged
    assert sum(s["counts"]["articles"] for s in segments) == 42
    merged = answers(ix)
    # a full rebuild (every article embedded again, one segment) answers exactly the same
    report = ix.rebuild([corpus], full=True, progress=False)
    assert report.embedded_articles == 42 and len(manifest(ix.root)["segments"]) == 1
    assert answers(ix) == merged
    # removing over a quarter of a segment's articles rewrites it without them
    removed = [f"base-{n:02d}" for n in range(0, 30, 2)]
    ix.remove(removed)
    [rewritten] = manifest(ix.root)["segments"]
    assert rewritten["deleted"] == [] and rewritten["counts"]["articles"] == 27
    compacted = answers(ix)
    for path in corpus.glob("base-*.md"):
        if path.stem in removed:
            path.unlink()
    fresh = rag.build([corpus], index=ix.root.parent / "fresh", embedder=hash_embedder, progress=False)
    assert fresh.embedded_articles == 27
    assert answers(rag.open(ix.root.parent / "fresh", embedder=hash_embedder)) == compacted


def test_segments_of_dropped_versions_are_collected(ix, tmp_path):
    index = ix.root
    for n in range(5):
        ix.add([write_article(tmp_path / "new", f"n{n}", body(200 + n))], progress=False)
        ix.remove([f"base-{n:02d}"])
    kept = store.list_versions(index)
    used = {s["name"] for v in kept for s in manifest(index, v)["segments"]}
    assert len(kept) == 2 and set(os.listdir(index / "segments")) == used
    assert "s000002" not in used  # the first added article's segment was merged away, and deleted


def test_merge_policy():
    assert merge_runs([100, 10, 1]) == [[0], [1], [2]]
    assert merge_runs([100, 10, 3]) == [[0], [1, 2]]  # 3 >= 10/4
    assert merge_runs([100, 20, 5]) == [[0, 1, 2]]  # 5 joins 20, and 25 >= 100/4
    assert merge_runs([0, 0, 7]) == [[2]]  # segments with no live rows are dropped
    sizes = [5 ** (20 - i) for i in range(12)]  # no ratio merge, but too many segments
    assert len(merge_runs(sizes)) == MAX_SEGMENTS


def test_ivf_segments_share_centroids_and_load_the_same_from_disk(tmp_path, hash_embedder):
    import faiss

    corpus = tmp_path / "long"
    for n in range(30):  # about 100 chunks: two IVF lists (lists_for), before and after the add
        write_article(corpus, f"base-{n:02d}", body(n, sentences=40), ("left", "center", "right")[n % 3])
    settings = rag.Settings(ann_threshold=50, ann_nprobe=4)
    ix = rag.Index(tmp_path / "ivf", settings, hash_embedder)
    ix.rebuild([corpus], progress=False)
    assert manifest(ix.root)["chunk_index"]["type"] == "ivf-flat"
    first = faiss.downcast_index(ix.snapshot().chunk_index)
    centroids = first.quantizer.reconstruct_n(0, first.nlist)
    assert first.nlist == 2 and 80 < first.ntotal < 119
    ix.add([write_article(tmp_path / "new", "salmon", "Salmon quotas were halved. " + body(7))], progress=False)
    ix.remove(["base-03"])
    segments = manifest(ix.root)["segments"]
    assert len(segments) == 2 and segments[0]["files"]["centroids.npy"] == segments[1]["files"]["centroids.npy"]
    held = ix.snapshot()  # built from the one before and the new segment
    fresh = rag.Index(ix.root, settings, hash_embedder)  # read from disk
    snap = fresh.snapshot()
    assert isinstance(faiss.downcast_index(snap.chunk_index), faiss.IndexIVFFlat)
    np.testing.assert_array_equal(faiss.downcast_index(snap.chunk_index).quantizer.reconstruct_n(0, first.nlist),
                                  centroids)
    np.testing.assert_array_equal(held.chunk_vectors(), snap.chunk_vectors())
    assert answers(ix) == answers(fresh)
    # below the threshold again: compacted into one flat segment
    ix.remove([f"base-{n:02d}" for n in range(4, 30)])
    assert manifest(ix.root)["chunk_index"]["type"] == "flat" and len(manifest(ix.root)["segments"]) == 1
    assert isinstance(faiss.downcast_index(ix.snapshot().chunk_index), faiss.IndexFlatIP)


def test_word_counts_are_stored_per_segment_and_loading_never_tokenizes(ix, corpus, tmp_path, hash_embedder,
                                                                         monkeypatch):
    """BM25 comes from the counts each segment stores, cut to the live rows
    (removed and replaced articles leave), and scores as bm25s does from the text."""
    from rag import lexical

    ix.add([write_article(tmp_path / "new", "salmon", "Salmon quotas were halved by the tax court.", "center")],
           progress=False)
    ix.remove(["base-03"])
    write_article(corpus, "base-04", body(99), "center")
    ix.add([corpus / "base-04.md"], progress=False)
    assert all(set(TERM_FILES) <= set(s["files"]) for s in manifest(ix.root)["segments"])

    def no_counting(texts):
        raise AssertionError("a stored segment was tokenized again")

    monkeypatch.setattr(lexical.Terms, "of", staticmethod(no_counting))
    snap = store.load(ix.root)  # a fresh reader
    stored = for_snapshot(snap)
    monkeypatch.undo()
    texts = [snap.articles[int(a)].text[int(s):int(e)] for a, s, e in snap.chunks[:, :3]]
    counted = lexical.build(texts)
    assert [stored.chunk_words(row) for row in range(len(texts))] == [set(lexical.tokens(t)) for t in texts]
    for question in QUESTIONS + ["salmon quotas halved"]:
        assert np.allclose(stored.scores(question), counted.scores(question), atol=1e-5)
        assert stored.idf(question.split()[0]) == pytest.approx(counted.idf(question.split()[0]))


def test_segments_without_word_counts_answer_the_same_and_upgrade_stores_them(ix, hash_embedder):
    """An index from the previous release has no word counts in its segments:
    it loads (counting from the text) and ``rag upgrade`` adds them, embedding nothing."""
    index = ix.root
    before = answers(ix)
    live = store.current_version(index)
    data = manifest(index)
    for entry in data["segments"]:
        entry["files"] = {k: v for k, v in entry["files"].items() if k not in TERM_FILES}
    raw = json.dumps(data, indent=1).encode("utf-8")
    (index / live / "manifest.json").write_bytes(raw)
    (index / "CURRENT").write_text(f"{live} {hashlib.sha256(raw).hexdigest()}\n")
    old = rag.open(index, embedder=hash_embedder)
    assert [s.terms for s in old.snapshot().segments] == [None]
    assert answers(old) == before
    report = old.upgrade(progress=False)
    assert report.version and report.embedded_articles == 0
    segments = manifest(index)["segments"]
    assert all(set(TERM_FILES) <= set(s["files"]) for s in segments)
    assert all(s.terms is not None for s in store.load(index).segments)
    assert answers(rag.open(index, embedder=hash_embedder)) == before
    assert not old.upgrade(progress=False).version  # nothing left to do
def test_streamed_segment_files_are_the_bytes_encode_makes():
    """commit writes segments through ``writers`` (no file's bytes held whole in
    memory); a reader and old checksums expect ``encode``'s bytes exactly."""
    text = "Caf\u00e9 prices rose.\u2028 Ports reopened."
    articles = [Article(id="a", text=text, title="t", meta={"k": "\u00fc"}, content_hash="h"),
                Article(id="b", text="One. Two.")]
    sentences = [(Span(0, 17), Span(19, len(text))), (Span(0, 4), Span(5, 9))]
    chunks = np.array([[0, 0, len(text), 0, 1], [1, 0, 9, 0, 1]], np.int64)
    rng = np.random.default_rng(0)
    part = Part(articles, sentences, chunks, rng.standard_normal((2, 8)).astype(np.float32),
                rng.standard_normal((4, 8)).astype(np.float16))
    ivf = replace(part, lists=np.array([1, 0], np.int32), centroids=rng.standard_normal((2, 8)))
    big = replace(part, chunks=np.zeros((6000, 5), np.int64),  # arrays written in several 16 MB pieces
                  vectors=rng.standard_normal((6000, 1000)).astype(np.float32))

    def whole(array, dtype) -> bytes:  # what np.save makes of the array at once (the format before streaming)
        out = io.BytesIO()
        np.save(out, np.ascontiguousarray(array.astype(dtype)), allow_pickle=False)
        return out.getvalue()

    for p in (part, ivf, big):
        streamed = {}
        for name, write in writers(p).items():
            out = io.BytesIO()
            write(out)
            streamed[name] = out.getvalue()
        assert streamed == encode(p)
        ivf_files = IVF_FILES if p.lists is not None else ()
        assert list(streamed) == [*FILES, *ivf_files, *TERM_FILES, CATALOG_FILE]  # the manifest's order
        lines = [json.dumps(dict(asdict(a), sentences=[list(x) for x in spans]), ensure_ascii=False) + "\n"
                 for a, spans in zip(p.articles, p.sentences)]
        assert streamed["articles.jsonl"] == "".join(lines).encode("utf-8")
        arrays = {"chunks.npy": (p.chunks, np.int64), "vectors.npy": (p.vectors, np.float32),
                  "sentences.npy": (p.sentence_vectors, np.float16)}
        if p.lists is not None:
            arrays.update({"lists.npy": (p.lists, np.int64), "centroids.npy": (p.centroids, np.float32)})
        assert all(streamed[name] == whole(array, dtype) for name, (array, dtype) in arrays.items())
        terms = decode(streamed).terms
        texts = [a.text[s:e] for a, s, e in ((p.articles[int(r)], int(s), int(e)) for r, s, e, _, _ in p.chunks)]
        assert [{terms.vocab[i] for i in terms.ids[x:y]} for x, y in zip(terms.rows, terms.rows[1:])] == \
            [set(tokens(t)) for t in texts]


def test_word_counts_from_another_tokenizer_version_are_counted_again():
    """A segment whose counts were made by other tokenizer rules is read as having none
    (BM25 then counts its text), never mixed with this version's words."""
    from rag.store import segment

    articles = [Article(id="a", text="Salmon quotas were halved.")]
    part = Part(articles, [(Span(0, 26),)], np.array([[0, 0, 26, 0, 0]], np.int64),
                np.zeros((1, 4), np.float32), np.zeros((1, 4), np.float16))
    blobs = encode(part)
    assert segment.decode(blobs).terms.vocab == ("salmon", "quota", "halv")
    header = f"#terms {segment.TERMS_VERSION}".encode()
    older = dict(blobs, **{"vocab.txt": blobs["vocab.txt"].replace(header, b"#terms 0")})
    assert segment.decode(older).terms is None
