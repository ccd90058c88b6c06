"""Cold start: a fresh ``rag ask`` process on the seed index, question to printed
answer, with each embedding backend's index; and what importing torch alone costs.

    python bench/cold_start.py --repeats 5
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tqdm import tqdm

from common import ROOT, spread, write_result

QUESTION = "Did Russia make big concessions?"
REPORT = ("import sys, runpy; sys.argv = ['rag'] + sys.argv[1:]; "
          "from rag.cli import main; code = main(sys.argv[1:]); "
          "print('torch' in sys.modules, file=sys.stderr); sys.exit(code)")


def timed(cmd: list[str]) -> tuple[float, str]:
    started = time.perf_counter()
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=True)
    return time.perf_counter() - started, done.stderr.strip().splitlines()[-1] if done.stderr.strip() else ""


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()

    import rag
    from rag.embedders import make_embedder

    rows = ["| index built with | `rag ask` answered by | seconds to the printed answer, median (min–max) "
            "| torch imported |", "|---|---|---|---|"]
    with tempfile.TemporaryDirectory() as tmp:
        for backend in ("onnx-int8", "torch"):
            folder = Path(tmp) / backend
            rag.build([ROOT / "seeds"], index=folder, embedder=make_embedder(backend), progress=False)
            asked_with = rag.Index(folder).embedder.backend
            timed([sys.executable, "-c", REPORT, "ask", QUESTION, "--index", str(folder)])  # file cache warm
            runs = [timed([sys.executable, "-c", REPORT, "ask", QUESTION, "--index", str(folder)])
                    for _ in tqdm(range(args.repeats), desc=f"rag ask, {backend} index", leave=False)]
            rows.append(f"| {backend} | {asked_with} | {spread(r[0] for r in runs)} | {runs[-1][1]} |")
    imports = {m: [timed([sys.executable, "-c", f"import {m}"])[0] for _ in range(3)]
               for m in ("onnxruntime, tokenizers", "torch", "sentence_transformers")}
    body = ("Each run is a new Python process (`rag ask QUESTION --index DIR`, plain text output), "
            f"{args.repeats} runs after one to warm the OS file cache. An index built with torch is "
            "answered by onnx-fp32, whose vectors are torch's (`Settings.embedder = \"auto\"`).\n\n"
            + "\n".join(rows) + "\n\nImport alone, seconds (3 runs): "
            + "; ".join(f"`import {m}` {spread(v)}" for m, v in imports.items()) + ".")
    print(body)
    if not args.no_write:
        write_result("Cold start", body)


if __name__ == "__main__":
    main()
