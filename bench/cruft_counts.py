"""How often each cruft rule (rag/cruft.py) fires on the 12k AllSides articles:
articles and sentences per rule, and a few random hits of each to read.

    .venv/bin/python bench/cruft_counts.py [--samples 5]

The held-out articles are skipped. Sentences are split as the builder splits them.
"""
from __future__ import annotations

import argparse
import collections
import gzip
import json
import random
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rag.chunk import split_sentences  # noqa: E402
from rag.cruft import LINE_RULES, SENTENCE_RULES, rules_matching  # noqa: E402

DATA = ROOT.parent / "shared" / "data"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DATA / "allsides-12k.jsonl.gz")
    parser.add_argument("--samples", type=int, default=3, help="random hits printed per rule")
    args = parser.parse_args()
    held = set((args.data.parent / "heldout-ids.txt").read_text().split())
    articles, sentences = collections.Counter(), collections.Counter()
    hits: dict[str, list[str]] = collections.defaultdict(list)
    n_articles = n_sentences = n_cruft = 0
    with gzip.open(args.data, "rt", encoding="utf-8") as stream:
        for line in stream:
            record = json.loads(line)
            if record["ID"] in held:
                continue
            text = record["content_original"].replace("\r\n", "\n")
            n_articles += 1
            seen = set()
            for span in split_sentences(text):
                n_sentences += 1
                names = rules_matching(text, span)
                n_cruft += bool(names)
                for name in names:
                    sentences[name] += 1
                    hits[name].append(f"{record['source']} | {text[span.start:span.end][:140]}")
                seen.update(names)
            articles.update(seen)
    print(f"{n_articles} articles, {n_sentences} sentences, {n_cruft} cruft ({n_cruft / n_sentences:.1%})")
    print(f"{'rule':<20}{'articles':>10}{'sentences':>11}")
    for name in list(LINE_RULES) + list(SENTENCE_RULES):
        print(f"{name:<20}{articles[name]:>10}{sentences[name]:>11}")
    rng = random.Random(0)
    for name in list(LINE_RULES) + list(SENTENCE_RULES):
        for sample in rng.sample(hits[name], min(args.samples, len(hits[name]))):
            print(f"  [{name}] {sample}")


if __name__ == "__main__":
    main()
