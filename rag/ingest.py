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
import stat
import zlib
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Iterable, Iterator, Mapping

from .errors import IngestError, RagError
from .readable import html_to_text
from .types import ARTICLE_FIELDS, Article, Rejected

TEXT_SUFFIXES = (".txt", ".md", ".markdown")
HTML_SUFFIXES = (".html", ".htm")
JSONL_SUFFIXES = (".jsonl", ".jsonl.gz", ".ndjson")
MAX_FILE_BYTES = 64 * 1024 * 1024  # a single text/html file; JSONL is streamed
MAX_LINE_BYTES = 8 * 1024 * 1024  # one JSONL record
FIELD_NAMES = ("text",) + ARTICLE_FIELDS

# Zero-width, bidi-control, soft hyphen, tag and C0/C1 control characters (tab and
# newline kept): invisible, they change hashes and can disguise text. Lone
# surrogates (JSON "\\ud800") cannot even be written as UTF-8.
_INVISIBLE = re.compile("[\u200b-\u200f\u202a-\u202e\u2060-\u206f\ufeff\u00ad\u061c\u180e"
                        "\ufff9-\ufffb\U000e0000-\U000e007f\ud800-\udfff"
                        "\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
# File signatures: PDF, ZIP (docx, epub), PNG, JPEG, GIF, gzip, ELF, OLE (doc, xls),
# 7z, xz, zstd. Other binaries fail on NUL bytes or as "not UTF-8".
_BINARY_MAGIC = (b"%PDF-", b"PK\x03\x04", b"\x89PNG", b"\xff\xd8\xff", b"GIF87a", b"GIF89a",
                 b"\x1f\x8b", b"\x7fELF", b"\xd0\xcf\x11\xe0", b"7z\xbc\xaf", b"\xfd7zXZ",
                 b"\x28\xb5\x2f\xfd")
_UTF16_32_BOMS = ((b"\xff\xfe\x00\x00", "utf-32-le"), (b"\x00\x00\xfe\xff", "utf-32-be"),
                  (b"\xff\xfe", "utf-16-le"), (b"\xfe\xff", "utf-16-be"))
_BAD_NAME = re.compile("[\x00-\x1f\x7f]")  # NUL, newline...: no one-line report could name it


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
        if _BAD_NAME.search(os.fspath(path)):
            rejected.append(Rejected(_shown(path), "file name contains a NUL or control character"))
            continue
        for file in _files(Path(path)):
            if isinstance(file, Rejected):
                rejected.append(file)
                continue
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


def _shown(path: str | os.PathLike) -> str:
    """A path as one printable line: control characters escaped."""
    return _BAD_NAME.sub(lambda m: repr(m.group())[1:-1], os.fspath(path))


def _files(root: Path) -> Iterator[Path | Rejected]:
    if not root.exists():
        raise RagError(f"{root}: no such file or folder")
    if not root.is_dir():  # a file, or a pipe or device that _read_file refuses by name
        yield root
        return
    top = root.resolve()
    for folder, dirs, names in os.walk(root, followlinks=False):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(names):
            file = Path(folder) / name
            if name.startswith(".") or not _supported(file):
                continue
            if _BAD_NAME.search(name):
                yield Rejected(_shown(file), "file name contains a control character; rename it")
            elif file.is_symlink() and not file.resolve().is_relative_to(top):
                # A symlink may point anywhere: only follow it if it stays inside the root.
                yield Rejected(str(file), f"symlink to {file.resolve()}, outside {root}; not followed")
            else:
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


def _read_capped(path: Path, limit: int | None = None) -> bytes:
    """The file's bytes, refusing anything over the limit before reading it
    all (a file that grows while read, or claims size 0, is still capped)."""
    limit = MAX_FILE_BYTES if limit is None else limit
    try:
        with _open_regular(path) as stream:
            data = stream.read(limit + 1)
    except OSError as err:
        raise IngestError(str(path), f"cannot read: {err.strerror or err}") from None
    if len(data) > limit:
        raise IngestError(str(path), f"file too large (over {limit} bytes)")
    return data


def _open_regular(path: Path):
    """Open a regular file for reading; a pipe or device is refused without
    blocking on it (O_NONBLOCK) and without a stat-then-open gap (fstat)."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise IngestError(str(path), "not a regular file (a pipe or device?)")
    return os.fdopen(fd, "rb")


def decode(raw: bytes, where: str) -> str:
    """Bytes to clean text, refusing binary data and non-UTF-8 input. A UTF-8,
    UTF-16 or UTF-32 byte-order mark decides the encoding; without one the
    text must be UTF-8 (a guess could silently produce mojibake).

    >>> decode(b"\\xef\\xbb\\xbfcaf\\xc3\\xa9", "a.txt")
    'café'
    >>> decode(b"caf\\xe9", "a.txt")
    Traceback (most recent call last):
    rag.errors.IngestError: a.txt: not UTF-8 (byte 0xe9 at offset 3); re-save it as UTF-8
    """
    encoding = next((name for bom, name in _UTF16_32_BOMS if raw.startswith(bom)), "utf-8-sig")
    if encoding == "utf-8-sig" and (raw.startswith(_BINARY_MAGIC) or b"\x00" in raw[:8192]):
        raise IngestError(where, "binary file, not text")
    try:
        text = raw.decode(encoding)
    except UnicodeDecodeError as err:
        if encoding != "utf-8-sig":
            raise IngestError(where, f"invalid {encoding} (byte-order mark present)") from None
        raise IngestError(where, f"not UTF-8 (byte 0x{raw[err.start]:02x} at offset {err.start}); "
                          "re-save it as UTF-8") from None
    if encoding != "utf-8-sig":
        text = text.lstrip("\ufeff")
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
    extra = {_as_text(k): _clean_value(v) for k, v in meta.items() if k not in ARTICLE_FIELDS and k != "text"}
    doc_id = known.pop("id") or default_id or content_hash[:16]
    return Article(id=doc_id, text=text, path=path, meta=extra, content_hash=content_hash, **known)


def _as_text(value: object) -> str:
    if value is None:
        return ""
    return clean_text(str(value)).strip()


def _clean_value(value: object) -> object:
    """Metadata as given, with every string cleaned like the text (a lone
    surrogate would make the index unwritable)."""
    if isinstance(value, str):
        return clean_text(value)
    if isinstance(value, list):
        return [_clean_value(v) for v in value]
    if isinstance(value, dict):
        return {clean_text(str(k)): _clean_value(v) for k, v in value.items()}
    return value


def _read_jsonl(path: Path, fields: Mapping[str, str]) -> Iterator[Article | Rejected]:
    text_key = fields.get("text", "text")
    seen_text_key = seen_line = False
    gz = path.name.lower().endswith(".gz")
    try:
        with _open_regular(path) as file, (gzip.GzipFile(fileobj=file) if gz else file) as stream:
            head = stream.peek(8192)[:8192]
            if head.startswith(tuple(bom for bom, _ in _UTF16_32_BOMS)):
                raise IngestError(str(path), "UTF-16/32 JSON lines are not supported; re-save it as UTF-8")
            if head.startswith(_BINARY_MAGIC) or b"\x00" in head:
                raise IngestError(str(path), "binary file, not JSON lines")
            for number, raw in enumerate(_capped_lines(stream), start=1):
                where = f"{path}:{number}"
                if raw is None:
                    yield Rejected(where, f"line longer than {MAX_LINE_BYTES} bytes")
                    continue
                if not raw.strip():
                    continue
                seen_line = True
                try:
                    record = json.loads(decode(raw, where))
                except IngestError as err:
                    yield Rejected(where, err.reason)
                    continue
                except (ValueError, RecursionError) as err:
                    yield Rejected(where, f"not valid JSON: {err}" if isinstance(err, ValueError)
                                   else "not valid JSON: nested too deeply")
                    continue
                if not isinstance(record, dict):
                    yield Rejected(where, "not a JSON object")
                    continue
                seen_text_key = seen_text_key or text_key in record
                try:
                    yield _record_article(record, fields, where)
                except IngestError as err:
                    yield Rejected(err.path, err.reason)
    except (OSError, EOFError, zlib.error) as err:  # gzip.BadGzipFile is an OSError
        raise IngestError(str(path), f"cannot read: {getattr(err, 'strerror', None) or err}") from None
    if not seen_line:
        raise IngestError(str(path), "no records (empty file)")
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
