"""Property-based tests over ingest and chunk: whatever the input, every
sentence and chunk span is verbatim, nothing is silently dropped or cut off
by the model window, and the only errors are domain errors."""
import hashlib
import json
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from rag.chunk import chunk_article, split_sentences
from rag.embed import HashEmbedder, MiniLM
from rag.errors import RagError
from rag.ingest import _INVISIBLE, clean_text, load, make_article

# Characters that stress the splitter and the cleaner: sentence punctuation,
# abbreviations, quotes, every kind of line break, invisible and bidi controls,
# NUL, BOM, a lone surrogate, CJK (no spaces), combining marks, emoji.
TRICKY = [". ", "! ", "? ", "… ", "\n", "\n\n", "\r\n", "\r", "\u2028", "\u2029", "\x85", " ", "\t",
          "Mr. ", "e.g. ", "U.S. ", "3.5 ", "“", "”", "\"", "'", ")", "(", "\u200b", "\u202e", "\u2066",
          "\x00", "\ufeff", "\ud800", "\u00ad", "東京都", "e\u0301", "👩\u200d👩", "A", "a", "word ",
          "Zebra", "x" * 40, "Über "]
texts = st.lists(st.one_of(st.sampled_from(TRICKY), st.text(max_size=12)), max_size=60).map("".join)
# max_examples comes from the active profile (100 by default; more with --hypothesis-profile);
# no example database, so a run leaves no .hypothesis folder in the tree.
SETTINGS = settings(deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
HASH = HashEmbedder()


def assert_verbatim(text, chunked, token_spans, model_max):
    sentences, chunks = chunked.sentences, chunked.chunks
    previous_end = 0
    for span in sentences:
        assert previous_end <= span.start < span.end <= len(text)  # in order, in bounds, not empty
        piece = text[span.start:span.end]
        assert piece == piece.strip()  # trimmed, never a cut-off character
        previous_end = span.end
    # no visible character falls between sentences: nothing silently dropped
    assert "".join(text.split()) == "".join("".join(text[s.start:s.end].split()) for s in sentences)
    for chunk in chunks:
        assert 0 <= chunk.first_sentence <= chunk.last_sentence < len(sentences)
        assert chunk.start == sentences[chunk.first_sentence].start
        assert chunk.end == sentences[chunk.last_sentence].end
        # the model sees the whole chunk: never truncated by its window
        assert len(token_spans([text[chunk.start:chunk.end]])[0]) <= model_max
    if sentences:
        assert {i for c in chunks for i in range(c.first_sentence, c.last_sentence + 1)} == set(range(len(sentences)))


@SETTINGS
@given(raw=texts, budget=st.integers(3, 40), window=st.integers(2, 30), overlap=st.integers(0, 2))
@example(raw="no punctuation at all " * 60, budget=200, window=20, overlap=1)
def test_chunks_and_sentences_are_verbatim_for_any_text(raw, budget, window, overlap):
    try:
        article = make_article(raw, {}, default_id="p", path="p.txt")
    except RagError:
        return  # empty after cleaning: a domain error, as it should be
    assert not _INVISIBLE.search(article.text) and article.text == article.text.strip()
    assert article.content_hash == hashlib.sha256(article.text.encode("utf-8")).hexdigest()
    chunked = chunk_article(article, HASH.token_spans, budget, overlap, window)
    assert_verbatim(article.text, chunked, HASH.token_spans, window)


@pytest.fixture(scope="module")
def wordpieces():
    return MiniLM().token_spans  # the real model's tokenizer (no torch needed)


@SETTINGS
@given(raw=texts, window=st.integers(4, 24))
@example(raw="a" * 500 + " tail.", window=8)  # one giant "word": the window must still hold
@example(raw="東京都" * 80, window=10)  # no spaces at all
def test_real_tokenizer_windows_never_overflow(wordpieces, raw, window):
    try:
        article = make_article(raw, {}, default_id="p", path="p.txt")
    except RagError:
        return
    chunked = chunk_article(article, wordpieces, 200, 1, window)
    assert_verbatim(article.text, chunked, wordpieces, window)


@SETTINGS
@given(raw=texts)
def test_split_sentences_spans_are_trimmed_and_ordered(raw):
    text = clean_text(raw)
    spans = split_sentences(text)
    ends = [0] + [s.end for s in spans]
    assert all(a <= s.start < s.end for a, s in zip(ends, spans))
    assert all(text[s.start:s.end] == text[s.start:s.end].strip() for s in spans)


SUFFIXES = [".txt", ".md", ".html", ".jsonl", ".jsonl.gz", ".htm"]
encoded = st.one_of(
    texts.map(lambda t: t.encode("utf-8", "surrogatepass")),
    texts.map(lambda t: "\ufeff".encode() + t.encode("utf-8", "surrogatepass")),
    texts.map(lambda t: t.encode("utf-16", "surrogatepass")),
    st.binary(max_size=300),
    st.sampled_from([b"%PDF-1.7\n", b"PK\x03\x04rest", b"\x89PNG\r\n", b"caf\xe9 au lait.", b""]),
)


@SETTINGS
@given(data=encoded, suffix=st.sampled_from(SUFFIXES))
def test_any_bytes_under_any_name_give_articles_or_domain_errors(data, suffix):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"doc{suffix}"
        path.write_bytes(data)
        try:
            loaded = load([path])
        except RagError:
            return
        for rejected in loaded.rejected:
            assert rejected.path.startswith(str(path)) and "\n" not in rejected.reason
        for article in loaded.articles:
            check_article(article)
            if suffix in (".txt", ".md"):  # text files: the article is the file's own text, cleaned
                decoded = data.decode("utf-8-sig", "surrogatepass") if not data.startswith((b"\xff\xfe", b"\xfe\xff")) \
                    else data.decode("utf-16")
                assert article.text in clean_text(decoded)


json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), texts),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(texts, inner, max_size=3)),
    max_leaves=8)
records = st.dictionaries(st.sampled_from(["text", "id", "title", "viewpoint", "source", "extra", "url"]),
                          json_values, max_size=6)
lines = st.one_of(records.map(lambda r: json.dumps(r, ensure_ascii=False)), texts.map(lambda t: t.replace("\n", " ")))


@SETTINGS
@given(rows=st.lists(lines, max_size=6))
def test_jsonl_lines_become_articles_or_numbered_rejections(rows):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "batch.jsonl"
        path.write_bytes("\n".join(rows).encode("utf-8", "surrogatepass"))
        try:
            loaded = load([path])
        except RagError:
            return
        for article in loaded.articles:
            check_article(article)
            json.dumps(article.meta, ensure_ascii=False).encode("utf-8")  # the index can store it
        for rejected in loaded.rejected:
            assert rejected.path == str(path) or rejected.path.startswith(f"{path}:")


def check_article(article):
    assert article.text and article.text == article.text.strip() and not _INVISIBLE.search(article.text)
    for value in (article.id, article.title, article.source, article.viewpoint):
        assert isinstance(value, str) and not _INVISIBLE.search(value)
    article.text.encode("utf-8")  # writable: no lone surrogate survives
    chunked = chunk_article(article, HASH.token_spans, 30, 1, 20)
    assert_verbatim(article.text, chunked, HASH.token_spans, 20)
