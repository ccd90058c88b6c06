"""An index written by the previous release (format 1, one full folder per
version) is refused with one clear line by readers, and converted, keeping
every article, by ``rag upgrade``, by any write, and by the app on start.

``tests/data/format1-index`` is a real format-1 index: the two tram articles
built with the hash embedder by commit 7250563 (the last format-1 release)."""
from __future__ import annotations

import shutil
import subprocess
import sys

import pytest

import rag
from conftest import ROOT

OLD = ROOT / "tests" / "data" / "format1-index"


@pytest.fixture()
def old_index(tmp_path):
    target = tmp_path / "index"
    shutil.copytree(OLD, target)
    return target


def test_readers_get_one_line_naming_the_file_and_the_fix(old_index, hash_embedder):
    with pytest.raises(rag.IndexOutdated) as err:
        rag.open(old_index, embedder=hash_embedder)
    message = str(err.value)
    assert "\n" not in message and str(old_index / "v000001" / "manifest.json") in message
    assert f"rag upgrade --index {old_index}" in message
    run = subprocess.run([sys.executable, "-m", "rag", "ask", "tram", "--index", str(old_index)],
                         capture_output=True, text=True, cwd=ROOT)
    assert run.returncode == 1 and run.stderr.count("\n") == 1 and "rag upgrade" in run.stderr


def test_upgrade_keeps_every_article_and_embeds_it_again(old_index, hash_embedder):
    import json

    before = [json.loads(line) for line in (OLD / "v000001" / "articles.jsonl").read_text().splitlines()]
    report = rag.Index(old_index, embedder=hash_embedder).upgrade(progress=False)
    assert report.version == "v000002" and report.embedded_articles == 2 and not report.removed
    ix = rag.open(old_index, embedder=hash_embedder)
    for record in before:
        article = ix.article(record["id"])
        assert (article.text, article.title, article.source, article.viewpoint) == \
            (record["text"], record["title"], record["source"], record["viewpoint"])
    answer = ix.ask("Why was the tram budget criticised?")
    right = next(v for v in answer.viewpoints if v.viewpoint == "right")
    assert right.answers[0].doc_id == "tram-budget"
    assert rag.Index(old_index, embedder=hash_embedder).upgrade(progress=False).version == ""  # already current
    check = subprocess.run([sys.executable, "-m", "rag", "check", "--index", str(old_index)],
                           capture_output=True, text=True, cwd=ROOT)
    assert check.returncode == 0, check.stdout + check.stderr


def test_an_add_to_an_old_index_converts_it_and_keeps_the_rest(old_index, hash_embedder, tmp_path):
    new = tmp_path / "bus.md"
    new.write_text("---\nviewpoint: center\n---\nA new bus route opens in May.\n")
    report = rag.Index(old_index, embedder=hash_embedder).add([new], progress=False)
    assert report.added == ("bus",) and report.embedded_articles == 3
    ix = rag.open(old_index, embedder=hash_embedder)
    assert sorted(a.id for a in ix.snapshot().articles) == ["bus", "tram-approved", "tram-budget"]


def test_a_damaged_old_index_is_named_not_converted(old_index, hash_embedder):
    articles = old_index / "v000001" / "articles.jsonl"
    articles.write_bytes(articles.read_bytes().replace(b"tram", b"tran", 1))
    with pytest.raises(rag.IndexCorrupt) as err:
        rag.Index(old_index, embedder=hash_embedder).upgrade(progress=False)
    assert str(articles) in str(err.value) and "checksum" in str(err.value)


@pytest.mark.slow
def test_the_app_converts_an_old_index_on_start(old_index):
    import app

    ix = app.open_index(old_index)  # the real default embedder (ONNX int8)
    assert {a.id for a in ix.snapshot().articles} == {"tram-approved", "tram-budget"}
    answer = ix.ask("Why was the tram budget criticised?")
    assert any(not v.abstained for v in answer.viewpoints)
