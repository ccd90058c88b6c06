"""The answer reranker (rag/rerank.py): the shipped file, its calibration, lazy
loading, and what it changes in real answers on real articles."""
from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace

import numpy as np
import pytest

import rag
from rag import rerank

ROOT = rerank.MODELS.parents[1]
RERANK = rag.Settings(scorer="reranker")


def test_the_shipped_model_is_small_and_its_config_complete():
    config = json.loads(rerank.CONFIG_FILE.read_text(encoding="utf-8"))
    assert rerank.MODEL_FILE.stat().st_size < 40 * 2**20  # ships inside the package
    assert {"a", "b", "c", "threshold"} == set(config["calibration"])
    assert config["max_length"] >= 64
    assert config["calibrated_split"] == "train"  # the test split only measures it
    assert (rerank.MODELS / "reranker.md").exists()  # the model card


def test_calibration_is_a_probability_rising_with_either_score():
    c = rerank.Calibration(a=1.2, b=0.3, c=-1.0, threshold=0.4)
    logits = np.array([-4.0, 0.0, 4.0])
    p = c.probability(logits, np.full(3, 0.5))
    assert ((0 < p) & (p < 1)).all() and (np.diff(p) > 0).all()
    assert (np.diff(c.probability(np.zeros(3), np.array([0.1, 0.5, 0.9]))) > 0).all()
    assert c.probability(np.zeros(1), np.zeros(1))[0] > 0  # a first-scorer 0 stays finite


def test_each_scorer_has_its_own_threshold():
    from rag.answer import threshold

    assert threshold(rag.Settings(scorer="reranker")) == rerank.load().calibration.threshold
    assert threshold(rag.Settings()) == 0.2  # the default scorer's (rag/scorer.json)
    assert threshold(rag.Settings(min_score=0.33)) == 0.33


def test_import_rag_loads_no_model_runtime():
    code = ("import sys, rag; print(sorted(m for m in ('onnxruntime', 'rag.rerank', 'torch') "
            "if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout.strip() == "[]", done.stderr


def test_reranker_scores_each_pair_on_its_own():
    """The int8 model on real sentences: one finite score per pair, the same whether a
    pair is scored alone or beside others (int8 ranges would be per batch: one pair a run)."""
    model = rerank.load()
    question = "Was there a prisoner swap?"
    sentences = ["An exchange of 175 prisoners of war is due to take place tomorrow.",
                 "The weather in Moscow was cold on Tuesday, with snow expected over the weekend."]
    logits = model.logits(question, sentences)
    assert logits.shape == (2,) and np.isfinite(logits).all()
    assert np.allclose(model.logits(question, sentences[:1]), logits[:1], atol=1e-5)
    assert model.logits(question, []).shape == (0,)


@pytest.mark.slow
def test_a_side_that_does_not_address_it_abstains(seed_index_dir, model):
    """Off-topic for both articles: the reranker's calibrated scores stay under the
    threshold on every side, with the quotes still listed for display."""
    answer = rag.Index(seed_index_dir, RERANK, model).ask("What did the central bank do to interest rates?")
    assert all(v.abstained for v in answer.viewpoints), answer
    assert all(v.answers for v in answer.viewpoints)


@pytest.mark.slow
def test_reranked_answers_keep_the_json_contract(seed_index_dir, model):
    from dataclasses import asdict

    ix = rag.Index(seed_index_dir, RERANK, model)
    answer = asdict(ix.ask("Did Russia make big concessions?"))
    assert {"question", "viewpoints", "more_viewpoints", "query", "coverage"} <= set(answer)
    for view in answer["viewpoints"]:
        article = ix.article(view["answers"][0]["doc_id"])
        for quote in view["answers"]:
            assert article.text[quote["start"]:quote["end"]] == quote["text"] or \
                ix.article(quote["doc_id"]).text[quote["start"]:quote["end"]] == quote["text"]
            assert 0.0 <= quote["score"] <= 1.0
    features = rag.Index(seed_index_dir, replace(rag.Settings(), scorer="features"), model)
    assert features.ask("Did Russia make big concessions?").viewpoints  # the fallback still answers


@pytest.mark.slow
def test_a_side_on_the_topic_that_does_not_answer_now_abstains(seed_index_dir, model):
    """Only the pro-Russia piece speaks of Odessa ("Odessa hasn't been ceded to Russia"). The
    first scorer answers from the pro-Ukraine piece too, with a sentence about Ukraine's
    land; the reranker, reading question and sentence together, keeps the pro-Russia answer
    and says the pro-Ukraine side does not address it."""
    question = "Has Odessa been handed over to Russia?"
    reranked = {v.viewpoint: v for v in rag.Index(seed_index_dir, RERANK, model).ask(question).viewpoints}
    assert reranked["pro-Ukraine"].abstained, reranked["pro-Ukraine"]
    assert not reranked["pro-Russia"].abstained and "Odessa" in reranked["pro-Russia"].answers[0].text
    first = {v.viewpoint: v for v in rag.Index(seed_index_dir, rag.Settings(), model).ask(question).viewpoints}
    assert not first["pro-Ukraine"].abstained  # what the reranker fixes: the fallback answers here


@pytest.mark.slow
def test_a_model_trained_with_context_reads_the_sentence_before(seed_index_dir, model):
    """A reranker exported with ``context`` (bench/train_reranker.py --context) is fed each
    candidate followed by its article's previous sentence; the shipped one, the sentence alone."""
    from rag.answer import candidate_texts, candidates

    ix = rag.Index(seed_index_dir, RERANK, model)
    found = ix.retrieve("Was there a prisoner swap?")
    passages = next(iter(found.sides.values()))
    cands = candidates(found.snap, found.query, passages, found.lexical)
    which = np.arange(len(cands.rows))
    alone = candidate_texts(found.snap, cands, which)
    read = candidate_texts(found.snap, cands, which, context=True)
    snap = found.snap
    for i, (sentence, text) in enumerate(zip(alone, read)):
        article_row = int(snap.chunks[cands.chunk_rows[i]][0])
        index = int(cands.rows[i]) - int(snap.sentence_start[article_row])
        if index == 0:
            assert text == sentence
        else:
            span = snap.sentences.at(article_row, index - 1)
            assert text == rerank.segment(sentence, snap.articles[article_row].text[span.start:span.end])
    assert any(" [SEP] " in t for t in read) and not rerank.load().context
