"""Answer: within each viewpoint's passages, pick the sentences that answer
the question, verbatim, with a score and a citation; decide per viewpoint
whether it addresses the question at all."""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from .index import Snapshot
from .retrieve import Passage
from .settings import Settings
from .types import Quote, ViewpointAnswer

_STOP = frozenset("""a an the and or but if of to in on at by for with from as is are was were be been
being do does did done have has had it its this that these those he she they them his her their
what which who whom whose when where why how there here not no so than then too very can could
would should will shall may might must about into over under again further once also just
any all some such only own same other more most i you we us our your me my mine yours""".split())
_WORDS = re.compile(r"[a-z0-9]+")
# Sentence weight vs. passage weight: the sentence must answer, its passage must be on topic.
SENTENCE_WEIGHT = 0.65
OVERLAP_WEIGHT = 0.15
SHORT_WORDS = 5  # sentences shorter than this rarely answer anything on their own


@dataclass(frozen=True)
class Query:
    """What is searched: the question's vector, blended with the chat so far."""

    text: str
    vector: np.ndarray
    terms: frozenset[str]


def content_terms(text: str) -> frozenset[str]:
    """Lower-cased content words, crudely stemmed.

    >>> sorted(content_terms("Did Russia make big concessions?"))
    ['big', 'concession', 'make', 'russia']
    """
    return frozenset(_stem(w) for w in _WORDS.findall(text.lower()) if w not in _STOP)


def _stem(word: str) -> str:
    for suffix in ("ing", "ed", "es", "s"):
        if len(word) > len(suffix) + 3 and word.endswith(suffix):
            return word[: -len(suffix)]
    return word


def follow_up_text(question: str, history: Sequence[str]) -> str:
    """The text that stands for a follow-up: the latest earlier question, then this one.
    Only the last turn is used so an old topic does not linger for ever."""
    previous = [h.strip() for h in history if h and h.strip()]
    return f"{previous[-1]} {question}" if previous else question


def best_quotes(snap: Snapshot, query: Query, passages: list[Passage], settings: Settings,
                k: int) -> list[Quote]:
    """Score every sentence of the retrieved passages; keep the best ``k``."""
    candidates: dict[int, tuple[int, float]] = {}  # sentence row -> (chunk row, passage score)
    for passage in passages:
        article_row, _, _, first, last = (int(v) for v in snap.chunks[passage.chunk_row])
        base = int(snap.sentence_start[article_row])
        for sentence in range(first, last + 1):
            row = base + sentence
            if row not in candidates or candidates[row][1] < passage.score:
                candidates[row] = (passage.chunk_row, passage.score)
    if not candidates:
        return []
    rows = np.fromiter(candidates, dtype=np.int64)
    similarity = snap.sentence_vectors[rows].astype(np.float32) @ query.vector
    scored = []
    for row, sim in zip(rows, similarity):
        chunk_row, passage_score = candidates[int(row)]
        text, span, article = _sentence(snap, chunk_row, int(row))
        score = SENTENCE_WEIGHT * float(sim) + (1 - SENTENCE_WEIGHT) * passage_score
        score += OVERLAP_WEIGHT * _overlap(query.terms, text)
        if len(text.split()) < SHORT_WORDS:
            score *= 0.85
        scored.append((score, text, span, article, chunk_row))
    scored.sort(key=lambda item: -item[0])
    quotes, seen = [], set()
    for score, text, span, article, chunk_row in scored:
        if text.lower() in seen:  # the same sentence twice (reprinted text): cite it once
            continue
        seen.add(text.lower())
        _, start, end = (int(v) for v in snap.chunks[chunk_row][:3])
        quotes.append(Quote(text=text, score=round(min(max(score, 0.0), 1.0), 4), doc_id=article.id,
                            title=article.title, source=article.source, start=span[0], end=span[1],
                            passage=article.text[start:end], date=article.date, url=article.url))
        if len(quotes) == k:
            break
    return quotes


def _sentence(snap: Snapshot, chunk_row: int, sentence_row: int):
    article_row = int(snap.chunks[chunk_row][0])
    article = snap.articles[article_row]
    span = snap.sentences[article_row][sentence_row - int(snap.sentence_start[article_row])]
    return article.text[span.start:span.end], (span.start, span.end), article


def _overlap(terms: frozenset[str], text: str) -> float:
    if not terms:
        return 0.0
    return len(terms & content_terms(text)) / len(terms)


def viewpoint_answer(label: str, quotes: list[Quote], min_score: float) -> ViewpointAnswer:
    """A side addresses the question when its best quote reaches ``min_score``."""
    abstained = not quotes or quotes[0].score < min_score
    return ViewpointAnswer(viewpoint=label, abstained=abstained, answers=tuple(quotes))
