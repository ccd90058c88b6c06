"""The local store: an index folder on this machine (the default backend).

It keeps the live version in memory as one ``Snapshot`` (reloaded when a
writer switches CURRENT), searches it with FAISS and BM25 in this process, and
writes new versions through build.py. The Milvus store (milvus.py) offers the
same methods over a server; the engine does not know which one it holds."""
from __future__ import annotations

import os
import sys
import threading
from dataclasses import replace
from pathlib import Path

import numpy as np

from . import index
from .. import build as builder
from ..errors import RagError
from ..lexical import Lexical, for_snapshot, ready
from ..retrieve import Filters, Found, group_chunks, search_groups
from ..settings import Settings
from ..types import Article, BuildReport


class LocalStore:
    """An index folder: ``index/CURRENT`` names the live version (index.py)."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        self.model: tuple[str, int] | None = None  # (name, dim) questions are embedded with
        self._snap: index.Snapshot | None = None
        self._stamp: tuple = ()
        self._stale_lexical: Lexical | None = None  # the previous version's BM25, see ``_lexical``
        self._lock = threading.Lock()

    def __str__(self) -> str:
        return str(self.root)

    def built_with(self) -> str | None:
        return index.built_with(self.root)

    # ---- reading -----------------------------------------------------------

    def snapshot(self) -> index.Snapshot:
        """The live version, reloaded when a writer has switched CURRENT since."""
        stamp = self._current_stamp()
        with self._lock:
            if self._snap is None or stamp != self._stamp:
                snap = index.load(self.root, reuse=self._snap)  # reads only segments it lacks
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
        except FileNotFoundError:  # index.load says there is no index, or falls back to a version
            return ()
        return (st.st_mtime_ns, st.st_ino, st.st_size)

    def _check_model(self, snap: index.Snapshot) -> None:
        model, dim = snap.manifest.get("model"), snap.manifest.get("dim")
        if self.model is not None and (model, dim) != self.model:
            raise RagError(f"{self.root}: built with {model} ({dim}-d) but asked with "
                           f"{self.model[0]} ({self.model[1]}-d); rebuild with rag build --full")

    def require(self) -> None:
        """Load the live version now: a missing, damaged or other-model index raises here."""
        self.snapshot()

    def retrieve(self, vector: np.ndarray, text: str, terms: frozenset[str], by: str,
                 filters: Filters | None, settings: Settings) -> Found:
        """Each viewpoint's best passages for the query ``vector`` and ``text``."""
        snap = self.snapshot()
        groups = group_chunks(snap, by, filters)
        lexical, bm25 = self._lexical(snap, text)
        found = search_groups(snap, vector, groups, settings.passages, settings.max_viewpoints, bm25)
        return Found(snap, lexical, {groups.labels[g]: passages for g, passages in found.items()},
                     len(groups.labels) - len(found))

    def _lexical(self, snap: index.Snapshot, text: str) -> tuple[Lexical, np.ndarray | None]:
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

    def article(self, doc_id: str) -> Article:
        snap = self.snapshot()
        if doc_id not in snap.row_of:
            raise RagError(f"no article with id {doc_id!r} in {self.root} (see rag stats)")
        return snap.articles[snap.row_of[doc_id]]

    def articles(self) -> list[Article]:
        return self.snapshot().articles

    def stats(self, by: str) -> dict:
        snap = self.snapshot()
        groups: dict[str, int] = {}
        for article in snap.articles:
            label = article.group(by)
            groups[label] = groups.get(label, 0) + 1
        return {"index": str(self.root), "version": snap.version, "model": snap.manifest.get("model"),
                "dim": snap.manifest.get("dim"), "chunking": snap.manifest.get("chunking"),
                "articles": len(snap.articles), "chunks": len(snap.chunks),
                "sentences": len(snap.sentence_vectors), "bytes": index.size_of(snap.manifest),
                "viewpoints": dict(sorted(groups.items(), key=lambda kv: -kv[1]))}

    def check(self) -> tuple[str, list[str]]:
        """(what was checked, its problems, each naming its file): checksums, counts, model."""
        version = index.current_version(self.root)
        return f"version {version}", index.check_version(self.root, version)

    # ---- writing -----------------------------------------------------------

    def write(self, loaded, mode: str, embedder, settings: Settings, **options) -> BuildReport:
        return builder.run(self.root, loaded, embedder, settings, mode, current=self._snap, **options)

    def exists(self) -> bool:
        """Whether an index was ever committed here (a broken one included: opening says how)."""
        return (self.root / "CURRENT").exists()
