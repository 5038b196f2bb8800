"""`fmloop ladder` on a small sample: every cell is run on the same label subsets, and the table,
the CSV and the plot hold every strategy and budget, with the floor beside them."""

import csv

import pytest

from fmloop.pipeline.ladder import LadderConfig, limit_per_class, summarise
from tests.conftest import make_image_folder, run_cli

pytestmark = pytest.mark.slow


def test_budgets_are_label_counts_or_shares():
    assert limit_per_class("100", 2) == 50 and limit_per_class("10%", 2) == 0.1 and limit_per_class("100%", 2) is None
    with pytest.raises(ValueError):
        LadderConfig(base="bert-mini", data="d", budgets=["ten"])
    with pytest.raises(ValueError):
        LadderConfig(base="bert-mini", data="d", strategies=["fine"])


def test_a_single_seed_gets_the_wilson_interval_of_its_test_accuracy():
    (row,) = summarise([{"strategy": "full", "budget": "10", "seed": 0, "labels": 10, "test_accuracy": 0.8,
                         "test_rows": 100, "seconds": 1.0}])  # fmt: skip
    assert 0.70 < row["low"] < 0.8 < row["high"] < 0.88


def test_the_ladder_runs_every_cell_and_draws_the_table_and_plot(home, tiny_base, sentiment_dir, tmp_path):
    out = tmp_path / "ladder"
    args = ["ladder", "--base", str(tiny_base), "--data", str(sentiment_dir), "--budgets", "20,100%",
            "--strategies", "scratch,linear-probe,full", "--out", str(out),
            "--train.epochs=2", "--train.lr=3e-3", "--train.threads=1", "--train.tensorboard=false"]  # fmt: skip
    result = run_cli(*args)
    assert result.returncode == 0, result.stderr[-3000:]
    rows = list(csv.DictReader(open(out / "ladder.csv")))
    cells = {(r["strategy"], r["budget"]) for r in rows}
    assert cells == {(s, b) for s in ("scratch", "linear-probe", "full", "floor") for b in ("20", "100%")}
    labels = {r["budget"]: int(r["labels"]) for r in rows if r["strategy"] == "full"}
    assert labels["20"] == 20 and labels["100%"] > 100  # 10 per class, and every training row
    assert all(0 <= float(r["test_accuracy"]) <= 1 for r in rows)
    assert {r["labels"] for r in rows if r["budget"] == "20"} == {"20"}  # the same budget for every strategy
    table = (out / "ladder.md").read_text()
    assert all(name in table for name in ("scratch", "linear-probe", "full", "floor"))
    assert (out / "ladder.png").stat().st_size > 10_000 and "data:image/png" in (out / "report.html").read_text()
    assert not any((out / "cells").glob("*/model"))  # models removed unless keep_models

    again = run_cli(*args, "--resume")  # finished cells are kept, not run again
    assert again.returncode == 0 and "seed 0" in again.stderr
    assert list(csv.DictReader(open(out / "ladder.csv"))) == rows


def test_dapt_needs_a_pretrained_base(home, sentiment_dir, tmp_path):
    result = run_cli("ladder", "--base", "bert-mini", "--data", str(sentiment_dir), "--strategies", "dapt",
                     "--out", str(tmp_path / "l"))  # fmt: skip
    assert result.returncode == 2 and "dapt continues pretraining a pretrained base" in result.stderr


def test_an_image_ladder_has_the_small_cnn_as_its_floor(home, tmp_path):
    data = tmp_path / "stripes"
    make_image_folder(data / "train", n_per_class=16)
    make_image_folder(data / "test", n_per_class=8, seed=1)
    out = tmp_path / "images"
    result = run_cli("ladder", "--base", "cnn-small", "--data", str(data), "--budgets", "4,100%",
                     "--strategies", "scratch,full", "--out", str(out), "--train.epochs=1", "--train.batch_size=8",
                     "--train.threads=1", "--train.tensorboard=false")  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    rows = list(csv.DictReader(open(out / "ladder.csv")))
    assert {(r["strategy"], r["budget"]) for r in rows} == {
        (s, b) for s in ("scratch", "full", "floor") for b in ("4", "100%")
    }
    # no validation split here: a share of the 4 labels is held out to pick checkpoints, the same for every cell
    (labels,) = {int(r["labels"]) for r in rows if r["budget"] == "4"}
    assert 1 <= labels < 4
    assert (out / "ladder.png").exists()
