"""Crash safety: `rag build` / `rag add` subprocesses killed with SIGKILL at
random moments while another process keeps asking. After every kill the
index loads, passes `rag check`, answers, and holds exactly the old or the
new corpus; the asking process never errors.

Why the kill loop's writers use the hash embedder: with the real model each
writer spends ~5-10 s importing torch on this 2-core machine, so 30 kills would
take minutes and nearly every "random moment" would land in the import, far
from the commit. What a kill can break (ingest, plan, write, fsync, rename,
pointer switch, cleanup) is the same code whatever the embedder, so the loop
swaps only the embedder (CLI, argument parsing and commit path unchanged) and
one more test kills a real-model `python -m rag add` inside its commit.
"""
import contextlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time

import pytest

import rag
from rag.store import index as store
from rag.cli import main as rag_main
from rag.embed import HashEmbedder
from rag.ingest import load
from tests.conftest import ROOT, SEEDS

pytestmark = pytest.mark.slow

KILLS = 30
# `python -m rag ARGS` with the hash embedder in place of the real model.
HASH_RAG = ("import sys, rag.engine, rag.embed; "
            "rag.engine.default_embedder = lambda *a, **k: rag.embed.HashEmbedder(); "
            "from rag.cli import main; sys.exit(main(sys.argv[1:]))")
QUESTIONS = ["Did Russia make big concessions?", "What about grain exports?", "Who pays for the ceasefire?"]


def corpus(folder, changed=False):
    shutil.copytree(SEEDS, folder)
    bodies = {"grain": "Grain exports rose sharply this year. Ports reopened in spring.",
              "ceasefire": "The ceasefire held for a week. Both sides accused the other of breaking it.",
              "sanctions": "Sanctions were extended by six months. Oil prices barely moved."}
    if changed:
        bodies["grain"] = "Grain exports collapsed this year. Ports stayed closed."
        bodies.update(energy="Energy strikes paused for thirty days. Repairs began at once.",
                      talks="Talks resume next week in Riyadh. Delegations are smaller.")
    for name, body in bodies.items():
        (folder / f"{name}.md").write_text(f"---\nviewpoint: {name}\n---\n{body}\n", encoding="utf-8")
    return {a.id: a.content_hash for a in load([folder]).articles}


def spawn(*args):
    return subprocess.Popen([sys.executable, "-c", HASH_RAG, *map(str, args)], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def debris(root):
    """What an interrupted commit leaves: a temporary folder, a CURRENT.tmp, a
    version folder newer than the one CURRENT names, or a segment no version lists."""
    live = store.current_version(root)
    found = [n for n in os.listdir(root)
             if n.startswith(".tmp-") or n == "CURRENT.tmp" or (n.startswith("v") and n > live)]
    used = set()
    for version in store.list_versions(root):
        with contextlib.suppress(OSError, ValueError):
            used |= {s["name"] for s in json.loads((root / version / "manifest.json").read_text())["segments"]}
    return found + [f"segments/{n}" for n in os.listdir(root / "segments") if n not in used]


def held_articles(snap):
    return {a.id: a.content_hash for a in snap.articles}


class Asker:
    """`rag ask - --json` in its own process, asked one question after another;
    every answer's quotes are checked verbatim against the texts they cite."""

    def __init__(self, root, texts):
        self.texts, self.errors, self.answers = texts, [], 0
        self.proc = subprocess.Popen([sys.executable, "-c", HASH_RAG, "ask", "-", "--json", "--index", str(root)],
                                     cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, bufsize=1)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        n = 0
        while not self.stop.is_set():
            question = QUESTIONS[n % len(QUESTIONS)]
            n += 1
            try:
                self.proc.stdin.write(question + "\n")
                line = self.proc.stdout.readline()
                answer = json.loads(line)
            except (OSError, ValueError) as err:
                self.errors.append(f"asking failed: {err!r}")
                return
            for view in answer["viewpoints"]:
                for q in view["answers"]:
                    if not any(t[q["start"]:q["end"]] == q["text"] for t in self.texts.get(q["doc_id"], ())):
                        self.errors.append(f"quote not verbatim in any version: {q}")
            self.answers += 1
            time.sleep(0.02)

    def close(self):
        self.stop.set()
        self.thread.join(timeout=30)
        self.proc.stdin.close()
        code = self.proc.wait(timeout=30)
        return code, self.proc.stderr.read()


def test_sigkilled_writers_leave_the_old_or_the_new_version(tmp_path):
    states = {"A": corpus(tmp_path / "A"), "B": corpus(tmp_path / "B", changed=True)}
    texts = {}
    for folder in ("A", "B"):
        for article in load([tmp_path / folder]).articles:
            texts.setdefault(article.id, set()).add(article.text)
    root = tmp_path / "index"
    started = time.monotonic()
    first = spawn("build", tmp_path / "A", "--index", root, "--quiet")
    assert first.wait(timeout=120) == 0, first.stderr.read()
    calibrate = time.monotonic()  # a typical update's duration sets the range of kill moments
    second = spawn("build", tmp_path / "B", "--index", root, "--quiet")
    assert second.wait(timeout=120) == 0, second.stderr.read()
    writer_seconds = time.monotonic() - calibrate
    hash_ix = rag.Index(root, embedder=HashEmbedder())
    asker = Asker(root, texts)
    rng = random.Random(6)
    outcomes = {"old": 0, "new": 0, "debris": 0, "killed_in_commit": 0, "completed": 0}
    state, kills, runs = "B", 0, 0
    try:
        while kills < KILLS:
            runs += 1
            assert runs <= 2 * KILLS, outcomes
            target = "B" if state == "A" else "A"
            # from A: build B, or add B (an upsert of B over A is B); from B: build A
            op = rng.choice(["build", "add"]) if target == "B" else "build"
            proc = spawn(op, tmp_path / target, "--index", root, "--quiet")
            if runs % 5 == 0:  # every fifth run completes, so the corpus keeps changing between A and B
                proc.wait(timeout=120)
            elif runs % 3 == 0:  # every third run: kill the moment the commit starts, in the critical window
                deadline = time.monotonic() + 60
                while proc.poll() is None and not debris(root) and time.monotonic() < deadline:
                    time.sleep(0.0005)
                outcomes["killed_in_commit"] += bool(debris(root)) and proc.poll() is None
            else:  # anywhere from start-up to a little past the end of a typical run
                time.sleep(rng.uniform(0.1, 1.3) * writer_seconds)
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
                kills += 1
            else:
                outcomes["completed"] += 1  # not counted as a kill
            proc.wait(timeout=60)
            outcomes["debris"] += bool(debris(root))

            snap = store.load(root)  # loads ...
            assert not snap.warning, snap.warning
            held = held_articles(snap)
            assert held in (states[state], states[target]), f"run {runs}: neither old nor new"
            outcomes["old" if held == states[state] else "new"] += 1
            state = state if held == states[state] else target
            assert rag_main(["check", "--index", str(root)]) == 0  # ... passes rag check ...
            answer = hash_ix.ask(QUESTIONS[runs % len(QUESTIONS)])  # ... and answers, verbatim
            for view in answer.viewpoints:
                for quote in view.answers:
                    assert snap.articles[snap.row_of[quote.doc_id]].text[quote.start:quote.end] == quote.text
        # the next writer cleans what the killed ones left, and commits normally
        target = "B" if state == "A" else "A"
        last = spawn("build", tmp_path / target, "--index", root, "--quiet")
        assert last.wait(timeout=120) == 0, last.stderr.read()
        assert held_articles(store.load(root)) == states[target] and not debris(root)
        assert len(store.list_versions(root)) == 2
    finally:
        code, stderr = asker.close()
    elapsed = time.monotonic() - started
    print(f"\n{kills} SIGKILLs in {runs} runs, {elapsed:.0f} s (a writer runs {writer_seconds:.2f} s): {outcomes}; "
          f"the asker answered {asker.answers} questions")
    assert asker.errors == [] and code == 0 and "error" not in stderr, (asker.errors, stderr)
    assert asker.answers >= KILLS and outcomes["old"] and outcomes["new"]
    assert outcomes["killed_in_commit"] >= 1  # some kills really landed inside a commit


def test_sigkill_inside_a_real_model_commit(writable_seed_index, model, tmp_path):
    """The real thing once: `python -m rag add` with the bundled model, killed
    the moment its commit starts; the seeds index stays whole and answers."""
    root = writable_seed_index
    before = held_articles(store.load(root))
    extra = tmp_path / "extra"
    extra.mkdir()
    (extra / "grain.md").write_text("---\nviewpoint: neutral\n---\nGrain exports rose sharply this year.\n",
                                    encoding="utf-8")
    proc = subprocess.Popen([sys.executable, "-m", "rag", "add", str(extra), "--index", str(root), "--quiet"],
                            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env=dict(os.environ, HF_HUB_OFFLINE="1"))
    deadline = time.monotonic() + 300
    while proc.poll() is None and not debris(root) and time.monotonic() < deadline:
        time.sleep(0.0005)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    snap = store.load(root)
    held = held_articles(snap)
    assert not snap.warning and (held == before or set(held) == set(before) | {"grain"})
    assert rag_main(["check", "--index", str(root)]) == 0
    reader = rag.open(root, embedder=model)
    answer = reader.ask("Did Russia make big concessions?")
    assert {v.viewpoint for v in answer.viewpoints} >= {"pro-Russia", "pro-Ukraine"}
    # the next writer cleans up and commits
    assert "grain" in set(rag.Index(root, embedder=model).add([extra], progress=False).added) | set(held)
    assert "grain" in store.load(root).row_of and not debris(root)
