"""Answer quality (issue 4): hybrid retrieval, the learned sentence scorer,
near-duplicate collapse, per-viewpoint abstention, the coverage key, and
``rag eval``. Fast tests use the hash embedder; the slow ones the real model."""
from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest

import rag
from rag import evaluate
from rag.answer import FEATURES, SCORER_FILE, addresses, load_scorer
from rag.lexical import build as build_lexical
from rag.lexical import for_snapshot, tokens
from rag.retrieve import group_chunks, search_groups

DATA = Path(__file__).parent / "data"
SEED_QUESTIONS = DATA / "seed-questions.jsonl"
NEWS_DEV_QUESTIONS = DATA / "news-dev-questions.jsonl"  # threshold dev set (bench/news_dev.py)


def _article(folder: Path, name: str, viewpoint: str, source: str, text: str) -> None:
    (folder / f"{name}.txt").write_text(f"---\ntitle: {name}\nsource: {source}\nviewpoint: {viewpoint}\n"
                                        f"---\n{text}\n", encoding="utf-8")


@pytest.fixture()
def small_index(tmp_path, hash_embedder):
    docs = tmp_path / "docs"
    docs.mkdir()
    wire = "The senate passed the infrastructure bill by a vote of 69 to 30 on Tuesday."
    _article(docs, "left-a", "left", "Daily A", f"{wire} Democrats praised the spending on transit.")
    _article(docs, "left-b", "left", "Daily B", f"Unions welcomed the news. {wire}")
    _article(docs, "right-a", "right", "Herald", "Republicans warned that the bill adds to the deficit. "
             "The zyzzyva beetle was mentioned once.")
    _article(docs, "center-a", "center", "Wire", "Bakers prefer sourdough starters kept at room temperature.")
    rag.build([docs], index=tmp_path / "index", embedder=hash_embedder, progress=False)
    return rag.open(tmp_path / "index", embedder=hash_embedder)


def test_tokens_drop_stopwords_and_stem():
    assert tokens("What were the concessions of the Kremlin?") == ["concession", "kremlin"]


def test_bm25_scores_and_rare_words_weigh_more():
    lexical = build_lexical(["the cat sat", "the cat ran", "a zyzzyva flew"])
    scores = lexical.scores("zyzzyva")
    assert scores.argmax() == 2 and scores[0] == scores[1] == 0
    assert lexical.idf("zyzzyva") > lexical.idf("cat")
    assert not lexical.scores("nothing indexed here").any()


def test_filters_apply_before_ranking(small_index):
    snap = small_index.snapshot()
    groups = group_chunks(snap, "viewpoint")
    query = small_index.embedder.encode(["zyzzyva beetle"])[0]
    found = search_groups(snap, query, groups, 4, 12, for_snapshot(snap).scores("zyzzyva beetle"))
    for g, passages in found.items():
        assert passages, groups.labels[g]
        assert all(groups.chunk_group[p.chunk_row] == g for p in passages)
    right = groups.labels.index("right")
    assert snap.articles[snap.chunks[found[right][0].chunk_row][0]].id == "right-a"


def test_exact_dense_scores_rank_like_a_filtered_faiss_search(small_index):
    """A flat index is searched with one matrix-vector product for all viewpoints;
    per viewpoint it must rank exactly as FAISS restricted to that viewpoint does."""
    from rag import retrieve

    snap = small_index.snapshot()
    groups = group_chunks(snap, "viewpoint")
    for question in ("senate vote", "zyzzyva beetle deficit", "sourdough"):
        query = small_index.embedder.encode([question])[0]
        exact = retrieve._exact_scores(snap, query)
        assert exact is not None and exact.shape == (len(snap.chunks),)
        for g in range(len(groups.labels)):
            rows = groups.members(g)
            ours = retrieve._search(snap, query, rows, 3, exact)
            theirs = retrieve._search(snap, query, rows, 3)
            np.testing.assert_allclose([p.score for p in ours], [p.score for p in theirs], atol=1e-5)
            # the same chunks (ties may come in another order)
            assert sorted((round(p.score, 4), p.chunk_row) for p in ours) == \
                sorted((round(p.score, 4), p.chunk_row) for p in theirs)


def test_near_duplicates_are_quoted_once_with_their_other_sources(small_index):
    answer = small_index.ask("How did the senate vote on the infrastructure bill?")
    left = next(v for v in answer.viewpoints if v.viewpoint == "left")
    wire = [q for q in left.answers if "69 to 30" in q.text]
    assert len(wire) == 1
    assert set(wire[0].also_in) | {wire[0].doc_id} == {"left-a", "left-b"}


def test_an_adjacent_sentence_that_answers_nearly_as_well_joins_the_quote(small_index, monkeypatch):
    """Two adjacent sentences that both answer are quoted together, verbatim; a
    neighbour far less probable, or more probable (quoted first on its own), is not."""
    from rag import answer

    snap = small_index.snapshot()
    row = snap.row_of["left-a"]
    first = int(snap.sentence_start[row])
    chunk_row = int(np.flatnonzero(snap.chunks[:, 0] == row)[0])
    article = snap.articles[row]
    pair = answer._quote(snap, first, chunk_row, 0.9, [first + 1])
    assert pair.text == article.text[pair.start:pair.end] == article.text.strip()
    alone = answer._quote(snap, first, chunk_row, 0.9)
    assert alone.text.startswith("The senate") and alone.text.endswith("Tuesday.")

    real_candidates, seen = answer.candidates, {}

    def recording(snap, *args):
        found = real_candidates(snap, *args)
        seen["rows"] = found.rows
        return found

    def scored(by_text):  # a probability per sentence of left-a, by its opening word
        def probability(self, features):
            where = [_where(snap, int(r)) for r in seen["rows"]]
            return np.array([by_text.get(answer._text(snap, a, i).split()[0], 0.01)
                             if snap.articles[a].id == "left-a" else 0.01 for a, i in where])
        monkeypatch.setattr(answer, "candidates", recording)
        monkeypatch.setattr(answer.Scorer, "probability", probability)
        answers = next(v for v in small_index.ask("Which bill did the senate pass?").viewpoints
                       if v.viewpoint == "left").answers
        return [q.text for q in answers]

    both = "The senate passed the infrastructure bill by a vote of 69 to 30 on Tuesday. " \
           "Democrats praised the spending on transit."
    assert both in scored({"The": 0.9, "Democrats": 0.6})  # nearly as probable: joins
    assert both not in scored({"The": 0.9, "Democrats": 0.1})  # far less: quoted alone
    assert both not in scored({"The": 0.3, "Democrats": 0.9})  # more probable neighbour leads, alone

    # the row after an article's last sentence is the next article's first: never its partner
    last = first + len(snap.sentences[row]) - 1
    if last + 1 < len(snap.sentence_vectors):
        def probability(self, features):
            return np.array([{last: 0.9, last - 1: 0.6, last + 1: 0.85}.get(int(r), 0.01) for r in seen["rows"]])
        monkeypatch.setattr(answer.Scorer, "probability", probability)
        other = snap.articles[_where(snap, last + 1)[0]]
        quotes = [q for v in small_index.ask("Which bill did the senate pass?").viewpoints for q in v.answers]
        lead = next(q for q in quotes if q.doc_id == "left-a")
        assert lead.text == article.text.strip()  # paired with its own article's sentence before it
        assert other.id != "left-a"


def _where(snap, row: int) -> tuple[int, int]:
    article_row = int(np.searchsorted(snap.sentence_start, row, side="right") - 1)
    return article_row, row - int(snap.sentence_start[article_row])


def test_a_question_in_the_text_is_not_quoted_as_its_answer(tmp_path, hash_embedder):
    docs = tmp_path / "docs"
    docs.mkdir()
    _article(docs, "explainer", "center", "Wire", "What is stare decisis? It is the doctrine that courts "
             "follow their precedents. Judges rarely overturn them.")
    rag.build([docs], index=tmp_path / "index", embedder=hash_embedder, progress=False)
    quotes = rag.open(tmp_path / "index", embedder=hash_embedder).ask("What is stare decisis?").viewpoints[0].answers
    assert quotes and not any(q.text.rstrip().endswith("?") for q in quotes)
    # "It is the doctrine ..." is quoted with its lead, so a reader knows what "it" is
    assert "What is stare decisis? It is the doctrine that courts follow their precedents." in [q.text for q in quotes]


def test_json_keeps_the_contract_and_adds_coverage(small_index):
    out = json.loads(json.dumps(asdict(small_index.ask("How did the senate vote?"))))
    assert {"question", "viewpoints", "coverage"} <= set(out)
    for view in out["viewpoints"]:
        assert {"viewpoint", "abstained", "answers"} <= set(view)
        for quote in view["answers"]:
            assert {"text", "score", "doc_id", "title", "source", "start", "end", "passage"} <= set(quote)
            assert 0.0 <= quote["score"] <= 1.0
    listed = [v["viewpoint"] for v in out["viewpoints"]]
    assert sorted(out["coverage"]["addressed"] + out["coverage"]["silent"]) == sorted(listed)
    assert set(out["coverage"]["silent"]) == {v["viewpoint"] for v in out["viewpoints"] if v["abstained"]}


def test_scorer_file_matches_code_and_settings():
    scorer = load_scorer()
    data = json.loads(SCORER_FILE.read_text())
    n = len(FEATURES)
    assert len(scorer.coef) == (n if scorer.degree == 1 else n + n * (n + 1) // 2)
    from rag.answer import threshold

    assert data["threshold"] == threshold(rag.Settings())
    p = scorer.probability(np.zeros((3, len(FEATURES)), np.float32))
    assert ((0 < p) & (p < 1)).all()


def test_a_degree_2_scorer_file_weighs_pairwise_products_as_scikit_learn_orders_them(tmp_path):
    """``bench/train_scorer.py --degree 2`` fits on scikit-learn's PolynomialFeatures order."""
    PolynomialFeatures = pytest.importorskip("sklearn.preprocessing").PolynomialFeatures
    data = json.loads(SCORER_FILE.read_text())
    n = len(FEATURES)
    rng = np.random.default_rng(0)
    coef = rng.normal(size=n + n * (n + 1) // 2)
    path = tmp_path / "scorer.json"
    path.write_text(json.dumps(dict(data, degree=2, mean=[0.0] * len(coef), scale=[1.0] * len(coef),
                                    coef=coef.tolist(), intercept=0.5)))
    x = rng.random((4, n)).astype(np.float32)
    expected = 1 / (1 + np.exp(-(PolynomialFeatures(2, include_bias=False).fit_transform(x) @ coef + 0.5)))
    assert np.allclose(load_scorer(path).probability(x), expected, rtol=1e-5)
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(dict(data, degree=2)))  # degree-1 weights
    with pytest.raises(ValueError, match="do not fit degree 2"):
        load_scorer(bad)


def test_side_probability_is_noisy_or_of_its_best_quotes():
    assert addresses([]) == 0.0
    assert addresses([0.9, 0.0, 0.0, 0.0]) == pytest.approx(0.9)
    assert addresses([0.5, 0.5, 0.5, 0.5]) == pytest.approx(0.875)  # only the best three count


def test_eval_questions_names_bad_lines(tmp_path, small_index):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"q": "fine"}\nnot json\n', encoding="utf-8")
    with pytest.raises(rag.RagError, match="bad.jsonl:2"):
        evaluate.eval_questions(bad, small_index)


def test_eval_questions_scores_cells(tmp_path, small_index):
    sets = tmp_path / "q.jsonl"
    sets.write_text(json.dumps({"q": "How did the senate vote on the infrastructure bill?",
                                "expect": {"left": "69 to 30", "center": None}}) + "\n", encoding="utf-8")
    report = evaluate.eval_questions(sets, small_index)
    assert report["answerable_cells"] == 1 and report["silent_cells"] == 1


def test_seed_question_set_is_well_formed():
    items = evaluate.read_questions(SEED_QUESTIONS)
    texts = {p: (Path(__file__).parents[1] / "seeds" / f"{p}.txt").read_text(encoding="utf-8")
             for p in ("independent-putin-playing-for-time", "rt-putin-trump-call-a-success")}
    assert len(items) >= 40
    assert sum(1 for i in items if i.get("abstain")) >= 5
    assert sum(1 for i in items if None in (i.get("expect") or {}).values()) >= 10
    for item in items:
        for prefix, expected in (item.get("expect") or {}).items():
            text = next(t for doc, t in texts.items() if doc.startswith(prefix))
            for span in [expected] if isinstance(expected, str) else expected or []:
                assert span in text, (item["q"], span)


@pytest.mark.shared_data
def test_news_dev_set_is_well_formed():
    """Every expected span is verbatim in its AllSides article (bench/news_dev.py)."""
    import gzip

    from conftest import require_shared_data

    from rag.ingest import clean_text

    items = evaluate.read_questions(NEWS_DEV_QUESTIONS)
    wanted = {key for item in items for key in item.get("expect") or {}}
    with gzip.open(require_shared_data("allsides-12k.jsonl.gz"), "rt", encoding="utf-8") as stream:
        texts = {r["ID"]: clean_text(r["content_original"]) for r in map(json.loads, stream) if r["ID"] in wanted}
    assert len(items) >= 40 and set(texts) == wanted
    assert sum(1 for i in items if i.get("abstain")) >= 5
    for item in items:
        for doc, expected in (item.get("expect") or {}).items():
            for span in [expected] if isinstance(expected, str) else expected or []:
                assert span in texts[doc], (item["q"], span)


@pytest.mark.slow
def test_seed_questions_answer_and_abstain(seed_index):
    report = evaluate.eval_questions(SEED_QUESTIONS, seed_index)
    assert report["answerable_cells"] >= 50
    # floors a bit under the measured numbers in BENCHMARKS.md
    assert report["hit@1"] >= 0.67, report["misses"]
    assert report["silent_abstained"] >= 0.80, report["misses"]
    assert report["off_topic_abstained"] == 1.0, report["misses"]


@pytest.mark.slow
@pytest.mark.shared_data
def test_news_dev_questions_answer_and_abstain(tmp_path, model):
    """The dev set the threshold was chosen on (floors a bit under BENCHMARKS.md)."""
    import sys

    from conftest import ROOT, require_shared_data

    sys.path.insert(0, str(ROOT / "bench"))
    import news_dev

    from rag.engine import Index

    ids = {key for item in evaluate.read_questions(NEWS_DEV_QUESTIONS) for key in item.get("expect") or {}}
    news_dev.write_articles(require_shared_data("allsides-12k.jsonl.gz"), ids, tmp_path / "articles.jsonl")
    ix = Index(tmp_path / "index", embedder=model)
    ix.rebuild([tmp_path / "articles.jsonl"], news_dev.FIELDS, progress=False)
    report = evaluate.eval_questions(NEWS_DEV_QUESTIONS, ix)
    assert report["hit@1"] >= 0.58, report["misses"]
    assert report["silent_abstained"] >= 0.80, report["misses"]
    assert report["off_topic_abstained"] == 1.0, report["misses"]


@pytest.mark.slow
def test_cli_eval_questions_prints_json(seed_index_dir, capsys):
    from rag.cli import main

    assert main(["eval", "questions", str(SEED_QUESTIONS), "--index", str(seed_index_dir), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["off_topic_questions"] >= 5


@pytest.mark.slow
@pytest.mark.shared_data
def test_squad_shared_answer_sentences(tmp_path, model):
    from conftest import require_shared_data

    squad = require_shared_data("squad2-dev-tune.json")
    report = evaluate.eval_squad(squad, tmp_path / "index", limit=300, embedder=model)
    assert report["questions"] == 300
    assert report["hit@1"] >= 0.72 and report["hit@3"] >= 0.84, report


def test_bm25_from_word_counts_scores_as_bm25s_indexing_the_text():
    """Index BM25 is built from stored word counts (lexical.of_terms); it must
    score exactly as bm25s's own indexing of the same words."""
    import bm25s

    text = (Path(__file__).parents[1] / "seeds" / "independent-putin-playing-for-time.txt").read_text(encoding="utf-8")
    paragraphs = [p for p in text.split("\n\n") if tokens(p)]
    ours = build_lexical(paragraphs)
    reference = bm25s.BM25()
    reference.index([tokens(p) for p in paragraphs], show_progress=False)
    for question in ("Did Russia make big concessions?", "Is Putin playing for time?", "ceasefire energy"):
        known = [t for t in dict.fromkeys(tokens(question)) if t in reference.vocab_dict]
        assert known and np.allclose(ours.scores(question), reference.get_scores(known), atol=1e-5)
