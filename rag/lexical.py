"""Lexical: BM25 over the chunks of one loaded index version (``bm25s``).

Built lazily from the snapshot's text on the first question and kept on the
snapshot, so a new index version gets a fresh one and nothing extra is
stored on disk. The same tokens give the inverse document frequencies that
the answer scorer weighs question terms with.
"""
from __future__ import annotations

import functools
import math
import re
import threading
from dataclasses import dataclass

import numpy as np

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


@dataclass(frozen=True)
class Lexical:
    """BM25 over chunk rows, plus each token's inverse document frequency."""

    bm25: object  # bm25s.BM25
    idf_of: dict  # token -> idf (tokens never seen get ``unseen_idf``)
    unseen_idf: float

    def scores(self, query: str) -> np.ndarray:
        """BM25 score of every chunk row (zeros when no query word is indexed)."""
        known = [t for t in dict.fromkeys(tokens(query)) if t in self.bm25.vocab_dict]
        n = int(self.bm25.scores["num_docs"])
        if not known:
            return np.zeros(n, np.float32)
        return np.asarray(self.bm25.get_scores(known), dtype=np.float32)

    def idf(self, token: str) -> float:
        return self.idf_of.get(token, self.unseen_idf)


def build(texts: list[str]) -> Lexical:
    import bm25s

    corpus = [tokens(t) or [""] for t in texts]
    bm25 = bm25s.BM25()
    bm25.index(corpus, show_progress=False)
    indptr = np.asarray(bm25.scores["indptr"])
    n = max(len(texts), 1)
    # document frequency per token: non-zeros in its column of the CSC score matrix
    idf_of = {tok: math.log(1 + (n - df + 0.5) / (df + 0.5))
              for tok, col in bm25.vocab_dict.items() if tok
              for df in [int(indptr[col + 1] - indptr[col])]}
    return Lexical(bm25, idf_of, math.log(1 + (n + 0.5) / 0.5))


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
                texts = [snap.articles[int(a)].text[int(s):int(e)] for a, s, e in snap.chunks[:, :3]]
                found = build(texts)
                snap.__dict__["_lexical"] = found
    return found
