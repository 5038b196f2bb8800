"""Does fmloop's text pretraining pay? bert-mini pretrained on unlabeled text, then fine-tuned on
SST-2, against the same architecture fine-tuned from random weights (same tokenizer, same recipe).

    .venv/bin/python bench/pretraining_pays.py --pretrained RUN          # reuse a pretraining run
    .venv/bin/python bench/pretraining_pays.py --pretrain-minutes 30     # pretrain first

Pretraining data (when pretraining here): IMDb unlabeled reviews + Wikipedia leads from
../shared/datasets/text. Both fine-tunings use fmloop's defaults; the random-init run uses the
pretraining run's tokenizer so the only difference is the starting weights. Scored on the SST-2
test split (never used for model selection), with a paired bootstrap between the two.
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
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TEXT = ROOT.parent / "shared" / "datasets" / "text"


def fmloop(*args: str) -> None:
    print("$ fmloop " + " ".join(args), flush=True)
    subprocess.run([sys.executable, "-m", "fmloop", *args], check=True, cwd=ROOT)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pretrained", help="an existing fmloop pretraining run dir (bert-mini)")
    parser.add_argument("--pretrain-minutes", type=float, default=30)
    parser.add_argument("--set", action="append", default=[], help="extra finetune option KEY=VALUE (train section)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        pre = Path(args.pretrained) if args.pretrained else work / "pretrain"
        if not args.pretrained:
            mix = work / "mix"
            mix.mkdir()
            os.symlink(TEXT / "imdb" / "unsup.jsonl.gz", mix / "imdb_unsup.jsonl.gz")
            os.symlink(TEXT / "corpora" / "wikipedia_en_leads.txt", mix / "wikipedia_en_leads.txt")
            fmloop(
                "pretrain",
                "--data",
                str(mix),
                "--objective",
                "mlm",
                "--model",
                "bert-mini",
                "--out",
                str(pre),
                "--max-time",
                f"{args.pretrain_minutes}m",
                "--train.lr=1e-3",
                "--train.tensorboard=false",
            )
        p = json.loads((pre / "manifest.json").read_text())
        sst2 = TEXT / "sst2"
        extra = [f"--train.{k}" for k in args.set]
        runs = {"pretrained": work / "ft-pretrained", "random init": work / "ft-random"}
        fmloop(
            "finetune",
            "--model",
            str(pre / "model"),
            "--data",
            str(sst2),
            "--out",
            str(runs["pretrained"]),
            "--train.tensorboard=false",
            *extra,
        )
        fmloop(
            "finetune",
            "--model",
            "bert-mini",
            "--model.tokenizer",
            str(pre / "model"),
            "--data",
            str(sst2),
            "--out",
            str(runs["random init"]),
            "--train.tensorboard=false",
            *extra,
        )
        metrics = {name: json.loads((run / "manifest.json").read_text())["metrics"] for name, run in runs.items()}
        cmp_dir = work / "compare"
        fmloop(
            "evaluate",
            str(runs["pretrained"] / "model"),
            str(sst2),
            "--baseline",
            str(runs["random init"] / "model"),
            "--out",
            str(cmp_dir),
        )
        test = json.loads((cmp_dir / "metrics.json").read_text())["comparison"]["test"]
    rows = "\n".join(
        f"| {name} | {m['validation_accuracy']:.4f} | {m['test_accuracy']:.4f} | {m['train_time_s']:.0f} s |"
        for name, m in metrics.items()
    )
    pm = p["metrics"]
    print(f"""
### Pretraining pays? bert-mini on SST-2, pretrained vs random init ({datetime.date.today()})

`python bench/pretraining_pays.py {" ".join(sys.argv[1:])}` ({os.cpu_count()} cores). Pretraining run: {p["data"]};
{pm["steps"]} steps, {pm["tokens_seen"]:,} tokens in {pm["train_time_s"] / 60:.0f} minutes, held-out MLM loss
{pm["initial_eval_loss"]:.2f} -> {pm["eval_loss"]:.2f} (perplexity {pm["eval_ppl"]:.0f}).

| bert-mini fine-tuned on SST-2 (fmloop defaults) | validation accuracy | test accuracy | fine-tuning time |
|---|---|---|---|
{rows}
| **pretrained - random (test, paired bootstrap)** | | **{test["difference"] * 100:+.1f} points** [{test["interval"][0] * 100:+.1f}, {test["interval"][1] * 100:+.1f}], p = {test["p_value"]:.3f} | |
""")


if __name__ == "__main__":
    main()
