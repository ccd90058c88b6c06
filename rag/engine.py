"""The public entry points: ``rag.open`` an index and ``ask`` it; ``rag.build``
one from files. The CLI and the app call these and nothing deeper."""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from typing import Iterable, Mapping, Sequence

import numpy as np

from .store import index as store
from .store.local import LocalStore
from .answer import Query, best_quotes, content_terms, follow_up_text, threshold, viewpoint_answer
from .embed import Embedder
from .embedders import default_embedder
from .errors import RagError
from .ingest import Loaded, load
from .lexical import Lexical
from .retrieve import Filters, Passage
from .settings import Settings
from .types import Answer, Article, BuildReport, Coverage

# How much of the earlier question a follow-up's query vector keeps.
HISTORY_WEIGHT = 0.5


@dataclass(frozen=True)
class Retrieved:
    """What retrieval hands the answer stage for one question."""

    snap: store.Snapshot
    query: Query
    lexical: Lexical
    sides: dict[str, list[Passage]]  # viewpoint label -> its passages, best viewpoints first
    more: int  # viewpoints left out beyond ``Settings.max_viewpoints``


class Index:
    """An index, opened for questions and updates: a folder here (the default) or a
    Milvus server, ``milvus://HOST:PORT[/PREFIX]`` (rag/store/milvus.py).

    >>> ix = rag.open("index")                     # doctest: +SKIP
    >>> ix.ask("Did Russia make big concessions?").viewpoints[0].answers[0].text  # doctest: +SKIP
    """

    def __init__(self, root: str | os.PathLike = "index", settings: Settings | None = None,
                 embedder: Embedder | None = None):
        self.store = open_store(root)
        self.root = getattr(self.store, "root", str(self.store))  # the folder, or the milvus:// address
        self.settings = settings or Settings()
        self.embedder = embedder or default_embedder(self.settings, self.store.built_with())
        self.store.model = (self.embedder.name, self.embedder.dim)

    # ---- reading -----------------------------------------------------------

    def snapshot(self) -> store.Snapshot:
        """The live version of a local index, in memory (tools and tests read its rows)."""
        if not hasattr(self.store, "snapshot"):
            raise RagError(f"{self.store}: a Milvus store is searched on the server; it has no "
                           "snapshot in memory")
        return self.store.snapshot()

    def exists(self) -> bool:
        """Whether an index was ever written here (a broken one included: opening says how)."""
        return self.store.exists()

    def require(self) -> None:
        """Raise, with one clear line, unless a usable index is here (right model and dimension;
        for Milvus: the server answers and the collections are rag's)."""
        self.store.require()

    def ask(self, question: str, history: Sequence[str] = (), k: int | None = None,
            group_by: str | None = None, filters: Filters | None = None) -> Answer:
        """Answer ``question`` per viewpoint with verbatim, cited quotes.

        ``history`` is the earlier questions of the conversation, oldest first;
        a follow-up such as "And what did he refuse?" is read in their light.

        >>> answer = rag.open("index").ask("Is Putin playing for time?")  # doctest: +SKIP
        >>> [(v.viewpoint, v.abstained) for v in answer.viewpoints]        # doctest: +SKIP
        [('pro-Ukraine', False), ('pro-Russia', True)]
        >>> answer.coverage.silent                                         # doctest: +SKIP
        ('pro-Russia',)
        """
        question = (question or "").strip()
        if not question:
            raise RagError("empty question")
        with _one_blas_thread():
            return self._ask(question, history, k, group_by, filters)

    def _ask(self, question: str, history: Sequence[str], k: int | None, group_by: str | None,
             filters: Filters | None) -> Answer:
        settings = self.settings
        k = k or settings.k
        found = self.retrieve(question, history, group_by, filters)
        answers = [viewpoint_answer(label, best_quotes(found.snap, found.query, passages, settings, k,
                                                       found.lexical), threshold(settings))
                   for label, passages in found.sides.items()]
        answers.sort(key=lambda v: (v.abstained, -(v.answers[0].score if v.answers else 0.0)))
        coverage = Coverage(addressed=tuple(v.viewpoint for v in answers if not v.abstained),
                            silent=tuple(v.viewpoint for v in answers if v.abstained))
        return Answer(question=question, viewpoints=tuple(answers),
                      more_viewpoints=found.more, query=found.query.text, coverage=coverage)

    def retrieve(self, question: str, history: Sequence[str] = (), group_by: str | None = None,
                 filters: Filters | None = None) -> Retrieved:
        """The retrieval half of ``ask``: each viewpoint's passages, before any sentence is
        chosen (the answer stage's input; bench/calibrate_reranker.py reads it too)."""
        query = self._query(question, history)
        found = self.store.retrieve(query.vector, query.text, query.terms, group_by or self.settings.group_by,
                                    filters, self.settings)
        return Retrieved(found.snap, query, found.lexical, found.sides, found.more)

    def _query(self, question: str, history: Sequence[str]) -> Query:
        text = follow_up_text(question, history)
        if text == question:
            vector = self.embedder.encode([question])[0]
        else:
            # The question leads; the earlier turn supplies what "he" or "it" refers to.
            own, context = self.embedder.encode([question, text])
            vector = own + HISTORY_WEIGHT * context
            vector = vector / np.linalg.norm(vector)
        return Query(text=text, vector=vector.astype(np.float32), terms=content_terms(question),
                     question=question)

    def article(self, doc_id: str) -> Article:
        """One article with its metadata and full text (quotes' spans index into ``text``)."""
        return self.store.article(doc_id)

    def articles(self) -> list[Article]:
        """Every article's metadata (the app's corpus list and chart; from Milvus without text)."""
        return self.store.articles()

    def stats(self) -> dict:
        return self.store.stats(self.settings.group_by)

    # ---- writing -----------------------------------------------------------

    def add(self, paths: Iterable[str | os.PathLike], fields: Mapping[str, str] | None = None,
            dry_run: bool = False, progress: bool = True,
            defaults: Mapping[str, str] | None = None) -> BuildReport:
        """Add or update articles (upsert by id); unchanged ones are skipped.
        ``defaults`` fills metadata the files lack, e.g. ``{"viewpoint": "left"}``.

        >>> rag.open("index").add(["new-article.md"]).added  # doctest: +SKIP
        ('new-article',)
        """
        return self._write(load(paths, fields, defaults), "add", dry_run=dry_run, progress=progress)

    def remove(self, doc_ids: Sequence[str], dry_run: bool = False) -> BuildReport:
        """Remove articles by id; they never appear in answers again."""
        return self._write(Loaded((), ()), "remove", remove=doc_ids, dry_run=dry_run, progress=False)

    def upgrade(self, progress: bool = True) -> BuildReport:
        """Convert an index written by an older rag to this one, keeping every
        article: format 1 is embedded again; segments written before term counts
        and catalogs were stored get them (their vectors are kept); a current
        index is left as it is.

        >>> rag.Index("index").upgrade().version  # doctest: +SKIP
        'v000004'
        """
        return self._write(Loaded((), ()), "upgrade", progress=progress)

    def rebuild(self, paths: Iterable[str | os.PathLike], fields: Mapping[str, str] | None = None,
                full: bool = False, dry_run: bool = False, progress: bool = True) -> BuildReport:
        """Make the index hold exactly the articles under ``paths``."""
        return self._write(load(paths, fields), "build", full=full, dry_run=dry_run, progress=progress)

    def _write(self, loaded: Loaded, mode: str, **options) -> BuildReport:
        return self.store.write(loaded, mode, self.embedder, self.settings, **options)


MILVUS_SCHEME = "milvus://"


def open_store(where: str | os.PathLike):
    """The store ``where`` names: ``milvus://HOST:PORT[/PREFIX]`` is a Milvus server
    (collections PREFIX_articles, ...; default prefix ``rag``); anything else an index folder."""
    if isinstance(where, str) and where.startswith(MILVUS_SCHEME):
        from .store.milvus import MilvusStore  # pymilvus loads only when a Milvus store is named

        return MilvusStore(where)
    return LocalStore(where)


_controller: list = [None, -1]  # the threadpoolctl controller, and len(sys.modules) when it was made


def _blas():
    """A controller that knows every BLAS loaded so far. Made again when modules were
    imported since the last one: a BLAS is loaded only by importing an extension
    module (pymilvus's dependencies load a second OpenBLAS after the first question),
    and a controller made before it would leave that one unlimited."""
    from threadpoolctl import ThreadpoolController

    if _controller[1] != len(sys.modules):
        _controller[:] = [ThreadpoolController(), len(sys.modules)]
    return _controller[0]


def _one_blas_thread():
    """One BLAS thread while answering. Its products are a vector against a matrix,
    bound by memory, not cores; and OpenBLAS's second thread keeps spinning after each
    call, taking the core that the rest of the answer and the question encoder need
    (12k articles: p50 52 -> 35 ms; tested by bench/build_bench.py)."""
    return _blas().limit(limits=1, user_api="blas")


def open(index: str | os.PathLike = "index", settings: Settings | None = None,
         embedder: Embedder | None = None) -> Index:
    """Open an index for questions (the model loads on the first question): a folder,
    or a Milvus server, ``milvus://HOST:PORT[/PREFIX]``.

    >>> ix = rag.open("index")                          # doctest: +SKIP
    >>> ix = rag.open("milvus://127.0.0.1:19530/news")  # doctest: +SKIP
    """
    ix = Index(index, settings, embedder)
    ix.require()  # fail now, with a clear message, if there is no usable index
    return ix


def build(paths: Iterable[str | os.PathLike] = ("seeds",), index: str | os.PathLike = "index",
          fields: Mapping[str, str] | None = None, full: bool = False, settings: Settings | None = None,
          embedder: Embedder | None = None, progress: bool = True) -> BuildReport:
    """Index the articles under ``paths`` into ``index``, a folder or ``milvus://HOST:PORT[/PREFIX]``
    (only new or changed articles are embedded).

    >>> report = rag.build(["seeds"], index="index")  # doctest: +SKIP
    >>> report.added                                  # doctest: +SKIP
    ('independent-putin-playing-for-time', 'rt-putin-trump-call-a-success')
    """
    return Index(index, settings, embedder).rebuild(paths, fields, full=full, progress=progress)
