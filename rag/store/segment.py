"""Segments: the immutable folders of rows that index versions share.

A segment holds some articles with everything a reader needs about them::

    segments/s000003/
      articles.jsonl  one article a line: metadata, text, sentence spans
      chunks.npy      int64 rows: article row (within the segment), start, end,
                      first/last sentence
      vectors.npy     float32 chunk vectors, one per chunk row
      sentences.npy   float16 sentence vectors, each article's rows contiguous
      lists.npy       IVF only: the inverted list of each chunk vector
      centroids.npy   IVF only: the trained centroids those lists refer to
      vocab.txt       the content words of its chunks, one a line (lexical.Terms),
      terms.npy       with each chunk's words and counts as int32 (word, count)
      term_rows.npy   pairs, and where each chunk's pairs start (int64):
                      BM25's statistics, so loading never tokenizes the text
      catalog.json    per article: id, content hash, path, metadata digest,
                      chunk and sentence counts: all a writer needs to plan an
                      update without reading the rest (catalog.py)

It is written once and never changed; a version lists the segments it uses
and, for each, the ids of its articles that the version no longer serves
(removed, or replaced by a copy in a newer segment). This module turns rows
into file bytes and back (``encode``/``decode``) and cuts and joins rows in
memory (``Part``); index.py reads and verifies, commit.py writes durably.
"""
from __future__ import annotations

import hashlib
import io
import json
from dataclasses import asdict, dataclass
from functools import partial
from typing import BinaryIO, Callable, Collection, Sequence

import numpy as np

from ..lexical import TERMS_VERSION, Terms, chunk_texts
from ..types import Article, Spans

FILES = ("articles.jsonl", "chunks.npy", "vectors.npy", "sentences.npy")
IVF_FILES = ("lists.npy", "centroids.npy")
TERM_FILES = ("vocab.txt", "terms.npy", "term_rows.npy")  # optional: older segments lack them
CATALOG_FILE = "catalog.json"  # optional: older segments lack it (a writer then reads them whole)
CATALOG_VERSION = 1  # of the catalog's layout and of meta_digest: another version is not used


@dataclass(frozen=True)
class Segment:
    """A segment as one loaded version uses it: its files' checksums (from the
    manifest), the ids it no longer serves, and where its live rows sit in
    the snapshot (row ranges of articles, chunks and sentences)."""

    name: str
    files: dict
    deleted: frozenset
    articles: range
    chunks: range
    sentences: range
    terms: Terms | None = None  # its live chunks' term counts (None: an older segment without them)


@dataclass(frozen=True, eq=False)
class Part:
    """Rows of some articles in memory; chunk rows point at article rows of the part."""

    articles: list
    sentences: Spans  # per article, its sentence spans (a list of tuples of Span is turned into Spans)
    chunks: np.ndarray  # (n_chunks, 5) int64
    vectors: np.ndarray  # (n_chunks, dim) float32 chunk vectors
    sentence_vectors: np.ndarray  # (n_sentences, dim)
    lists: np.ndarray | None = None  # IVF: the inverted list of each chunk vector
    centroids: np.ndarray | None = None  # IVF: the centroids the lists refer to
    terms: Terms | None = None  # each chunk's content words; None: counted from the text when written

    def __post_init__(self) -> None:
        object.__setattr__(self, "sentences", Spans.of(self.sentences))

    def counts(self) -> dict:
        return {"articles": len(self.articles), "chunks": len(self.chunks),
                "sentences": int(self.sentences.counts.sum())}

    def without(self, ids: Collection[str]) -> Part:
        """This part less the articles whose id is in ``ids`` (itself if none is)."""
        keep = np.array([a.id not in ids for a in self.articles], dtype=bool)
        if keep.all():
            return self
        new_row = np.cumsum(keep) - 1
        chunk_keep = keep[self.chunks[:, 0]]
        chunks = self.chunks[chunk_keep]  # a copy: the renumbering below never touches the source
        chunks[:, 0] = new_row[chunks[:, 0]]
        sentence_keep = np.repeat(keep, self.sentences.counts)
        return Part([a for a, k in zip(self.articles, keep) if k],
                    self.sentences.take(keep), chunks, self.vectors[chunk_keep],
                    self.sentence_vectors[sentence_keep],
                    None if self.lists is None else self.lists[chunk_keep], self.centroids,
                    None if self.terms is None else self.terms.take(chunk_keep))

    def problem(self, counts: dict, dim: int, nlist: int | None = None) -> str:
        """Do the rows agree with ``counts`` and with each other? Rows that point
        outside their article would cite the wrong text: refuse them."""
        found = self.counts()
        for key in ("articles", "chunks", "sentences"):
            if counts.get(key) != found[key]:
                return f"{key}: found {found[key]}, the manifest says {counts.get(key)}"
        c = self.chunks
        if c.ndim != 2 or c.shape[1] != 5:
            return f"chunks.npy has shape {c.shape}, not (n, 5)"
        if self.vectors.shape[1:] != (dim,) or self.sentence_vectors.shape[1:] != (dim,):
            return f"vector dimension does not match the manifest's {dim}"
        if len(self.vectors) != len(c) or len(self.sentence_vectors) != found["sentences"]:
            return "vectors and their chunk or sentence records differ in number"
        if (nlist is None) != (self.lists is None) or (nlist is not None and (
                self.lists.shape != (len(c),) or self.centroids.shape != (nlist, dim)
                or (len(c) and not 0 <= self.lists.min() <= self.lists.max() < nlist))):
            return "inverted lists do not match the chunk index in the manifest"
        if self.terms is not None and self.terms.problem(len(c)):
            return self.terms.problem(len(c))
        if len(c):
            rows = c[:, 0]
            if rows.min() < 0 or rows.max() >= len(self.articles):
                return "a chunk points at no article"
            lengths = np.array([len(a.text) for a in self.articles], dtype=np.int64)[rows]
            n_sentences = self.sentences.counts[rows]
            if not (np.all((0 <= c[:, 1]) & (c[:, 1] < c[:, 2]) & (c[:, 2] <= lengths))
                    and np.all((0 <= c[:, 3]) & (c[:, 3] <= c[:, 4]) & (c[:, 4] < n_sentences))):
                return "a chunk's span or sentences lie outside its article"
        return ""


def concat(parts: Sequence[Part], dim: int, vectors: bool = True) -> Part:
    """The parts one after another, chunk rows renumbered. With ``vectors=False``
    the chunk vectors and term counts are left out (empty, None): a loading
    snapshot hands the vectors to FAISS and keeps the counts per segment."""
    if len(parts) == 1 and vectors:
        return parts[0]
    offsets = np.cumsum([0] + [len(p.articles) for p in parts])
    chunks = [p.chunks + np.array([o, 0, 0, 0, 0], dtype=np.int64) for p, o in zip(parts, offsets)]
    lists = [p.lists for p in parts if p.lists is not None]
    return Part([a for p in parts for a in p.articles], Spans.join([p.sentences for p in parts]),
                np.concatenate(chunks) if chunks else np.zeros((0, 5), np.int64),
                _join([p.vectors for p in parts] if vectors else [], dim, np.float32),
                _join([p.sentence_vectors for p in parts], dim, np.float16),
                np.concatenate(lists) if lists else None,
                next((p.centroids for p in parts if p.centroids is not None), None),
                Terms.join([p.terms for p in parts]) if vectors and all(p.terms is not None for p in parts)
                else None)


def _join(arrays: list, dim: int, dtype) -> np.ndarray:
    if len(arrays) == 1 and arrays[0].dtype == dtype:
        return arrays[0]  # one segment: its (read-only) array as it is, no copy
    return np.concatenate(arrays).astype(dtype, copy=False) if arrays else np.zeros((0, dim), dtype)


# ---- bytes -------------------------------------------------------------------

def writers(part: Part) -> dict[str, Callable[[BinaryIO], None]]:
    """The segment files of ``part``, by name and in the order the manifest lists
    them, each as a function that writes the file's bytes to a stream. A file is
    written as it is made, a line or 16 MB of an array at a time, so a big
    segment is never held in memory a second time as bytes."""
    arrays = {"chunks.npy": (part.chunks, np.int64), "vectors.npy": (part.vectors, np.float32),
              "sentences.npy": (part.sentence_vectors, np.float16)}
    if part.lists is not None:
        arrays.update({"lists.npy": (part.lists, np.int64), "centroids.npy": (part.centroids, np.float32)})
    terms = _stored_terms(part)
    return {"articles.jsonl": partial(_write_articles, part),
            **{name: partial(_write_npy, array, dtype) for name, (array, dtype) in arrays.items()},
            "vocab.txt": partial(_write_vocab, terms),
            "terms.npy": partial(_write_npy, np.stack([terms.ids, terms.counts], axis=1), np.int32),
            "term_rows.npy": partial(_write_npy, terms.rows, np.int64),
            CATALOG_FILE: partial(_write_catalog, part)}


def encode(part: Part) -> dict[str, bytes]:
    """The segment files of ``part`` as bytes, by name (what ``writers`` streams)."""
    blobs = {}
    for name, write in writers(part).items():
        out = io.BytesIO()
        write(out)
        blobs[name] = out.getvalue()
    return blobs


def _write_articles(part: Part, out: BinaryIO) -> None:
    starts, pairs = part.sentences.starts, part.sentences.pairs
    for n, article in enumerate(part.articles):
        record = asdict(article)
        record["sentences"] = pairs[starts[n]:starts[n + 1]].tolist()
        out.write((json.dumps(record, ensure_ascii=False) + "\n").encode("utf-8"))


def _write_npy(array: np.ndarray, dtype, out: BinaryIO) -> None:
    # no copy when the array already has the dtype; np.save writes 16 MB pieces to a non-file stream
    np.save(out, np.ascontiguousarray(array, dtype=dtype), allow_pickle=False)


def _write_vocab(terms: Terms, out: BinaryIO) -> None:
    out.write("".join(f"{w}\n" for w in (f"#terms {TERMS_VERSION}", *terms.vocab)).encode("ascii"))


def meta_digest(article: Article) -> str:
    """A digest of an article's metadata: every field but its id, text (the
    content hash covers it), path and content hash. With the content hash it
    tells a writer whether a stored article changed, without reading it."""
    fields = {name: getattr(article, name) for name in ("title", "source", "viewpoint", "date", "url")}
    record = json.dumps([fields, article.meta], sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(record.encode("utf-8")).hexdigest()[:32]


def _catalog_of(part: Part, digests: bool = True) -> dict:
    """The catalog columns of ``part``'s rows (the metadata digests only if ``digests``)."""
    a = part.articles
    columns = {"ids": [x.id for x in a], "content_hashes": [x.content_hash for x in a],
               "paths": [x.path for x in a], "meta_digests": [meta_digest(x) for x in a] if digests else None,
               "chunks": np.bincount(part.chunks[:, 0], minlength=len(a)).tolist() if len(a) else [],
               "sentences": part.sentences.counts.tolist()}
    return {key: value for key, value in columns.items() if value is not None}


def _write_catalog(part: Part, out: BinaryIO) -> None:
    record = {"catalog": CATALOG_VERSION, **_catalog_of(part)}
    out.write(json.dumps(record, ensure_ascii=False).encode("utf-8"))


CATALOG_KEYS = ("ids", "content_hashes", "paths", "meta_digests", "chunks", "sentences")


def read_catalog(data: bytes) -> dict | None:
    """A segment's catalog: equal-length lists by key (CATALOG_KEYS); None if it
    was written in another catalog version. ValueError if it does not parse."""
    record = json.loads(data.decode("utf-8"))
    if not isinstance(record, dict):
        raise ValueError("a catalog that is not an object")
    if record.get("catalog") != CATALOG_VERSION:
        return None
    lists = [record.get(key) for key in CATALOG_KEYS]
    if not all(isinstance(x, list) and len(x) == len(lists[0]) for x in lists):
        raise ValueError("a catalog whose lists are missing or of different lengths")
    texts, numbers = lists[:4], lists[4:]  # ids, hashes, paths, digests; chunk and sentence counts
    if not (all(isinstance(v, str) for x in texts for v in x)
            and all(type(v) is int and v >= 0 for x in numbers for v in x)):
        raise ValueError("a catalog with a value of the wrong type")
    return {key: record[key] for key in CATALOG_KEYS}


def catalog_problem(catalog: dict, part: Part) -> str:
    """Does a segment's catalog describe its rows? (Its metadata digests are not recomputed.)"""
    wrong = [key for key, value in _catalog_of(part, digests=False).items() if catalog[key] != value]
    return f"catalog.json does not match the articles ({', '.join(wrong)})" if wrong else ""


def _stored_terms(part: Part) -> Terms:
    """The word counts written with ``part``: its own, or counted from the text for new
    rows and rows of a segment without counts; over only the words its rows use."""
    terms = part.terms if part.terms is not None else Terms.of(chunk_texts(part.articles, part.chunks))
    return terms.compact()


def _decode_terms(blobs: dict[str, bytes]) -> Terms | None:
    """The stored term counts; None if the segment has none, or counted them with
    another version of the tokenizer (they are counted from the text again)."""
    if "vocab.txt" not in blobs:
        return None
    lines = blobs["vocab.txt"].decode("ascii").split("\n")
    if lines[0] != f"#terms {TERMS_VERSION}":
        return None
    pairs = _npy(blobs["terms.npy"], np.int32).reshape(-1, 2)
    return Terms(tuple(lines[1:-1]), _npy(blobs["term_rows.npy"], np.int64), pairs[:, 0], pairs[:, 1])


def decode(blobs: dict[str, bytes]) -> Part:
    """A part from segment file bytes; ValueError (or KeyError, TypeError) if they do not parse."""
    articles, sentences = _parse_articles(blobs["articles.jsonl"])
    ivf = "lists.npy" in blobs
    return Part(articles, sentences, _npy(blobs["chunks.npy"], np.int64), _npy(blobs["vectors.npy"], np.float32),
                _npy(blobs["sentences.npy"], np.float16),
                _npy(blobs["lists.npy"], np.int64) if ivf else None,
                _npy(blobs["centroids.npy"], np.float32) if ivf else None, _decode_terms(blobs))


def _npy(data: bytes, dtype) -> np.ndarray:
    """A read-only array over the bytes of an .npy file (no copy: they were just
    read and checksummed, and a snapshot only reads its arrays)."""
    stream = io.BytesIO(data)
    version = np.lib.format.read_magic(stream)
    read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
    shape, fortran, found = read_header(stream)
    if found != np.dtype(dtype) or fortran:
        raise ValueError(f"an array of {found}, not {np.dtype(dtype)}")
    count = int(np.prod(shape, dtype=np.int64))
    if len(data) - stream.tell() != count * found.itemsize:
        raise ValueError("an array whose size does not match its header")
    return np.frombuffer(data, dtype=found, count=count, offset=stream.tell()).reshape(shape)


def _parse_articles(data: bytes) -> tuple[list[Article], Spans]:
    articles, spans = [], []
    for line in data.split(b"\n"):  # b"\n" only: U+2028 may appear raw inside a record
        if not line:
            continue
        record = json.loads(line)
        spans.append(record.pop("sentences"))
        articles.append(Article(**record))
    sentences = Spans.of(spans)  # checked all at once below, made into Span tuples only when read
    lengths = np.repeat(np.fromiter((len(a.text) for a in articles), np.int64, len(articles)), sentences.counts)
    start, end = sentences.pairs[:, 0], sentences.pairs[:, 1]
    outside = np.flatnonzero(~((0 <= start) & (start < end) & (end <= lengths)))
    if len(outside):
        article = articles[int(np.searchsorted(sentences.starts, outside[0], side="right")) - 1]
        raise ValueError(f"article {article.id!r}: a sentence span lies outside its text")
    return articles, sentences
