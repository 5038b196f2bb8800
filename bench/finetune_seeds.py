"""How much of a fine-tuning result is the recipe and how much the seed: recipes x seeds, mean and spread.

    .venv/bin/python bench/finetune_seeds.py --model FOLDER --data ../shared/datasets/text/sst2 \\
        --variant defaults: --variant "lr2e-4:train.lr=2e-4" --seeds 1,2,3 [--parallel 4] [--common train.precision=fp32]

Each variant is NAME:OVERRIDE,OVERRIDE,... (config overrides as `fmloop finetune` takes them; an
empty list is fmloop's defaults). Every variant runs once per seed with `fmloop finetune`, in
`--parallel` processes at a time (on one GPU several small runs share it well; on a CPU keep 1).
Prints a Markdown table: validation and test accuracy, mean and standard deviation over seeds.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def parse_variant(text: str) -> tuple[str, list[str]]:
    name, sep, rest = text.partition(":")
    if not sep or not name:
        raise SystemExit(
            f"--variant {text!r}: write NAME:OVERRIDE,OVERRIDE (e.g. lr2e-4:train.lr=2e-4), or NAME: for the defaults"
        )
    return name, [f"--{item.strip()}" for item in rest.split(",") if item.strip()]


def run_one(args, name: str, overrides: list[str], seed: int, out: Path) -> dict:
    run_dir = out / f"{name}-seed{seed}"
    cmd = [
        sys.executable,
        "-m",
        "fmloop",
        "finetune",
        "--model",
        args.model,
        "--data",
        args.data,
        "--out",
        str(run_dir),
        f"--train.seed={seed}",
        "--train.tensorboard=false",
        *[f"--{c}" for c in args.common],
        *overrides,
    ]
    path = os.pathsep.join(filter(None, [str(ROOT / "src"), os.environ.get("PYTHONPATH")]))
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": path})
    if proc.returncode != 0:
        raise SystemExit(f"{name} seed {seed} failed:\n{proc.stderr[-3000:]}")
    manifest = json.loads((run_dir / "manifest.json").read_text())
    m = manifest["metrics"]
    print(
        f"{name} seed {seed}: validation {m.get('validation_accuracy', float('nan')):.4f} "
        f"test {m.get('test_accuracy', float('nan')):.4f} steps {m['steps']} {m['train_time_s']:.0f}s",
        flush=True,
    )
    return {"variant": name, "seed": seed, **m}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--data", required=True)
    parser.add_argument("--variant", action="append", required=True, metavar="NAME:OVERRIDES")
    parser.add_argument("--seeds", default="1,2,3")
    parser.add_argument(
        "--common",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="an override every run gets (e.g. train.precision=fp32)",
    )
    parser.add_argument("--parallel", type=int, default=1)
    parser.add_argument("--json", help="also write every run's metrics here")
    args = parser.parse_args()
    variants = [parse_variant(v) for v in args.variant]
    seeds = [int(s) for s in args.seeds.split(",")]
    with tempfile.TemporaryDirectory() as tmp, ThreadPoolExecutor(args.parallel) as pool:
        jobs = [
            pool.submit(run_one, args, name, overrides, seed, Path(tmp))
            for name, overrides in variants
            for seed in seeds
        ]
        results = [job.result() for job in jobs]
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    print(f"\n`python bench/finetune_seeds.py {' '.join(sys.argv[1:])}`\n")
    print("| variant | overrides | seeds | validation accuracy | test accuracy | steps |\n|---|---|---|---|---|---|")
    for name, overrides in variants:
        rows = [r for r in results if r["variant"] == name]

        def stat(key):
            values = np.array([r.get(key, np.nan) for r in rows], dtype=float)
            return f"{values.mean():.4f} ± {values.std(ddof=1) if len(values) > 1 else 0:.4f}"

        print(
            f"| {name} | {' '.join(o[2:] for o in overrides) or 'defaults'} | {len(rows)} | "
            f"{stat('validation_accuracy')} | {stat('test_accuracy')} | {rows[0]['steps']} |"
        )


if __name__ == "__main__":
    main()
