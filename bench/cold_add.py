"""Cold add: a fresh ``rag add ONE_ARTICLE.md --index DIR`` process, start to
exit, on an existing index (e.g. a copy of the real 12k index), planned from
the segments' catalogs (the default) and, interleaved in the same run, with
the whole version loaded and verified first (the way before catalogs).
Each run adds a new article, so the index grows by one segment per add and
merges its small segments as it would in use. Run it on a copy: it writes.

    cp -r /tmp/bench/index-12k /tmp/bench/add-copy
    python bench/cold_add.py --index /tmp/bench/add-copy --repeats 5
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

# The same CLI with the catalog path switched off: the writer loads the whole version.
WHOLE = ("import sys; import rag.store.catalog as c; c.load = lambda root: None; "
         "from rag.cli import main; sys.exit(main(sys.argv[1:]))")
ARTICLE = """---
title: Budget talks, day {n}
viewpoint: {viewpoint}
source: bench
---
Budget talks continued for a {n}th day on Tuesday, and the vote was delayed again.

The Senate leader said negotiators were close to a deal on spending {n} and taxes.
"""


def timed(cmd: list[str]) -> tuple[float, str]:
    started = time.perf_counter()
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if done.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed: {done.stderr.strip()}")
    return seconds, done.stdout.strip().splitlines()[-1]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--index", required=True, help="an index to add to (a copy: this writes)")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()
    import rag

    stats = rag.open(args.index).stats()
    runs: dict[str, list[float]] = {"catalog": [], "whole": []}
    last = ""
    with tempfile.TemporaryDirectory() as tmp:
        n = 0
        for _ in tqdm(range(args.repeats + 1), desc="cold rag add", leave=False):
            for way, prefix in (("catalog", ["-m", "rag"]), ("whole", ["-c", WHOLE])):
                n += 1
                path = Path(tmp) / f"budget-day-{n}.md"
                path.write_text(ARTICLE.format(n=n, viewpoint=("Left", "Center", "Right")[n % 3]), encoding="utf-8")
                seconds, last = timed([sys.executable, *prefix, "add", str(path), "--index", args.index, "--quiet"])
                if "1 added" not in last or "1 articles embedded" not in last:
                    raise SystemExit(f"unexpected report: {last}")
                if n > 2:  # the first pair warms the OS file cache
                    runs[way].append(seconds)
    ratio = [w / c for c, w in zip(runs["catalog"], runs["whole"])]
    body = (f"A new `rag add ONE.md --index DIR` process per run, start to exit, on a copy of an index of "
            f"{stats['articles']:,} articles ({stats['chunks']:,} chunks, {stats['bytes'] / 1e6:.0f} MB); "
            f"{args.repeats} runs each way, interleaved, after one pair to warm the OS file cache; each adds "
            f"one new two-sentence article (last report: `{last}`).\n\n"
            "| writer | seconds, median (min–max) |\n|---|---|\n"
            f"| plans from the segments' catalogs, checks the rest in a thread (default) | {spread(runs['catalog'])} |\n"
            f"| loads and verifies the whole version first (before catalogs) | {spread(runs['whole'])} |\n\n"
            f"Whole ÷ catalog, per pair: {spread(ratio)}.")
    print(body)
    if not args.no_write:
        write_result("Cold add", body)


if __name__ == "__main__":
    main()
