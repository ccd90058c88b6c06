"""The README's Python example runs as written (so the docs never rot)."""
import re
import shutil

import pytest

from tests.conftest import ROOT, SEEDS

pytestmark = pytest.mark.slow


def test_readme_python_example_runs(tmp_path, monkeypatch, capsys):
    blocks = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(encoding="utf-8"), re.S)
    assert blocks, "README has no python example"
    shutil.copytree(SEEDS, tmp_path / "seeds")
    monkeypatch.chdir(tmp_path)
    for block in blocks:
        if "gradio_client" in block:
            continue  # needs a running app: tests/test_browser.py runs it against one
        exec(compile(block, "README.md", "exec"), {})
    out = capsys.readouterr().out
    assert "pro-Russia" in out and "pro-Ukraine" in out and "“" in out


def test_readme_scaling_out_commands_run_against_a_milvus_server(milvus_server, tmp_path):
    """The "Scaling out" section's `rag` commands, as written, with its address replaced by
    the test server's (Docker's Milvus cannot run here; milvus-lite speaks its protocol)."""
    import os
    import shlex
    import subprocess
    import sys

    section = (ROOT / "README.md").read_text(encoding="utf-8").split("## Scaling out")[1].split("\n## ")[0]
    [block] = [b for b in re.findall(r"```bash\n(.*?)```", section, re.S) if "export RAG_STORE" in b]
    shutil.copytree(SEEDS, tmp_path / "seeds")
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONPATH=str(ROOT))  # this checkout's rag, from any folder
    ran = []
    for line in block.strip().splitlines():
        command = shlex.split(line.split("  #")[0])  # a comment follows two spaces
        if command[0] == "export":
            name, value = command[1].split("=", 1)
            env[name] = value.replace("milvus://127.0.0.1:19530", milvus_server)
            continue
        assert command[0] == "rag", line
        result = subprocess.run([sys.executable, "-m", "rag", *command[1:]], cwd=tmp_path, env=env,
                                capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, (line, result.stderr)
        ran.append((command[1], result.stdout))
    assert [c for c, _ in ran] == ["build", "ask", "stats", "check"]
    outputs = dict(ran)
    assert "2 added" in outputs["build"] and "[pro-Russia]" in outputs["ask"]
    assert f"index: {milvus_server}/news" in outputs["stats"] and outputs["check"].endswith("2 articles ok\n")

    # the Milvus Lite file, as written, in a folder of the test's own
    [block] = [b for b in re.findall(r"```bash\n(.*?)```", section, re.S) if "milvus:///tmp/news.db" in b]
    ran = []
    for line in block.strip().splitlines():
        command = shlex.split(line.split("  #")[0].replace("/tmp/news.db", f"{tmp_path}/news.db"))
        assert command[0] == "rag", line
        result = subprocess.run([sys.executable, "-m", "rag", *command[1:]], cwd=tmp_path, env=env,
                                capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, (line, result.stderr)
        ran.append(result.stdout)
    assert "2 added" in ran[0] and "[pro-Russia]" in ran[1] and "concessions" in ran[1]
