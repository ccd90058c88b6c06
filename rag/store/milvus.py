"""The Milvus store: the same index on a Milvus server or cluster, named
``milvus://HOST:PORT[/PREFIX]`` (pymilvus's ``MilvusClient``), or in a file that Milvus
Lite's embedded engine serves, ``milvus:///PATH.db[/PREFIX]``.

Five collections, ``PREFIX_...``:

- ``chunks``: a passage's content words, as ``lexical.tokens`` finds them
  (stemmed, stop words dropped, space-separated: Milvus's analyzer then splits
  them as they are and its BM25 function fills a sparse vector from them, so the
  server ranks the words the local store ranks), its dense vector, its span and sentence range, and
  the article's viewpoint (the partition key), source label, source and day;
- ``sentences``: each article's sentence vectors (pooled as locally), float16 as the folder
  keeps them, ``BLOCK`` to a row: read by key, never searched, so they need no vector index
  (a row per sentence made a question's read scan 570k rows at 12k articles: 35-40 ms);
- ``articles``: each article's text (in parts: a VARCHAR holds 64 KB), sentence
  spans and metadata, and a document vector (Milvus wants one in every collection);
- ``terms``: how many chunks hold each word (lexical.tokens), for the answer
  scorer's term weights, the words hashed into ``TERM_BUCKETS`` rows (a JSON object each);
  ``meta``: model, chunking, counts, viewpoints.

Retrieval runs on the server: one dense and one BM25 search over every viewpoint's
chunks (a viewpoint short of hits in them gets searches of its own), the filters as
expressions; each viewpoint's two rankings are fused by reciprocal rank here, by the
function the local store fuses with. The articles hit are then fetched (text, spans, the sentence
vectors around each passage) into a small ``Snapshot``, and the answer stage
runs on it unchanged. An app server holds no state: replicate it freely.

Writes are planned as locally (build.plan: by content hash, only new or
changed articles embedded). Every row a write adds carries that write's
generation number in its key; an article's row in ``articles`` names its live
generation and is written after its chunks and sentences, and readers skip any
chunk of another generation: a writer that dies mid-write leaves each article
either as it was or wholly new. Rows of replaced generations are deleted
after the switch. Reads are Strong: a question sees the write before it.

The collections' fields, the rows an article becomes and the filter expressions
are in milvus_schema.py; this module talks to the server.
"""
from __future__ import annotations

import json
import logging
import os
import socket
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Iterable, Sequence

import numpy as np

from . import milvus_schema as layout
from ..build import chunk_all, chunk_settings, embed_articles, plan as plan_update, require_articles
from ..dates import iso_day
from ..errors import IndexCorrupt, IndexMissing, RagError
from ..lexical import from_frequencies, tokens
from ..retrieve import DEPTH, Filters, Found, Passage, reciprocal_rank
from ..settings import Settings
from ..types import Article, BuildReport, Span, Spans
from .index import Snapshot
from .milvus_schema import BM25_PARAMS, GROUP_FIELDS, KINDS, SCHEMA, Stored, filter_expr, parse

BATCH = 256  # rows per insert or upsert call
CONSISTENCY = "Strong"  # read your own writes: a question after an add sees it
# A write of this many articles or more flushes: its rows leave the server's growing segment
# (milvus-lite scores BM25 there by rebuilding its index on every search: a question on 100
# AllSides articles took 0.76 s unflushed, 0.28 s flushed, same answers) for sealed segments
# that are indexed once. A small add is left to the server's own flushing (a flush took 1.5 s).
FLUSH_AT = 20
LOCK_STALE = 120.0  # seconds without a heartbeat after which a writer's lock is a dead writer's
DERIVED_MAX = 500_000  # sentences whose derived words a store keeps (a few hundred MB at most)
# pymilvus pings an idle connection every 10 s; a gRPC server's default policy (milvus-lite's)
# allows one ping in 5 minutes without calls and answers more with GOAWAY "too_many_pings",
# which gRPC prints to stderr while a long build embeds. Ping less often than that.
GRPC_OPTIONS = {"grpc.keepalive_time_ms": 360_000}


def _reason(err: Exception) -> str:
    return str(getattr(err, "message", "") or err).strip().splitlines()[0] if str(err) else type(err).__name__


class MilvusStore:
    """An index on a Milvus server: see the module's docstring."""

    def __init__(self, uri: str, timeout: float = 10.0):
        self.uri = uri
        self.address, self.prefix = parse(uri)
        self.model: tuple[str, int] | None = None  # (name, dim) questions are embedded with
        self.timeout = timeout
        try:
            from pymilvus import MilvusClient
        except ImportError as err:
            raise RagError(f"{uri}: a Milvus store needs pymilvus ({err}); pip install -e '.[milvus]'") from None
        # After the import, which configures pymilvus's loggers: its RPC errors become our one
        # line, and its iterator's notes (server-side timestamps) are no news to a user.
        for name in ("pymilvus", "milvus_lite"):  # milvus_lite logs a traceback when a file is held
            logging.getLogger(name).setLevel(logging.CRITICAL)

        self.embedded = layout.is_file(self.address)
        try:
            if self.embedded:  # pymilvus starts Milvus Lite's engine on the file (pymilvus 2.5 + milvus-lite 2.5)
                self.client = MilvusClient(uri=self.address, timeout=timeout)
            else:
                self.client = MilvusClient(uri=f"http://{self.address}", timeout=timeout,
                                           grpc_options=GRPC_OPTIONS)
        except Exception as err:  # pymilvus raises MilvusException for every kind of failure
            if self.embedded:
                raise RagError(f"{uri}: Milvus Lite cannot open {self.address} ({_reason(err)}); a file serves "
                               f"one process at a time: for several, run a Milvus server") from None
            raise RagError(f"cannot reach Milvus at {self.address} ({_reason(err)})") from None
        self._pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="rag-milvus")
        # What the answer stage derives from sentence texts (words, cruft), keyed by content hash:
        # every snapshot shares it, so a sentence is read once per process, as in a loaded folder.
        self._derived: dict[str, dict] = {}
        self._schema_checked = False
        self._grouped: tuple[tuple, dict] = ((), {})  # (field, version) -> its groups' expressions
        self._beat_at = 0.0  # when this writer last refreshed its lock row (time.monotonic)

    def __str__(self) -> str:
        return self.uri

    def name(self, kind: str) -> str:
        return f"{self.prefix}_{kind}"

    def _call(self, what: str, fn, *args, **kwargs):
        """A client call whose failure becomes one line naming the server and what failed."""
        try:
            return fn(*args, **kwargs)
        except RagError:
            raise
        except Exception as err:
            raise RagError(f"{self.uri}: {what} failed ({_reason(err)})") from None

    # ---- the collections --------------------------------------------------------

    def exists(self) -> bool:
        return bool(self._call("listing collections", self.client.has_collection, self.name("meta")))

    def _meta(self, empty_ok: bool = False) -> dict | None:
        """The meta row, or None when this prefix holds no index (``empty_ok``: also when its
        collections are there without one, a first write that died); a clear error for
        collections that are not rag's."""
        if self._schema_checked:  # checked before: one read a question, not a listing first
            try:
                manifest = self._manifest()
            except RagError:  # dropped since, or the server is gone: the full path says which
                self._schema_checked = False
            else:
                if manifest is not None:
                    return manifest
        if not self.exists():
            self._schema_checked = False
            return None
        if not self._schema_checked:  # once per store object: five calls that every question made
            self._check_schema()
            self._load()
            self._schema_checked = True
        manifest = self._manifest()
        if manifest is None and empty_ok:
            return None
        if manifest is None:
            raise IndexCorrupt(f"{self.uri}: {self.name('meta')} has no manifest row; rebuild with "
                               f"rag build --full --store {self.uri}")
        return manifest

    def _manifest(self) -> dict | None:
        rows = self._call("reading meta", self.client.get, self.name("meta"), ids=["manifest"], output_fields=["value"])
        return dict(rows[0]["value"]) if rows else None

    def _live_meta(self) -> dict:
        meta = self._meta()
        if meta is None:
            raise IndexMissing(f"{self.uri}: no index here (no collection {self.name('meta')}); "
                               f"build one with rag build PATHS --store {self.uri}")
        if self.model is not None and (meta.get("model"), meta.get("dim")) != self.model:
            raise RagError(f"{self.uri}: built with {meta.get('model')} ({meta.get('dim')}-d) but asked with "
                           f"{self.model[0]} ({self.model[1]}-d); rebuild with rag build --full")
        return meta

    def require(self) -> None:
        """The server answers, the collections are rag's and were built with this model."""
        self._live_meta()

    def _check_schema(self) -> None:
        for kind in sorted(KINDS, key=lambda kind: kind != "meta"):  # meta first: it says whose they are
            name = self.name(kind)
            try:
                fields = {f["name"] for f in self.client.describe_collection(name)["fields"]}
            except Exception as err:
                raise RagError(f"{self.uri}: collection {name} is missing or unreadable ({_reason(err)}); "
                               f"rebuild with rag build --full --store {self.uri}") from None
            missing = sorted(set(layout.fields(kind)) - fields)
            if missing and kind != "meta":
                self._check_schema_number()
            if missing:
                raise IndexCorrupt(f"{self.uri}: collection {name} is not a rag {kind} collection (no field "
                                   f"{missing[0]!r}); name another prefix: milvus://{self.address}/OTHER")

    def _check_schema_number(self) -> None:
        """A store an earlier rag built (its meta row says which schema): say so, and what to do."""
        self._load_one(self.name("meta"))
        schema = (self._manifest() or {}).get("schema")
        if schema is not None and schema != SCHEMA:
            raise IndexCorrupt(f"{self.uri}: built by another rag version (Milvus schema {schema}, this one reads "
                               f"{SCHEMA}); build it again under another prefix: rag build PATHS --store "
                               f"milvus://{self.address}/NEW")

    def _load(self) -> None:
        """Load any collection the server holds released: a server keeps its collections loaded,
        but Milvus Lite opening a file starts with every collection released."""
        for kind in KINDS:
            self._load_one(self.name(kind))

    def _load_one(self, name: str) -> None:
        state = self._call(f"reading {name}'s state", self.client.get_load_state, name)["state"]
        if "NotLoad" in str(state):
            self._call(f"loading {name}", self.client.load_collection, name)

    def built_with(self) -> str | None:
        try:
            meta = self._meta()
        except RagError:
            return None
        return meta.get("model") if meta else None

    def _create(self, dim: int) -> None:
        from pymilvus import DataType, Function, FunctionType

        for kind in KINDS:
            name = self.name(kind)
            if self.client.has_collection(name):
                continue
            schema = self.client.create_schema(auto_id=False)
            index = self.client.prepare_index_params()
            for field, (kind_of, options) in layout.fields(kind, dim, partition_key=not self.embedded).items():
                schema.add_field(field, getattr(DataType, kind_of), **options)
                if kind_of == "FLOAT_VECTOR":
                    index.add_index(field, index_type="AUTOINDEX", metric_type="IP")
            if kind == "chunks":
                schema.add_function(Function(name="bm25", function_type=FunctionType.BM25,
                                             input_field_names=["words"], output_field_names=["sparse"]))
                index.add_index("sparse", index_type="SPARSE_INVERTED_INDEX", metric_type="BM25",
                                params=BM25_PARAMS)
            self._call(f"creating {name}", self.client.create_collection, name, schema=schema,
                       index_params=index, consistency_level=CONSISTENCY)

    def _put_meta(self, meta: dict) -> None:
        self._call("writing meta", self.client.upsert, self.name("meta"),
                   [{"key": "manifest", "value": meta, "vector": [0.0, 0.0]}])

    # ---- reading ----------------------------------------------------------------

    def retrieve(self, vector: np.ndarray, text: str, terms: frozenset[str], by: str,
                 filters: Filters | None, settings: Settings) -> Found:
        """Each viewpoint's best passages, searched on the server; the articles they
        come from fetched into a small snapshot for the answer stage."""
        meta = self._live_meta()
        where = filter_expr(filters)
        groups = self._groups(by, meta)
        labels = list(groups)
        field = GROUP_FIELDS.get(by)
        if field is not None and len(labels) > settings.max_viewpoints:
            labels = self._best_groups(vector, field, where, labels, settings.max_viewpoints)
        frequencies = self._pool.submit(self._frequencies, sorted(terms))  # beside the searches
        hits = self._passages(vector, text, groups, labels, field, where, settings.passages)
        if len(hits) > settings.max_viewpoints:  # grouped by another field: the sides with the closest passages
            closest = {label: max((h["cosine"] for h in side), default=-2.0) for label, side in hits.items()}
            best = sorted(hits, key=lambda label: -closest[label])
            hits = {label: hits[label] for label in best[:settings.max_viewpoints]}
        snap, sides = self._snapshot(hits, vector, meta)
        return Found(snap, from_frequencies(frequencies.result(), int(meta["chunks"])), sides,
                     len(groups) - len(sides))

    def _groups(self, by: str, meta: dict) -> dict[str, str]:
        """Each viewpoint label of field ``by`` and the expression that selects its chunks.
        The viewpoint and the source label are fields of every chunk (the viewpoint is the
        partition key); another metadata field is read from every article's record, so
        grouping by it costs a scan of the articles once per index version (kept for the next
        questions until a write changes the version)."""
        field = GROUP_FIELDS.get(by)
        if field is not None:
            return {label: f"{field} == {json.dumps(label, ensure_ascii=False)}"
                    for label, n in meta["groups"][by].items() if n > 0}
        key = (by, meta["version"], meta["next_gen"])
        if self._grouped[0] != key:
            members: dict[str, list[str]] = {}
            for article in self.articles():
                members.setdefault(article.group(by), []).append(article.id)
            self._grouped = (key, {label: f"doc_id in {json.dumps(ids, ensure_ascii=False)}"
                                   for label, ids in members.items()})
        return self._grouped[1]

    def _passages(self, vector: np.ndarray, text: str, groups: dict[str, str], labels: list[str],
                  field: str | None, where: str, k: int) -> dict[str, list[dict]]:
        """Each label's best ``k`` chunks: its dense and its BM25 ranking fused by reciprocal
        rank, as the local store fuses them (retrieve.reciprocal_rank).

        Grouped by a chunk field (the viewpoint, the source label), each ranking is one search
        over every label's chunks, split here by label: Milvus Lite's engine reads every vector
        on each search (FLAT), so one search for all labels costs what one for a single label
        costs, and on a cluster it is one fan-out instead of one per label. A label whose
        chunks rank too low to have ``DEPTH * k`` of that search's hits gets a search of its
        own, so each label's ranking is its exact top, as one search per label would find it.
        (Milvus Lite 2.5 ignores ``group_size``: a grouped search cannot give it either.)"""
        words = " ".join(tokens(text))
        kinds = ("dense", "bm25") if words else ("dense",)  # no word BM25 could match: dense alone
        query = {"dense": vector, "bm25": words}
        depth = DEPTH * k if words else k
        ranked: dict[tuple[str, str], list[dict]] = {}
        if field is not None and labels:  # (no labels: every article removed, nothing to search)
            shared = where if len(labels) == len(groups) else layout.all_of(
                f"{field} in {json.dumps(labels, ensure_ascii=False)}", where)
            limit = 2 * depth * len(labels)
            searches = {kind: self._pool.submit(self._ranked, kind, query[kind], shared, limit, field)
                        for kind in kinds}
            for kind, search in searches.items():
                found = search.result()
                for label in labels:
                    mine = [h for h in found if h[field] == label]
                    if len(mine) >= depth or len(found) < limit:  # its top, or every chunk it has
                        ranked[(label, kind)] = mine[:depth]
        own = {(label, kind): self._pool.submit(self._ranked, kind, query[kind],
                                                layout.all_of(groups[label], where), depth)
               for label in labels for kind in kinds if (label, kind) not in ranked}
        ranked.update((key, search.result()) for key, search in own.items())
        best = {label: reciprocal_rank([[h["key"] for h in ranked[(label, kind)]] for kind in kinds], k)
                for label in labels}
        # The passages' fields and vectors, for these few only: the searches return keys (their
        # hits' fields cost ~2 ms a search to fetch and decode, the vectors of 200 BM25 hits ~10).
        fields = ["key", "doc_id", "gen", "span_start", "span_end", "first_sentence", "last_sentence", "vector"]
        rows = {r["key"]: r for r in self._get_many("chunks", [key for keys in best.values() for key in keys], fields)}
        # A key gone since the search was replaced by a write: skipped, as the snapshot skips it.
        return {label: [{**rows[key], "cosine": float(np.asarray(rows[key]["vector"], np.float32) @ vector)}
                        for key in keys if key in rows] for label, keys in best.items()}

    def _ranked(self, kind: str, query, expr: str, limit: int, field: str | None = None) -> list[dict]:
        """The keys (and ``field``) of the ``limit`` chunks matching ``expr``, best first by
        ``kind``: "dense", closest to ``query``, a vector; "bm25", ``query``'s words by BM25."""
        fields = [field] if field else []
        if kind == "dense":
            found = self._call("searching", self.client.search, self.name("chunks"), data=[query.tolist()],
                               anns_field="vector", search_params={"metric_type": "IP"}, filter=expr,
                               limit=limit, output_fields=fields, consistency_level=CONSISTENCY)
        else:
            found = self._call("searching", self.client.search, self.name("chunks"), data=[query],
                               anns_field="sparse", search_params={"metric_type": "BM25"}, filter=expr,
                               limit=limit, output_fields=fields, consistency_level=CONSISTENCY)
        return [{"key": h.id, **{f: h["entity"][f] for f in fields}} for h in found[0]]

    def _best_groups(self, vector: np.ndarray, field: str, where: str, labels: list[str], n: int) -> list[str]:
        """The ``n`` groups whose best passage is closest: one grouped search."""
        found = self._call("searching", self.client.search, self.name("chunks"), data=[vector.tolist()],
                           anns_field="vector", filter=where, limit=n, group_by_field=field, group_size=1,
                           output_fields=[field], consistency_level=CONSISTENCY)
        best = [h["entity"][field] for h in found[0]]
        return best + [label for label in labels if label not in best][:n - len(best)]

    def _snapshot(self, hits: dict[str, list[dict]], vector: np.ndarray, meta: dict
                  ) -> tuple[Snapshot, dict[str, list[Passage]]]:
        """The articles ``hits`` point into, as a Snapshot; each side's passages in it.
        A hit of another generation than its article's live one (a write under way,
        or one that died) is skipped."""
        ids = list(dict.fromkeys(h["doc_id"] for side in hits.values() for h in side))
        # The sentences around each passage (the answer stage scores them and their neighbours),
        # named by the hit's own generation: read beside the articles, not after them.
        around: dict[tuple[str, int], set[int]] = {}
        for hit in (h for side in hits.values() for h in side):
            around.setdefault((hit["doc_id"], hit["gen"]), set()).update(
                range(max(hit["first_sentence"] - 1, 0), hit["last_sentence"] + 2))
        # In the pool, beside the articles' read: no task waits on another.
        blocks = self._sentence_read(around)
        articles = {a.id: (a, record) for a, record in self._pool.submit(self._articles, ids).result()}
        order = [i for i in ids if i in articles]
        row_of = {doc_id: row for row, doc_id in enumerate(order)}
        chunks, sides = [], {}
        for label, side in hits.items():
            passages = []
            for hit in side:
                stored = articles.get(hit["doc_id"])
                if stored is None or stored[1]["gen"] != hit["gen"]:
                    continue
                chunks.append((row_of[hit["doc_id"]], hit["span_start"], hit["span_end"],
                               hit["first_sentence"], hit["last_sentence"]))
                passages.append(Passage(len(chunks) - 1, hit["cosine"], len(passages) + 1))
            if passages:
                sides[label] = passages
        spans = Spans.of([articles[i][1]["spans"] for i in order])  # the pairs into arrays, no Span each
        counts, dim = spans.counts, int(meta["dim"])
        vectors = np.zeros((len(spans.pairs), dim), np.float16)
        for block in blocks.result():  # a block at a time: a loop per sentence cost ~7 ms a question
            doc_id, first = block["doc_id"], int(block["block"]) * layout.BLOCK
            if doc_id not in row_of or articles[doc_id][1]["gen"] != int(block["gen"]):
                continue
            found = layout.vectors_of(block, dim)[:max(int(counts[row_of[doc_id]]) - first, 0)]
            at = int(spans.starts[row_of[doc_id]]) + first
            vectors[at:at + len(found)] = found
        snap = Snapshot([articles[i][0] for i in order], spans, np.array(chunks, np.int64).reshape(-1, 5),
                        None, vectors, manifest=meta, version=layout.version_of(meta))
        if sum(map(len, list(self._derived.values()))) > DERIVED_MAX:  # list: one atomic copy (threads)
            self._derived.clear()
        snap.__dict__["_derived"] = self._derived
        return snap, sides

    def _articles(self, ids: Sequence[str]) -> Iterable[tuple[Article, dict]]:
        """The live articles among ``ids``, whole (text joined from its parts), with their records."""
        if not ids:
            return []
        rows = self._call("reading articles", self.client.get, self.name("articles"), ids=list(ids),
                          output_fields=["doc_id", "text", "record", "spans"])
        records = {r["doc_id"]: (r["text"], {**r["record"], "spans": r["spans"]}) for r in rows}
        more = [f"{i}#{rec['gen']}#p{p}" for i, (_, rec) in records.items() for p in range(1, rec["parts"])]
        parts = {}
        for r in self._get_many("articles", more, ["key", "text"]):
            parts[r["key"]] = r["text"]
        out = []
        for doc_id in ids:
            if doc_id not in records:
                continue
            text, record = records[doc_id]
            text += "".join(parts[f"{doc_id}#{record['gen']}#p{p}"] for p in range(1, record["parts"]))
            out.append((layout.article_of(doc_id, text, record), record))
        return out

    def _get_many(self, kind: str, keys: list[str], fields: list[str]) -> list[dict]:
        out = []
        for at in range(0, len(keys), 1024):
            out += self._call(f"reading {kind}", self.client.get, self.name(kind), ids=keys[at:at + 1024],
                              output_fields=fields)
        return out

    def _sentence_read(self, around: dict[tuple[str, int], set[int]]):
        """A read (a future) of the sentence blocks holding the sentences ``around`` names: one
        read, as Milvus Lite's engine scans its segments per read until it has every key."""
        keys = sorted({layout.block_key(doc_id, gen, i // layout.BLOCK) for (doc_id, gen), idx in around.items()
                       for i in idx})
        return self._pool.submit(self._get_many, "sentences", keys, ["doc_id", "gen", "block", "vectors"])

    def _frequencies(self, terms: list[str]) -> dict[str, int]:
        """How many chunks hold each of ``terms`` (absent: none): the few rows they hash to."""
        rows = self._get_many("terms", sorted({layout.term_bucket(t) for t in terms}), ["key", "value"])
        counts = {word: n for row in rows for word, n in row["value"].items()}
        return {t: int(counts[t]) for t in terms if t in counts}

    def article(self, doc_id: str) -> Article:
        self._live_meta()
        found = list(self._articles([doc_id]))
        if not found:
            raise RagError(f"no article with id {doc_id!r} in {self.uri} (see rag stats)")
        return found[0][0]

    def articles(self) -> list[Article]:
        """Every live article's metadata (text left empty: fetched by ``article``)."""
        self._live_meta()
        return [layout.article_of(r["doc_id"], "", r["record"]) for r in self._scan("articles", "part == 0",
                                                                            ["doc_id", "record"])]

    def _scan(self, kind: str, expr: str, fields: list[str]) -> Iterable[dict]:
        iterator = self._call(f"reading {kind}", self.client.query_iterator, self.name(kind), batch_size=1000,
                              filter=expr, output_fields=fields, consistency_level=CONSISTENCY)
        try:
            while True:
                batch = self._call(f"reading {kind}", iterator.next)
                if not batch:
                    return
                yield from batch
        finally:
            iterator.close()

    def stats(self, by: str) -> dict:
        meta = self._live_meta()
        if by in meta["groups"]:
            groups = {label: n for label, n in meta["groups"][by].items() if n > 0}
        else:
            groups = dict(Counter(a.group(by) for a in self.articles()))
        return {"index": self.uri, "version": layout.version_of(meta), "model": meta.get("model"),
                "dim": meta.get("dim"),
                "chunking": meta.get("chunking"), "articles": meta["articles"], "chunks": meta["chunks"],
                "sentences": meta["sentences"], "bytes": None,
                "viewpoints": dict(sorted(groups.items(), key=lambda kv: -kv[1]))}

    def check(self) -> tuple[str, list[str]]:
        """The collections are rag's, the meta row's counts match the live rows."""
        meta = self._live_meta()
        problems = []
        live = self._count("articles", "part == 0")
        if live != meta["articles"]:
            problems.append(f"{self.name('articles')}: {live} live articles, meta says {meta['articles']}")
        chunks = self._count("chunks", "")
        if chunks < meta["chunks"]:
            problems.append(f"{self.name('chunks')}: {chunks} chunk rows, meta says {meta['chunks']} live")
        return f"version {layout.version_of(meta)}, {live} articles", problems

    def _count(self, kind: str, expr: str) -> int:
        rows = self._call(f"counting {kind}", self.client.query, self.name(kind), filter=expr,
                          output_fields=["count(*)"], consistency_level=CONSISTENCY)
        return int(rows[0]["count(*)"])

    # ---- writing ----------------------------------------------------------------

    def _stored(self, meta: dict | None, mode: str, loaded, remove: Sequence[str]) -> Stored:
        """What a write plans from. A build (the whole corpus) or an upgrade reads every live
        article's record; an add or a remove only those it can touch: the ids it names and
        the articles holding the same text as an incoming one (build.plan keeps a text once)."""
        fields = ["doc_id", "hash", "record"]
        if not meta:
            rows = []
        elif mode in ("build", "upgrade"):
            rows = list(self._scan("articles", "part == 0", fields))
        else:
            ids = list(dict.fromkeys([a.id for a in loaded.articles] + list(remove)))
            rows = [r for r in self._get_many("articles", ids, fields + ["part"]) if r["part"] == 0]
            hashes = sorted({a.content_hash for a in loaded.articles})
            for at in range(0, len(hashes), 512):
                rows += self._call("reading articles", self.client.query, self.name("articles"),
                                   filter=f"part == 0 and hash in {json.dumps(hashes[at:at + 512])}",
                                   output_fields=fields, consistency_level=CONSISTENCY)
            rows = list({r["doc_id"]: r for r in rows}.values())
        records = [r["record"] for r in rows]
        return Stored(self, meta or {}, [r["doc_id"] for r in rows], [r["hash"] for r in rows],
                      [rec.get("path", "") for rec in records], [rec["digest"] for rec in records],
                      [rec["gen"] for rec in records], records, layout.version_of(meta) if meta else "",
                      complete=not meta or mode in ("build", "upgrade"))

    def write(self, loaded, mode: str, embedder, settings: Settings, remove: Sequence[str] = (),
              full: bool = False, dry_run: bool = False, progress: bool = True, **_) -> BuildReport:
        """Plan and write one update (build.plan, as locally); see the module's docstring."""
        require_articles(loaded, mode)
        meta = self._meta(empty_ok=True)
        if meta is not None and (meta.get("model"), meta.get("dim")) != (embedder.name, embedder.dim):
            raise IndexCorrupt(f"{self.uri}: built with {meta.get('model')} ({meta.get('dim')}-d), not "
                               f"{embedder.name} ({embedder.dim}-d); rebuild with rag build --full")
        if meta is None and mode != "build":
            raise IndexMissing(f"{self.uri}: no index here; build one with rag build PATHS --store {self.uri}")
        old = self._stored(meta, mode, loaded, remove)
        chunking = chunk_settings(settings, embedder)
        same_chunking = meta is None or meta.get("chunking") == chunking
        plan = plan_update(old, loaded, "remove" if mode == "upgrade" else mode, remove,
                            reuse_vectors=same_chunking and not full)
        report = plan.report
        if not old.complete:  # planned from the touched articles: the rest are unchanged
            report = replace(report, unchanged=int(meta["articles"]) - len(report.changed) - len(report.removed))
            plan = replace(plan, report=report)
        nothing = not (report.added or report.changed or report.removed or plan.write)
        if dry_run or (nothing and meta is not None):
            return replace(report, chunks=int(meta["chunks"]) if meta else 0)
        todo = [a for a in plan.write if a.id in plan.embed]
        fresh = chunk_all(todo, embedder, settings, progress)
        vectors = embed_articles(todo, fresh, embedder, settings, progress)
        planned = meta
        if meta is None:
            self._create(embedder.dim)
        lock = self._lock()  # after the model's work: a write holds the lock only while it writes
        try:
            meta = self._meta(empty_ok=True)
            if (meta or {}).get("version") != (planned or {}).get("version"):
                raise RagError(f"{self.uri}: another writer changed the index (to {layout.version_of(meta)}) "
                               f"while this one planned; run it again")
            if meta is None:
                meta = {"schema": SCHEMA, "model": embedder.name, "dim": embedder.dim,
                        "embedder": getattr(embedder, "backend", embedder.name), "chunking": chunking,
                        "version": 0, "next_gen": 1, "articles": 0, "chunks": 0, "sentences": 0,
                        "groups": {by: {} for by in GROUP_FIELDS}}
            gen = int(meta["next_gen"])
            self._put_meta({**meta, "next_gen": gen + 1})  # this write's rows are its own, even if it dies
            meta = {**meta, "chunking": chunking, "next_gen": gen + 1}
            totals = self._write_rows(old, plan, fresh, vectors, gen, meta, progress, lock)
            meta.update(totals, version=int(meta["version"]) + 1)
            self._put_meta(meta)
        finally:
            self._unlock(lock)
        if len(plan.write) >= FLUSH_AT:
            for kind in KINDS:  # seal the new rows into segments, which the server indexes once
                self._call(f"flushing {kind}", self.client.flush, self.name(kind))
        return replace(report, chunks=int(meta["chunks"]), version=layout.version_of(meta))

    # ---- one writer at a time ---------------------------------------------------
    # Milvus has no transactions: a writer inserts a lock row into meta, then reads every lock
    # row (Strong). It writes only if no other live writer's row is there, else it takes its row
    # back and stops. Of two writers, at most one can miss the other's row (the one whose read
    # came first), so at most one writes; both may stop, and a user runs again. A writer
    # refreshes its row as it writes; a row not refreshed for LOCK_STALE seconds is a dead
    # writer's, removed by the next one, and a writer whose row is gone stops before switching.

    def _lock(self) -> str:
        key = f"lock#{uuid.uuid4().hex}"
        self._put_lock(key, since=time.time())
        rows = self._call("reading locks", self.client.query, self.name("meta"), filter='key like "lock#%"',
                          output_fields=["key", "value"], consistency_level=CONSISTENCY)
        now = time.time()
        others = [r for r in rows if r["key"] != key]
        dead = [r["key"] for r in others if now - float(r["value"].get("beat", 0)) > LOCK_STALE]
        if dead:
            self._call("removing dead writers' locks", self.client.delete, self.name("meta"), ids=dead)
        live = [r["value"] for r in others if r["key"] not in dead]
        if live:
            self._unlock(key)
            who = live[0]
            raise RagError(f"{self.uri}: another writer is writing (pid {who.get('pid')} on {who.get('host')}, "
                           f"for {now - float(who.get('since', now)):.0f} s); run again when it is done")
        return key

    def _beat(self, key: str, now: bool = False) -> None:
        """Refresh this writer's lock row (at most every LOCK_STALE / 6 seconds unless ``now``);
        stop if it is gone: another writer took this one for dead and may be writing."""
        if not now and time.monotonic() - self._beat_at < LOCK_STALE / 6:
            return
        rows = self._call("reading locks", self.client.get, self.name("meta"), ids=[key], output_fields=["value"])
        if not rows:
            raise RagError(f"{self.uri}: this writer's lock was taken for a dead writer's (no heartbeat for "
                           f"{LOCK_STALE:.0f} s); run it again")
        self._put_lock(key, rows[0]["value"]["since"])

    def _put_lock(self, key: str, since: float) -> None:
        value = {"host": socket.gethostname(), "pid": os.getpid(), "since": since, "beat": time.time()}
        self._call("writing lock", self.client.upsert, self.name("meta"), [{"key": key, "value": value,
                                                                            "vector": [0.0, 0.0]}])
        self._beat_at = time.monotonic()

    def _unlock(self, key: str) -> None:
        try:
            self.client.delete(self.name("meta"), ids=[key])
        except Exception:  # the server went away: the row goes stale and the next writer removes it
            pass

    def _write_rows(self, old: Stored, plan, fresh: dict, vectors, gen: int, meta: dict, progress: bool,
                    lock: str) -> dict:
        """New rows, then the switch (article rows), then the replaced rows' removal; returns
        the counts and viewpoints the meta row records after it."""
        from tqdm.auto import tqdm

        df: Counter = Counter()
        live = {i: old.records[row] for i, row in old.row_of.items()}
        heads, pending = [], {"chunks": [], "sentences": [], "articles": []}
        for article in tqdm(plan.write, desc="writing to Milvus", unit="article", leave=False,
                            disable=not progress or len(plan.write) < 50):
            if article.id in plan.embed:
                spans, chunks = fresh[article.id]
                chunk_vectors, sentence_vectors = vectors.of(article.id)
                table = [(c.start, c.end, c.first_sentence, c.last_sentence) for c in chunks]
            else:  # metadata or path changed: the stored rows, copied under this generation
                table, chunk_vectors, sentence_vectors, spans = self._stored_rows(article.id, live[article.id])
            for kind, rows in self._article_rows(article, gen, table, chunk_vectors, sentence_vectors).items():
                pending[kind] += rows
            self._flush(pending, BATCH)
            self._beat(lock)
            record = layout.record(article, gen, spans, len(table))
            heads.append(layout.article_row(article, record, chunk_vectors, spans))
            if article.id in plan.embed:  # its chunks are new: their words count, the old ones' no more
                df.update(layout.chunk_terms(article.text, table))
                if article.id in live:
                    df.subtract(self._old_terms(article.id, live[article.id]))
            live[article.id] = record
        self._flush(pending, 1)  # every new row is in before any article switches to it
        self._beat(lock, now=True)  # still ours? (else another writer may be writing now)
        for at in range(0, len(heads), BATCH):  # the switch: each article now reads its new rows
            self._call("writing articles", self.client.upsert, self.name("articles"), heads[at:at + BATCH])
            self._beat(lock)
        dropped = sorted(plan.drop)
        for doc_id in dropped:
            df.subtract(self._old_terms(doc_id, live.pop(doc_id)))
        # The replaced rows (and any a dead writer left for these ids), a few calls in all:
        # a delete by expression scans the collection, so never one per article.
        written = [a.id for a in plan.write]
        for ids, keep in ((written, f" and gen != {gen}"), (dropped, "")):
            for at in range(0, len(ids), 512):
                where = f"doc_id in {json.dumps(ids[at:at + 512], ensure_ascii=False)}{keep}"
                for kind in ("chunks", "sentences", "articles"):
                    self._call(f"removing {kind}", self.client.delete, self.name(kind), filter=where)
        self._update_terms(df)
        if old.complete:  # every live article is at hand: count afresh (heals a dead writer's counts)
            return layout.counts(meta, [], live.values(), afresh=True)
        before = [old.records[old.row_of[i]] for i in written + dropped if i in old.row_of]
        return layout.counts(meta, before, [live[i] for i in written])

    def _flush(self, pending: dict[str, list], least: int) -> None:
        """Upsert the pending rows of each collection, ``BATCH`` a call, while ``least`` are waiting."""
        for kind, rows in pending.items():
            while rows and len(rows) >= least:
                self._call(f"writing {kind}", self.client.upsert, self.name(kind), rows[:BATCH])
                del rows[:BATCH]

    def _article_rows(self, article: Article, gen: int, table, chunk_vectors, sentence_vectors) -> dict:
        """An article's new rows under generation ``gen``: chunks, sentences, text parts after the first."""
        key = f"{article.id}#{gen}"
        labels = {"viewpoint": article.group("viewpoint"), "by_source": article.group("source")}
        day = iso_day(article.date)
        chunks = [{"key": f"{key}#c{n}", "doc_id": article.id, "gen": gen, **labels, "source": article.source,
                   "day": day, "span_start": s, "span_end": e, "first_sentence": f, "last_sentence": last,
                   "words": " ".join(tokens(article.text[s:e])), "vector": v.tolist()}
                  for n, ((s, e, f, last), v) in enumerate(zip(table, np.asarray(chunk_vectors, np.float32)))]
        sentences = layout.sentence_blocks(article.id, gen, sentence_vectors)
        parts = layout.text_parts(article.text)[1:]
        texts = [{"key": f"{key}#p{n}", "doc_id": article.id, "gen": gen, "part": n, "hash": article.content_hash,
                  "viewpoint": labels["viewpoint"], "by_source": labels["by_source"], "text": part,
                  "record": {}, "spans": [], "vector": layout.doc_vector(chunk_vectors)}
                 for n, part in enumerate(parts, 1)]
        return {"chunks": chunks, "sentences": sentences, "articles": texts}

    def _stored_rows(self, doc_id: str, record: dict):
        """An article's stored chunk table, chunk vectors, sentence vectors and spans."""
        expr = f"doc_id == {json.dumps(doc_id)} and gen == {record['gen']}"
        chunks = sorted(self._call("reading chunks", self.client.query, self.name("chunks"), filter=expr,
                                   output_fields=["span_start", "span_end", "first_sentence", "last_sentence",
                                                  "vector"], consistency_level=CONSISTENCY),
                        key=lambda r: r["span_start"])
        blocks = sorted(self._call("reading sentences", self.client.query, self.name("sentences"), filter=expr,
                                   output_fields=["block", "vectors"], consistency_level=CONSISTENCY),
                        key=lambda r: r["block"])
        [head] = self._call("reading articles", self.client.get, self.name("articles"), ids=[doc_id],
                            output_fields=["spans"])
        table = [(c["span_start"], c["span_end"], c["first_sentence"], c["last_sentence"]) for c in chunks]
        dim = len(chunks[0]["vector"])
        sentences = np.concatenate([layout.vectors_of(b, dim) for b in blocks]) if blocks else np.zeros((0, dim))
        return (table, np.array([c["vector"] for c in chunks], np.float32), sentences.astype(np.float32),
                tuple(Span(*s) for s in head["spans"]))

    def _old_terms(self, doc_id: str, record: dict) -> Counter:
        rows = self._call("reading chunks", self.client.query, self.name("chunks"),
                          filter=f"doc_id == {json.dumps(doc_id)} and gen == {record['gen']}",
                          output_fields=["words"], consistency_level=CONSISTENCY)
        return Counter(t for r in rows for t in set(r["words"].split()))

    def _update_terms(self, df: Counter) -> None:
        """Add ``df`` (word -> change in its count) to the stored counts, a bucket row at a time."""
        buckets: dict[str, list[str]] = {}
        for term in (t for t, n in df.items() if n):
            buckets.setdefault(layout.term_bucket(term), []).append(term)
        stored = {r["key"]: dict(r["value"]) for r in self._get_many("terms", sorted(buckets), ["key", "value"])}
        rows = []
        for key, words in buckets.items():
            counts = stored.get(key, {})
            for word in words:
                n = int(counts.pop(word, 0)) + df[word]
                if n > 0:
                    counts[word] = n
            rows.append({"key": key, "value": counts, "vector": [0.0, 0.0]})
        for at in range(0, len(rows), BATCH):
            self._call("writing terms", self.client.upsert, self.name("terms"), rows[at:at + BATCH])
