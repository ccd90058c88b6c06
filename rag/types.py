"""The records that flow between pipeline stages.

Every record can point back into its article's text: spans are character
offsets into ``Article.text``, so ``article.text[start:end]`` is the quote.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import chain
from typing import Any, Mapping, NamedTuple

import numpy as np

# The metadata fields an article may carry by name; anything else goes to ``meta``.
ARTICLE_FIELDS = ("id", "title", "source", "viewpoint", "date", "url")


@dataclass(frozen=True)
class Article:
    """One ingested article: cleaned text plus the metadata a user gave."""

    id: str
    text: str
    title: str = ""
    source: str = ""
    viewpoint: str = ""
    date: str = ""
    url: str = ""
    path: str = ""  # where it came from (file, or file:line for JSONL)
    meta: Mapping[str, Any] = field(default_factory=dict)
    content_hash: str = ""  # sha256 of text: decides whether to re-embed

    def group(self, by: str = "viewpoint") -> str:
        """The label this article is grouped under: the field ``by``, else
        viewpoint, else source, else title, else id."""
        value = getattr(self, by, None) if by in ARTICLE_FIELDS else self.meta.get(by)
        for candidate in (value, self.viewpoint, self.source, self.title, self.id):
            if candidate not in (None, ""):
                return str(candidate)
        return self.id


class Span(NamedTuple):
    """Character offsets into an article's text (a tuple: an index holds
    hundreds of thousands, made fast when a version loads)."""

    start: int
    end: int


class Spans(Sequence):
    """The sentence spans of many articles, held as two arrays: item ``i`` is
    article ``i``'s spans as a tuple of ``Span``, made when asked for. A loaded
    12k-article version has over half a million sentences: making them all as
    tuples took 2.4 s of every cold start, and a question reads a few dozen.

    >>> spans = Spans.of([(Span(0, 5), Span(6, 9)), (), (Span(0, 3),)])
    >>> len(spans), spans[0], spans.counts.tolist(), spans.at(2, 0)
    (3, (Span(start=0, end=5), Span(start=6, end=9)), [2, 0, 1], Span(start=0, end=3))
    >>> list(spans[1:])
    [(), (Span(start=0, end=3),)]
    """

    def __init__(self, starts: np.ndarray, pairs: np.ndarray):
        self.starts = starts  # (n_articles + 1,) int64: article i's spans are pairs[starts[i]:starts[i + 1]]
        self.pairs = pairs  # (n_sentences, 2) int64: start, end

    @classmethod
    def counted(cls, counts: np.ndarray, pairs: np.ndarray) -> Spans:
        """From each article's sentence count and all the pairs, in order."""
        return cls(np.concatenate([[0], np.cumsum(counts)]).astype(np.int64), pairs)

    @classmethod
    def of(cls, per_article) -> Spans:
        """From per-article sequences of spans (or of (start, end) pairs)."""
        if isinstance(per_article, Spans):
            return per_article
        counts = np.fromiter(map(len, per_article), np.int64, len(per_article))
        flat = np.fromiter(chain.from_iterable(chain.from_iterable(per_article)), np.int64)
        if len(flat) != 2 * counts.sum():
            raise ValueError("a sentence span that is not a (start, end) pair")
        return cls.counted(counts, flat.reshape(-1, 2))

    @staticmethod
    def join(parts: Sequence[Spans]) -> Spans:
        if len(parts) == 1:
            return parts[0]
        counts = np.concatenate([p.counts for p in parts]) if parts else np.zeros(0, np.int64)
        pairs = np.concatenate([p.pairs for p in parts]) if parts else np.zeros((0, 2), np.int64)
        return Spans.counted(counts, pairs)

    @property
    def counts(self):
        """Sentences per article (an int64 array)."""
        return self.starts[1:] - self.starts[:-1]

    def at(self, article: int, index: int) -> Span:
        """One span, without making the article's others."""
        start, end = self.pairs[self.starts[article] + index].tolist()
        return Span(start, end)

    def take(self, keep) -> Spans:
        """The articles where the boolean array ``keep`` is true."""
        return Spans.counted(self.counts[keep], self.pairs[np.repeat(keep, self.counts)])

    def __len__(self) -> int:
        return len(self.starts) - 1

    def __getitem__(self, item):
        if isinstance(item, slice):
            first, stop, step = item.indices(len(self))
            if step != 1:
                raise ValueError("Spans slices take every article (step 1)")
            stop = max(stop, first)
            return Spans(self.starts[first:stop + 1] - self.starts[first],
                         self.pairs[self.starts[first]:self.starts[stop]])
        if item < 0:
            item += len(self)
        if not 0 <= item < len(self):
            raise IndexError("article row out of range")
        return tuple(map(Span._make, self.pairs[self.starts[item]:self.starts[item + 1]].tolist()))

    def __eq__(self, other) -> bool:
        return isinstance(other, Sequence) and len(self) == len(other) and all(
            tuple(a) == tuple(b) for a, b in zip(self, other))

    __hash__ = None


@dataclass(frozen=True)
class Chunk:
    """A run of whole sentences of one article, sized for the embedder."""

    doc_id: str
    start: int
    end: int
    first_sentence: int  # index into the article's sentence list
    last_sentence: int  # inclusive


@dataclass(frozen=True, eq=False)
class Embedded:
    """The vectors of the articles one build embedded, one array per kind, each
    article's rows contiguous and the articles in the order they were embedded.
    The model's output is written into place group by group, so a new segment
    of just these articles uses the arrays as they are: the largest arrays of
    a build exist once."""

    chunk_vectors: np.ndarray  # (n_chunks, dim) float32
    sentence_vectors: np.ndarray  # (n_sentences, dim) float16
    rows: Mapping[str, tuple[slice, slice]]  # article id -> its chunk rows, its sentence rows

    def of(self, article_id: str) -> tuple[np.ndarray, np.ndarray]:
        """An article's (chunk vectors, sentence vectors): views, not copies."""
        chunks, sentences = self.rows[article_id]
        return self.chunk_vectors[chunks], self.sentence_vectors[sentences]


@dataclass(frozen=True)
class Quote:
    """One verbatim answer: ``text == article.text[start:end]``."""

    text: str
    score: float
    doc_id: str
    title: str
    source: str
    start: int
    end: int
    passage: str  # the chunk the quote was found in, for context
    date: str = ""
    url: str = ""
    also_in: tuple[str, ...] = ()  # doc ids that say the same thing (near-duplicates, reprints)


@dataclass(frozen=True)
class ViewpointAnswer:
    viewpoint: str
    abstained: bool  # True: this side does not address the question
    answers: tuple[Quote, ...]  # best first; for an abstained side, the closest quotes


@dataclass(frozen=True)
class Coverage:
    """Which viewpoints address a question and which are silent on it (the blindspot)."""

    addressed: tuple[str, ...] = ()
    silent: tuple[str, ...] = ()


@dataclass(frozen=True)
class Answer:
    """What ``Index.ask`` returns; ``asdict`` of it is the ``rag ask --json`` contract."""

    question: str
    viewpoints: tuple[ViewpointAnswer, ...]  # ordered by best score
    more_viewpoints: int = 0  # viewpoints left out beyond ``Settings.max_viewpoints``
    query: str = ""  # the text actually searched (the question plus chat context)
    coverage: Coverage = Coverage()  # of the viewpoints listed


@dataclass(frozen=True)
class Rejected:
    path: str
    reason: str


@dataclass(frozen=True)
class BuildReport:
    """What a build or add changed; printed by the CLI, shown by the app."""

    added: tuple[str, ...] = ()
    changed: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    unchanged: int = 0
    rejected: tuple[Rejected, ...] = ()
    duplicates: tuple[tuple[str, str], ...] = ()  # (skipped id, id it duplicates)
    embedded_articles: int = 0  # articles whose text went through the model
    chunks: int = 0  # chunks in the index after the build
    version: str = ""  # the index version written ("" when nothing changed)
