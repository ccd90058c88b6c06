"""Chunk: sentence spans are verbatim, chunks hold whole sentences within both budgets."""
import pytest

from rag.chunk import chunk_article, count_tokens, split_sentences
from rag.ingest import load, make_article
from tests.conftest import SEEDS


@pytest.fixture(scope="module")
def tokenizer_spans():
    from rag.embed import MiniLM

    return MiniLM().token_spans  # the real model tokenizer; no torch needed


def test_sentences_respect_abbreviations_quotes_and_lines():
    text = "Mr. Trump spoke to Vladimir Putin. He said “very well.” Then:\nA new line starts here"
    got = [text[s.start:s.end] for s in split_sentences(text)]
    assert got == ["Mr. Trump spoke to Vladimir Putin.", "He said “very well.”", "Then:",
                   "A new line starts here"]
    text = "Sens. Lindsey Graham and Chuck Schumer met Reps. Jim Jordan and Maxine Waters. They talked."
    assert [text[s.start:s.end] for s in split_sentences(text)] == [
        "Sens. Lindsey Graham and Chuck Schumer met Reps. Jim Jordan and Maxine Waters.", "They talked."]


def test_seed_chunks_are_verbatim_whole_sentences_within_budgets(tokenizer_spans):
    for article in load([SEEDS]).articles:
        chunked = chunk_article(article, tokenizer_spans, chunk_tokens=200, overlap=1, model_max_tokens=254)
        starts = {s.start for s in chunked.sentences}
        ends = {s.end for s in chunked.sentences}
        for chunk in chunked.chunks:
            text = article.text[chunk.start:chunk.end]
            assert chunk.start in starts and chunk.end in ends  # never cuts a sentence
            assert len(tokenizer_spans([text])[0]) <= 254  # fits the model window: nothing truncated
            assert count_tokens([text])[0] <= 200 + 10  # about the budget (BPE is not quite additive)
        # every sentence is covered, and consecutive chunks overlap by one sentence
        covered = set()
        for c in chunked.chunks:
            covered.update(range(c.first_sentence, c.last_sentence + 1))
        assert covered == set(range(len(chunked.sentences)))
        for a, b in zip(chunked.chunks, chunked.chunks[1:]):
            assert b.first_sentence == a.last_sentence


def test_text_without_punctuation_is_windowed_not_truncated(tokenizer_spans):
    words = " ".join(f"word{i} alpha beta gamma" for i in range(400))  # ~3,000 wordpieces, no full stop
    article = make_article(words, {}, default_id="flat", path="flat.txt")
    chunked = chunk_article(article, tokenizer_spans, chunk_tokens=200, model_max_tokens=254)
    assert len(chunked.chunks) > 5
    rebuilt = " ".join(article.text[s.start:s.end] for s in chunked.sentences)
    assert rebuilt.split() == article.text.split()  # every word kept, none split
    for chunk in chunked.chunks:
        assert len(tokenizer_spans([article.text[chunk.start:chunk.end]])[0]) <= 254


def test_small_budget_gives_more_chunks(tokenizer_spans):
    article = load([SEEDS]).articles[0]
    small = chunk_article(article, tokenizer_spans, chunk_tokens=60)
    large = chunk_article(article, tokenizer_spans, chunk_tokens=300)
    assert len(small.chunks) > len(large.chunks)


def test_each_sentence_goes_through_the_model_tokenizer_once(tokenizer_spans):
    """Chunking counts a sentence's wordpieces from the one tokenization that finds
    its windows; only a piece cut from a too-long sentence is tokenized again."""
    seen: list[str] = []

    def counting(texts):
        seen.extend(texts)
        return tokenizer_spans(texts)

    long_sentence = "Many " + " ".join(f"word{i}" for i in range(600)) + "."
    article = make_article("Short one. " + long_sentence + " Another short one.", {}, "a", "a.md")
    chunked = chunk_article(article, counting, chunk_tokens=200, overlap=1, model_max_tokens=254)
    texts = [article.text[s.start:s.end] for s in chunked.sentences]
    assert len(texts) > 3  # the long sentence was cut into windows
    assert seen.count("Short one.") == 1 and seen.count("Another short one.") == 1
    assert all(seen.count(t) <= 2 for t in texts)  # a window piece: when cut, and once more on its own
