"""Commits: each write is a complete new version named by an atomically
switched pointer; old versions and crash debris are cleaned up; readers move
to a new version without a restart; one writer at a time."""
import hashlib
import json
import os
import shutil
import subprocess
import sys
import threading
import time

import pytest

import rag
from rag.store import commit
from rag.store import index as store
from rag.errors import IndexBusy
from tests.conftest import ROOT, SEEDS


def article(folder, name, body, viewpoint="neutral"):
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.md"
    path.write_text(f"---\ntitle: {name}\nviewpoint: {viewpoint}\n---\n{body}\n", encoding="utf-8")
    return path


def versions(root):
    return sorted(p.name for p in root.iterdir() if p.is_dir())


@pytest.fixture()
def index(tmp_path, hash_embedder):
    rag.build([SEEDS], index=tmp_path / "index", embedder=hash_embedder, progress=False)
    return tmp_path / "index"


def test_each_commit_is_a_complete_version_that_the_pointer_vouches_for(index, tmp_path, hash_embedder):
    live, sha = store.read_pointer(index)
    assert live == "v000001" and (index / "CURRENT").read_text() == f"v000001 {sha}\n"
    manifest_bytes = (index / live / "manifest.json").read_bytes()
    assert hashlib.sha256(manifest_bytes).hexdigest() == sha
    manifest = json.loads(manifest_bytes)
    [segment] = manifest["segments"]
    for name in store.FILES:  # every byte a reader uses is covered by a checksum the manifest holds
        data = (index / "segments" / segment["name"] / name).read_bytes()
        assert segment["files"][name] == {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}
    assert segment["deleted"] == [] and segment["counts"]["articles"] == 2
    assert manifest["model"] == hash_embedder.name and manifest["dim"] == hash_embedder.dim
    assert manifest["counts"]["articles"] == 2 and manifest["counts"]["vectors"] == manifest["counts"]["chunks"]
    assert set(store.load(index).row_of) == {"independent-putin-playing-for-time", "rt-putin-trump-call-a-success"}
    assert manifest["chunking"]["chunk_tokens"] == 200 and manifest["previous"] == ""

    report = rag.Index(index, embedder=hash_embedder).add([article(tmp_path / "new", "one", "Trade talks resumed.")])
    assert report.version == "v000002" and store.current_version(index) == "v000002"
    second = json.loads((index / "v000002" / "manifest.json").read_text())
    assert second["previous"] == "v000001"
    assert second["segments"][0] == segment  # shared, not copied
    assert sorted(os.listdir(index)) == ["CURRENT", "lock", "segments", "v000001", "v000002"]  # no debris
    assert sorted(os.listdir(index / "segments")) == ["s000001", "s000002"]


def test_cleanup_keeps_the_last_two_versions_and_removes_crash_debris(index, tmp_path, hash_embedder):
    ix = rag.Index(index, embedder=hash_embedder)
    for n in range(4):
        ix.add([article(tmp_path / "new", f"a{n}", f"Article number {n} on tariffs.")])
    assert versions(index) == ["segments", "v000004", "v000005"]
    # what writers killed at each step leave behind: a half-written segment or version
    # folder, a segment renamed into place but listed by no version, a pointer not yet
    # switched, a version renamed into place but never named in CURRENT
    (index / ".tmp-v000006-4242").mkdir()
    (index / ".tmp-v000006-4242" / "manifest.json").write_bytes(b"half")
    (index / "segments" / ".tmp-s000099-4242").mkdir()
    shutil.copytree(index / "segments" / "s000001", index / "segments" / "s000098")
    (index / "CURRENT.tmp").write_text("v000006\n")
    shutil.copytree(index / "v000005", index / "v000006")
    assert store.current_version(index) == "v000005" and len(store.load(index).articles) == 6
    report = ix.remove(["a0"])
    assert report.version == "v000006"  # the orphan was removed first, its name reused
    assert sorted(os.listdir(index)) == ["CURRENT", "lock", "segments", "v000005", "v000006"]
    assert set(os.listdir(index / "segments")) == used_segments(index)
    assert "a0" not in store.load(index).row_of


def used_segments(index):
    return {s["name"] for v in store.list_versions(index)
            for s in json.loads((index / v / "manifest.json").read_text())["segments"]}


def test_readers_pick_up_a_new_version_without_restart(index, tmp_path, hash_embedder):
    reader = rag.open(index, embedder=hash_embedder)
    before = reader.ask("salmon fishing quotas in the North Sea")
    assert all(q.doc_id != "salmon" for v in before.viewpoints for q in v.answers)
    held = reader.snapshot()
    writer = rag.Index(index, embedder=hash_embedder)  # another Index, as another process would be
    writer.add([article(tmp_path / "new", "salmon", "Salmon fishing quotas in the North Sea were halved.")])
    after = reader.ask("salmon fishing quotas in the North Sea")
    assert reader.snapshot().version == "v000002" and held.version == "v000001"
    assert any(q.doc_id == "salmon" for v in after.viewpoints for q in v.answers)
    assert len(held.articles) == 2  # a snapshot taken earlier is never changed under its holder
    writer.remove(["salmon"])
    gone = reader.ask("salmon fishing quotas in the North Sea")
    assert all(q.doc_id != "salmon" for v in gone.viewpoints for q in v.answers)


def test_a_reader_whose_version_vanishes_mid_load_reloads_the_new_one(index, tmp_path, hash_embedder, monkeypatch):
    """Two commits land while a reader is between reading CURRENT and loading
    the version it named (which the second commit deletes): it must switch."""
    real = store.load_version
    calls, writing = [], []

    def racing(root, version, *args, **kwargs):
        if writing:  # the writers' own loads
            return real(root, version, *args, **kwargs)
        if not calls:
            writing.append(True)
            ix = rag.Index(index, embedder=hash_embedder)
            ix.add([article(tmp_path / "new", "x1", "First racing article.")])
            ix.add([article(tmp_path / "new", "x2", "Second racing article.")])
            writing.clear()
            assert not (index / version).exists()
        calls.append(version)
        return real(root, version, *args, **kwargs)

    monkeypatch.setattr(store, "load_version", racing)
    snap = store.load(index)
    assert calls == ["v000001", "v000003"] and snap.version == "v000003" and not snap.warning


class Slow:
    """An embedder that takes its time, so two writers really overlap."""

    def __init__(self, inner, seconds):
        self.inner, self.seconds = inner, seconds
        self.name, self.dim, self.max_tokens = inner.name, inner.dim, inner.max_tokens

    def token_spans(self, texts):
        return self.inner.token_spans(texts)

    def encode(self, texts, progress=False):
        time.sleep(self.seconds)
        return self.inner.encode(texts, progress)


def test_two_concurrent_writers_exactly_one_proceeds(index, tmp_path, hash_embedder):
    start = threading.Barrier(2)
    outcomes = {}

    def write(name):
        ix = rag.Index(index, embedder=Slow(hash_embedder, 0.5))
        path = article(tmp_path / name, name, f"Article {name} about grain exports.")
        start.wait()
        try:
            outcomes[name] = ix.add([path], progress=False).version
        except IndexBusy as err:
            outcomes[name] = err

    threads = [threading.Thread(target=write, args=(n,)) for n in ("left", "right")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    won = [n for n, o in outcomes.items() if o == "v000002"]
    lost = [o for o in outcomes.values() if isinstance(o, IndexBusy)]
    assert len(won) == 1 and len(lost) == 1, outcomes
    assert str(lost[0]) == f"{index}: another build or update is writing this index; try again when it finishes"
    snap = store.load(index)
    assert snap.version == "v000002" and won[0] in snap.row_of and len(snap.articles) == 3


def test_a_waiting_writer_proceeds_when_the_lock_is_free(index):
    with commit.writer_lock(index):
        with pytest.raises(IndexBusy):
            with commit.writer_lock(index):
                pass
    with commit.writer_lock(index, wait=1.0):
        pass


def test_repeated_updates_do_not_grow_the_index(index, tmp_path, hash_embedder):
    ix = rag.Index(index, embedder=hash_embedder)
    path = article(tmp_path / "new", "churn", "Churn article about shipping lanes.")
    baseline = store.size_of(store.load(index).manifest)
    for _ in range(6):
        ix.add([path])
        ix.remove(["churn"])
    assert store.size_of(store.load(index).manifest) == baseline  # nothing left of removed rows
    assert len(versions(index)) == 3  # segments/ and two versions
    assert set(os.listdir(index / "segments")) == used_segments(index)


def test_dry_run_writes_nothing(index, tmp_path, hash_embedder):
    ix = rag.Index(index, embedder=hash_embedder)
    report = ix.add([article(tmp_path / "new", "maybe", "A maybe article.")], dry_run=True)
    assert report.added == ("maybe",) and report.version == ""
    assert versions(index) == ["segments", "v000001"] and "maybe" not in store.load(index).row_of


@pytest.mark.slow
def test_real_model_reader_sees_add_and_remove_and_a_second_cli_writer_is_refused(
        writable_seed_index, model, tmp_path):
    """End to end with the real model and FAISS: a long-lived reader follows
    commits; `rag add` run while another writer holds the lock fails clearly."""
    reader = rag.open(writable_seed_index, embedder=model)
    question = "What happened to the salmon fishing quotas in the North Sea?"
    writer = rag.Index(writable_seed_index, embedder=model)
    path = article(tmp_path / "new", "salmon", "Salmon fishing quotas in the North Sea were halved this spring.",
                   viewpoint="fisheries")
    assert writer.add([path], progress=False).embedded_articles == 1
    answer = reader.ask(question)
    top = answer.viewpoints[0]
    assert top.viewpoint == "fisheries" and not top.abstained and top.answers[0].doc_id == "salmon"

    with commit.writer_lock(writable_seed_index):
        result = subprocess.run([sys.executable, "-m", "rag", "remove", "salmon", "--index",
                                 str(writable_seed_index)], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    assert result.stderr.splitlines() == [f"rag: error: {writable_seed_index}: another build or update "
                                          "is writing this index; try again when it finishes"]
    assert "salmon" in store.load(writable_seed_index).row_of

    writer.remove(["salmon"])
    assert all(q.doc_id != "salmon" for v in reader.ask(question).viewpoints for q in v.answers)
