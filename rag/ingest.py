"""Ingest: files and folders in, ``Article`` records out.

Supported: ``.txt``/``.md`` (optional ``---`` front matter), ``.html``/``.htm``
(readable text only), ``.jsonl``/``.jsonl.gz`` (one article a line). One bad
file or line never aborts a batch: it comes back as a ``Rejected`` entry.
"""
from __future__ import annotations

import gzip
import hashlib
import json
import os
import re
from dataclasses import dataclass, replace
from html.parser import HTMLParser
from pathlib import Path
from typing import Iterable, Iterator, Mapping

from .errors import IngestError, RagError
from .types import ARTICLE_FIELDS, Article, Rejected

TEXT_SUFFIXES = (".txt", ".md", ".markdown")
HTML_SUFFIXES = (".html", ".htm")
JSONL_SUFFIXES = (".jsonl", ".jsonl.gz", ".ndjson")
MAX_FILE_BYTES = 64 * 1024 * 1024  # a single text/html file; JSONL is streamed
MAX_LINE_BYTES = 8 * 1024 * 1024  # one JSONL record
FIELD_NAMES = ("text",) + ARTICLE_FIELDS

# Zero-width, bidi-control and C0/C1 control characters (tab and newline kept):
# invisible, they change hashes and can disguise text.
_INVISIBLE = re.compile("[\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u2069\ufeff"
                        "\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
_BINARY_MAGIC = (b"%PDF", b"PK\x03\x04", b"\x89PNG", b"\xff\xd8\xff", b"GIF8", b"\x1f\x8b")


@dataclass(frozen=True)
class Loaded:
    articles: tuple[Article, ...]
    rejected: tuple[Rejected, ...]


def parse_fields(specs: Iterable[str]) -> dict[str, str]:
    """Turn ``["text=content_original"]`` into ``{"text": "content_original"}``.

    >>> parse_fields(["viewpoint=bias_text"])
    {'viewpoint': 'bias_text'}
    """
    fields: dict[str, str] = {}
    for spec in specs:
        name, sep, key = spec.partition("=")
        if not sep or not name or not key:
            raise RagError(f"--field {spec}: expected NAME=KEY, e.g. text=content_original")
        if name not in FIELD_NAMES:
            raise RagError(f"--field {spec}: unknown field '{name}' (known: {', '.join(FIELD_NAMES)})")
        fields[name] = key
    return fields


def load(paths: Iterable[str | os.PathLike], fields: Mapping[str, str] | None = None,
         defaults: Mapping[str, str] | None = None) -> Loaded:
    """Read every supported file under ``paths``; ``defaults`` fills metadata
    fields (e.g. viewpoint, source) that an article leaves empty.

    >>> loaded = load(["seeds"])
    >>> sorted(a.viewpoint for a in loaded.articles)
    ['pro-Russia', 'pro-Ukraine']
    """
    fields = dict(fields or {})
    articles: list[Article] = []
    rejected: list[Rejected] = []
    for path in paths:
        for file in _files(Path(path)):
            try:
                for item in _read_file(file, fields):
                    if isinstance(item, Article):
                        articles.append(_with_defaults(item, defaults))
                    else:
                        rejected.append(item)
            except IngestError as err:
                rejected.append(Rejected(err.path, err.reason))
    return Loaded(tuple(articles), tuple(rejected))


def _with_defaults(article: Article, defaults: Mapping[str, str] | None) -> Article:
    missing = {k: v for k, v in (defaults or {}).items()
               if k in ARTICLE_FIELDS and k != "id" and v and not getattr(article, k)}
    return replace(article, **missing) if missing else article


def _files(root: Path) -> Iterator[Path]:
    if not root.exists():
        raise RagError(f"{root}: no such file or folder")
    if root.is_file():
        yield root
        return
    top = root.resolve()
    for folder, dirs, names in os.walk(root, followlinks=False):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(names):
            file = Path(folder) / name
            if name.startswith(".") or not _supported(file):
                continue
            # A symlink may point anywhere: only follow it if it stays inside the root.
            if file.is_symlink() and not file.resolve().is_relative_to(top):
                continue
            yield file


def _supported(path: Path) -> bool:
    name = path.name.lower()
    return name.endswith(TEXT_SUFFIXES + HTML_SUFFIXES + JSONL_SUFFIXES)


def _read_file(path: Path, fields: Mapping[str, str]) -> Iterator[Article | Rejected]:
    name = path.name.lower()
    if name.endswith(JSONL_SUFFIXES):
        yield from _read_jsonl(path, fields)
        return
    if not _supported(path):
        raise IngestError(str(path), "unsupported file type (use .txt, .md, .html or .jsonl)")
    raw = _read_capped(path)
    text = decode(raw, str(path))
    if name.endswith(HTML_SUFFIXES):
        body, meta = html_to_text(text)
    else:
        body, meta = split_front_matter(text)
    yield make_article(body, meta, default_id=path.stem, path=str(path))


def _read_capped(path: Path) -> bytes:
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise IngestError(str(path), f"file too large ({size} bytes; limit {MAX_FILE_BYTES})")
        return path.read_bytes()
    except OSError as err:
        raise IngestError(str(path), f"cannot read: {err.strerror or err}") from None


def decode(raw: bytes, where: str) -> str:
    """Bytes to clean text, refusing binary data and non-UTF-8 input."""
    if raw.startswith(_BINARY_MAGIC) or b"\x00" in raw[:8192]:
        raise IngestError(where, "binary file, not text")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise IngestError(where, f"not UTF-8 (bad byte at offset {err.start}); re-save it as UTF-8") from None
    return clean_text(text)


def clean_text(text: str) -> str:
    """Normalise newlines and strip invisible characters, before chunking and hashing."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    return _INVISIBLE.sub("", text)


def split_front_matter(text: str) -> tuple[str, dict[str, str]]:
    """Split an optional ``---`` front-matter block off a text file.

    Without one, a short first line followed by a blank line is the title.

    >>> split_front_matter("---\\ntitle: T\\n---\\nBody.")
    ('Body.', {'title': 'T'})
    >>> split_front_matter("Headline\\n\\nBody.")
    ('Body.', {'title': 'Headline'})
    """
    meta: dict[str, str] = {}
    lines = text.split("\n")
    if lines and lines[0].strip() == "---":
        for i, line in enumerate(lines[1:], start=1):
            if line.strip() == "---":
                return "\n".join(lines[i + 1:]).strip(), meta
            key, sep, value = line.partition(":")
            if sep and key.strip():
                meta[key.strip().lower()] = value.strip().strip("\"'")
        meta = {}  # no closing line: not front matter after all
    first, sep, rest = text.lstrip().partition("\n\n")
    if sep and "\n" not in first and len(first) <= 200 and rest.strip():
        return rest.strip(), {"title": first.strip()}
    return text.strip(), meta


def make_article(text: str, meta: Mapping[str, object], default_id: str, path: str) -> Article:
    """Build an ``Article`` from text and metadata; the id is the given one,
    else ``default_id``, else a content hash."""
    text = clean_text(text).strip()
    if not text:
        raise IngestError(path, "no text (empty or whitespace only)")
    content_hash = hashlib.sha256(text.encode("utf-8")).hexdigest()
    known = {k: _as_text(meta.get(k)) for k in ARTICLE_FIELDS}
    extra = {k: v for k, v in meta.items() if k not in ARTICLE_FIELDS and k != "text"}
    doc_id = known.pop("id") or default_id or content_hash[:16]
    return Article(id=doc_id, text=text, path=path, meta=extra, content_hash=content_hash, **known)


def _as_text(value: object) -> str:
    if value is None:
        return ""
    return clean_text(str(value)).strip()


def _read_jsonl(path: Path, fields: Mapping[str, str]) -> Iterator[Article | Rejected]:
    text_key = fields.get("text", "text")
    seen_text_key = False
    opener = gzip.open if path.name.lower().endswith(".gz") else open
    try:
        with opener(path, "rb") as stream:
            for number, raw in enumerate(_capped_lines(stream), start=1):
                where = f"{path}:{number}"
                if raw is None:
                    yield Rejected(where, f"line longer than {MAX_LINE_BYTES} bytes")
                    continue
                if not raw.strip():
                    continue
                try:
                    record = json.loads(decode(raw, where))
                except (json.JSONDecodeError, IngestError) as err:
                    yield Rejected(where, f"not valid JSON: {err}")
                    continue
                if not isinstance(record, dict):
                    yield Rejected(where, "not a JSON object")
                    continue
                seen_text_key = seen_text_key or text_key in record
                try:
                    yield _record_article(record, fields, where)
                except IngestError as err:
                    yield Rejected(err.path, err.reason)
    except (OSError, EOFError, gzip.BadGzipFile) as err:
        raise IngestError(str(path), f"cannot read: {err}") from None
    if not seen_text_key:
        raise IngestError(str(path), f"no record has the field '{text_key}'"
                          + ("" if "text" in fields else " (map another with --field text=KEY)"))


def _capped_lines(stream) -> Iterator[bytes | None]:
    """Split on b"\\n" only (str.splitlines would break records at U+2028),
    never holding more than MAX_LINE_BYTES of one line."""
    while True:
        line = stream.readline(MAX_LINE_BYTES + 1)
        if not line:
            return
        if len(line) > MAX_LINE_BYTES and not line.endswith(b"\n"):
            while line and not line.endswith(b"\n"):  # skip the rest of the giant line
                line = stream.readline(MAX_LINE_BYTES)
            yield None
            continue
        yield line


def _record_article(record: Mapping[str, object], fields: Mapping[str, str], where: str) -> Article:
    mapped_keys = set(fields.values())
    meta: dict[str, object] = {k: v for k, v in record.items() if k not in mapped_keys}
    for name, key in fields.items():
        meta[name] = record.get(key)
    text = meta.pop("text", None)
    if not isinstance(text, str):
        raise IngestError(where, "missing or non-string 'text'" if text is None
                          else f"'text' is {type(text).__name__}, not a string")
    return make_article(text, meta, default_id="", path=where)


class _Readable(HTMLParser):
    """Collects an HTML page's readable text; drops scripts, styles and page furniture."""

    SKIP = {"script", "style", "noscript", "nav", "header", "footer", "aside", "form",
            "svg", "iframe", "template", "button", "select"}
    BLOCK = {"p", "div", "br", "li", "h1", "h2", "h3", "h4", "h5", "h6", "tr", "section",
             "article", "blockquote", "pre", "hr", "title", "main", "figcaption"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.meta: dict[str, str] = {}
        self._skip = 0
        self._in: str = ""
        self._title: list[str] = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag in self.SKIP:
            self._skip += 1
        elif tag == "meta":
            key = (attrs.get("property") or attrs.get("name") or "").lower()
            mapping = {"og:title": "title", "og:site_name": "source", "author": "author",
                       "article:published_time": "date", "og:url": "url"}
            if key in mapping and attrs.get("content"):
                self.meta.setdefault(mapping[key], attrs["content"])
        if tag in ("title", "h1"):
            self._in = tag
        if tag in self.BLOCK:
            self.parts.append("\n")

    def handle_endtag(self, tag):
        if tag in self.SKIP and self._skip:
            self._skip -= 1
        if tag == self._in:
            self._in = ""
        if tag in self.BLOCK:
            self.parts.append("\n")

    def handle_data(self, data):
        if self._skip:
            return
        if self._in == "title":
            self._title.append(data)  # the page title is metadata, not body text
            return
        if self._in == "h1" and "h1" not in self.meta:
            self.meta["h1"] = data.strip()
        self.parts.append(data)


def html_to_text(html: str) -> tuple[str, dict[str, str]]:
    """Readable text and metadata of an HTML page.

    >>> html_to_text("<title>T</title><script>x()</script><p>Hello.</p>")
    ('Hello.', {'title': 'T'})
    """
    parser = _Readable()
    parser.feed(html)
    parser.close()
    meta = dict(parser.meta)
    title = meta.pop("h1", "") or "".join(parser._title).strip()
    meta.setdefault("title", title) if title else None
    lines = (re.sub(r"[ \t\u00a0]+", " ", line).strip() for line in "".join(parser.parts).split("\n"))
    text = "\n".join(line for line in lines if line)
    return text, meta
