"""`fmloop ladder` on a small sample: every cell is run on the same label subsets, and the table,
the CSV and the plot hold every strategy and budget, with the floor beside them."""

import csv

import pytest

from fmloop.pipeline.ladder import FEW_SEEDS, LadderConfig, limit_per_class, seeds_for, summarise
from tests.conftest import make_image_folder, run_cli

pytestmark = pytest.mark.slow


def test_budgets_are_label_counts_or_shares():
    assert limit_per_class("100", 2) == 50 and limit_per_class("10%", 2) == 0.1 and limit_per_class("100%", 2) is None
    assert limit_per_class("8/class", 4) == 8
    cfg = LadderConfig(base="bert-mini", data="d")
    assert [seeds_for(cfg, limit_per_class(b, 2)) for b in cfg.budgets] == [FEW_SEEDS, FEW_SEEDS, 1, 1]
    assert seeds_for(cfg.model_copy(update={"seeds": 2}), 8) == 2
    with pytest.raises(ValueError):
        LadderConfig(base="bert-mini", data="d", budgets=["ten"])
    with pytest.raises(ValueError):
        LadderConfig(base="bert-mini", data="d", strategies=["fine"])


def test_every_cell_is_compared_with_the_floor_on_its_own_subset():
    rows = [{"strategy": s, "budget": "8/class", "seed": seed, "labels": 16, "test_accuracy": acc, "test_rows": 100,
             "seconds": 1.0} for s, seed, acc in [("full", 0, 0.70), ("full", 1, 0.80), ("floor", 0, 0.60),
                                                   ("floor", 1, 0.75)]]  # fmt: skip
    rows.append({**rows[0], "strategy": "embedding", "test_accuracy": 0.9, "floor_accuracy": 0.5})  # its own fit
    summary = {r["strategy"]: r for r in summarise(rows)}
    assert summary["full"]["vs_floor"] == pytest.approx(0.075)  # (0.10 + 0.05) / 2, paired by seed
    assert summary["full"]["vs_floor_low"] < 0.075 < summary["full"]["vs_floor_high"]
    assert summary["embedding"]["vs_floor"] == pytest.approx(0.4) and "vs_floor" not in summary["floor"]


def test_a_single_seed_gets_the_wilson_interval_of_its_test_accuracy():
    (row,) = summarise([{"strategy": "full", "budget": "10", "seed": 0, "labels": 10, "test_accuracy": 0.8,
                         "test_rows": 100, "seconds": 1.0}])  # fmt: skip
    assert 0.70 < row["low"] < 0.8 < row["high"] < 0.88


def test_the_ladder_runs_every_cell_and_draws_the_table_and_plot(home, tiny_base, sentiment_dir, tmp_path):
    out = tmp_path / "ladder"
    args = ["ladder", "--base", str(tiny_base), "--data", str(sentiment_dir), "--budgets", "20,100%",
            "--strategies", "scratch,linear-probe,full", "--seeds", "1", "--out", str(out),
            "--train.epochs=2", "--train.lr=3e-3", "--train.threads=1", "--train.tensorboard=false"]  # fmt: skip
    result = run_cli(*args)
    assert result.returncode == 0, result.stderr[-3000:]
    rows = list(csv.DictReader(open(out / "ladder.csv")))
    cells = {(r["strategy"], r["budget"]) for r in rows}
    assert cells == {(s, b) for s in ("scratch", "linear-probe", "full", "floor") for b in ("20", "100%")}
    labels = {r["budget"]: int(r["labels"]) for r in rows if r["strategy"] == "full"}
    # 10 per class and their 1 per class of validation (too few to choose on: they train), and every row
    assert labels["20"] == 22 and labels["100%"] > 100
    assert all(0 <= float(r["test_accuracy"]) <= 1 for r in rows)
    assert {r["labels"] for r in rows if r["budget"] == "20"} == {"22"}  # the same rows for every strategy
    assert "vs floor" in (out / "ladder.md").read_text()
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
    result = run_cli("ladder", "--base", "cnn-small", "--data", str(data), "--budgets", "4,100%", "--seeds", "1",
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
