"""Label issues: flipped labels in a learnable dataset are found, and --drop / --relabel fix them."""

import csv
import json
import random

import numpy as np
import pyarrow.parquet as pq

from fmloop.label.issues import label_issues
from tests.conftest import make_sentiment, run_cli, write_csv


def _noisy(folder, n=400, rate=0.1, seed=0):
    rows = make_sentiment(n, seed=11)
    flipped = set(random.Random(seed).sample(range(n), int(rate * n)))
    for i in flipped:
        rows[i]["label"] = "negative" if rows[i]["label"] == "positive" else "positive"
    folder.mkdir()
    write_csv(folder / "train.csv", rows)
    write_csv(folder / "validation.csv", make_sentiment(40, seed=12))
    return folder, flipped


def test_flipped_labels_are_found(tmp_path):
    src, flipped = _noisy(tmp_path / "noisy")
    summary = label_issues(str(src), tmp_path / "issues")
    found = set(int(i) for i in summary["ranked_rows"])
    precision, recall = len(found & flipped) / max(1, len(found)), len(found & flipped) / len(flipped)
    assert recall >= 0.6 and precision >= 0.6, (precision, recall)  # the issue's bar: most of them
    rows = list(csv.DictReader(open(tmp_path / "issues" / "label_issues.csv")))
    assert int(rows[0]["row"]) - 1 in flipped and rows[0]["given"] != rows[0]["suggested"]


def test_drop_and_relabel_write_fixed_datasets(tmp_path):
    src, flipped = _noisy(tmp_path / "noisy")
    result = run_cli("data", "label-issues", str(src), "--out", str(tmp_path / "dropped"), "--drop")
    assert result.returncode == 0, result.stderr
    changes = [json.loads(line) for line in (tmp_path / "dropped" / "changes.jsonl").read_text().splitlines()]
    assert len(pq.read_table(tmp_path / "dropped" / "train.parquet")) == 400 - len(changes)
    assert len(pq.read_table(tmp_path / "dropped" / "validation.parquet")) == 40
    label_issues(str(src), tmp_path / "relabelled", action="relabel")
    labels = pq.read_table(tmp_path / "relabelled" / "train.parquet").column("label").to_pylist()
    truth = [r["label"] for r in make_sentiment(400, seed=11)]
    assert np.mean([a == b for a, b in zip(labels, truth)]) > 0.93  # 0.90 before relabelling


def test_finetuned_folds_find_flipped_labels(tiny_base, tmp_path):
    """--finetune: each fold's probabilities come from a fine-tuning run of the base model."""
    src, flipped = _noisy(tmp_path / "noisy", n=240)
    result = run_cli(
        "data",
        "label-issues",
        str(src),
        "--out",
        str(tmp_path / "issues"),
        "--model",
        str(tiny_base),
        "--finetune",
        "--folds",
        "3",
        "--train.lr=3e-3",
        "--train.epochs=8",
        "--train.threads=1",
        "--train.tensorboard=false",
        "--train.early_stopping_patience=null",
    )
    assert result.returncode == 0, result.stderr
    summary = json.loads((tmp_path / "issues" / "label_issues.json").read_text())
    assert summary["features"].startswith("3-fold fine-tuning")
    assert summary["out_of_sample_accuracy"] > 0.8  # against the noisy labels: 0.9 at best
    found = {int(r["row"]) - 1 for r in csv.DictReader(open(tmp_path / "issues" / "label_issues.csv"))}
    hits = len(found & flipped)
    assert hits >= 0.5 * len(flipped) and hits >= 0.7 * len(found), (hits, len(found))


def test_finetune_needs_a_model_and_overrides_need_finetune(tmp_path):
    src, _ = _noisy(tmp_path / "noisy", n=40)
    result = run_cli("data", "label-issues", str(src), "--out", str(tmp_path / "a"), "--finetune")
    assert result.returncode != 0 and "--model" in result.stderr and not (tmp_path / "a").exists()
    result = run_cli("data", "label-issues", str(src), "--out", str(tmp_path / "b"), "--train.epochs=2")
    assert result.returncode != 0 and "--finetune" in result.stderr and not (tmp_path / "b").exists()


def test_saved_probabilities_rerun_another_filter_without_refitting(tmp_path):
    src, flipped = _noisy(tmp_path / "noisy")
    first = label_issues(str(src), tmp_path / "a")
    probs = tmp_path / "a" / "probabilities.parquet"
    table = pq.read_table(probs)
    assert table.column_names == ["row", "given", "p_negative", "p_positive"] and table.num_rows == 400
    again = label_issues(str(src), tmp_path / "b", probabilities=str(probs))
    assert list(again["ranked_rows"]) == list(first["ranked_rows"])  # same probabilities, same list
    fewer = label_issues(str(src), tmp_path / "c", probabilities=str(probs), filter_by="low_self_confidence")
    assert 0 < len(fewer["ranked_rows"]) <= len(first["ranked_rows"])
    result = run_cli(
        "data",
        "label-issues",
        str(src),
        "--out",
        str(tmp_path / "d"),
        "--probabilities",
        str(tmp_path / "noisy" / "train.csv"),
    )
    assert result.returncode != 0 and "probabilities.parquet" in result.stderr and not (tmp_path / "d").exists()
