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
