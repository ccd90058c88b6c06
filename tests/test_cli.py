"""The command line, run as a user runs it: `python -m rag` in a subprocess."""
import json
import os
import subprocess
import sys

import pytest

from rag.store import index as store
from tests.conftest import ROOT, SEEDS

pytestmark = pytest.mark.slow
CONTRACT_ANSWER_KEYS = {"text", "score", "doc_id", "title", "source", "start", "end", "passage"}


def rag_cli(*args, stdin=None, cwd=ROOT):
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    return subprocess.run([sys.executable, "-m", "rag", *map(str, args)], input=stdin, cwd=cwd,
                          capture_output=True, text=True, env=env, timeout=300)


def test_ask_json_is_the_contract_and_quotes_match_show(seed_index_dir):
    result = rag_cli("ask", "Did Russia make big concessions?", "--index", seed_index_dir, "--json")
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout)
    assert answer["question"] == "Did Russia make big concessions?"
    assert {v["viewpoint"] for v in answer["viewpoints"]} == {"pro-Russia", "pro-Ukraine"}
    texts = {}
    for view in answer["viewpoints"]:
        assert isinstance(view["abstained"], bool)
        for quote in view["answers"]:
            assert CONTRACT_ANSWER_KEYS <= set(quote)
            if quote["doc_id"] not in texts:
                shown = rag_cli("show", quote["doc_id"], "--index", seed_index_dir, "--json")
                texts[quote["doc_id"]] = json.loads(shown.stdout)["text"]
            assert texts[quote["doc_id"]][quote["start"]:quote["end"]] == quote["text"]


def test_ask_scorer_option_scores_with_the_reranker(seed_index_dir):
    """--scorer reranker: the same quotes are candidates, scored by the cross-encoder's
    calibrated probability instead of the first scorer's (so the scores differ)."""
    def scores(*extra):
        result = rag_cli("ask", "Was there a prisoner swap?", "--index", seed_index_dir, "--json", *extra)
        assert result.returncode == 0, result.stderr
        return {(v["viewpoint"], q["start"]): q["score"] for v in json.loads(result.stdout)["viewpoints"]
                for q in v["answers"]}

    features, reranked = scores(), scores("--scorer", "reranker")
    shared = set(features) & set(reranked)
    assert shared and any(abs(features[key] - reranked[key]) > 1e-3 for key in shared)
    assert rag_cli("ask", "x", "--index", seed_index_dir, "--scorer", "bogus").returncode == 2


def test_ask_stdin_answers_one_json_line_per_question(seed_index_dir):
    questions = "Did Russia make big concessions?\n\nHow do I bake sourdough bread?\n"
    result = rag_cli("ask", "-", "--index", seed_index_dir, "--json", stdin=questions)
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [a["question"] for a in lines] == ["Did Russia make big concessions?", "How do I bake sourdough bread?"]
    assert all(v["abstained"] for v in lines[1]["viewpoints"])


def test_build_reports_changes_and_bad_input_keeps_the_index(tmp_path):
    index = tmp_path / "index"
    first = rag_cli("build", SEEDS, "--index", index, "--quiet")
    assert first.returncode == 0, first.stderr
    assert "2 added" in first.stdout
    version = store.current_version(index)

    again = rag_cli("build", SEEDS, "--index", index, "--quiet")
    assert again.returncode == 0 and "nothing changed" in again.stdout

    missing = rag_cli("build", tmp_path / "nope", "--index", index)
    assert missing.returncode == 1 and str(tmp_path / "nope") in missing.stderr
    assert len(missing.stderr.strip().splitlines()) == 1

    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"body": "no text field"}\n', encoding="utf-8")
    wrong_field = rag_cli("build", bad, "--index", index, "--quiet")
    assert wrong_field.returncode == 1 and str(bad) in wrong_field.stderr and "'text'" in wrong_field.stderr

    unknown = rag_cli("build", bad, "--field", "colour=c", "--index", index)
    assert unknown.returncode == 1 and "colour" in unknown.stderr
    assert store.current_version(index) == version  # none of it touched the index
    stats = json.loads(rag_cli("stats", "--index", index, "--json").stdout)
    assert stats["articles"] == 2


def test_missing_index_is_one_clear_line(tmp_path):
    result = rag_cli("ask", "anything", "--index", tmp_path / "none")
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"rag: error: {tmp_path / 'none'}: no index here; build one with: rag build seeds/ --index {tmp_path / 'none'}"]


def test_show_unknown_id_and_check(seed_index_dir):
    result = rag_cli("show", "no-such-doc", "--index", seed_index_dir)
    assert result.returncode == 1 and "no-such-doc" in result.stderr
    check = rag_cli("check", "--index", seed_index_dir)
    assert check.returncode == 0 and "ok" in check.stdout
