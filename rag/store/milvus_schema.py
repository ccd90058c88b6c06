"""What the Milvus store keeps and how it names it: the address, the collections'
fields, the rows an article becomes, the filters as expressions. Pure functions and data,
no server (milvus.py talks to the server).
"""
from __future__ import annotations

import base64
import json
import re
import zlib
from collections import Counter
from dataclasses import dataclass
from functools import cached_property
from typing import Iterable

import numpy as np

from ..dates import iso_day
from ..errors import RagError
from ..lexical import tokens
from ..retrieve import Filters
from ..types import Article
from .segment import meta_digest

SCHEMA = 3  # bumped when the collections' fields change (2: sentence vectors in blocks; 3: word counts in buckets)
# Sentence vectors per sentences row: float16 (as the folder keeps them), base64 in a VARCHAR
# (at most 65,535 bytes: 48 of 384-d fill 49,152 characters). A question reads the blocks
# around its passages (~12 sentences each): 16 a row read a third of the bytes 48 did, one
# read either way (at 6,000 articles 8 against 13 ms with decoding).
BLOCK = 16
# Rows the word counts are hashed into. A read of rows by key costs Milvus Lite ~5 ms and more
# when the keys are among many rows (a question's 4 words, a row each among 70k at 12k
# articles: ~9 ms, 11 ms of the ask); a few rows of 8,192 cost 1.6. At 10M articles, ~1,000
# words a row, ~20 KB of JSON.
TERM_BUCKETS = 8192
# Bytes of UTF-8 per row of article text (a VARCHAR holds 65,535): all but a few articles are
# one row, read with the article's record. (Parts of 16,000 characters, before, left 3% of
# AllSides articles in two rows: a second read after the first for most questions at 12k.)
TEXT_BYTES = 65_000
ID_CHARS = 400  # longest article id (keys add a generation and an index to it)
# BM25 as bm25s ranks locally (Milvus's own default k1 is 1.2).
BM25_PARAMS = {"bm25_k1": 1.5, "bm25_b": 0.75}
# Fields that can make the viewpoints: the partition key, and the source label.
GROUP_FIELDS = {"viewpoint": "viewpoint", "source": "by_source"}
KINDS = ("articles", "chunks", "sentences", "terms", "meta")
_PREFIX = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,200}\Z")
_HOST_PORT = re.compile(r"(?P<host>[^:/]+):(?P<port>[0-9]{1,5})\Z")


def parse(uri: str) -> tuple[str, str]:
    """(``host:port``, collection prefix) of ``milvus://HOST:PORT[/PREFIX]``; for
    ``milvus:///PATH.db[/PREFIX]`` (no host: Milvus Lite's embedded engine in a file), the
    file's path instead of ``host:port``.

    >>> parse("milvus://127.0.0.1:19530"), parse("milvus://db.internal:19530/news")
    (('127.0.0.1:19530', 'rag'), ('db.internal:19530', 'news'))
    >>> parse("milvus:///tmp/corpus.db/news")
    ('/tmp/corpus.db', 'news')
    """
    rest = uri.removeprefix("milvus://")
    if rest.startswith("/"):  # a file: the path ends at .db, the prefix follows
        path, dot, prefix = rest.partition(".db")
        address = path + dot
        if not dot or prefix[:1] not in ("", "/"):
            raise RagError(f"{uri}: expected milvus:///PATH.db[/PREFIX] for an embedded Milvus Lite file")
    else:
        address, _, prefix = rest.partition("/")
        if not _HOST_PORT.match(address):
            raise RagError(f"{uri}: expected milvus://HOST:PORT[/PREFIX], e.g. milvus://127.0.0.1:19530")
    prefix = prefix.strip("/") or "rag"
    if not _PREFIX.match(prefix):
        raise RagError(f"{uri}: collection prefix {prefix!r} must be letters, digits and _ (not first a digit)")
    return address, prefix


def is_file(address: str) -> bool:
    """An embedded Milvus Lite file rather than a server's ``host:port``."""
    return address.startswith("/")


@dataclass(frozen=True, eq=False)
class Stored:
    """What a writer plans from (build.plan reads it as it reads a local Catalog):
    each live article's id, content hash, path, metadata digest and generation."""

    store: object  # the MilvusStore it was read from
    meta: dict
    ids: list[str]
    content_hashes: list[str]
    paths: list[str]
    digests: list[str]
    gens: list[int]
    records: list[dict]
    version: str = ""
    warning: str = ""
    complete: bool = True  # every live article; an add or a remove reads only those it can touch

    @cached_property
    def row_of(self) -> dict[str, int]:
        return {i: row for row, i in enumerate(self.ids)}

    @property
    def manifest(self) -> dict:
        return self.meta

    def digest_of(self, row: int) -> str:
        return self.digests[row]

    def article(self, row: int) -> Article:
        return self.store.article(self.ids[row])

    def check(self) -> None:
        pass


def chunk_terms(text: str, table) -> Counter:
    """Each word once per chunk that holds it: document frequencies, chunks as documents."""
    return Counter(t for s, e, _, _ in table for t in set(tokens(text[s:e])))


def filter_expr(filters: Filters | None) -> str:
    """``filters`` as a Milvus boolean expression over the chunk rows ("" for none).

    >>> filter_expr(Filters(sources=("BBC",), date_from="2017-01-01"))
    'source in ["BBC"] and day != "" and day >= "2017-01-01"'
    """
    if filters is None:
        return ""
    parts = []
    if filters.sources:
        parts.append(f"source in {json.dumps(list(filters.sources), ensure_ascii=False)}")
    first, last = iso_day(filters.date_from), iso_day(filters.date_to)
    if filters.date_from or filters.date_to:
        parts.append('day != ""')  # an article without a readable day is outside any range, as locally
    if filters.date_from and first:
        parts.append(f'day >= "{first}"')
    if filters.date_to and last:
        parts.append(f'day <= "{last}"')
    return " and ".join(parts)


def all_of(*exprs: str) -> str:
    """The expressions that are not empty, joined by ``and`` ("" for none).

    >>> all_of('viewpoint == "left"', ""), all_of("", "")
    ('viewpoint == "left"', '')
    """
    return " and ".join(e for e in exprs if e)


def fields(kind: str, dim: int = 0, partition_key: bool = True) -> dict[str, tuple[str, dict]]:
    """The fields of each collection: name -> (pymilvus DataType name, options). Without
    ``partition_key`` the chunks' viewpoint is a plain field: Milvus Lite 2.5's embedded
    engine rejects every filter on a collection with a partition key (milvus-io/milvus#43163)."""
    key = {"key": ("VARCHAR", {"is_primary": True, "max_length": 1024})}
    label = {"max_length": 1024}
    owner = {"doc_id": ("VARCHAR", label), "gen": ("INT64", {})}
    vector = {"vector": ("FLOAT_VECTOR", {"dim": dim})}
    unused = {"vector": ("FLOAT_VECTOR", {"dim": 2})}  # Milvus wants a vector field in every collection
    if kind == "articles":
        return {**key, **owner, "part": ("INT64", {}), "hash": ("VARCHAR", {"max_length": 64}),
                "viewpoint": ("VARCHAR", label), "by_source": ("VARCHAR", label),
                "text": ("VARCHAR", {"max_length": 65535}), "record": ("JSON", {}), "spans": ("JSON", {}), **vector}
    if kind == "chunks":
        return {**key, **owner, "viewpoint": ("VARCHAR", {**label, "is_partition_key": partition_key}),
                "by_source": ("VARCHAR", label), "source": ("VARCHAR", label),
                "day": ("VARCHAR", {"max_length": 16}), "span_start": ("INT64", {}), "span_end": ("INT64", {}),
                "first_sentence": ("INT64", {}), "last_sentence": ("INT64", {}),
                "words": ("VARCHAR", {"max_length": 65535, "enable_analyzer": True}),
                "sparse": ("SPARSE_FLOAT_VECTOR", {}), **vector}
    if kind == "sentences":  # an article's sentence vectors, BLOCK a row: read by key, never searched
        return {**key, **owner, "block": ("INT64", {}), "vectors": ("VARCHAR", {"max_length": 65535}), **unused}
    return {"key": ("VARCHAR", {"is_primary": True, "max_length": 64}), "value": ("JSON", {}), **unused}


def record(article: Article, gen: int, spans, n_chunks: int) -> dict:
    """An article's row record: its metadata, live generation and counts (what a writer plans
    from, read for every article by each write: its sentence spans are a field of their own)."""
    return {"title": article.title, "source": article.source, "viewpoint": article.viewpoint,
            "date": article.date, "url": article.url, "path": article.path, "meta": dict(article.meta),
            "content_hash": article.content_hash, "digest": meta_digest(article), "gen": gen,
            "parts": len(text_parts(article.text)), "n_chunks": n_chunks,
            "n_sentences": len(spans),
            "viewpoint_label": article.group("viewpoint"), "source_label": article.group("source")}


def article_row(article: Article, record: dict, chunk_vectors, spans) -> dict:
    if len(article.id) > ID_CHARS:
        raise RagError(f"{article.path}: article id longer than {ID_CHARS} characters")
    return {"key": article.id, "doc_id": article.id, "gen": record["gen"], "part": 0,
            "hash": article.content_hash, "viewpoint": record["viewpoint_label"],
            "by_source": record["source_label"], "text": text_parts(article.text)[0], "record": record,
            "spans": [[int(s.start), int(s.end)] for s in spans], "vector": doc_vector(chunk_vectors)}


def text_parts(text: str) -> list[str]:
    """``text`` in parts of at most ``TEXT_BYTES`` bytes of UTF-8, cut between characters.

    >>> [len(part) for part in text_parts("a" + "é" * 40_000)], text_parts("")  # byte 65,000 is inside an é
    ([32500, 7501], [''])
    """
    data = text.encode("utf-8")
    parts, at = [], 0
    while at < len(data) or not parts:
        end = min(at + TEXT_BYTES, len(data))
        while end < len(data) and data[end] & 0xC0 == 0x80:  # inside a character: back to its first byte
            end -= 1
        parts.append(data[at:end].decode("utf-8"))
        at = end
    return parts


def article_of(doc_id: str, text: str, record: dict) -> Article:
    return Article(id=doc_id, text=text, title=record["title"], source=record["source"],
                   viewpoint=record["viewpoint"], date=record["date"], url=record["url"], path=record["path"],
                   meta=record["meta"], content_hash=record["content_hash"])


def doc_vector(chunk_vectors) -> list[float]:
    """An article's mean chunk vector, normalized (the articles collection's vector)."""
    mean = np.asarray(chunk_vectors, np.float32).mean(axis=0)
    return (mean / (np.linalg.norm(mean) or 1.0)).tolist()


def version_of(meta: dict | None) -> str:
    return f"v{int(meta['version']):06d}" if meta else ""


def sentence_blocks(doc_id: str, gen: int, vectors) -> list[dict]:
    """An article's sentence vectors as rows of ``BLOCK`` (float16, base64).

    >>> rows = sentence_blocks("a", 3, np.ones((20, 4), np.float32))
    >>> [(r["key"], r["block"]) for r in rows], vectors_of(rows[1], 4).shape
    ([('a#3#v0', 0), ('a#3#v1', 1)], (4, 4))
    """
    vectors = np.asarray(vectors, np.float16)
    return [{"key": block_key(doc_id, gen, n), "doc_id": doc_id, "gen": gen, "block": n,
             "vectors": base64.b64encode(vectors[at:at + BLOCK].tobytes()).decode("ascii"),
             "vector": [0.0, 0.0]} for n, at in enumerate(range(0, len(vectors), BLOCK))]


def term_bucket(term: str) -> str:
    """The key of the terms row that holds ``term``'s count (a JSON object, word -> count).

    >>> term_bucket("russia") == term_bucket("russia") != term_bucket("ukraine")
    True
    """
    return f"b{zlib.crc32(term.encode('utf-8')) % TERM_BUCKETS}"


def block_key(doc_id: str, gen: int, block: int) -> str:
    return f"{doc_id}#{gen}#v{block}"


def vectors_of(row: dict, dim: int) -> np.ndarray:
    """A sentences row's vectors (float16), one ``dim``-d vector per row of the result."""
    return np.frombuffer(base64.b64decode(row["vectors"]), np.float16).reshape(-1, dim)


def counts(meta: dict, before: Iterable[dict], after: Iterable[dict], afresh: bool = False) -> dict:
    """The meta row's counts once the articles of records ``before`` became those of ``after``;
    ``afresh``: ``after`` is every live article, counted from nothing.

    >>> rec = {"n_chunks": 3, "n_sentences": 9, "viewpoint_label": "Left", "source_label": "BBC"}
    >>> counts({"articles": 1, "chunks": 3, "sentences": 9, "groups": {"viewpoint": {"Left": 1}}}, [], [rec])
    {'articles': 2, 'chunks': 6, 'sentences': 18, 'groups': {'viewpoint': {'Left': 2}, 'source': {'BBC': 1}}}
    """
    base = {"articles": 0, "chunks": 0, "sentences": 0, "groups": {}} if afresh else meta
    n = {name: int(base[name]) for name in ("articles", "chunks", "sentences")}
    groups = {by: Counter(base["groups"].get(by, {})) for by in GROUP_FIELDS}
    for sign, records in ((-1, before), (1, after)):
        for rec in records:
            n["articles"] += sign
            n["chunks"] += sign * rec["n_chunks"]
            n["sentences"] += sign * rec["n_sentences"]
            for by in GROUP_FIELDS:
                groups[by][rec[by + "_label"]] += sign
    return {**n, "groups": {by: {label: k for label, k in c.items() if k > 0} for by, c in groups.items()}}
