"""One test per class of bad input: each gets its own one-line report naming
the file, the rest of the batch goes in, and nothing already indexed is lost."""
import gzip
import json
import os
import subprocess
import sys

import pytest

import rag
from rag.store import index as store
from rag import ingest
from rag.errors import EmptyCorpus
from tests.conftest import ROOT, SEEDS

GOOD = "---\ntitle: Fishing\nviewpoint: neutral\n---\nFishing quotas were cut again this year. Boats stayed home.\n"


@pytest.fixture()
def ix(empty_store, hash_embedder):
    """The seeds, indexed with the hash embedder, on each store in turn (a folder, Milvus)."""
    rag.build([SEEDS], index=empty_store, embedder=hash_embedder, progress=False)
    return rag.Index(empty_store, embedder=hash_embedder)


@pytest.fixture()
def local_ix(tmp_path, hash_embedder):
    rag.build([SEEDS], index=tmp_path / "index", embedder=hash_embedder, progress=False)
    return rag.Index(tmp_path / "index", embedder=hash_embedder)


def held(ix):
    """The ids and content hashes the index holds."""
    return {a.id: a.content_hash for a in ix.articles()}


def add_with_bad(ix, tmp_path, name, data):
    """Add a batch of one good file and one bad one; return the bad one's report line."""
    batch = tmp_path / "batch"
    batch.mkdir(exist_ok=True)
    (batch / "good.md").write_text(GOOD, encoding="utf-8")
    bad = batch / name
    bad.write_bytes(data) if isinstance(data, bytes) else bad.write_text(data, encoding="utf-8")
    before = held(ix)
    report = ix.add([batch], progress=False)
    after = held(ix)
    assert "good" in report.added and all(after[i] == h for i, h in before.items())  # nothing lost
    return one_line(report, bad)


def one_line(report, path):
    lines = [f"{r.path}: {r.reason}" for r in report.rejected if r.path.startswith(str(path))]
    assert len(lines) == 1, report.rejected
    assert "\n" not in lines[0] and lines[0].startswith(str(path))
    return lines[0]


@pytest.mark.parametrize("data", ["", "   \n\t \n", "---\ntitle: Only a title\n---\n", "\u200b\u200b\n"])
def test_empty_or_whitespace_only(ix, tmp_path, data):
    assert "no text (empty or whitespace only)" in add_with_bad(ix, tmp_path, "empty.txt", data)


@pytest.mark.parametrize("name, data", [
    ("nul.txt", b"Looks like text\x00\x01\x02 but is not."),
    ("report.md", b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj"),
    ("archive.html", b"PK\x03\x04\x14\x00\x06\x00"),
    ("photo.txt", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR"),
    ("photo.md", b"\xff\xd8\xff\xe0\x00\x10JFIF"),
    ("packed.txt", gzip.compress(b"hidden text")),
])
def test_binary_under_any_extension(ix, tmp_path, name, data):
    assert "binary file, not text" in add_with_bad(ix, tmp_path, name, data)


def test_binary_named_jsonl(ix, tmp_path):
    assert "binary file, not JSON lines" in add_with_bad(ix, tmp_path, "data.jsonl", b"\x7fELF\x02\x01\x01\x00")


def test_file_too_large_is_refused_before_it_is_read(ix, tmp_path, monkeypatch):
    monkeypatch.setattr(ingest, "MAX_FILE_BYTES", 1000)
    line = add_with_bad(ix, tmp_path, "huge.txt", "Word. " * 1000)
    assert "file too large (over 1000 bytes)" in line
    # a file that does not say its size (a pipe) is refused, not read for ever
    os.mkfifo(tmp_path / "batch" / "pipe.txt")
    assert "not a regular file" in one_line(ix.add([tmp_path / "batch"], progress=False),
                                            tmp_path / "batch" / "pipe.txt")
    named = ix.add([tmp_path / "batch" / "pipe.txt", tmp_path / "batch" / "good.md"], progress=False)
    assert "not a regular file" in one_line(named, tmp_path / "batch" / "pipe.txt")  # named directly, too


def test_jsonl_line_too_large(ix, tmp_path, monkeypatch):
    monkeypatch.setattr(ingest, "MAX_LINE_BYTES", 200)
    rows = [json.dumps({"id": "ok1", "text": "A fine first record."}),
            json.dumps({"id": "big", "text": "Long. " * 100}),
            json.dumps({"id": "ok3", "text": "A fine third record."})]
    line = add_with_bad(ix, tmp_path, "rows.jsonl", "\n".join(rows) + "\n")
    assert line.endswith("rows.jsonl:2: line longer than 200 bytes")
    assert {"ok1", "ok3"} <= set(held(ix)) and "big" not in held(ix)


def test_not_utf8_is_a_clear_error_and_boms_are_honoured(ix, tmp_path):
    line = add_with_bad(ix, tmp_path, "latin1.txt", "Caf\u00e9 cr\u00e8me was served.".encode("latin-1"))
    assert "not UTF-8 (byte 0xe9 at offset 3); re-save it as UTF-8" in line
    batch = tmp_path / "boms"
    batch.mkdir()
    (batch / "bom8.txt").write_bytes("\ufeffCafé with a UTF-8 BOM.".encode("utf-8"))
    (batch / "bom16.txt").write_bytes("Café saved as UTF-16.".encode("utf-16"))
    report = ix.add([batch], progress=False)
    assert not report.rejected
    assert ix.article("bom8").text == "Café with a UTF-8 BOM." and ix.article("bom16").text == "Café saved as UTF-16."


def test_jsonl_bad_line_is_reported_by_number_and_u2028_does_not_split(ix, tmp_path):
    rows = [json.dumps({"id": "r1", "text": "First line\u2028same record. Still going."}, ensure_ascii=False),
            '{"id": "r2", "text": "broken',
            json.dumps({"id": "r3", "text": "Third record."})]
    line = add_with_bad(ix, tmp_path, "mixed.jsonl", "\n".join(rows) + "\n")
    assert line.startswith(f"{tmp_path / 'batch' / 'mixed.jsonl'}:2: not valid JSON")
    assert ix.article("r1").text == "First line\u2028same record. Still going."  # one record, not two
    assert "r3" in held(ix)


@pytest.mark.parametrize("record, reason", [
    ({"id": "m", "title": "no text"}, "missing or non-string 'text'"),
    ({"id": "n", "text": 42}, "'text' is int, not a string"),
    ({"id": "l", "text": ["a", "list"]}, "'text' is list, not a string"),
])
def test_missing_or_non_string_text(ix, tmp_path, record, reason):
    rows = [json.dumps({"id": "fine", "text": "A fine record."}), json.dumps(record)]
    line = add_with_bad(ix, tmp_path, "rows.jsonl", "\n".join(rows))
    assert line.endswith(f"rows.jsonl:2: {reason}")


def test_html_scripts_and_styles_never_reach_the_index(ix, tmp_path):
    page = ("<html><head><script>stealCookies()</script><style>body{}</style></head><body>"
            "<p>Readable news text.</p><script type='module'>import('x')</script><noscript>Enable JS</noscript>"
            "</body></html>")
    (tmp_path / "page.html").write_text(page, encoding="utf-8")
    before = held(ix)
    assert ix.add([tmp_path / "page.html"], progress=False).added == ("page",)
    assert ix.article("page").text == "Readable news text."
    assert all(held(ix)[i] == h for i, h in before.items())


def test_invisible_characters_are_stripped_before_chunking_and_hashing(ix, tmp_path):
    plain = "Sanctions were extended. The vote was close."
    sneaky = "Sanc\u200btions were\u202e extended.\u2066 The vote\x07 was\u00ad close.\ufeff"
    (tmp_path / "plain.txt").write_text(plain, encoding="utf-8")
    (tmp_path / "sneaky.txt").write_text(sneaky, encoding="utf-8")
    report = ix.add([tmp_path / "plain.txt", tmp_path / "sneaky.txt"], progress=False)
    assert report.added == ("plain",) and report.duplicates == (("sneaky", "plain"),)  # same hash
    assert ix.article("plain").text == plain


def test_text_without_punctuation_is_split_into_model_windows(local_ix, tmp_path, hash_embedder):
    ix = local_ix  # chunking is the store's input: its rows are read from the local snapshot
    words = " ".join(f"word{i}" for i in range(2000))  # one 2000-token "sentence"
    (tmp_path / "run-on.txt").write_text(words, encoding="utf-8")
    ix.add([tmp_path / "run-on.txt"], progress=False)
    snap = ix.snapshot()
    row = snap.row_of["run-on"]
    chunks = snap.chunks[snap.chunks[:, 0] == row]
    pieces = [words[s:e] for _, s, e, _, _ in chunks]
    assert len(pieces) > 1
    assert all(len(hash_embedder.token_spans([p])[0]) <= hash_embedder.max_tokens for p in pieces)
    covered = {w for p in pieces for w in p.split()}
    assert covered == set(words.split())  # nothing silently cut off


def test_names_with_nul_or_control_characters_are_rejected_cleanly(ix, tmp_path):
    (tmp_path / "good.md").write_text(GOOD, encoding="utf-8")
    before = held(ix)
    report = ix.add([tmp_path / "bad\x00name.txt", tmp_path / "good.md"], progress=False)
    [rejected] = report.rejected
    assert rejected.path == f"{tmp_path}/bad\\x00name.txt" and "NUL" in rejected.reason
    (tmp_path / "folder").mkdir()
    (tmp_path / "folder" / "line\nbreak.txt").write_text("Text.", encoding="utf-8")
    line = one_line(ix.add([tmp_path / "folder", tmp_path / "good.md"], progress=False),
                    tmp_path / "folder" / "line\\nbreak.txt")
    assert "control character" in line
    assert all(held(ix)[i] == h for i, h in before.items()) and "good" in held(ix)


def test_relative_and_absolute_paths_read_the_file_and_ids_carry_no_path(ix, tmp_path, monkeypatch):
    (tmp_path / "sub").mkdir()
    (tmp_path / "up.md").write_text(GOOD, encoding="utf-8")
    monkeypatch.chdir(tmp_path / "sub")
    report = ix.add(["../up.md", str(tmp_path.resolve() / "up.md")], progress=False)
    assert report.added == ("up",)  # the same file twice: one article, id from the name alone
    assert "/" not in ix.article("up").id


def test_symlinks_are_not_followed_outside_the_folder(ix, tmp_path):
    outside = tmp_path / "secret.txt"
    outside.write_text("Private notes that must not be indexed.", encoding="utf-8")
    batch = tmp_path / "batch"
    batch.mkdir()
    (batch / "good.md").write_text(GOOD, encoding="utf-8")
    (batch / "inside.txt").symlink_to(batch / "good.md")  # inside the root: followed
    (batch / "leak.txt").symlink_to(outside)
    (batch / "dir-link").symlink_to(tmp_path, target_is_directory=True)  # folders: never followed
    report = ix.add([batch], progress=False)
    line = one_line(report, batch / "leak.txt")
    assert "outside" in line and "not followed" in line
    assert "leak" not in held(ix) and "secret" not in held(ix)
    assert report.duplicates == (("inside", "good"),) or report.duplicates == (("good", "inside"),)


def test_a_batch_of_only_bad_files_is_one_error_and_keeps_the_index(ix, tmp_path):
    (tmp_path / "bad.txt").write_bytes(b"\x00\x01")
    version, before = ix.stats()["version"], held(ix)
    with pytest.raises(EmptyCorpus) as err:
        ix.add([tmp_path / "bad.txt"], progress=False)
    assert str(tmp_path / "bad.txt") in str(err.value) and "\n" not in str(err.value)
    assert ix.stats()["version"] == version and held(ix) == before


@pytest.mark.slow
def test_cli_reports_each_bad_file_on_its_own_line_with_the_real_model(writable_seed_index, tmp_path):
    """End to end: `rag add` on a folder holding one file of each bad class."""
    batch = tmp_path / "batch"
    batch.mkdir()
    (batch / "good.md").write_text(GOOD, encoding="utf-8")
    bad = {"empty.txt": b"  \n", "binary.md": b"%PDF-1.4 ...", "latin1.txt": "d\u00e9j\u00e0 vu".encode("latin-1"),
           "rows.jsonl": b'{"id": "j1", "text": "Fine record."}\n{"id": "j2", "text": 7}\n{oops\n',
           "no-text.jsonl": b'{"body": "x"}\n'}
    for name, data in bad.items():
        (batch / name).write_bytes(data)
    (batch / "leak.txt").symlink_to(SEEDS / "rt-putin-trump-call-a-success.txt")
    result = subprocess.run([sys.executable, "-m", "rag", "add", str(batch), "--index", str(writable_seed_index),
                             "--quiet"], cwd=ROOT, capture_output=True, text=True, timeout=300,
                            env=dict(os.environ, HF_HUB_OFFLINE="1"))
    assert result.returncode == 3, result.stderr  # written, with rejections
    rejected = [line for line in result.stderr.splitlines() if line.startswith("rag: rejected: ")]
    expected = ["empty.txt", "binary.md", "latin1.txt", "rows.jsonl:2", "rows.jsonl:3", "no-text.jsonl:1",
                "no-text.jsonl", "leak.txt"]  # the file without 'text' is named for its line and as a whole
    assert len(rejected) == len(expected), result.stderr
    for name in expected:
        assert sum(line.startswith(f"rag: rejected: {batch / name}: ") for line in rejected) == 1, name
    assert "2 added" in result.stdout  # good and j1
    check = subprocess.run([sys.executable, "-m", "rag", "check", "--index", str(writable_seed_index)],
                           cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert check.returncode == 0, check.stderr
    snap = store.load(writable_seed_index)
    assert {"good", "j1", "independent-putin-playing-for-time", "rt-putin-trump-call-a-success"} == set(snap.row_of)
