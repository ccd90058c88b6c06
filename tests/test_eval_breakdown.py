"""Issue 13, item 5: ``rag eval questions`` by question kind and by side, one
split at a time, as a table or (``--json``) the full report. The hash embedder
answers; each expectation is worked out from the index's own answers."""
from __future__ import annotations

import json

import pytest

import rag
from rag import evaluate
from rag.cli import main

WIRE = "The senate passed the infrastructure bill by a vote of 69 to 30 on Tuesday."


@pytest.fixture()
def index_dir(tmp_path, hash_embedder):
    docs = tmp_path / "docs"
    docs.mkdir()
    for name, viewpoint, text in (
            ("left-a", "left", f"{WIRE} Democrats praised the spending on transit."),
            ("right-a", "right", "Republicans warned that the bill adds to the deficit. The zyzzyva beetle "
                                 "was mentioned once."),
            ("center-a", "center", "Bakers prefer sourdough starters kept at room temperature.")):
        (docs / f"{name}.txt").write_text(f"---\ntitle: {name}\nviewpoint: {viewpoint}\n---\n{text}\n",
                                          encoding="utf-8")
    rag.build([docs], index=tmp_path / "index", embedder=hash_embedder, progress=False)
    return tmp_path / "index"


QUESTIONS = [
    {"q": "How did the senate vote on the infrastructure bill?", "kind": "factoid", "story": "bill",
     "split": "test", "expect": {"left-a": "69 to 30", "right-a": "adds to the deficit", "center-a": None}},
    {"q": "Why did Republicans object to the bill?", "kind": "why", "story": "bill", "split": "train",
     "expect": {"right-a": "adds to the deficit", "center-a": None}},
    {"q": "Did Democrats praise the transit spending?", "kind": "yesno", "story": "bill", "split": "test",
     "expect": {"left-a": "Democrats praised the spending on transit", "center-a": None}},
]


def _write(path, items):
    path.write_text("".join(json.dumps(i) + "\n" for i in items), encoding="utf-8")
    return path


def _cells(ix, items):
    """(kind, side, rank or None for a silent side, abstained), straight from ``ask``."""
    out = []
    for item in items:
        columns = {v.viewpoint: v for v in ix.ask(item["q"]).viewpoints}
        for doc, expected in item["expect"].items():
            side = ix.article(doc).viewpoint
            column = columns.get(side)
            abstained = column is None or column.abstained
            quotes = [] if abstained else [q.text for q in column.answers]
            rank = None if expected is None else next(
                (n for n, q in enumerate(quotes, 1) if expected.lower() in q.lower() or q.lower() in expected.lower()), 0)
            out.append((item["kind"], side, rank, abstained))
    return out


def _expected(cells):
    answerable = [c for c in cells if c[2] is not None]
    silent = [c for c in cells if c[2] is None]
    n, m = max(len(answerable), 1), max(len(silent), 1)
    return {"answerable_cells": len(answerable), "hit@1": round(sum(c[2] == 1 for c in answerable) / n, 4),
            "hit@3": round(sum(1 <= c[2] <= 3 for c in answerable) / n, 4),
            "answered": round(sum(not c[3] for c in answerable) / n, 4),
            "silent_cells": len(silent), "silent_abstained": round(sum(c[3] for c in silent) / m, 4)}


def test_report_breaks_cells_down_by_kind_and_by_side(tmp_path, index_dir, hash_embedder):
    ix = rag.open(index_dir, embedder=hash_embedder)
    report = evaluate.eval_questions(_write(tmp_path / "q.jsonl", QUESTIONS), ix)
    cells = _cells(ix, QUESTIONS)
    assert {k: report[k] for k in _expected(cells)} == _expected(cells)
    for key, position in (("by_kind", 0), ("by_side", 1)):
        names = sorted({c[position] for c in cells})
        assert list(report[key]) == names
        for name in names:
            assert report[key][name] == _expected([c for c in cells if c[position] == name]), (key, name)
    assert report["by_side"]["center"]["answerable_cells"] == 0 and report["by_side"]["center"]["silent_cells"] == 3
    # the keys the report had before issue 13 are all still there
    assert {"hit@1", "hit@3", "answerable_cells", "silent_cells", "silent_abstained", "off_topic_questions",
            "off_topic_abstained", "misses", "latency_ms_median"} <= set(report)


def test_split_evaluates_one_part_and_several_files_add_up(tmp_path, index_dir, hash_embedder):
    ix = rag.open(index_dir, embedder=hash_embedder)
    first = _write(tmp_path / "one.jsonl", QUESTIONS[:2])
    second = _write(tmp_path / "two.jsonl", QUESTIONS[2:] + [{"q": "Who won the baking contest?", "abstain": True}])
    both = evaluate.eval_questions([first, second], ix)
    assert both["questions"] == 4 and both["answerable_cells"] == 4 and both["off_topic_questions"] == 1
    test = evaluate.eval_questions([first, second], ix, split="test")
    assert test["split"] == "test" and test["questions"] == 2
    assert test["answerable_cells"] == 3 and set(test["by_kind"]) == {"factoid", "yesno"}
    assert _expected(_cells(ix, [QUESTIONS[0], QUESTIONS[2]]))["hit@1"] == test["hit@1"]
    with pytest.raises(rag.RagError, match="no question has split 'train'"):
        evaluate.eval_questions(second, ix, split="train")


@pytest.mark.parametrize("line, problem", [
    ({"q": "x", "kind": "opinion"}, "'kind' is 'opinion', not one of factoid, yesno, why, paraphrase"),
    ({"q": "x", "split": "dev"}, "'split' is 'dev', not one of train, test"),
    ({"q": "x", "story": 7}, "'story' must be a string")])
def test_bad_labels_name_the_file_and_line(tmp_path, line, problem):
    path = _write(tmp_path / "bad.jsonl", [{"q": "fine"}, line])
    with pytest.raises(rag.RagError) as err:
        evaluate.read_questions(path)
    assert str(err.value) == f"{path}:2: {problem}"


def test_cli_prints_a_table_and_with_json_the_full_report(tmp_path, index_dir, capsys, monkeypatch, hash_embedder):
    import rag.engine

    monkeypatch.setattr(rag.engine, "default_embedder", lambda *_: hash_embedder)  # the index's own embedder
    path = _write(tmp_path / "q.jsonl", QUESTIONS)
    assert main(["eval", "questions", str(path), "--index", str(index_dir), "--split", "test"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["cells", "hit@1", "hit@3", "answered", "silent", "abstained"]
    assert [line.split()[:2] for line in lines[1:6]] == [["all", "3"], ["kind", "factoid"], ["kind", "yesno"],
                                                         ["side", "center"], ["side", "left"]]
    assert main(["eval", "questions", str(path), "--index", str(index_dir), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["questions"] == 3 and set(report["by_kind"]) == {"factoid", "why", "yesno"}
    with pytest.raises(SystemExit):
        main(["eval", "questions", str(path), "--index", str(index_dir), "--split", "dev"])
    assert "invalid choice: 'dev'" in capsys.readouterr().err


def test_news_dev_distractors_are_fixed_and_never_held_out_or_named(tmp_path):
    import gzip
    import sys

    from conftest import ROOT

    sys.path.insert(0, str(ROOT / "bench"))
    import news_dev

    source = tmp_path / "articles.jsonl.gz"
    with gzip.open(source, "wt", encoding="utf-8") as out:
        out.writelines(json.dumps({"ID": f"a{i:03d}", "content_original": "x"}) + "\n" for i in range(200))
    heldout, named = {"a000", "a001", "a002"}, {"a010", "a011"}
    drawn = news_dev.distractor_ids(source, heldout, named, 50)
    assert len(drawn) == 50 and not drawn & (heldout | named)
    assert drawn == news_dev.distractor_ids(source, heldout, named, 50)  # same seed, same draw
    assert drawn != news_dev.distractor_ids(source, heldout, named, 50, seed=1)
    more_named = named | set(sorted(drawn)[:3])  # a new question file names three of them
    again = news_dev.distractor_ids(source, heldout, more_named, 50)
    assert len(drawn - again) == 3 and not again & more_named
    with pytest.raises(SystemExit, match="only 195 articles"):
        news_dev.distractor_ids(source, heldout, named, 196)
