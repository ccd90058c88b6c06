"""Lexical: BM25 over the chunks of one loaded index version (``bm25s``).

Each segment stores its chunks' term counts (``Terms``: written once with
the segment, so nothing is tokenized again when a version loads); a loaded
version joins its segments' counts and builds its BM25 from them on the
first question (about a second at 12k articles), kept on the snapshot. The
same statistics give the inverse document frequencies that the answer scorer
weighs question terms with.
"""
from __future__ import annotations

import functools
import re
import threading
from array import array
from collections import Counter
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Sequence

import numpy as np

# Bump when ``tokens`` changes: stored term counts of another version are then
# ignored (counted again from the text) instead of mismatching new questions.
TERMS_VERSION = 1

_STOP = frozenset("""a an the and or but if of to in on at by for with from as is are was were be been
being do does did done have has had it its this that these those he she they them his her their
what which who whom whose when where why how there here not no so than then too very can could
would should will shall may might must about into over under again further once also just
any all some such only own same other more most i you we us our your me my mine yours""".split())
_WORDS = re.compile(r"[a-z0-9]+")
_BUILD_LOCK = threading.Lock()


@functools.lru_cache(maxsize=1 << 16)  # a corpus reuses few words: stem each once
def stem(word: str) -> str:
    """A crude suffix stripper: enough to match "concessions" with "concession"."""
    for suffix in ("ing", "ed", "es", "s"):
        if len(word) > len(suffix) + 3 and word.endswith(suffix):
            return word[: -len(suffix)]
    return word


def tokens(text: str) -> list[str]:
    """Lower-cased, stemmed content words, in order.

    >>> tokens("Did Russia make big concessions?")
    ['russia', 'make', 'big', 'concession']
    """
    return [stem(w) for w in _WORDS.findall(text.lower()) if w not in _STOP]


@dataclass(frozen=True, eq=False)
class Terms:
    """Each chunk's content words and their counts: a sparse rows x words table.
    Row i's entries are ``ids[rows[i]:rows[i + 1]]`` (positions in ``vocab``)
    with ``counts`` at the same positions."""

    vocab: tuple  # words
    rows: np.ndarray  # (n_rows + 1,) int64 offsets into ids / counts
    ids: np.ndarray  # int32 word positions in vocab, each once per row
    counts: np.ndarray  # int32 times the word occurs in the row

    @staticmethod
    def of(texts: Sequence[str]) -> Terms:
        """Count the content words (``tokens``) of each text.

        >>> t = Terms.of(["the cat sat on the cat", "a dog"])
        >>> [dict(zip([t.vocab[i] for i in t.ids[a:b]], t.counts[a:b].tolist())) for a, b in zip(t.rows, t.rows[1:])]
        [{'cat': 2, 'sat': 1}, {'dog': 1}]
        """
        vocab: dict[str, int] = {}
        ids, counts, rows = array("i"), array("i"), array("q", [0])  # C ints: millions at 12k articles
        for text in texts:
            for word, n in Counter(tokens(text)).items():
                ids.append(vocab.setdefault(word, len(vocab)))
                counts.append(n)
            rows.append(len(ids))
        return Terms(tuple(vocab), np.frombuffer(rows, np.int64), np.frombuffer(ids, np.int32),
                     np.frombuffer(counts, np.int32))

    def __len__(self) -> int:
        return len(self.rows) - 1

    def take(self, keep: np.ndarray) -> Terms:
        """The rows where ``keep`` (one bool per row) is true."""
        sizes = np.diff(self.rows)
        entries = np.repeat(keep, sizes)
        return Terms(self.vocab, np.concatenate([[0], np.cumsum(sizes[keep])]).astype(np.int64),
                     self.ids[entries], self.counts[entries])

    @staticmethod
    def join(parts: Sequence[Terms]) -> Terms:
        """The parts' rows one after another, over one vocabulary."""
        if len(parts) == 1:
            return parts[0]
        vocab: dict[str, int] = {}
        ids = []
        for part in parts:
            where = np.fromiter((vocab.setdefault(w, len(vocab)) for w in part.vocab), np.int32, len(part.vocab))
            ids.append(where[part.ids])
        offsets = np.cumsum([0] + [int(p.rows[-1]) for p in parts[:-1]])
        rows = np.concatenate([[0]] + [p.rows[1:] + o for p, o in zip(parts, offsets)]).astype(np.int64)
        return Terms(tuple(vocab), rows, np.concatenate(ids).astype(np.int32) if ids else np.zeros(0, np.int32),
                     np.concatenate([p.counts for p in parts]).astype(np.int32) if parts else np.zeros(0, np.int32))

    def compact(self) -> Terms:
        """The same rows over only the words they use (rows dropped by ``take``
        may leave words behind)."""
        used, ids = np.unique(self.ids, return_inverse=True)
        if len(used) == len(self.vocab):
            return self
        return Terms(tuple(self.vocab[i] for i in used.tolist()), self.rows, ids.astype(np.int32), self.counts)

    def problem(self, n_rows: int) -> str:
        """Why these counts cannot be the index of ``n_rows`` chunks ("" if they can)."""
        r = self.rows
        if len(r) != n_rows + 1 or r[0] != 0 or np.any(np.diff(r) < 0) or r[-1] != len(self.ids):
            return "term counts do not match the chunks"
        if len(self.ids) != len(self.counts) or (len(self.ids) and (
                self.ids.min() < 0 or self.ids.max() >= len(self.vocab) or self.counts.min() < 1)):
            return "term counts point outside their vocabulary"
        return ""


@dataclass(frozen=True)
class Lexical:
    """BM25 over chunk rows, plus each token's inverse document frequency."""

    bm25: object  # bm25s.BM25
    idf_of: dict  # token -> idf (tokens never seen get ``unseen_idf``)
    unseen_idf: float
    terms: Terms | None = None  # the chunk rows' words (None: rows of another version)

    def scores(self, query: str) -> np.ndarray:
        """BM25 score of every chunk row (zeros when no query word is indexed)."""
        known = [t for t in dict.fromkeys(tokens(query)) if t in self.bm25.vocab_dict]
        n = int(self.bm25.scores["num_docs"])
        if not known:
            return np.zeros(n, np.float32)
        return np.asarray(self.bm25.get_scores(known), dtype=np.float32)

    def idf(self, token: str) -> float:
        return self.idf_of.get(token, self.unseen_idf)

    def chunk_words(self, row: int) -> frozenset | None:
        """The content words of chunk ``row`` (as ``tokens`` finds them), from the
        stored counts: no text to tokenize; None without them."""
        if self.terms is None:
            return None
        vocab, ids = self.terms.vocab, self.terms.ids
        return frozenset(vocab[i] for i in ids[self.terms.rows[row]:self.terms.rows[row + 1]].tolist())


def build(texts: Sequence[str]) -> Lexical:
    """BM25 over ``texts`` (tests and tools; an index builds from its stored counts)."""
    return of_terms(Terms.of(texts))


def of_terms(terms: Terms) -> Lexical:
    """BM25 over the rows of ``terms``, with bm25s's default scoring (Lucene)."""
    bm25 = _counts_bm25()()
    bm25.index(SimpleNamespace(ids=terms, vocab={w: i for i, w in enumerate(terms.vocab)}),
               create_empty_token=False, show_progress=False)
    return Lexical(bm25, dict(zip(terms.vocab, bm25.idf.tolist())), bm25.idf_of_count(0, max(len(terms), 1)), terms)


def from_frequencies(frequencies: dict[str, int], n_docs: int) -> Lexical:
    """Term weights alone, from document frequencies, for a store that ranks by BM25
    elsewhere (Milvus): the idf of each word, by bm25s's formula, as ``of_terms`` has it."""
    scorer = _counts_bm25()()
    n = max(n_docs, 1)
    return Lexical(None, {t: scorer.idf_of_count(df, n) for t, df in frequencies.items()},
                   scorer.idf_of_count(0, n), None)


@functools.lru_cache(maxsize=1)
def _counts_bm25():
    """bm25s's BM25 class, indexed from stored term counts (imported on first use:
    a cold ``rag ask`` should not pay for it before it needs it)."""
    import bm25s
    import scipy.sparse as sp
    from bm25s.scoring import _select_idf_scorer, _select_tfc_scorer

    class CountsBM25(bm25s.BM25):
        """Its documented hook ``build_index_from_ids`` is handed a ``Terms`` and
        scores every row in a few array operations (bm25s's own loop over
        documents takes ~9 s at 100k chunks), with bm25s's own term-frequency
        and idf formulas for its method."""

        def idf_of_count(self, df: int, n: int) -> float:
            return float(_select_idf_scorer(self.idf_method)(df, N=n))

        def build_index_from_ids(self, unique_token_ids, corpus_token_ids, show_progress=True,
                                 leave_progress=False):
            terms: Terms = corpus_token_ids
            if self.method in self.methods_requiring_nonoccurrence:
                raise ValueError(f"BM25 method {self.method!r} is not supported from stored counts")
            self.nonoccurrence_array = None
            n_docs, n_vocab = len(terms), len(terms.vocab)
            row_of = np.repeat(np.arange(n_docs, dtype=np.int64), np.diff(terms.rows))
            lengths = np.bincount(row_of, weights=terms.counts, minlength=n_docs)
            average = float(lengths.mean()) if lengths.sum() else 1.0
            df = np.bincount(terms.ids, minlength=n_vocab)
            self.idf = np.array([self.idf_of_count(d, max(n_docs, 1)) for d in df.tolist()], np.float64)
            tfc = _select_tfc_scorer(self.method)(tf_array=terms.counts.astype(np.float64), l_d=lengths[row_of],
                                                  l_avg=average, k1=self.k1, b=self.b, delta=self.delta)
            matrix = sp.csc_matrix(((self.idf[terms.ids] * tfc).astype(self.dtype), (row_of, terms.ids)),
                                   shape=(n_docs, n_vocab), dtype=self.dtype)
            return {"data": matrix.data, "indices": matrix.indices, "indptr": matrix.indptr, "num_docs": n_docs}

    return CountsBM25


def snapshot_terms(snap) -> Terms:
    """The term counts of ``snap``'s chunk rows: each segment's stored counts,
    joined (a segment written before counts were stored is counted from its text)."""
    def counted(rows: range) -> Terms:
        return Terms.of(chunk_texts(snap.articles, snap.chunks[rows]))

    segments = getattr(snap, "segments", ())
    if not segments:
        return counted(range(len(snap.chunks)))
    return Terms.join([s.terms if s.terms is not None else counted(s.chunks) for s in segments])


def chunk_texts(articles: Sequence, chunks: np.ndarray) -> list[str]:
    """The text of each chunk row (article row, start, end, ...) of a chunk table."""
    return [articles[int(a)].text[int(s):int(e)] for a, s, e in chunks[:, :3]]


def ready(snap) -> Lexical | None:
    """``snap``'s BM25 index if it is built already, else None (never waits)."""
    return snap.__dict__.get("_lexical")


def for_snapshot(snap) -> Lexical:
    """The BM25 index of ``snap``'s chunks, built once per loaded version."""
    found = snap.__dict__.get("_lexical")
    if found is None:
        with _BUILD_LOCK:
            found = snap.__dict__.get("_lexical")
            if found is None:
                found = of_terms(snapshot_terms(snap))
                snap.__dict__["_lexical"] = found
    return found
