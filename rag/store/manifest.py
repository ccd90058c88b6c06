"""The manifest of an index version (``vNNNNNN/manifest.json``): reading it,
checking it against CURRENT's checksum and for the shape every reader relies
on. What it holds is described in index.py; commit.py writes it."""
from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

from ..errors import IndexCorrupt, IndexOutdated
from .segment import CATALOG_FILE, FILES, IVF_FILES, TERM_FILES

FORMAT = 2  # 1: one complete folder per version (before segments)
SEGMENT_NAME = re.compile(r"s[0-9]{6,}\Z")  # segments/s000001 ...


def read_manifest(folder: Path, expected_sha: str = "") -> dict:
    """The version's manifest, checked against CURRENT's checksum when given
    and for the shape every reader relies on."""
    path = folder / "manifest.json"
    manifest = read_json(folder, expected_sha)
    found = manifest.get("format") if isinstance(manifest, dict) else None
    if found == 1:
        raise IndexOutdated(f"{path}: an index in the old format 1 (one full copy per version); this rag "
                            f"reads format {FORMAT}: convert it with rag upgrade --index {folder.parent} "
                            "(keeps every article, embeds them again)")
    if found != FORMAT:
        raise IndexCorrupt(f"{path}: unknown format {found!r} (this rag reads format {FORMAT});"
                           " rebuild with rag build --full")
    if not _well_formed(manifest):
        raise IndexCorrupt(f"{path}: malformed (segments, counts, chunk index or dim missing)")
    return manifest


def read_json(folder: Path, expected_sha: str = "") -> object:
    """A version's manifest.json parsed, checked against CURRENT's checksum when
    given, whatever its format (read_manifest checks it is this rag's)."""
    path = folder / "manifest.json"
    raw = read_file(path, gone="CURRENT names a version that is gone" if not folder.exists() else "missing")
    if expected_sha and hashlib.sha256(raw).hexdigest() != expected_sha:
        raise IndexCorrupt(f"{path}: does not match the checksum in CURRENT (corrupted or edited)")
    try:
        return json.loads(raw.decode("utf-8"))
    except ValueError as err:
        raise IndexCorrupt(f"{path}: unreadable ({err})") from None


def _well_formed(m: dict) -> bool:
    kind, segments = m.get("chunk_index"), m.get("segments")
    if not (isinstance(m.get("counts"), dict) and isinstance(m.get("dim"), int) and isinstance(segments, list)
            and isinstance(kind, dict) and kind.get("type") in ("flat", "ivf-flat")):
        return False
    if kind["type"] == "ivf-flat" and not (isinstance(kind.get("nlist"), int) and isinstance(kind.get("nprobe"), int)):
        return False
    names = FILES + (IVF_FILES if kind["type"] == "ivf-flat" else ())
    for s in segments:
        if not (isinstance(s, dict) and isinstance(s.get("name"), str) and SEGMENT_NAME.match(s["name"])
                and isinstance(s.get("counts"), dict) and isinstance(s.get("deleted"), list)
                and all(isinstance(i, str) for i in s["deleted"]) and isinstance(s.get("files"), dict)
                and _files_known(s["files"], names)
                and all(isinstance(f, dict) and isinstance(f.get("size"), int) and isinstance(f.get("sha256"), str)
                        for f in s["files"].values())):
            return False
    return len({s["name"] for s in segments}) == len(segments)


def _files_known(files: dict, names: tuple) -> bool:
    """A segment's files: ``names``, and the optional ones of newer releases
    (all the term-count files or none; the catalog)."""
    rest = set(files) - set(names)
    return set(names) <= set(files) and rest - {CATALOG_FILE} in (set(), set(TERM_FILES))


def read_file(path: Path, gone: str = "missing") -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise IndexCorrupt(f"{path}: {gone}") from None
    except OSError as err:
        raise IndexCorrupt(f"{path}: unreadable ({err.strerror})") from None


def read_checked(path: Path, expected: dict) -> bytes:
    """A file's bytes, checked against its size and sha256 in the manifest; IndexCorrupt if they differ."""
    data = read_file(path)
    problem = file_problem(data, expected)
    if problem:
        raise IndexCorrupt(f"{path}: {problem}")
    return data


def file_problem(data: bytes, expected: dict) -> str:
    if len(data) != expected["size"]:
        return f"has {len(data)} bytes, the manifest says {expected['size']} (truncated or appended to)"
    if hashlib.sha256(data).hexdigest() != expected["sha256"]:
        return "fails its checksum (corrupted)"
    return ""


def manifest_sha(folder: Path) -> str:
    """sha256 of a version's manifest: what CURRENT records beside its name."""
    try:
        return hashlib.sha256((folder / "manifest.json").read_bytes()).hexdigest()
    except OSError:
        return ""
