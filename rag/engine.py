"""The public entry points: ``rag.open`` an index and ``ask`` it; ``rag.build``
one from files. The CLI and the app call these and nothing deeper."""
from __future__ import annotations

import os
import sys
import threading
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import numpy as np

from . import build as builder
from .store import index as store
from .answer import Query, best_quotes, content_terms, follow_up_text, threshold, viewpoint_answer
from .embed import Embedder
from .embedders import default_embedder
from .errors import RagError
from .ingest import Loaded, load
from .lexical import Lexical, for_snapshot, ready
from .retrieve import Filters, Passage, group_chunks, search_groups
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
    """An index folder, opened for questions and updates.

    >>> ix = rag.open("index")                     # doctest: +SKIP
    >>> ix.ask("Did Russia make big concessions?").viewpoints[0].answers[0].text  # doctest: +SKIP
    """

    def __init__(self, root: str | os.PathLike = "index", settings: Settings | None = None,
                 embedder: Embedder | None = None):
        self.root = Path(root)
        self.settings = settings or Settings()
        self.embedder = embedder or default_embedder(self.settings, store.built_with(self.root))
        self._snap: store.Snapshot | None = None
        self._stamp: tuple = ()
        self._stale_lexical: Lexical | None = None  # the previous version's BM25, see ``_lexical``
        self._lock = threading.Lock()

    # ---- reading -----------------------------------------------------------

    def snapshot(self) -> store.Snapshot:
        """The live version, reloaded when a writer has switched CURRENT since."""
        stamp = self._current_stamp()
        with self._lock:
            if self._snap is None or stamp != self._stamp:
                snap = store.load(self.root, reuse=self._snap)  # reads only segments it lacks
                if snap.warning:
                    print(f"rag: warning: {snap.warning}", file=sys.stderr)
                self._check_model(snap)
                if self._snap is not None:
                    stale = ready(self._snap)  # its term weights serve; its rows are the old version's
                    self._stale_lexical = replace(stale, terms=None) if stale else self._stale_lexical
                self._snap, self._stamp = snap, stamp
                # BM25 is built from the text in memory (about 1 s per 5,000 chunks):
                # start it now, so the first question seldom waits for it.
                threading.Thread(target=for_snapshot, args=(snap,), daemon=True).start()
            return self._snap

    def _current_stamp(self) -> tuple:
        try:
            st = os.stat(self.root / "CURRENT")
        except FileNotFoundError:  # store.load says there is no index, or falls back to a version
            return ()
        return (st.st_mtime_ns, st.st_ino, st.st_size)

    def _check_model(self, snap: store.Snapshot) -> None:
        model, dim = snap.manifest.get("model"), snap.manifest.get("dim")
        if (model, dim) != (self.embedder.name, self.embedder.dim):
            raise RagError(f"{self.root}: built with {model} ({dim}-d) but asked with "
                           f"{self.embedder.name} ({self.embedder.dim}-d); rebuild with rag build --full")

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
        settings = self.settings
        snap = self.snapshot()
        query = self._query(question, history)
        groups = group_chunks(snap, group_by or settings.group_by, filters)
        lexical, bm25 = self._lexical(snap, query.text)
        found = search_groups(snap, query.vector, groups, settings.passages, settings.max_viewpoints, bm25)
        return Retrieved(snap, query, lexical, {groups.labels[g]: passages for g, passages in found.items()},
                         len(groups.labels) - len(found))

    def _lexical(self, snap: store.Snapshot, text: str) -> tuple[Lexical, np.ndarray | None]:
        """BM25 for ``snap`` and the chunk scores of ``text``. Right after a switch to
        a new version its BM25 is still being built (seconds at 12k articles, for a
        one-article add): meanwhile questions are answered at once, by dense
        retrieval alone, with the previous version's term weights for the scorer."""
        lexical = ready(snap)
        if lexical is None and self._stale_lexical is not None:
            return self._stale_lexical, None
        self._stale_lexical = None
        lexical = lexical or for_snapshot(snap)
        return lexical, lexical.scores(text)

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
        snap = self.snapshot()
        if doc_id not in snap.row_of:
            raise RagError(f"no article with id {doc_id!r} in {self.root} (see rag stats)")
        return snap.articles[snap.row_of[doc_id]]

    def stats(self) -> dict:
        snap = self.snapshot()
        groups: dict[str, int] = {}
        for article in snap.articles:
            label = article.group(self.settings.group_by)
            groups[label] = groups.get(label, 0) + 1
        size = store.size_of(snap.manifest)
        return {"index": str(self.root), "version": snap.version, "model": snap.manifest.get("model"),
                "dim": snap.manifest.get("dim"), "chunking": snap.manifest.get("chunking"),
                "articles": len(snap.articles), "chunks": len(snap.chunks),
                "sentences": len(snap.sentence_vectors), "bytes": size,
                "viewpoints": dict(sorted(groups.items(), key=lambda kv: -kv[1]))}

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
        return builder.run(self.root, loaded, self.embedder, self.settings, mode, current=self._snap, **options)


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
    """Open an index folder for questions (the model loads on the first question).

    >>> ix = rag.open("index")  # doctest: +SKIP
    """
    ix = Index(index, settings, embedder)
    ix.snapshot()  # fail now, with a clear message, if there is no usable index
    return ix


def build(paths: Iterable[str | os.PathLike] = ("seeds",), index: str | os.PathLike = "index",
          fields: Mapping[str, str] | None = None, full: bool = False, settings: Settings | None = None,
          embedder: Embedder | None = None, progress: bool = True) -> BuildReport:
    """Index the articles under ``paths`` into ``index`` (only new or changed ones are embedded).

    >>> report = rag.build(["seeds"], index="index")  # doctest: +SKIP
    >>> report.added                                  # doctest: +SKIP
    ('independent-putin-playing-for-time', 'rt-putin-trump-call-a-success')
    """
    return Index(index, settings, embedder).rebuild(paths, fields, full=full, progress=progress)
