"""The records that flow between pipeline stages.

Every record can point back into its article's text: spans are character
offsets into ``Article.text``, so ``article.text[start:end]`` is the quote.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Mapping, NamedTuple

if TYPE_CHECKING:
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
