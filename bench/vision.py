"""Image benchmarks on the CPU: full-label accuracy within a time budget, and "pretraining pays"
with few labels.

    .venv/bin/python bench/vision.py full --dataset fashion_mnist --model resnet-mini --minutes 10
    .venv/bin/python bench/vision.py few  --dataset fashion_mnist --labels-per-class 60 \
        --model vit-mini --objective simclr --pretrain-minutes 20

`full`: `fmloop finetune` on the whole training split with a training-time budget (the schedule is
laid over the epochs that fit the budget, measured from a short calibration run), scored on the
test split; prints the validation-accuracy-vs-time curve from the run's metrics.
`few`: `fmloop pretrain` (self-supervised, every training image, no labels) for the budget, then
`fmloop finetune` of that backbone on N labels per class, against the same architecture
fine-tuned from random weights on the same N labels; both scored on the test split.
Prints a Markdown block for docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "datasets" / "vision"


def fmloop(*args: str) -> float:
    start = time.perf_counter()
    cmd = [sys.executable, "-m", "fmloop", *args]
    print("$ fmloop " + " ".join(args), flush=True)
    subprocess.run(cmd, check=True, cwd=ROOT)
    return time.perf_counter() - start


def manifest(run: Path) -> dict:
    return json.loads((run / "manifest.json").read_text())


def curve(run: Path) -> list[tuple[float, float]]:
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]
    return [(r["elapsed_s"], r["accuracy"]) for r in rows if "accuracy" in r and "elapsed_s" in r]


def full(args, work: Path) -> str:
    data = DATA / args.dataset
    run = work / "full"
    extra = [f"--train.{k}" for k in args.set]
    wall = fmloop(
        "finetune",
        "--model",
        args.model,
        "--data",
        str(data),
        "--out",
        str(run),
        f"--train.max_time={args.minutes}m",
        f"--train.epochs={args.epochs}",
        "--train.tensorboard=false",
        *extra,
    )
    m = manifest(run)["metrics"]
    points = curve(run)
    table = "\n".join(f"| {t / 60:.1f} | {a:.4f} |" for t, a in points)
    return f"""
### {args.dataset}, all labels, {args.model}, {args.minutes}-minute budget ({datetime.date.today()})

`python bench/vision.py full --dataset {args.dataset} --model {args.model} --minutes {args.minutes} --epochs {args.epochs}{"".join(" --set " + s for s in args.set)}`
({os.cpu_count()} cores). {m["steps"]} steps in {m["train_time_s"]:.0f} s of training ({wall:.0f} s wall, with data
loading and the final scoring); stopped by: {manifest(run).get("stop_reason") or "the schedule ended"}.

| | value |
|---|---|
| test accuracy | **{m.get("test_accuracy", float("nan")):.4f}** |
| validation accuracy (best checkpoint) | {m["validation_accuracy"]:.4f} |
| training images/s | {m["train_samples_per_s"]:.0f} |

Validation accuracy against training time:

| minutes | validation accuracy |
|---|---|
{table}
"""


def few(args, work: Path) -> str:
    data = DATA / args.dataset
    pre = work / "pretrain"
    fmloop(
        "pretrain",
        "--modality",
        "image",
        "--objective",
        args.objective,
        "--model",
        args.model,
        "--data",
        str(data / "train.parquet"),
        "--out",
        str(pre),
        "--max-time",
        f"{args.pretrain_minutes}m",
        "--train.tensorboard=false",
        *[f"--train.{k}" for k in args.pretrain_set],
    )
    results = {}
    runs = [(f"pretrained, --strategy {s}", str(pre / "model"), s) for s in args.pretrained_strategies.split(",")]
    runs.append(("from scratch, --strategy full", args.model, "full"))
    for name, base, strategy in runs:
        run = work / name.split(",")[0].replace(" ", "-") / strategy
        fmloop(
            "finetune",
            "--model",
            base,
            "--data",
            str(data),
            "--out",
            str(run),
            "--strategy",
            strategy,
            f"--train.limit-per-class={args.labels_per_class}",
            "--train.tensorboard=false",
            *[f"--train.{k}" for k in args.set],
        )
        results[name] = manifest(run)["metrics"]
    p = manifest(pre)["metrics"]
    best = max((m["validation_accuracy"], name) for name, m in results.items() if name.startswith("pretrained"))[1]
    gain = results[best]["test_accuracy"] - results["from scratch, --strategy full"]["test_accuracy"]
    rows = "\n".join(
        f"| {name} | {m['test_accuracy']:.4f} | {m['validation_accuracy']:.4f} | {m['train_time_s']:.0f} s |"
        for name, m in results.items()
    )
    return f"""
### {args.dataset}, {args.labels_per_class} labels per class: {args.objective} pretraining vs random init ({datetime.date.today()})

`python bench/vision.py few --dataset {args.dataset} --labels-per-class {args.labels_per_class} --model {args.model} --objective {args.objective} --pretrain-minutes {args.pretrain_minutes} --pretrained-strategies {args.pretrained_strategies}{"".join(" --set " + s for s in args.set)}{"".join(" --pretrain-set " + s for s in args.pretrain_set)}`
({os.cpu_count()} cores). Pretraining: {p["steps"]} steps, {p["images_seen"]:,} images seen in {p["train_time_s"]:.0f} s,
held-out {args.objective} loss {p["initial_eval_loss"]:.3f} -> {p["eval_loss"]:.3f}.

| {args.model} fine-tuned on {args.labels_per_class * 10} labels | test accuracy | validation accuracy | fine-tuning time |
|---|---|---|---|
{rows}
| **pretraining gain** (the pretrained run with the best validation accuracy vs scratch) | **{gain * 100:+.1f} points** | | |
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("experiment", choices=["full", "few"])
    parser.add_argument("--dataset", default="fashion_mnist", choices=["fashion_mnist", "cifar10"])
    parser.add_argument("--model", default="resnet-mini")
    parser.add_argument("--minutes", type=float, default=10)
    parser.add_argument("--epochs", type=float, default=3)
    parser.add_argument("--labels-per-class", type=int, default=60)
    parser.add_argument("--objective", default="simclr")
    parser.add_argument("--pretrain-minutes", type=float, default=20)
    parser.add_argument(
        "--pretrained-strategies",
        default="full,linear-probe",
        help="fine-tuning strategies to try on the pretrained backbone (comma-separated)",
    )
    parser.add_argument("--set", action="append", default=[], help="extra finetune option KEY=VALUE (train section)")
    parser.add_argument(
        "--pretrain-set", action="append", default=[], help="extra pretrain option KEY=VALUE (train section)"
    )
    args = parser.parse_args()
    if not (DATA / args.dataset).exists():
        sys.exit(f"{DATA / args.dataset} is missing (the shared datasets live beside the checkout)")
    with tempfile.TemporaryDirectory() as tmp:
        block = full(args, Path(tmp)) if args.experiment == "full" else few(args, Path(tmp))
    print(block)


if __name__ == "__main__":
    main()
