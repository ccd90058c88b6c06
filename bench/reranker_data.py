"""Training and measuring data for the answer reranker (bench/train_reranker.py).

Every source becomes the same thing: groups of (question, candidate sentence,
label) where label 1 means "this sentence answers the question". The negatives
that matter most are the other sentences of the right passage or article: that
is the choice the product gets wrong. Questions with no answering sentence
(SQuAD 2.0 unanswerable, a news side that does not address it) are all
negatives: they teach "nothing here answers".

Sentences are split with the product's own splitter (rag.chunk.split_sentences),
so training sees what answering sees.
"""
from __future__ import annotations

import gzip
import json
import random
import re
import zlib
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from rag.chunk import split_sentences
from rag.lexical import tokens

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
QA = DATA / "qa"


@dataclass(frozen=True)
class Pair:
    question: str
    sentence: str
    label: int
    source: str
    group: str  # question id: pairs of one question are ranked against each other
    context: str = ""  # the sentence before it in its text ("" for the first, or none)


def previous(texts: list[str]) -> dict[str, str]:
    """Each sentence's predecessor in ``texts`` (document order): the context the reranker
    may read with it ("That body has..." needs "The House..." before it)."""
    return {b: a for a, b in zip(texts, texts[1:])}


def sentences_of(text: str) -> list[tuple[int, int, str]]:
    return [(s.start, s.end, text[s.start:s.end]) for s in split_sentences(text)]


def _overlap(question: str, sentence: str) -> int:
    return len(set(tokens(question)) & set(tokens(sentence)))


def hardest(question: str, pool: list[str], n: int, rng: random.Random) -> list[str]:
    """``n`` negatives: half the most word-overlapping ones (hard), half at random (so the
    model also sees ordinary sentences of the article and does not learn "overlap = no")."""
    if len(pool) <= n:
        return list(pool)
    ranked = sorted(pool, key=lambda s: -_overlap(question, s))
    hard = ranked[: (n + 1) // 2]
    rest = ranked[(n + 1) // 2:]
    return hard + rng.sample(rest, n - len(hard))


def squad(path: Path, rng: random.Random, negatives: int = 4, source: str = "squad") -> list[Pair]:
    """SQuAD 2.0: the sentence holding the answer's start is positive; the other sentences
    of its paragraph (and one of another paragraph) are negatives."""
    out = []
    for article in json.loads(path.read_text(encoding="utf-8"))["data"]:
        paragraphs = [p["context"] for p in article["paragraphs"]]
        for p_index, paragraph in enumerate(article["paragraphs"]):
            spans = sentences_of(paragraph["context"])
            other_texts = [[s for _, _, s in sentences_of(c)[:3]] for k, c in enumerate(paragraphs) if k != p_index]
            others = [s for texts in other_texts for s in texts]
            before_other = {k: v for texts in other_texts for k, v in previous(texts).items()}
            for qa in paragraph["qas"]:
                q = qa["question"].strip()
                starts = {a["answer_start"] for a in qa.get("answers", [])}
                positive = {i for i, (a, b, _) in enumerate(spans) if any(a <= st < b for st in starts)}
                if qa.get("is_impossible"):
                    positive = set()
                pool = [s for i, (_, _, s) in enumerate(spans) if i not in positive]
                before = previous([s for _, _, s in spans]) | before_other
                for i in positive:
                    out.append(Pair(q, spans[i][2], 1, source, qa["id"], before.get(spans[i][2], "")))
                for s in hardest(q, pool, negatives, rng) + rng.sample(others, min(1, len(others))):
                    out.append(Pair(q, s, 0, source, qa["id"], before.get(s, "")))
    return out


def selqa(paths: list[Path], rng: random.Random, negatives: int = 4) -> list[Pair]:
    """SelQA answer-sentence selection: its answer indexes are positives."""
    out = []
    for path in paths:
        for n, item in enumerate(json.loads(path.read_text(encoding="utf-8"))):
            q, cands, gold = item["question"].strip(), item["candidates"], set(item["answers"])
            gid = f"selqa-{path.stem}-{n}"
            before = previous(cands)  # a section's sentences, in order
            out += [Pair(q, cands[i], 1, "selqa", gid, before.get(cands[i], "")) for i in sorted(gold) if i < len(cands)]
            pool = [c for i, c in enumerate(cands) if i not in gold]
            out += [Pair(q, c, 0, "selqa", gid, before.get(c, "")) for c in hardest(q, pool, negatives, rng)]
    return out


def _as_question(text: str) -> str:
    text = text.strip()
    text = text[:1].upper() + text[1:]
    return text if text.endswith("?") else text + "?"


def boolq(path: Path, rng: random.Random) -> list[Pair]:
    """BoolQ yes/no questions. Its passages decide the question but mark no sentence, so
    the sentence sharing most of the question's words stands for the answer (kept only
    when it shares at least two); negatives come from other passages (topic changes) and
    from the same passage's sentences sharing none of the question's words."""
    items = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    all_sentences = [s for item in items[:600] for _, _, s in sentences_of(item["passage"])]
    before_any = previous(all_sentences)
    out = []
    for n, item in enumerate(items):
        q = _as_question(item["question"])
        spans = [s for _, _, s in sentences_of(item["passage"])]
        scored = sorted(spans, key=lambda s: -_overlap(q, s))
        if not scored or _overlap(q, scored[0]) < 2:
            continue
        gid = f"boolq-{n}"
        before = before_any | previous(spans)
        out.append(Pair(q, scored[0], 1, "boolq", gid, before.get(scored[0], "")))
        unrelated = [s for s in spans if _overlap(q, s) == 0]
        for s in rng.sample(unrelated, min(1, len(unrelated))) + rng.sample(all_sentences, 2):
            out.append(Pair(q, s, 0, "boolq", gid, before.get(s, "")))
    return out


def strategyqa(path: Path, rng: random.Random) -> list[Pair]:
    """StrategyQA yes/no questions: the annotators' facts are what answers them;
    negatives are facts written for other questions (half of them about the same term)."""
    items = json.loads(path.read_text(encoding="utf-8"))
    by_term: dict[str, list[str]] = {}
    for item in items:
        by_term.setdefault(item.get("term", ""), []).extend(item.get("facts", []))
    every = [f for item in items for f in item.get("facts", [])]
    out = []
    for item in items:
        facts = [f.strip() for f in item.get("facts", []) if f.strip()]
        if not facts:
            continue
        q, gid = item["question"].strip(), f"strategyqa-{item['qid']}"
        out += [Pair(q, f, 1, "strategyqa", gid) for f in facts[:2]]
        same = [f for f in by_term.get(item.get("term", ""), []) if f not in facts]
        negs = rng.sample(same, min(1, len(same))) + rng.sample(every, 2)
        out += [Pair(q, f, 0, "strategyqa", gid) for f in negs if f not in facts]
    return out


def _norm(text: str) -> str:
    return " ".join(re.sub(r"[“”\"’‘']", "'", text).lower().split())


def read_allsides(ids: set[str]) -> dict[str, dict]:
    found = {}
    with gzip.open(DATA / "allsides-12k.jsonl.gz", "rt", encoding="utf-8") as stream:
        for line in stream:
            record = json.loads(line)
            if record["ID"] in ids:
                found[record["ID"]] = record
    return found


def calibration_story(item: dict) -> bool:
    """Train-split questions kept for calibrating the reranker, never for training it: a
    third of the stories (by a hash of the story's name), and the questions that name
    no story. Calibrating on questions the model learnt would make it overconfident."""
    story = item.get("story")
    return not story or zlib.crc32(story.encode()) % 3 == 0


def read_news(paths: list[Path]) -> list[dict]:
    return [json.loads(line) for path in paths for line in path.read_text(encoding="utf-8").splitlines()
            if line.strip()]


def news(paths: list[Path], rng: random.Random, negatives: int = 6) -> list[Pair]:
    """The team's news questions that train the reranker (train split, not kept for
    calibration): in each named article, the sentences holding an expected span are
    positives and the others (the hardest first) negatives; an article expected to be
    silent gives negatives only."""
    items = [i for i in read_news(paths) if i.get("split") == "train" and i.get("expect")
             and not calibration_story(i)]
    articles = read_allsides({key for i in items for key in i["expect"]})
    out = []
    for n, item in enumerate(items):
        q = item["q"]
        for doc_id, expected in item["expect"].items():
            if doc_id not in articles:
                continue
            gid = f"news-{n}-{doc_id}"
            spans = [s for _, _, s in sentences_of(articles[doc_id]["content_original"])]
            wanted = [] if expected is None else [_norm(e) for e in ([expected] if isinstance(expected, str)
                                                                     else expected)]
            positive = [s for s in spans if any(e and (e in _norm(s) or _norm(s) in e) for e in wanted)]
            before = previous(spans)
            out += [Pair(q, s, 1, "news", gid, before.get(s, "")) for s in positive]
            pool = [s for s in spans if s not in positive and len(s.split()) >= 4]
            out += [Pair(q, s, 0, "news", gid, before.get(s, "")) for s in hardest(q, pool, negatives, rng)]
    return out


def wikiqa_test() -> dict[str, list[tuple[str, int]]]:
    """WikiQA test (measuring only: its licence does not allow shipped weights), plain-text
    TSV: question -> [(sentence, label)]."""
    groups: dict[str, list[tuple[str, int]]] = {}
    lines = (QA / "wikiqa" / "WikiQA-test.tsv").read_text(encoding="utf-8").splitlines()
    header = lines[0].split("\t")
    qi, si, li = header.index("Question"), header.index("Sentence"), header.index("Label")
    for line in lines[1:]:
        cols = line.split("\t")
        groups.setdefault(cols[qi], []).append((cols[si], int(cols[li])))
    return groups


def counts(pairs: list[Pair]) -> str:
    by = Counter((p.source, p.label) for p in pairs)
    groups = Counter(p.source for p in {(p.source, p.group): p for p in pairs}.values())
    return ", ".join(f"{s}: {groups[s]} q / {by[(s, 1)]} pos / {by[(s, 0)]} neg" for s in sorted(groups))
