"""The catalog (issue 7: adding one article to 12k in under 2 s): a writer with
no version in memory plans from the segments' catalog files, reads a segment's
rows only when it rewrites them, checks every other file against its checksum,
and never builds on a damaged version."""
import hashlib
import importlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

import rag
from rag.store import catalog
from rag.store import manifest as manifest_module
from rag.store import index as store
from rag.ingest import load
from rag.store.segment import CATALOG_FILE, FILES, TERM_FILES, meta_digest
from tests.test_segments import answers, body, corpus, ix, manifest, write_article  # noqa: F401 (fixtures)

build_module = importlib.import_module("rag.build")  # ``rag.build`` the name is the function


def plans(index: Path, loaded, mode: str, **options):
    """The plan made from the catalogs on disk, and the one made from the version loaded whole."""
    light = catalog.load(index)
    assert light is not None
    whole = catalog.of_snapshot(store.load(index))
    return build_module.plan(light, loaded, mode, **options), build_module.plan(whole, loaded, mode, **options)


def test_plans_from_the_catalogs_equal_plans_from_the_whole_version(ix, corpus, tmp_path):
    index = ix.root
    new = write_article(tmp_path / "in", "fresh", body(100), "left")
    edited = write_article(tmp_path / "in", "base-01", body(101), "center")  # new text
    relabeled = write_article(tmp_path / "in", "base-02", body(2), "left")  # new viewpoint only
    moved = tmp_path / "elsewhere" / "base-03.md"
    moved.parent.mkdir()
    shutil.copy(corpus / "base-03.md", moved)  # the same article from another path
    copy = write_article(tmp_path / "in", "copy-of-4", body(4), "left")  # another id, base-04's text
    loaded = load([new, edited, relabeled, moved, copy])
    light, whole = plans(index, loaded, "add")
    assert light == whole
    assert [a.id for a in light.write] == ["base-01", "base-02", "base-03", "fresh"]
    assert light.embed == {"fresh", "base-01"} and light.report.changed == ("base-01", "base-02")
    assert light.report.duplicates == (("copy-of-4", "base-04"),) and not light.drop
    for mode, options in [("remove", {"remove": ["base-05", "base-06"]}), ("add", {"reuse_vectors": False})]:
        light, whole = plans(index, load([new]), mode, **options)
        assert light == whole
    light, whole = plans(index, load([corpus]), "build")
    assert light == whole and not light.write and light.report.unchanged == 30


def test_a_metadata_digest_covers_every_field_but_id_text_path_and_hash(ix):
    article = ix.snapshot().articles[0]
    same = meta_digest(article)
    assert meta_digest(article.__class__(**{**article.__dict__, "path": "x", "text": "y", "content_hash": "z"})) == same
    for change in ({"title": "t"}, {"source": "s"}, {"viewpoint": "v"}, {"date": "d"}, {"url": "u"},
                   {"meta": {"topic": "fish"}}):
        assert meta_digest(article.__class__(**{**article.__dict__, **change})) != same


def test_a_cold_add_reads_only_the_catalogs_and_checks_every_other_file(ix, tmp_path, monkeypatch, hash_embedder):
    index = ix.root
    before = manifest(index)["segments"][0]
    read, checked = [], []
    real_read, real_check = store.read_file, catalog._file_problem
    monkeypatch.setattr(store, "read_file", lambda path, *a, **k: read.append(path) or real_read(path, *a, **k))
    monkeypatch.setattr(manifest_module, "read_file",  # catalog.py reads through manifest.read_checked
                        lambda path, *a, **k: read.append(path) or real_read(path, *a, **k))
    monkeypatch.setattr(catalog, "_file_problem", lambda path, e: checked.append(path) or real_check(path, e))
    cold = rag.Index(index, embedder=hash_embedder)  # no version in memory: a new process, as `rag add`
    report = cold.add([write_article(tmp_path / "new", "salmon", "Salmon quotas were halved.", "center")],
                      progress=False)
    assert report.added == ("salmon",) and report.embedded_articles == 1 and report.version == "v000002"
    old_segment = index / "segments" / before["name"]
    assert [p.name for p in read if p.parent == old_segment] == [CATALOG_FILE]  # its rows were never read
    assert sorted(p.name for p in checked if p.parent == old_segment) == sorted(set(before["files"]) - {CATALOG_FILE})
    assert manifest(index)["segments"][0] == before  # kept as it is
    fresh = rag.open(index, embedder=hash_embedder)
    assert not fresh.snapshot().warning
    assert fresh.ask("salmon quotas halved").viewpoints[0].answers[0].doc_id == "salmon"


@pytest.mark.parametrize("how", ["flip", "truncate"])
@pytest.mark.parametrize("name", [*FILES, *TERM_FILES, CATALOG_FILE])
def test_a_cold_add_never_builds_on_a_damaged_version(ix, tmp_path, hash_embedder, capsys, name, how):
    """v2 adds five articles in their own segment; a file of that segment is damaged.
    Readers fall back to v1; so does the next writer, though the update would not
    read that segment (too big to merge with a one-sentence article): the new
    version is v1 plus its article, and loads with no warning."""
    index = ix.root
    ix.add([write_article(tmp_path / "a", f"grain-{n}", body(200 + n), "right") for n in range(5)], progress=False)
    path = index / "segments" / manifest(index)["segments"][-1]["name"] / name
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2] if how == "truncate" else
                     data[:len(data) // 2] + bytes([data[len(data) // 2] ^ 1]) + data[len(data) // 2 + 1:])
    capsys.readouterr()
    report = rag.Index(index, embedder=hash_embedder).add(
        [write_article(tmp_path / "b", "salmon", "Salmon quotas were halved.", "center")], progress=False)
    assert report.added == ("salmon",)
    assert str(path.relative_to(index.parent)) in capsys.readouterr().err  # the fallback was said
    snap = store.load(index)
    assert not snap.warning and "salmon" in snap.row_of and "grain-0" not in snap.row_of
    assert len(snap.articles) == 31


def test_segments_without_a_catalog_take_adds_and_upgrade_writes_one(ix, tmp_path, hash_embedder):
    """Segments of the previous release have no catalog: a cold add loads the
    version whole, as before; ``rag upgrade`` writes the catalog, embedding nothing."""
    index = ix.root
    before = answers(ix)
    live = store.current_version(index)
    data = manifest(index)
    for entry in data["segments"]:
        del entry["files"][CATALOG_FILE]
    raw = json.dumps(data, indent=1).encode("utf-8")
    (index / live / "manifest.json").write_bytes(raw)
    (index / "CURRENT").write_text(f"{live} {hashlib.sha256(raw).hexdigest()}\n")
    assert catalog.load(index) is None
    assert answers(rag.open(index, embedder=hash_embedder)) == before
    report = rag.Index(index, embedder=hash_embedder).upgrade(progress=False)
    assert report.version and report.embedded_articles == 0
    assert all(CATALOG_FILE in s["files"] for s in manifest(index)["segments"])
    light = catalog.load(index)
    assert light is not None and light.ids == [a.id for a in store.load(index).articles]
    assert answers(rag.open(index, embedder=hash_embedder)) == before


def test_a_catalog_that_disagrees_with_its_rows_is_refused(ix):
    """Readers check the catalog against the rows they read, so a writer never plans from one that lies."""
    from rag.store.segment import catalog_problem, read_catalog

    snap = ix.snapshot()
    part = snap.part(snap.segments[0])
    folder = ix.root / "segments" / snap.segments[0].name
    good = read_catalog((folder / CATALOG_FILE).read_bytes())
    assert catalog_problem(good, part) == ""
    for key in ("ids", "content_hashes", "paths", "chunks", "sentences"):
        first = good[key][0]
        bad = dict(good, **{key: [first + 1 if isinstance(first, int) else first + "x", *good[key][1:]]})
        assert key in catalog_problem(bad, part)
    assert np.array_equal(catalog.load(ix.root).chunk_counts, np.bincount(snap.chunks[:, 0]))


@pytest.mark.parametrize("ivf", [False, True])
def test_updates_from_the_catalogs_write_the_same_bytes_as_updates_from_memory(tmp_path, hash_embedder, ivf):
    """A cold writer (catalogs) and a writer holding the version in memory make
    byte-identical segments through adds, merges, a metadata change and removals."""
    corpus = tmp_path / "corpus"
    for n in range(30):
        write_article(corpus, f"base-{n:02d}", body(n, sentences=40 if ivf else 6), ("left", "center", "right")[n % 3])
    settings = rag.Settings(ann_threshold=50 if ivf else 200_000, ann_nprobe=4)
    rag.Index(tmp_path / "a", settings, hash_embedder).rebuild([corpus], progress=False)
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    warm = rag.Index(tmp_path / "a", settings, hash_embedder)
    warm.snapshot()
    steps = [("add", [write_article(tmp_path / "new", f"extra-{n}", body(300 + n, 3 + n), "left")]) for n in range(4)]
    steps += [("add", [write_article(tmp_path / "moved", "base-05", body(5, 40 if ivf else 6), "left")]),  # relabeled
              ("remove", ["base-07", "extra-1"])]
    for kind, arg in steps:
        for writer in (warm, rag.Index(tmp_path / "b", settings, hash_embedder)):  # the second: nothing in memory
            report = writer.add(arg, progress=False) if kind == "add" else writer.remove(arg)
            assert report.version
        if ivf:
            assert manifest(tmp_path / "a")["chunk_index"]["type"] == "ivf-flat"
        files = [[s["name"], s["files"], s["deleted"]] for s in manifest(tmp_path / "a")["segments"]]
        assert files == [[s["name"], s["files"], s["deleted"]] for s in manifest(tmp_path / "b")["segments"]]
    assert len(manifest(tmp_path / "a")["segments"]) >= 2  # kept and merged segments both took part
    assert answers(warm) == answers(rag.open(tmp_path / "b", settings, hash_embedder))


def test_a_catalog_of_the_wrong_shape_is_unreadable():
    from rag.store.segment import read_catalog

    good = {"catalog": 1, "ids": ["a"], "content_hashes": ["h"], "paths": ["p"], "meta_digests": ["d"],
            "chunks": [1], "sentences": [2]}
    assert read_catalog(json.dumps(good).encode())["chunks"] == [1]
    assert read_catalog(json.dumps(dict(good, catalog=99)).encode()) is None  # another layout: not used
    for bad in ({"chunks": ["1"]}, {"sentences": [-1]}, {"ids": [3]}, {"paths": []}, {"meta_digests": None}):
        with pytest.raises(ValueError):
            read_catalog(json.dumps(dict(good, **bad)).encode())
