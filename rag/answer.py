"""Answer: within each viewpoint's passages, pick the sentences that answer
the question, verbatim, with a score and a citation; decide per viewpoint
whether it addresses the question at all.

Each candidate sentence is described by a few features (its similarity to
the question, its passage's, the question's rare words it and its neighbours
hold, its position, ...). A logistic regression trained on the SQuAD tune
split (``bench/train_scorer.py``; weights in ``scorer.json``) turns them
into the probability that the sentence answers the question.

That first scorer only sees question and sentence apart. By default
(``Settings.scorer == "reranker"``) its best ``Settings.rerank`` candidates per
side are read again by the cross-encoder (rag/rerank.py), question and sentence
together, and their calibrated probability replaces the first one. Either way
the probability is the quote's score, so one threshold (answer.threshold)
decides whether a side addresses the question.
"""
from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import NamedTuple, Sequence

import numpy as np

from .cruft import is_cruft
from .store.index import Snapshot
from .lexical import Lexical, tokens
from .retrieve import Passage
from .settings import Settings
from .types import Quote, ViewpointAnswer

FEATURES = ("sent_cos", "pass_cos", "nb_cos", "sent_idf", "pass_idf", "ctx_idf", "gap_cos",
            "gap_idf", "pass_rank", "position", "log_words", "novel", "number_match", "name_match",
            "bigrams", "matched", "prev_idf", "next_idf", "rank_cos", "rank_idf", "anaphor_prev")
SCORER_FILE = Path(__file__).with_name("scorer.json")
SIDE_QUOTES = 3  # a side's decision weighs its best three quotes (see ``addresses``)
SHORT_WORDS = 5  # a sentence shorter than this (or opening with a pronoun) is quoted with its lead
# An adjacent sentence at least this probable (relative to the quote's own) joins the quote.
PAIR_RATIO = 0.5
DUPLICATE_COSINE = 0.95  # quotes this close say the same thing (syndicated copies, reprints)
_NUMERIC_Q = re.compile(r"\b(how (many|much|long|old|far|large|big)|when|what (year|date|time|percentage)"
                        r"|which year|in what year|what (number|age)|how often)\b", re.I)
_WHO_Q = re.compile(r"\b(who|whom|whose|where|which|what (country|city|company|group|person|name))\b", re.I)
# a number, in digits or words ("two and a half hours")
_DIGIT = re.compile(r"\d|\b(one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|twenty|thirty|"
                    r"forty|fifty|hundred|thousand|million|billion|half|dozen|decade|century)s?\b", re.I)
# A sentence opening with a pronoun continues the one before: the question's words are
# often there and the answer here ("... the Anglo-Norman language ... It in turn evolved"),
# and a reader needs that lead to know what "it" is.
_ANAPHOR = re.compile(r"^\W*(it|its|he|his|she|her|they|their|this|these|those|such)\b", re.I)
_NAME = re.compile(r"(?<![.!?]\s)(?<!^)\b[A-Z][a-z]+")
# A sentence that ends in a question mark asks, it does not answer: news and opinion pose
# them (explainers' "What is stare decisis?", rhetorical questions, headlines) and they echo
# the user's words, so they would outrank their own answer. SQuAD's Wikipedia has almost none.
_ASKS = re.compile(r"\?[\s\"'”’)\]]*$")


@dataclass(frozen=True)
class Query:
    """What is searched: the question's vector, blended with the chat so far."""

    text: str
    vector: np.ndarray
    terms: frozenset[str]
    question: str = ""  # the question alone (its words drive the lexical features)


@dataclass(frozen=True)
class Candidates:
    """The sentences of a viewpoint's passages, with one feature row each."""

    rows: np.ndarray  # sentence rows of the snapshot
    chunk_rows: np.ndarray  # the passage each sentence was found in
    features: np.ndarray  # (len(rows), len(FEATURES)) float32


@dataclass(frozen=True)
class Scorer:
    """The features and (degree 2) their pairwise products, standardized, then
    logistic regression: P(sentence answers the question). The products let one
    feature's weight depend on another's (a name match counts for more in a
    sentence that is also close to the question)."""

    mean: np.ndarray
    scale: np.ndarray
    coef: np.ndarray
    intercept: float
    degree: int = 1

    def probability(self, features: np.ndarray) -> np.ndarray:
        z = ((expand(features, self.degree) - self.mean) / self.scale) @ self.coef + self.intercept
        return 1.0 / (1.0 + np.exp(-z))


def expand(features: np.ndarray, degree: int) -> np.ndarray:
    """The features, then for degree 2 every product x_i * x_j (i <= j), in
    scikit-learn's PolynomialFeatures order.

    >>> expand(np.array([[2.0, 3.0]]), 2).tolist()
    [[2.0, 3.0, 4.0, 6.0, 9.0]]
    """
    if degree == 1:
        return features
    i, j = np.triu_indices(features.shape[1])
    return np.hstack([features, features[:, i] * features[:, j]])


@functools.lru_cache(maxsize=4)
def load_scorer(path: Path = SCORER_FILE) -> Scorer:
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    if tuple(data["features"]) != FEATURES:
        raise ValueError(f"{path}: trained on features {data['features']}, this code computes {FEATURES}")
    degree = int(data.get("degree", 1))
    scorer = Scorer(*(np.asarray(data[key], dtype=np.float64) for key in ("mean", "scale", "coef")),
                    float(data["intercept"]), degree)
    if len(scorer.coef) != expand(np.zeros((1, len(FEATURES))), degree).shape[1]:
        raise ValueError(f"{path}: {len(scorer.coef)} weights do not fit degree {degree}")
    return scorer


def content_terms(text: str) -> frozenset[str]:
    """Lower-cased content words, crudely stemmed.

    >>> sorted(content_terms("Did Russia make big concessions?"))
    ['big', 'concession', 'make', 'russia']
    """
    return frozenset(tokens(text))


def follow_up_text(question: str, history: Sequence[str]) -> str:
    """The text that stands for a follow-up: the latest earlier question, then this one.
    Only the last turn is used so an old topic does not linger for ever."""
    previous = [h.strip() for h in history if h and h.strip()]
    return f"{previous[-1]} {question}" if previous else question


def candidates(snap: Snapshot, query: Query, passages: list[Passage], lexical: Lexical) -> Candidates:
    """Every sentence of ``passages`` with its features (see ``FEATURES``)."""
    found: dict[int, Passage] = {}  # sentence row -> the best passage holding it
    for passage in passages:
        article_row, _, _, first, last = (int(v) for v in snap.chunks[passage.chunk_row])
        base = int(snap.sentence_start[article_row])
        for row in range(base + first, base + last + 1):
            if _skipped(snap, article_row, row - base):
                continue
            if row not in found or found[row].score < passage.score:
                found[row] = passage
    if not found:
        return Candidates(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros((0, len(FEATURES)), np.float32))
    rows = np.fromiter(found, dtype=np.int64)
    weights = {t: lexical.idf(t) for t in query.terms}
    total = sum(weights.values()) or 1.0

    def covered(words: set[str]) -> float:  # share of the question's idf mass present
        return sum(w for t, w in weights.items() if t in words) / total

    vectors = snap.sentence_vectors
    numeric_q = bool(_NUMERIC_Q.search(query.question or query.text))
    who_q = bool(_WHO_Q.search(query.question or query.text))
    passage_words = {p.chunk_row: lexical.chunk_words(p.chunk_row) or _chunk_words(snap, p.chunk_row)
                     for p in passages}
    q_tokens = tokens(query.question or query.text)
    q_bigrams = set(zip(q_tokens, q_tokens[1:]))
    q_words = {w.lower() for w in query.text.split()}
    spans = {}  # sentence row -> (article row, its first sentence row, its sentence count)
    for row in rows.tolist():
        article_row = int(snap.chunks[found[row].chunk_row][0])
        spans[row] = (article_row, int(snap.sentence_start[article_row]), int(snap.sentences.counts[article_row]))
    neighbours_of = {row: [r for r in (row - 1, row + 1) if start <= r < start + count]
                     for row, (_, start, count) in spans.items()}
    scored = sorted(set(spans) | {r for rs in neighbours_of.values() for r in rs})
    cos_of = dict(zip(scored, (vectors[scored].astype(np.float32) @ query.vector).tolist()))
    table = []
    for row in rows.tolist():
        passage = found[row]
        article_row, start, count = spans[row]
        sentence = _sentence(snap, article_row, row - start)
        words = sentence.words
        bigrams = len(q_bigrams & sentence.bigrams) / max(len(q_bigrams), 1)
        neighbours = neighbours_of[row]
        nb_cos = max((cos_of[r] for r in neighbours), default=0.0)
        around = {r: _sentence(snap, article_row, r - start).words for r in neighbours}
        context = words.union(*around.values())
        names = sentence.names - q_words
        table.append([0.0, passage.score, nb_cos, covered(words), covered(passage_words[passage.chunk_row]),
                      covered(context), 0.0, 0.0, 1.0 / passage.rank, (row - start) / max(count - 1, 1),
                      np.log1p(sentence.n_words), len(words - query.terms) / max(len(words), 1),
                      float(numeric_q and sentence.numeric), float(who_q and bool(names)),
                      bigrams, float(len(words & query.terms)), covered(around.get(row - 1, set())),
                      covered(around.get(row + 1, set())), 0.0, 0.0,
                      covered(around.get(row - 1, set())) if sentence.anaphor else 0.0])
    features = np.asarray(table, dtype=np.float32)
    features[:, 0] = [cos_of[r] for r in rows.tolist()]
    features[:, 6] = features[:, 0] - features[:, 0].max()  # how far behind the best sentence
    features[:, 7] = features[:, 3] - features[:, 3].max()
    for column, source in (("rank_cos", 0), ("rank_idf", 3)):  # 1 / rank within the viewpoint
        order = np.argsort(-features[:, source], kind="stable")
        features[order, FEATURES.index(column)] = 1.0 / np.arange(1, len(rows) + 1)
    chunk_rows = np.array([found[r].chunk_row for r in rows.tolist()], dtype=np.int64)
    return Candidates(rows, chunk_rows, features)


def best_quotes(snap: Snapshot, query: Query, passages: list[Passage], settings: Settings, k: int,
                lexical: Lexical, scorer: Scorer | None = None) -> list[Quote]:
    """The ``k`` most probable answer sentences, near-duplicates collapsed."""
    found = candidates(snap, query, passages, lexical)
    if not len(found.rows):
        return []
    probability = (scorer or load_scorer()).probability(found.features)
    if settings.scorer == "reranker":
        probability = reranked(snap, query, found, probability, max(settings.rerank, k))
    order = np.argsort(-probability, kind="stable")
    quotes: list[Quote] = []
    kept: list[int] = []  # sentence rows behind ``quotes``
    chance = dict(zip(found.rows.tolist(), probability.tolist()))
    for i in order[:4 * k].tolist():  # duplicates further down would not be shown anyway
        row, chunk_row = int(found.rows[i]), int(found.chunk_rows[i])
        p = float(probability[i])
        # An adjacent sentence that answers nearly as well joins the quote (the answer
        # spans both). Only a less probable one: a more probable neighbour is quoted
        # first, on its own merit, and takes this sentence along if it qualifies.
        article_row = int(snap.chunks[chunk_row][0])
        first = int(snap.sentence_start[article_row])
        beside = [r for r in (row - 1, row + 1) if first <= r < first + int(snap.sentences.counts[article_row])
                  and _joinable(snap, article_row, min(row, r) - first)]
        partner = max(beside, key=lambda r: chance.get(r, 0.0), default=None)  # never another article's
        pair = [partner] if partner is not None and PAIR_RATIO * p <= chance.get(partner, 0.0) <= p else []
        quote = _quote(snap, row, chunk_row, p, pair)
        twin = _duplicate_of(snap, row, quote.text, kept, quotes)
        if twin is not None:  # same thing said again: cite its source on the kept quote
            if quote.doc_id != quotes[twin].doc_id and quote.doc_id not in quotes[twin].also_in:
                quotes[twin] = replace(quotes[twin], also_in=quotes[twin].also_in + (quote.doc_id,))
            continue
        if _overlaps(quote, quotes):  # a two-sentence quote around one already shown
            continue
        if len(quotes) < k:
            quotes.append(quote)
            kept.append(row)
    return quotes


def reranked(snap: Snapshot, query: Query, found: Candidates, first: np.ndarray, n: int) -> np.ndarray:
    """The first scorer's ``n`` best candidates read again by the cross-encoder: their
    probabilities become its calibrated ones; the rest get 0 (never quoted)."""
    from . import rerank  # loads onnxruntime and the model file on the first question only

    top = np.argsort(-first, kind="stable")[:n]
    probability = np.zeros_like(first)
    model = rerank.load()
    probability[top] = model.probability(query.text, candidate_texts(snap, found, top, model.context), first[top])
    return probability


def candidate_texts(snap: Snapshot, found: Candidates, which: np.ndarray, context: bool = False) -> list[str]:
    """The sentence texts of candidates ``which`` (indexes into ``found``); with ``context``,
    as a reranker trained with context reads them: each with the sentence before it."""
    from .rerank import segment

    texts = []
    for i in which.tolist():
        article_row = int(snap.chunks[found.chunk_rows[i]][0])
        index = int(found.rows[i]) - int(snap.sentence_start[article_row])
        text = _text(snap, article_row, index)
        texts.append(segment(text, _text(snap, article_row, index - 1) if context and index > 0 else ""))
    return texts


def threshold(settings: Settings) -> float:
    """The side threshold in force: the setting, else the active scorer's own."""
    if settings.min_score is not None:
        return settings.min_score
    if settings.scorer == "reranker":
        from . import rerank

        return rerank.load().calibration.threshold
    return _scorer_threshold(SCORER_FILE)


@functools.lru_cache(maxsize=4)
def _scorer_threshold(path: Path) -> float:  # read once, not on every question
    return float(json.loads(Path(path).read_text(encoding="utf-8"))["threshold"])


def _overlaps(quote: Quote, quotes: list[Quote]) -> bool:
    return any(q.doc_id == quote.doc_id and q.start < quote.end and quote.start < q.end for q in quotes)


def _duplicate_of(snap: Snapshot, row: int, text: str, kept: list[int], quotes: list[Quote]) -> int | None:
    if not kept:
        return None
    cosine = snap.sentence_vectors[kept].astype(np.float32) @ snap.sentence_vectors[row].astype(np.float32)
    for n, quote in enumerate(quotes):
        if cosine[n] >= DUPLICATE_COSINE or " ".join(quote.text.lower().split()) == " ".join(text.lower().split()):
            return n
    return None


def _quote(snap: Snapshot, row: int, chunk_row: int, score: float, pair: Sequence[int] = ()) -> Quote:
    """The sentence at ``row``, with its lead when it needs one, and with the
    adjacent sentence rows in ``pair`` (same article only)."""
    article_row, chunk_start, chunk_end = (int(v) for v in snap.chunks[chunk_row][:3])
    article = snap.articles[article_row]
    base = int(snap.sentence_start[article_row])
    spans = snap.sentences[article_row]
    index = row - base
    span = spans[index]
    start, end, text = span.start, span.end, article.text[span.start:span.end]
    if index > 0 and (len(text.split()) < SHORT_WORDS or _ANAPHOR.match(text) or row - 1 in pair) \
            and _joinable(snap, article_row, index - 1):
        start = spans[index - 1].start  # "Even ice hockey games." needs its lead
    if index + 1 < len(spans) and row + 1 in pair and _joinable(snap, article_row, index):
        end = spans[index + 1].end
    return Quote(text=article.text[start:end], score=round(score, 4), doc_id=article.id,
                 title=article.title, source=article.source, start=start, end=end,
                 passage=article.text[min(start, chunk_start):max(end, chunk_end)],
                 date=article.date, url=article.url)


class _Sentence(NamedTuple):
    """What the features need of a sentence whatever the question: worked out
    once per loaded version (``_sentence``), as questions reach it."""

    words: frozenset  # content words (lexical.tokens)
    bigrams: frozenset  # adjacent content-word pairs
    n_words: int  # whitespace words
    names: frozenset  # capitalised words inside it, lower-cased
    numeric: bool  # holds a number (digits or spelled out)
    anaphor: bool  # opens with a pronoun: "It", "They", "This"...


def _cache(snap: Snapshot, name: str) -> dict:
    """A cache of what the answer stage derives from a sentence or chunk text, kept on the
    snapshot (the local store's lives as long as its loaded version; the Milvus store hands
    each snapshot the same long-lived dicts). Keys name the text, not a row: an article's
    content hash and a sentence index or span, the same in every snapshot that holds it."""
    return snap.__dict__.setdefault("_derived", {}).setdefault(name, {})


def _text_key(snap: Snapshot, article_row: int) -> str | int:
    return snap.articles[article_row].content_hash or article_row  # a hand-made Article may have none


def _sentence(snap: Snapshot, article_row: int, index: int) -> _Sentence:
    cache, key = _cache(snap, "_sentence_tokens"), (_text_key(snap, article_row), index)
    found = cache.get(key)
    if found is None:
        text = _text(snap, article_row, index)
        sequence = tokens(text)
        found = cache[key] = _Sentence(frozenset(sequence), frozenset(zip(sequence, sequence[1:])),
                                       len(text.split()), frozenset(m.lower() for m in _NAME.findall(text)),
                                       bool(_DIGIT.search(text)), bool(_ANAPHOR.match(text)))
    return found


def _joinable(snap: Snapshot, article_row: int, index: int) -> bool:
    """Whether sentences ``index`` and ``index + 1`` of an article may make one quote:
    no line break between them (a quote never crosses a paragraph: "MUST WATCH … 03:42"
    is no lead for the next paragraph's "Those areas…") and neither is cruft."""
    text = snap.articles[article_row].text
    first, second = snap.sentences.at(article_row, index), snap.sentences.at(article_row, index + 1)
    return "\n" not in text[first.end:second.start] and not is_cruft(text, first) and not is_cruft(text, second)


def _skipped(snap: Snapshot, article_row: int, index: int) -> bool:
    """Whether a sentence is never a quote: a question the article asks, or page furniture."""
    cache, key = _cache(snap, "_skipped"), (_text_key(snap, article_row), index)
    found = cache.get(key)
    if found is None:
        article = snap.articles[article_row]
        found = cache[key] = bool(_ASKS.search(_text(snap, article_row, index))
                                  or is_cruft(article.text, snap.sentences.at(article_row, index)))
    return found


def _chunk_words(snap: Snapshot, chunk_row: int) -> set[str]:
    article_row, start, end = (int(v) for v in snap.chunks[chunk_row][:3])
    cache, key = _cache(snap, "_chunk_words"), (_text_key(snap, article_row), start, end)
    found = cache.get(key)
    if found is None:
        found = cache[key] = set(tokens(snap.articles[article_row].text[start:end]))
    return found


def _text(snap: Snapshot, article_row: int, index: int) -> str:
    span = snap.sentences.at(article_row, index)
    return snap.articles[article_row].text[span.start:span.end]


def addresses(probabilities: Sequence[float]) -> float:
    """P(a side addresses the question): that at least one of its best
    ``SIDE_QUOTES`` quotes answers it, read as independent chances (noisy-or).

    >>> round(addresses([0.5, 0.2]), 2)
    0.6
    """
    best = sorted(probabilities, reverse=True)[:SIDE_QUOTES]
    return 1.0 - float(np.prod([1.0 - p for p in best]))


def viewpoint_answer(label: str, quotes: list[Quote], min_score: float) -> ViewpointAnswer:
    """A side addresses the question when ``addresses`` of its quotes reaches ``min_score``."""
    abstained = not quotes or addresses([q.score for q in quotes]) < min_score
    return ViewpointAnswer(viewpoint=label, abstained=abstained, answers=tuple(quotes))
