"""Build and update: only new or changed articles are embedded; removed files leave the index."""
import importlib
import shutil

import pytest

import rag
from rag.store import commit
from rag.store import index as store
from rag.errors import EmptyCorpus, RagError
from tests.conftest import SEEDS


class Counting:
    """Wraps an embedder and records every text it is asked to encode."""

    def __init__(self, inner):
        self.inner, self.texts = inner, []
        self.name, self.dim, self.max_tokens = inner.name, inner.dim, inner.max_tokens

    def token_spans(self, texts):
        return self.inner.token_spans(texts)

    def encode(self, texts, progress=False):
        self.texts.extend(texts)
        return self.inner.encode(texts, progress)


def _corpus(tmp_path):
    corpus = tmp_path / "corpus"
    shutil.copytree(SEEDS, corpus)
    return corpus


def _article(folder, name, body, viewpoint="neutral"):
    (folder / name).write_text(f"---\ntitle: {name}\nviewpoint: {viewpoint}\n---\n{body}\n", encoding="utf-8")


def test_rebuild_embeds_only_new_and_changed_articles(tmp_path, hash_embedder):
    corpus, index = _corpus(tmp_path), tmp_path / "index"
    first = rag.build([corpus], index=index, embedder=hash_embedder, progress=False)
    assert len(first.added) == 2 and first.embedded_articles == 2 and first.version == "v000001"

    counting = Counting(hash_embedder)
    _article(corpus, "new.md", "A brand new article about fishing quotas. It has two sentences.")
    report = rag.build([corpus], index=index, embedder=counting, progress=False)
    assert report.added == ("new",) and report.embedded_articles == 1 and report.unchanged == 2
    new_text = (corpus / "new.md").read_text()
    assert counting.texts and all(t in new_text for t in counting.texts)  # nothing else re-embedded

    again = Counting(hash_embedder)
    report = rag.build([corpus], index=index, embedder=again, progress=False)
    assert report.version == "" and again.texts == []  # nothing changed: no new version, no model work


def test_removed_file_leaves_the_index_and_changed_file_is_replaced(tmp_path, hash_embedder):
    corpus, index = _corpus(tmp_path), tmp_path / "index"
    _article(corpus, "extra.md", "Fishing quotas were discussed at length.")
    rag.build([corpus], index=index, embedder=hash_embedder, progress=False)
    (corpus / "extra.md").unlink()
    _article(corpus, "independent-putin-playing-for-time.txt", "Entirely new text about farming subsidies.",
             viewpoint="pro-Ukraine")
    report = rag.build([corpus], index=index, embedder=hash_embedder, progress=False)
    assert report.removed == ("extra",) and report.changed == ("independent-putin-playing-for-time",)
    ix = rag.open(index, embedder=hash_embedder)
    assert "extra" not in ix.snapshot().row_of
    assert ix.article("independent-putin-playing-for-time").text == "Entirely new text about farming subsidies."
    cited = {q.doc_id for v in ix.ask("fishing quotas").viewpoints for q in v.answers}
    assert "extra" not in cited


def test_metadata_change_is_recorded_without_re_embedding(tmp_path, hash_embedder):
    corpus, index = _corpus(tmp_path), tmp_path / "index"
    rag.build([corpus], index=index, embedder=hash_embedder, progress=False)
    path = corpus / "rt-putin-trump-call-a-success.txt"
    path.write_text(path.read_text(encoding="utf-8").replace("viewpoint: pro-Russia", "viewpoint: Kremlin-friendly"),
                    encoding="utf-8")
    counting = Counting(hash_embedder)
    report = rag.build([corpus], index=index, embedder=counting, progress=False)
    assert report.changed == ("rt-putin-trump-call-a-success",) and counting.texts == []
    labels = {v.viewpoint for v in rag.open(index, embedder=hash_embedder).ask("Putin concessions").viewpoints}
    assert labels == {"pro-Ukraine", "Kremlin-friendly"}


def test_full_rebuild_embeds_everything(tmp_path, hash_embedder):
    corpus, index = _corpus(tmp_path), tmp_path / "index"
    rag.build([corpus], index=index, embedder=hash_embedder, progress=False)
    report = rag.build([corpus], index=index, full=True, embedder=hash_embedder, progress=False)
    assert report.embedded_articles == 2 and set(report.added) == set()  # same ids: nothing "added"
    assert report.version == "v000002"


def test_a_new_segment_of_just_the_embedded_articles_writes_their_arrays_as_they_are(tmp_path, hash_embedder,
                                                                                    monkeypatch):
    """Memory (issue 7): the vectors are the biggest thing a 12k build holds; the
    segment is written from the very arrays the model's output went into, not copies."""
    build = importlib.import_module("rag.build")  # ``rag.build`` the name is the function
    made, written = [], []
    real_embed, real_write = build.embed_articles, commit._write_segment
    monkeypatch.setattr(build, "embed_articles", lambda *a, **k: made.append(real_embed(*a, **k)) or made[-1])
    monkeypatch.setattr(commit, "_write_segment",
                        lambda folder, name, part: written.append(part) or real_write(folder, name, part))
    rag.build([SEEDS], index=tmp_path / "index", embedder=hash_embedder, progress=False)
    (part,), (embedded,) = written, made
    assert part.vectors is embedded.chunk_vectors and part.sentence_vectors is embedded.sentence_vectors
    assert len(part.vectors) == len(part.chunks) and len(part.sentence_vectors) == part.counts()["sentences"]


def test_add_and_remove_keep_the_rest(tmp_path, hash_embedder):
    index = tmp_path / "index"
    rag.build([SEEDS], index=index, embedder=hash_embedder, progress=False)
    extra = tmp_path / "extra"
    extra.mkdir()
    _article(extra, "one.md", "One more article on trade.")
    ix = rag.Index(index, embedder=hash_embedder)
    assert ix.add([extra]).added == ("one",)
    assert len(ix.snapshot().articles) == 3
    assert ix.remove(["one"]).removed == ("one",)
    assert len(ix.snapshot().articles) == 2
    with pytest.raises(RagError, match="no article with id 'ghost'"):
        ix.remove(["ghost"])


def test_empty_corpus_is_an_error_and_keeps_the_old_index(tmp_path, hash_embedder):
    index = tmp_path / "index"
    rag.build([SEEDS], index=index, embedder=hash_embedder, progress=False)
    before = store.current_version(index)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(EmptyCorpus):
        rag.build([empty], index=index, embedder=hash_embedder, progress=False)
    assert store.current_version(index) == before
    assert len(rag.open(index, embedder=hash_embedder).snapshot().articles) == 2


def test_update_starts_from_the_loaded_version_without_reading_it_again(tmp_path, hash_embedder, monkeypatch):
    index = tmp_path / "index"
    rag.build([SEEDS], index=index, embedder=hash_embedder, progress=False)
    ix = rag.open(index, embedder=hash_embedder)
    reads = []
    real_read = store.read_segment
    monkeypatch.setattr(store, "read_segment",
                        lambda folder, *a, **k: reads.append(folder.name) or real_read(folder, *a, **k))
    extra = tmp_path / "extra"
    extra.mkdir()
    _article(extra, "one.md", "One more article on trade.")
    assert ix.add([extra]).added == ("one",)
    assert reads == []  # the live version was already in memory
    assert {"one", "rt-putin-trump-call-a-success"} <= set(ix.snapshot().row_of)
    assert reads == ["s000002"]  # the reader, after the write: only the new segment


def test_update_from_a_stale_reader_keeps_what_another_writer_added(tmp_path, hash_embedder):
    index = tmp_path / "index"
    rag.build([SEEDS], index=index, embedder=hash_embedder, progress=False)
    stale, other = rag.open(index, embedder=hash_embedder), rag.open(index, embedder=hash_embedder)
    for name, ix in (("first", other), ("second", stale)):
        folder = tmp_path / name
        folder.mkdir()
        _article(folder, f"{name}.md", f"The {name} article on trade and tariffs.")
        ix.add([folder])
    assert {"first", "second"} <= set(rag.open(index, embedder=hash_embedder).snapshot().row_of)


def test_questions_after_an_update_do_not_wait_for_the_new_bm25(tmp_path, hash_embedder, monkeypatch):
    """Right after a switch to a new version, its BM25 is built in the background;
    meanwhile questions are answered by dense retrieval at once (the new article
    included), then by hybrid retrieval once it is ready."""
    import threading

    from rag import lexical

    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a.md").write_text("---\nviewpoint: left\n---\nThe council approved the new tram line on Monday.\n")
    (docs / "b.md").write_text("---\nviewpoint: right\n---\nThe mayor criticised the tram line budget.\n")
    rag.build([docs], index=tmp_path / "index", embedder=hash_embedder, progress=False)
    ix = rag.open(tmp_path / "index", embedder=hash_embedder)
    ix.ask("tram line")  # the first version's BM25 is built and used
    release, real_build = threading.Event(), lexical.of_terms

    def slow_build(terms):
        release.wait(30)
        return real_build(terms)

    monkeypatch.setattr(lexical, "of_terms", slow_build)
    (docs / "c.md").write_text("---\nviewpoint: left\n---\nA zyzzyva beetle closed the tram depot.\n")
    ix.add([docs / "c.md"], progress=False)
    result = {}
    asker = threading.Thread(target=lambda: result.update(answer=ix.ask("zyzzyva beetle")))
    asker.start()
    asker.join(20)  # the new BM25 stays blocked until released below: an ask that waited would still be here
    assert not asker.is_alive() and not release.is_set()
    answer = result["answer"]
    left = next(v for v in answer.viewpoints if v.viewpoint == "left")
    assert left.answers[0].doc_id == "c"
    release.set()
    snap = ix.snapshot()
    for _ in range(100):
        if lexical.ready(snap) is not None:
            break
        threading.Event().wait(0.05)
    assert lexical.ready(snap) is not None
    ix.ask("zyzzyva beetle")
    assert ix.store._stale_lexical is None  # hybrid again
