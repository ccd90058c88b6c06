"""The whole path on the seeds with the real model, on both stores: a real FAISS
index in a folder, and a real Milvus server (the milvus-lite server of conftest)."""
import pytest

import rag

pytestmark = pytest.mark.slow

RT = "rt-putin-trump-call-a-success"
INDEPENDENT = "independent-putin-playing-for-time"
OFF_TOPIC = ["How do I bake sourdough bread?", "Who won the 2018 World Cup?",
             "What is the boiling point of water?", "How do I reset my router password?"]


def _first_quote(answer):
    leading = answer.viewpoints[0]
    return leading.viewpoint, leading.answers[0]


def test_every_quote_is_verbatim_and_cited(any_seed_index):
    answer = any_seed_index.ask("Did Russia make big concessions?")
    assert {v.viewpoint for v in answer.viewpoints} == {"pro-Russia", "pro-Ukraine"}
    for view in answer.viewpoints:
        assert view.answers, view.viewpoint
        scores = [q.score for q in view.answers]
        assert scores == sorted(scores, reverse=True)
        for quote in view.answers:
            article = any_seed_index.article(quote.doc_id)
            assert article.text[quote.start:quote.end] == quote.text
            assert quote.text in quote.passage and quote.passage in article.text
            assert article.group() == view.viewpoint and quote.title == article.title
    order = [(v.abstained, -v.answers[0].score) for v in answer.viewpoints]
    assert order == sorted(order)  # answering sides first, then by their best score


@pytest.mark.parametrize("question", ["Did Russia make big concessions?", "Is Putin playing for time?",
                                      "What did Putin agree to on the ceasefire?"])
def test_quotes_of_one_side_never_repeat_each_other(any_seed_index, question):
    for view in any_seed_index.ask(question, k=5).viewpoints:
        spans = sorted((q.doc_id, q.start, q.end) for q in view.answers)
        for (doc_a, _, end_a), (doc_b, start_b, _) in zip(spans, spans[1:]):
            assert doc_a != doc_b or end_a <= start_b, f"overlapping quotes in {view.viewpoint}"


@pytest.mark.parametrize("question, doc_id, phrase", [
    ("What did Ben Wallace say about the Russian economy?", INDEPENDENT, "a year away from collapse"),
    ("What is a steel porcupine?", RT, "steel porcupine"),
    ("How many soldiers has Putin lost?", INDEPENDENT, "800,000 soldiers"),
    ("What did Putin agree to about energy infrastructure?", RT, "suspension of attacks on energy infrastructure"),
    ("Could Taiwan be another loser?", INDEPENDENT, "Taiwan"),
    ("Why did Russia start this war?", RT, "eliminate a military threat"),
])
def test_questions_one_side_addresses_land_in_that_side(any_seed_index, question, doc_id, phrase):
    answer = any_seed_index.ask(question)
    viewpoint, quote = _first_quote(answer)
    assert viewpoint == any_seed_index.article(doc_id).viewpoint
    assert quote.doc_id == doc_id and phrase in quote.text
    assert not answer.viewpoints[0].abstained


@pytest.mark.parametrize("question", OFF_TOPIC)
def test_off_topic_questions_abstain_everywhere(any_seed_index, question):
    answer = any_seed_index.ask(question)
    assert [v.abstained for v in answer.viewpoints] == [True, True]


def test_follow_up_reads_the_earlier_question(any_seed_index):
    question = "How long until it collapses?"
    alone = any_seed_index.ask(question)
    followed = any_seed_index.ask(question, history=["What is the state of the Russian economy?"])
    assert "Russian economy" in followed.query and question in followed.query
    by_side = {v.viewpoint: v for v in followed.viewpoints}
    quote = by_side["pro-Ukraine"].answers[0]
    assert "economy is probably about a year away from collapse" in quote.text
    alone_score = {v.viewpoint: v for v in alone.viewpoints}["pro-Ukraine"].answers[0].score
    assert quote.score > alone_score  # the context makes the answer clearer, not just present


def test_k_limits_quotes_and_group_by_source(any_seed_index):
    answer = any_seed_index.ask("What happened in the phone call?", k=1, group_by="source")
    assert {v.viewpoint for v in answer.viewpoints} == {"RT", "The Independent"}
    assert all(len(v.answers) == 1 for v in answer.viewpoints)


def test_filters_restrict_before_ranking(any_seed_index):
    answer = any_seed_index.ask("Did Russia make big concessions?", filters=rag.Filters(sources=("RT",)))
    assert [v.viewpoint for v in answer.viewpoints] == ["pro-Russia"]


def test_adding_one_article_embeds_only_that_article(writable_seed_store, model, tmp_path):
    new = tmp_path / "new"
    new.mkdir()
    (new / "kyiv-view.md").write_text(
        "---\ntitle: A view from Kyiv\nsource: Kyiv Daily\nviewpoint: Ukrainian\n---\n"
        "Ukrainian officials said the energy truce was violated within hours. "
        "Drone strikes hit a power substation in the Sumy region on the first night.\n", encoding="utf-8")
    ix = rag.Index(writable_seed_store, embedder=model)
    report = ix.add([new])
    assert report.added == ("kyiv-view",) and report.embedded_articles == 1 and report.unchanged == 2
    answer = ix.ask("Was the energy truce violated?")
    by_side = {v.viewpoint: v for v in answer.viewpoints}
    assert by_side["Ukrainian"].answers[0].doc_id == "kyiv-view" and not by_side["Ukrainian"].abstained


def test_answering_uses_one_blas_thread_and_gives_the_rest_back(seed_index, monkeypatch):
    """The matrix-vector products of an answer run on one BLAS thread (a spinning
    second thread took the core the rest of the answer needs); the caller's own
    setting is back afterwards."""
    from threadpoolctl import threadpool_info

    from rag import retrieve

    def blas_threads() -> list[int]:
        return [lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"]

    seen, real = [], retrieve._exact_scores
    monkeypatch.setattr(retrieve, "_exact_scores", lambda *a: seen.append(blas_threads()) or real(*a))
    before = blas_threads()
    seed_index.ask("Did Russia make big concessions?")
    assert seen and all(n == 1 for threads in seen for n in threads)
    assert blas_threads() == before
