"""bench/check_questions.py: the news dev question checker, on a hand-made
corpus, and on the real question files against the real AllSides corpus."""
from __future__ import annotations

import gzip
import json
import sys

import pytest

from conftest import ROOT, require_shared_data

sys.path.insert(0, str(ROOT / "bench"))
import check_questions  # noqa: E402

TEXTS = {
    ("L1", "left"): "The senator resigned on Friday. Mr. Smith said he was tired of the fight.",
    ("C1", "center"): "Smith quit the Senate after ten years. His seat goes to a special election.",
    ("R1", "right"): "Nobody will miss the senator from Ohio. Voters will pick a successor in May.",
    ("R2", "right"): "An unrelated article about farm subsidies in Iowa this spring.",
    ("HELD", "center"): "A held-out article that no dev set may use at all.",
    ("L2", "left"): "Smith would not co\u00adoperate with the party leaders any longer.",
}
ARTICLES = [{"ID": i, "bias_text": side, "content_original": text} for (i, side), text in TEXTS.items()]
GOOD = {"q": "Why did Smith resign?", "kind": "why", "story": "smith-resigns", "split": "train",
        "expect": {"L1": "Mr. Smith said he was tired of the fight", "C1": None,
                   "R1": ["Voters will pick a successor in May", "Nobody will miss the senator from Ohio"]}}


@pytest.fixture()
def corpus(tmp_path):
    path = tmp_path / "corpus.jsonl.gz"
    with gzip.open(path, "wt", encoding="utf-8") as out:
        out.writelines(json.dumps(a) + "\n" for a in ARTICLES)
    (tmp_path / "heldout-ids.txt").write_text("HELD\n", encoding="utf-8")
    return path


def run(tmp_path, corpus, items, capsys) -> tuple[int, str, str]:
    path = tmp_path / "questions.jsonl"
    path.write_text("".join(json.dumps(i) + "\n" for i in items), encoding="utf-8")
    code = check_questions.main([str(path), "--corpus", str(corpus)])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def changed(**fields) -> dict:
    return {**GOOD, **fields}


def test_a_good_file_passes_and_is_counted(tmp_path, corpus, capsys):
    other = changed(q="Who replaces Smith?", kind="factoid",
                    expect={"L1": None, "C1": "His seat goes to a special election", "R1": None})
    off_topic = {"q": "What is the capital of Peru?", "abstain": True}
    code, out, err = run(tmp_path, corpus, [GOOD, other, off_topic], capsys)
    assert (code, err) == (0, "")
    assert "2 questions, 1 off-topic, 1 stories" in out
    assert "factoid 1 (50%), why 1 (50%)" in out
    assert "cells: 6, null 3 (50%)" in out


@pytest.mark.parametrize("item, message", [
    (changed(expect={**GOOD["expect"], "L1": "Mr. Smith said he was tired of fighting"}), "not verbatim in L1"),
    (changed(expect={**GOOD["expect"], "C1": "HELD"} | {"HELD": "no dev set may use at all"}), "held-out article"),
    (changed(expect={**GOOD["expect"], "X9": None}), "X9 is not in the corpus"),
    (changed(kind="how"), "kind 'how' is not one of"),
    (changed(split="dev"), "split 'dev' is not one of"),
    (changed(story="Smith Resigns"), "not a short lower-case slug"),
    (changed(expect={"L1": None, "C1": None, "R1": None}), "every cell is null"),
    (changed(expect={**GOOD["expect"], "L1": "tired"}), "span of 1 words"),
    (changed(expect={**GOOD["expect"], "L1": "resigned on Friday. Mr. Smith said he was tired"}),
     "crosses a sentence break"),
    (changed(expect={**GOOD["expect"], "R1": ["Voters will pick a successor in May", ""]}), "non-empty string"),
    (changed(abstain=True), "must not have 'expect'"),
    (changed(votes=3), "unknown keys ['votes']"),
])
def test_each_problem_is_one_line_naming_the_file_and_line(tmp_path, corpus, capsys, item, message):
    code, _, err = run(tmp_path, corpus, [GOOD | {"q": "Another question?"}, item], capsys)
    lines = [line for line in err.splitlines() if message in line]
    assert code == 1
    assert len(lines) == 1 and lines[0].startswith("error: ") and "questions.jsonl:2: " in lines[0], err


def test_a_span_must_survive_the_cleaning_the_product_does(tmp_path, corpus, capsys):
    """The soft hyphen is in content_original but not in the indexed text (rag.ingest.clean_text)."""
    item = changed(expect={"L2": "Smith would not co\u00adoperate with the party", "C1": None, "R1": None})
    code, _, err = run(tmp_path, corpus, [item], capsys)
    assert code == 1 and "not in L2 as the product indexes it" in err
    item = changed(expect={"L2": "Smith would not cooperate with the party", "C1": None, "R1": None})
    code, _, err = run(tmp_path, corpus, [item], capsys)
    assert code == 1 and "not verbatim in L2" in err


def test_a_story_needs_one_article_per_side_in_one_split(tmp_path, corpus, capsys):
    two_rights = changed(q="What about Iowa?",
                         expect={"L1": None, "R2": "unrelated article about farm subsidies", "R1": None})
    code, _, err = run(tmp_path, corpus, [GOOD, two_rights], capsys)
    assert code == 1 and "questions.jsonl:2: story smith-resigns names other articles than line 1" in err
    code, _, err = run(tmp_path, corpus, [two_rights], capsys)
    assert code == 1 and "needs one left, one center and one right article, has left 1, right 2" in err
    code, _, err = run(tmp_path, corpus, [GOOD, changed(q="Again?", split="test")], capsys)
    assert code == 1 and "split across train and test" in err
    code, _, err = run(tmp_path, corpus, [GOOD, GOOD], capsys)
    assert code == 1 and "same question as line 1" in err


def test_unlabelled_lines_are_accepted_and_short_spans_only_warned(tmp_path, corpus, capsys):
    old = {"q": "Who quit?", "expect": {"C1": "quit", "R1": None}}
    code, out, err = run(tmp_path, corpus, [old], capsys)
    assert (code, err) == (0, "")
    assert "unlabelled 1 (100%)" in out and "0 stories" in out and "warning:" in out and "span of 1 words" in out


@pytest.mark.shared_data
def test_the_news_dev_question_files_pass_against_the_real_corpus(capsys):
    corpus = require_shared_data("allsides-12k.jsonl.gz")
    files = [ROOT / "tests" / "data" / name for name in ("news-dev-questions.jsonl", "news-dev-questions-2.jsonl")]
    code = check_questions.main([str(f) for f in files] + ["--corpus", str(corpus)])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "news-dev-questions-2.jsonl: 172 questions, 0 off-topic, 18 stories" in out
