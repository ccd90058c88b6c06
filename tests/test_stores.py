"""The two stores keep one contract: the local folder and a Milvus server (the real
milvus-lite server of conftest's ``milvus_server``) give the same quotes, the same
reports and the same errors-as-one-line. Milvus's own promises are tested here too:
its errors, read-your-writes across app servers, and a writer that dies mid-add.

BM25 on milvus-lite is never compared by score (its scores are negative, its IDF per
segment): only the quotes, spans and ranks that come out of the fusion."""
import json
import os
import socket
import subprocess
import sys

import pytest

import rag
from rag.answer import content_terms
from rag.errors import RagError
from tests.conftest import ROOT, SEEDS, small_collection
from tests.test_build import Counting, _article, _corpus

pytestmark = pytest.mark.slow
SEED_QUESTIONS = [json.loads(line)["q"] for line in (ROOT / "tests/data/seed-questions.jsonl").open()]


def quotes(answer):
    """What a reader sees: each side in order, whether it abstains, its quotes' citations."""
    return [(v.viewpoint, v.abstained, [(q.doc_id, q.start, q.end) for q in v.answers]) for v in answer.viewpoints]


def test_the_seed_questions_get_the_same_quotes_on_both_stores(seed_index, milvus_seed_index):
    """Every seed question: the same sides in the same order, the same abstentions, the same
    first quote per side; every quote the same on 51 of the 52. The one difference (a side's
    third quote) is milvus-lite's BM25: it counts word statistics within the searched
    viewpoint or segment, not the whole collection, so a BM25 rank can differ and the fusion
    with it (a Milvus cluster keeps collection-wide statistics, as the local store does)."""
    same = 0
    for question in SEED_QUESTIONS:
        local, milvus = seed_index.ask(question), milvus_seed_index.ask(question)
        first = [(v, abstained, cited[:1]) for v, abstained, cited in quotes(local)]
        assert [(v, abstained, cited[:1]) for v, abstained, cited in quotes(milvus)] == first, question
        same += quotes(milvus) == quotes(local)
    assert same >= 51
    assert milvus_seed_index.article("rt-putin-trump-call-a-success") == seed_index.article(
        "rt-putin-trump-call-a-success")


def test_grouping_by_another_metadata_field_and_a_date_range(any_seed_index, seed_index):
    answer = any_seed_index.ask("Did Russia make big concessions?", group_by="kind")
    assert quotes(answer) == quotes(seed_index.ask("Did Russia make big concessions?", group_by="kind"))
    assert {v.viewpoint for v in answer.viewpoints} == {"opinion", "editorial"}
    inside = any_seed_index.ask("Is Putin playing for time?", filters=rag.Filters(date_from="2025-03-01",
                                                                                 date_to="3/31/25"))
    assert len(inside.viewpoints) == 2
    before = any_seed_index.ask("Is Putin playing for time?", filters=rag.Filters(date_to="2025-03-18"))
    assert before.viewpoints == ()


def test_the_same_updates_give_the_same_reports_on_both_stores(tmp_path, milvus_server, hash_embedder):
    """Build, add one, change one's text, change one's metadata, remove one, a dry run:
    both stores embed exactly the same texts, report the same thing and end with the same
    word counts (the answer scorer's idf of every word in the corpus)."""
    runs = {}
    for name, where in (("local", str(tmp_path / "index")), ("milvus", f"{milvus_server}/same_reports")):
        corpus = _corpus(tmp_path / name)
        counting = Counting(hash_embedder)
        steps = [rag.build([corpus], index=where, embedder=counting, progress=False)]
        ix = rag.Index(where, embedder=counting)
        _article(corpus, "new.md", "A brand new article about fishing quotas. It has two sentences.")
        steps.append(ix.add([corpus / "new.md"], dry_run=True, progress=False))
        steps.append(ix.add([corpus / "new.md"], progress=False))
        _article(corpus, "new.md", "The fishing quotas were cut again. Boats stayed home.")
        steps.append(ix.rebuild([corpus], progress=False))
        path = corpus / "rt-putin-trump-call-a-success.txt"
        path.write_text(path.read_text().replace("viewpoint: pro-Russia", "viewpoint: Kremlin"), encoding="utf-8")
        steps.append(ix.rebuild([corpus], progress=False))
        steps.append(ix.remove(["new"], dry_run=True))
        steps.append(ix.remove(["new"]))
        steps.append(ix.rebuild([corpus], progress=False))  # new.md is still in the folder: back it comes
        steps.append(ix.rebuild([corpus], progress=False))  # nothing changed
        every_word = " ".join(sorted(ix.article(a.id).text for a in ix.articles())) + " trawler"  # + one no article has
        lexical = ix.retrieve(every_word).lexical
        runs[name] = (steps, counting.texts, ix.stats(), {a.id: a.content_hash for a in ix.articles()},
                      quotes(ix.ask("fishing quotas")), {t: lexical.idf(t) for t in content_terms(every_word)})
    (local, local_texts, local_stats, local_held, local_quotes, local_idf), milvus = runs["local"], runs["milvus"]
    assert milvus[0] == local  # every report: ids, counts, articles embedded, chunks, versions
    assert milvus[1] == local_texts  # exactly the same texts went through the model
    assert [r.embedded_articles for r in local] == [2, 1, 1, 1, 0, 0, 0, 1, 0]
    assert local[1].version == "" and local[5].version == "" and local[-1].version == ""  # dry runs, no-op
    assert milvus[3] == local_held and milvus[4] == local_quotes
    assert milvus[5] == pytest.approx(local_idf) and len(local_idf) > 100  # every word's count, after all that
    for key in ("version", "articles", "chunks", "sentences", "viewpoints"):
        assert milvus[2][key] == local_stats[key], key
    assert milvus[2]["viewpoints"] == {"Kremlin": 1, "pro-Ukraine": 1, "neutral": 1}


def test_a_removed_article_is_never_cited_or_shown_again(writable_seed_store, model):
    ix = rag.Index(writable_seed_store, embedder=model)
    report = ix.remove(["rt-putin-trump-call-a-success"])
    assert report.removed == ("rt-putin-trump-call-a-success",) and report.unchanged == 1
    answer = ix.ask("Did Russia make big concessions?")
    assert [v.viewpoint for v in answer.viewpoints] == ["pro-Ukraine"]
    with pytest.raises(RagError, match="no article with id 'rt-putin-trump-call-a-success'"):
        ix.article("rt-putin-trump-call-a-success")
    assert ix.stats()["articles"] == 1 and [a.id for a in ix.articles()] == ["independent-putin-playing-for-time"]
    assert ix.store.check()[1] == []


def test_another_app_server_reads_a_write_at_once(writable_seed_store, model, tmp_path):
    """Two app servers on one store (replicas): what one adds, the other answers from on
    its next question, with nothing to reload by hand."""
    first, second = rag.open(writable_seed_store, embedder=model), rag.open(writable_seed_store, embedder=model)
    second.ask("Was the energy truce violated?")
    _article(tmp_path, "kyiv-view.md", "Ukrainian officials said the energy truce was violated within hours.",
             viewpoint="Ukrainian")
    assert first.add([tmp_path / "kyiv-view.md"], progress=False).added == ("kyiv-view",)
    by_side = {v.viewpoint: v for v in second.ask("Was the energy truce violated?").viewpoints}
    assert by_side["Ukrainian"].answers[0].doc_id == "kyiv-view"
    assert second.article("kyiv-view").title == "kyiv-view.md"


def test_a_writer_that_dies_mid_add_leaves_no_article_half_present(milvus_server, hash_embedder, tmp_path):
    """The server stops answering at the switch (the article rows): readers still see every
    article whole as it was, never the dead write's chunks; the next add completes it."""
    uri = f"{milvus_server}/crash"
    corpus = _corpus(tmp_path)
    rag.build([corpus], index=uri, embedder=hash_embedder, progress=False)
    reader = rag.open(uri, embedder=hash_embedder)
    before = reader.ask("fishing quotas trawlers")
    writer = rag.Index(uri, embedder=hash_embedder)
    store, real = writer.store, writer.store.client.upsert

    def dies_at_the_switch(collection, rows, *args, **kwargs):
        if collection == store.name("articles") and any(r.get("part") == 0 for r in rows):
            raise ConnectionError("server went away")
        return real(collection, rows, *args, **kwargs)

    store.client.upsert = dies_at_the_switch
    path = corpus / "independent-putin-playing-for-time.txt"
    front = path.read_text(encoding="utf-8").split("---\n")[1]  # keep its metadata, change its text
    path.write_text(f"---\n{front}---\nFishing quotas for trawlers were cut. The trawlers stayed in port.\n",
                    encoding="utf-8")
    _article(corpus, "fishing.md", "Fishing quotas for trawlers were raised in the north.")
    with pytest.raises(RagError, match=f"{uri}: writing articles failed \\(server went away\\)"):
        writer.add([corpus], progress=False)
    assert quotes(reader.ask("fishing quotas trawlers")) == quotes(before)
    assert "Fishing quotas" not in reader.article("independent-putin-playing-for-time").text
    assert {a.id for a in reader.articles()} == {"independent-putin-playing-for-time", "rt-putin-trump-call-a-success"}
    assert reader.store.check()[1] == []
    store.client.upsert = real
    report = writer.add([corpus], progress=False)
    assert report.added == ("fishing",) and report.changed == ("independent-putin-playing-for-time",)
    cited = {q.doc_id for v in reader.ask("fishing quotas trawlers").viewpoints for q in v.answers}
    assert {"fishing", "independent-putin-playing-for-time"} <= cited
    chunks = store._count("chunks", "")
    assert chunks == reader.stats()["chunks"]  # the dead write's rows were removed with the replaced ones


def rag_cli(*args, env=None):
    return subprocess.run([sys.executable, "-m", "rag", *map(str, args)], cwd=ROOT, capture_output=True,
                          text=True, timeout=300, env=dict(os.environ, HF_HUB_OFFLINE="1", **(env or {})))


def test_the_cli_on_milvus_chosen_by_rag_store(milvus_server):
    env = {"RAG_STORE": f"{milvus_server}/cli"}
    built = rag_cli("build", SEEDS, "--quiet", env=env)
    assert built.returncode == 0 and "2 added" in built.stdout, built.stderr
    answer = json.loads(rag_cli("ask", "Did Russia make big concessions?", "--json", env=env).stdout)
    assert {v["viewpoint"] for v in answer["viewpoints"]} == {"pro-Russia", "pro-Ukraine"}
    quote = next(v for v in answer["viewpoints"] if not v["abstained"])["answers"][0]
    shown = json.loads(rag_cli("show", quote["doc_id"], "--json", env=env).stdout)
    assert shown["text"][quote["start"]:quote["end"]] == quote["text"]
    stats = json.loads(rag_cli("stats", "--json", env=env).stdout)
    assert stats["index"] == env["RAG_STORE"] and stats["articles"] == 2 and stats["version"] == "v000001"
    checked = rag_cli("check", env=env)
    assert checked.returncode == 0 and checked.stdout.strip() == f"{env['RAG_STORE']}: version v000001, 2 articles ok"
    removed = rag_cli("remove", quote["doc_id"], "--store", env["RAG_STORE"])  # --store names it too
    assert removed.returncode == 0 and "1 removed" in removed.stdout
    assert json.loads(rag_cli("stats", "--json", env=env).stdout)["articles"] == 1


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_milvus_errors_are_one_line_and_a_nonzero_exit(milvus_server, hash_embedder, model):
    client = small_collection(milvus_server, "theirs_meta")  # a collection that is not rag's
    rag.build([SEEDS], index=f"{milvus_server}/hashed", embedder=hash_embedder, progress=False)
    cases = {
        f"milvus://127.0.0.1:{_free_port()}": "rag: error: cannot reach Milvus at 127.0.0.1:",
        f"{milvus_server}/theirs": f"rag: error: {milvus_server}/theirs: collection theirs_meta is not a rag meta "
                                   "collection (no field 'key')",
        f"{milvus_server}/hashed": f"rag: error: {milvus_server}/hashed: built with hash-bow (64-d) but asked with "
                                   "sentence-transformers/all-MiniLM-L6-v2+int8 (384-d); rebuild with rag build --full",
        f"{milvus_server}/nothing": f"rag: error: {milvus_server}/nothing: no index here",
        "milvus://no-port": "rag: error: milvus://no-port: expected milvus://HOST:PORT[/PREFIX]",
    }
    for where, expected in cases.items():
        result = rag_cli("ask", "Did Russia make big concessions?", "--store", where)
        assert result.returncode == 1 and result.stdout == "", (where, result.stderr)
        assert len(result.stderr.splitlines()) == 1 and result.stderr.startswith(expected), (where, result.stderr)
    with pytest.raises(RagError, match="built with hash-bow \\(64-d\\) but asked with"):
        rag.open(f"{milvus_server}/hashed", embedder=model)
    with pytest.raises(RagError, match="built with hash-bow \\(64-d\\), not"):
        rag.build([SEEDS], index=f"{milvus_server}/hashed", embedder=model, progress=False)
    client.drop_collection("theirs_meta")
    client.close()


def test_more_viewpoints_than_columns_keep_the_same_closest_ones(tmp_path, milvus_server, hash_embedder,
                                                                 monkeypatch):
    """Beyond ``max_viewpoints`` sides, both stores keep the sides with the closest passages
    (Milvus: one search grouped by the partition key) and count the rest. The Milvus build
    flushes (as a build of FLUSH_AT articles does): answers from sealed segments are the same."""
    from rag.store import milvus

    monkeypatch.setattr(milvus, "FLUSH_AT", 1)
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    topics = ["fishing quotas were cut for trawlers", "fishing boats stayed in port", "the harbour froze over",
              "wheat prices rose again", "the election was close", "a new bridge opened downtown"]
    for n, topic in enumerate(topics):
        _article(corpus, f"side{n}.md", f"Reports say {topic}. Nothing else happened.", viewpoint=f"side{n}")
    settings = rag.Settings(max_viewpoints=3)
    answers = []
    for where in (str(tmp_path / "index"), f"{milvus_server}/many_sides"):
        rag.build([corpus], index=where, embedder=hash_embedder, progress=False)
        answers.append(rag.open(where, settings=settings, embedder=hash_embedder).ask("fishing quotas trawlers port"))
    local, milvus = answers
    assert len(local.viewpoints) == 3 and local.more_viewpoints == 3
    assert {v.viewpoint for v in local.viewpoints} >= {"side0", "side1"}
    assert quotes(milvus) == quotes(local) and milvus.more_viewpoints == 3


def test_one_writer_at_a_time_on_milvus(milvus_server, hash_embedder, tmp_path):
    """While one writer holds the store's write lock, another stops with one line and changes
    nothing; a lock whose writer stopped refreshing it (died) is cleared by the next writer."""
    uri = f"{milvus_server}/one_writer"
    corpus = _corpus(tmp_path)
    rag.build([corpus], index=uri, embedder=hash_embedder, progress=False)
    holder = rag.Index(uri, embedder=hash_embedder).store
    key = holder._lock()  # a writer in the middle of its write
    _article(corpus, "fishing.md", "Fishing quotas for trawlers were raised in the north.")
    second = rag.Index(uri, embedder=hash_embedder)
    with pytest.raises(RagError, match=f"^{uri}: another writer is writing \\(pid {os.getpid()} on .*\\); run "
                                       "again when it is done$"):
        second.add([corpus / "fishing.md"], progress=False)
    assert second.stats()["version"] == "v000001" and second.stats()["articles"] == 2
    locks = holder.client.query(holder.name("meta"), filter='key like "lock#%"', output_fields=["key"])
    assert [r["key"] for r in locks] == [key]  # the stopped writer took its own row back
    holder._unlock(key)
    assert second.add([corpus / "fishing.md"], progress=False).added == ("fishing",)

    # a writer that died holding the lock: its row is never refreshed again
    holder.client.upsert(holder.name("meta"), [{"key": "lock#dead", "vector": [0.0, 0.0], "value": {
        "host": "gone", "pid": 1, "since": 0.0, "beat": 0.0}}])
    assert second.remove(["fishing"]).removed == ("fishing",)
    assert holder.client.query(holder.name("meta"), filter='key like "lock#%"', output_fields=["key"]) == []
    assert second.store.check()[1] == []


def test_a_write_planned_before_another_writer_committed_stops(milvus_server, hash_embedder, tmp_path):
    """Writer A plans and embeds; writer B commits meanwhile; A, holding the lock at last,
    finds the index moved on and stops rather than write from a stale plan."""
    uri = f"{milvus_server}/stale_plan"
    corpus = _corpus(tmp_path)
    rag.build([corpus], index=uri, embedder=hash_embedder, progress=False)
    _article(corpus, "a.md", "Wheat prices rose again this spring.")
    _article(corpus, "b.md", "The harbour froze over in January.")
    other = rag.Index(uri, embedder=hash_embedder)

    class CommitsMeanwhile(Counting):
        def encode(self, texts, progress=False):
            if not self.texts:  # B's whole write happens while A embeds
                other.add([corpus / "b.md"], progress=False)
            return super().encode(texts, progress)

    first = rag.Index(uri, embedder=CommitsMeanwhile(hash_embedder))
    with pytest.raises(RagError, match=f"^{uri}: another writer changed the index \\(to v000002\\) while this "
                                       "one planned; run it again$"):
        first.add([corpus / "a.md"], progress=False)
    assert {a.id for a in other.articles()} == {"independent-putin-playing-for-time",
                                                "rt-putin-trump-call-a-success", "b"}
    assert first.add([corpus / "a.md"], progress=False).added == ("a",)
    assert other.stats()["articles"] == 4 and other.store.check()[1] == []


def test_an_add_or_remove_on_milvus_reads_only_the_articles_it_touches(milvus_server, hash_embedder, tmp_path):
    """A build reads every article's record (what is not among its inputs goes); an add or a
    remove reads the records of the ids it names and of articles with the same text, never
    all of them (a scan of the articles collection per add would grow with the corpus)."""
    uri = f"{milvus_server}/no_scan"
    corpus = _corpus(tmp_path)
    for n in range(5):
        _article(corpus, f"filler{n}.md", f"Filler article number {n} about the harbour.")
    rag.build([corpus], index=uri, embedder=hash_embedder, progress=False)
    ix = rag.Index(uri, embedder=hash_embedder)
    scans = []
    real_scan = ix.store._scan
    ix.store._scan = lambda kind, *a, **k: scans.append(kind) or real_scan(kind, *a, **k)
    _article(corpus, "copy.md", "Filler article number 3 about the harbour.")  # filler3's text
    _article(corpus, "filler1.md", "Filler article number 1, rewritten, about the port.")
    report = ix.add([corpus / "copy.md", corpus / "filler1.md"], progress=False)
    assert report.duplicates == (("copy", "filler3"),) and report.changed == ("filler1",)
    assert report.added == () and report.unchanged == 6
    assert ix.remove(["filler0"]).unchanged == 6
    assert scans == []
    stats = ix.stats()
    assert stats["articles"] == 6 and stats["viewpoints"] == {"neutral": 4, "pro-Russia": 1, "pro-Ukraine": 1}
    assert ix.store.check()[1] == []
    local = rag.build([corpus], index=tmp_path / "local", embedder=hash_embedder, progress=False)
    ix.rebuild([corpus], progress=False)
    assert scans == ["articles"]
    assert {a.id for a in ix.articles()} == {a.id for a in rag.open(tmp_path / "local", embedder=hash_embedder)
                                             .articles()}
    assert ix.stats()["chunks"] == local.chunks  # the same corpus, the same chunks, counted afresh


def test_a_milvus_lite_file_needs_no_server(tmp_path):
    """``milvus:///PATH.db``: Milvus Lite serves a file from inside the process (milvus-lite
    3.2 here; with pymilvus 2.5 and milvus-lite 2.5, Milvus's C++ engine, as the benchmark
    runs it). It answers in a later process as it did in the first; while a process holds the
    file, another gets one line saying so."""
    uri = f"milvus://{tmp_path}/seeds.db"
    built = rag_cli("build", SEEDS, "--store", uri, "--quiet")
    assert built.returncode == 0 and "2 added" in built.stdout, built.stderr
    ix = rag.open(uri)
    answer = {v.viewpoint: v for v in ix.ask("Did Russia make big concessions?").viewpoints}
    first = answer["pro-Russia"].answers[0]
    assert ix.article(first.doc_id).text[first.start:first.end] == first.text
    assert "concessions" in first.text and ix.stats()["articles"] == 2
    held = rag_cli("check", "--store", uri)
    assert held.returncode == 1 and len(held.stderr.splitlines()) == 1, held.stderr
    assert held.stderr.startswith(f"rag: error: {uri}: Milvus Lite cannot open {tmp_path}/seeds.db (")
    assert held.stderr.rstrip().endswith("a file serves one process at a time: for several, run a Milvus server")


def test_grouping_by_another_field_reads_the_articles_once_per_version(milvus_server, hash_embedder, tmp_path):
    """Grouping by a field that is not on the chunks (here ``kind``) reads every article's
    record: once per index version, not per question; a write that changes the groups is
    answered from on the next question."""
    uri = f"{milvus_server}/group_once"
    corpus = _corpus(tmp_path)
    rag.build([corpus], index=uri, embedder=hash_embedder, progress=False)
    ix = rag.open(uri, embedder=hash_embedder)
    scans = []
    real_scan = ix.store._scan
    ix.store._scan = lambda kind, *a, **k: scans.append(kind) or real_scan(kind, *a, **k)
    for question in ("Did Russia make big concessions?", "Is Putin playing for time?"):
        assert {v.viewpoint for v in ix.ask(question, group_by="kind").viewpoints} == {"opinion", "editorial"}
    assert scans == ["articles"]
    (corpus / "report.md").write_text("---\nviewpoint: neutral\nkind: report\n---\nPutin made no concessions, "
                                      "officials said. Talks went on for time.\n", encoding="utf-8")
    ix.add([corpus / "report.md"], progress=False)
    sides = {v.viewpoint for v in ix.ask("Did Putin make concessions?", group_by="kind").viewpoints}
    assert sides == {"opinion", "editorial", "report"} and scans == ["articles", "articles"]


def test_a_writer_taken_for_dead_stops_before_switching(milvus_server, hash_embedder, tmp_path):
    """Another writer cleared this writer's lock (it looked dead): this writer stops before any
    article switches to its rows, and the next write goes through."""
    uri = f"{milvus_server}/lost_lock"
    corpus = _corpus(tmp_path)
    rag.build([corpus], index=uri, embedder=hash_embedder, progress=False)
    writer = rag.Index(uri, embedder=hash_embedder)
    store, real = writer.store, writer.store.client.upsert

    def lock_cleared_meanwhile(collection, rows, *args, **kwargs):
        if collection == store.name("chunks"):  # while its new rows go in
            store.client.delete(store.name("meta"), filter='key like "lock#%"')
        return real(collection, rows, *args, **kwargs)

    store.client.upsert = lock_cleared_meanwhile
    _article(corpus, "fishing.md", "Fishing quotas for trawlers were raised in the north.")
    with pytest.raises(RagError, match=f"^{uri}: this writer's lock was taken for a dead writer's"):
        writer.add([corpus / "fishing.md"], progress=False)
    reader = rag.open(uri, embedder=hash_embedder)
    assert reader.stats()["articles"] == 2 and "fishing" not in {a.id for a in reader.articles()}
    store.client.upsert = real
    assert writer.add([corpus / "fishing.md"], progress=False).added == ("fishing",)
    assert reader.store.check()[1] == []


def test_a_store_an_earlier_rag_built_is_named_as_such(milvus_server, hash_embedder):
    """Collections of an earlier Milvus schema (here: its sentences collection of another
    shape, its meta row saying schema 1): one line saying so and what to do, not a crash."""
    uri = f"{milvus_server}/older"
    rag.build([SEEDS], index=uri, embedder=hash_embedder, progress=False)
    store = rag.open(uri, embedder=hash_embedder).store
    store.client.drop_collection(store.name("sentences"))
    small_collection(milvus_server, store.name("sentences")).close()
    meta = store.client.get(store.name("meta"), ids=["manifest"], output_fields=["value"])[0]["value"]
    store.client.upsert(store.name("meta"), [{"key": "manifest", "value": {**meta, "schema": 1},
                                              "vector": [0.0, 0.0]}])
    result = rag_cli("stats", "--store", uri)
    assert result.returncode == 1 and result.stderr == (
        f"rag: error: {uri}: built by another rag version (Milvus schema 1, this one reads 3); build it again "
        f"under another prefix: rag build PATHS --store {milvus_server}/NEW\n")


def _passages(found):
    """Each side's passages as (article, span, rank), whatever snapshot they index into."""
    return {label: [(found.snap.articles[int(found.snap.chunks[p.chunk_row][0])].id,
                     int(found.snap.chunks[p.chunk_row][1]), int(found.snap.chunks[p.chunk_row][2]), p.rank)
                    for p in side] for label, side in found.sides.items()}


def test_a_viewpoint_short_of_hits_in_the_shared_search_gets_its_own(tmp_path, milvus_server, hash_embedder,
                                                                     monkeypatch):
    """Milvus ranks all viewpoints' chunks in one dense and one BM25 search and splits them by
    viewpoint; a viewpoint whose chunks all rank below the others' (here: one article against
    thirty on the question's topic) has too few of those hits and is searched on its own, so
    every side gets the passages the local store's per-viewpoint search finds."""
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for n in range(30):
        _article(corpus, f"many{n}.md", f"Fishing quotas for trawlers were cut again in port {n}. "
                                        f"The fleet of trawlers protested the fishing quotas.", viewpoint="many")
    _article(corpus, "few0.md", "Wheat prices rose. A trawler was seen once.", viewpoint="few")
    _article(corpus, "few1.md", "The election was close. Bridges opened downtown.", viewpoint="few")
    settings = rag.Settings(passages=2)  # depth 6: each shared search returns 24 hits of 32 chunks
    local = rag.open(_built(corpus, str(tmp_path / "index"), hash_embedder), settings=settings,
                     embedder=hash_embedder)
    where = _built(corpus, f"{milvus_server}/short_side", hash_embedder)
    milvus = rag.open(where, settings=settings, embedder=hash_embedder)
    searched = []
    ranked = milvus.store._ranked
    monkeypatch.setattr(milvus.store, "_ranked", lambda kind, query, expr, limit, field=None: (
        searched.append((kind, expr, limit)), ranked(kind, query, expr, limit, field))[1])
    for question in ("fishing quotas for trawlers", "were wheat prices cut"):
        searched.clear()
        assert _passages(milvus.retrieve(question)) == _passages(local.retrieve(question)), question
        own = [(kind, expr) for kind, expr, limit in searched if limit == 6]
        assert sorted(own) == [("bm25", 'viewpoint == "few"'), ("dense", 'viewpoint == "few"')], searched
        assert len(searched) == 4


def _built(corpus, where, embedder):
    rag.build([corpus], index=where, embedder=embedder, progress=False)
    return where


def test_an_article_longer_than_a_milvus_text_field_comes_back_whole(tmp_path, milvus_server, hash_embedder):
    """A VARCHAR holds 65,535 bytes: a longer article is kept in parts (cut between characters,
    milvus_schema.text_parts) and read back character for character, its quotes' spans too."""
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    body = ". ".join(f"Sentence {n} of a very long report on café prices" for n in range(2500)) + "."
    assert len(body.encode("utf-8")) > 2 * 65_535
    _article(corpus, "long.md", body, viewpoint="left")
    _article(corpus, "short.md", "Café prices rose. Nothing else.", viewpoint="right")
    where = _built(corpus, f"{milvus_server}/long_text", hash_embedder)
    ix = rag.open(where, embedder=hash_embedder)
    assert ix.article("long").text == body
    answer = ix.ask("report on café prices, sentence 2400")
    cited = [q for v in answer.viewpoints for q in v.answers if q.doc_id == "long"]
    assert cited and all(body[q.start:q.end] == q.text for q in cited)


def test_a_store_whose_every_article_was_removed_answers_like_the_folder(tmp_path, milvus_server, hash_embedder):
    """No viewpoint left to search: both stores answer with no sides (no search of zero hits)."""
    answers = []
    for where in (str(tmp_path / "index"), f"{milvus_server}/emptied"):
        corpus = _corpus(tmp_path / where.replace("/", "_").replace(":", "_"))
        rag.build([corpus], index=where, embedder=hash_embedder, progress=False)
        ix = rag.Index(where, embedder=hash_embedder)
        ix.remove([a.id for a in ix.articles()])
        answers.append(ix.ask("fishing quotas"))
    local, milvus = answers
    assert quotes(milvus) == quotes(local) == [] and milvus.more_viewpoints == local.more_viewpoints == 0
