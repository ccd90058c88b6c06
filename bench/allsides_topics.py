"""Topic check on AllSides: does each of left/center/right answer a question
from an article of the question's topic?

    .venv/bin/python bench/allsides_topics.py ../shared/data/allsides-12k.jsonl.gz \
        --questions tests/data/allsides-questions.jsonl --per-side 20 --index /tmp/allsides-index

Slice: for each topic named in the questions, the first ``--per-side``
articles of each bias label, in file order (so 10 topics x 3 sides x 20 = 600
articles). Ingested as the CLI would: text=content_original, viewpoint=bias_text.
"""
from __future__ import annotations

import argparse
import gzip
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rag.engine import Index  # noqa: E402
from rag.evaluate import eval_questions, read_questions  # noqa: E402


def write_slice(source: Path, topics: set[str], per_side: int, target: Path) -> int:
    taken: dict[tuple[str, str], int] = {}
    with gzip.open(source, "rt", encoding="utf-8") as stream, open(target, "w", encoding="utf-8") as out:
        for line in stream:
            record = json.loads(line)
            key = (record.get("topic"), record.get("bias_text"))
            if key[0] in topics and taken.get(key, 0) < per_side and record.get("content_original"):
                taken[key] = taken.get(key, 0) + 1
                out.write(line if line.endswith("\n") else line + "\n")
    return sum(taken.values())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", type=Path)
    parser.add_argument("--questions", type=Path, default=ROOT / "tests/data/allsides-questions.jsonl")
    parser.add_argument("--per-side", type=int, default=20)
    parser.add_argument("--index", type=Path, default=Path("/tmp/allsides-index"))
    args = parser.parse_args()
    topics = {item["topic"] for item in read_questions(args.questions)}
    args.index.parent.mkdir(parents=True, exist_ok=True)
    corpus = args.index.parent / f"{args.index.name}-slice.jsonl"
    n = write_slice(args.data, topics, args.per_side, corpus)
    ix = Index(args.index)
    started = time.time()
    ix.rebuild([corpus], {"text": "content_original", "viewpoint": "bias_text"}, progress=False)
    print(f"{n} articles of {len(topics)} topics indexed in {time.time() - started:.0f}s", file=sys.stderr)
    report = eval_questions(args.questions, ix)
    print(json.dumps({key: report[key] for key in report if key != "misses"}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
