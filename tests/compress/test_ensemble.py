"""Ensembles: the combination rules, weights fit on validation, and one artifact that loads like a model."""

import json

import numpy as np
import pytest

from fmloop.compress import ensemble
from fmloop.compress.config import EnsembleConfig
from fmloop.compress.ensemble import fit_weights
from fmloop.core.config import build_config
from fmloop.core.errors import ConfigError, ModelError
from fmloop.models.formats.ensemble import combine
from fmloop.models.loading import load
from fmloop.tasks.metrics import softmax
from tests.conftest import run_cli, write_csv


def test_mean_and_vote_rules():
    a = np.log(np.array([[0.9, 0.1], [0.4, 0.6]]))
    b = np.log(np.array([[0.6, 0.4], [0.45, 0.55]]))
    c = np.log(np.array([[0.2, 0.8], [0.1, 0.9]]))
    mean = softmax(combine("classification", "mean", [a, b, c], [1, 1, 1]))
    assert np.allclose(
        mean, [[(0.9 + 0.6 + 0.2) / 3, (0.1 + 0.4 + 0.8) / 3], [(0.4 + 0.45 + 0.1) / 3, (0.6 + 0.55 + 0.9) / 3]]
    )
    vote = combine("classification", "vote", [a, b, c], [1, 1, 1]).argmax(-1)
    assert vote.tolist() == [0, 1]  # two of three vote class 0 for the first row, though the mean says 1
    assert mean.argmax(-1).tolist() == [0, 1]
    weighted = softmax(combine("classification", "weighted", [a, c], [0.0, 1.0]))
    assert np.allclose(weighted, softmax(c), atol=1e-6)


def test_weights_favour_the_member_that_is_right():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 400)
    good = np.where(np.eye(2)[y] > 0, 2.0, -2.0) + rng.normal(0, 0.5, (400, 2))
    noise = rng.normal(0, 2, (400, 2))
    w = fit_weights("classification", y, [noise, good])
    assert w[1] > 0.8 and abs(sum(w) - 1) < 1e-6


def test_ensemble_artifact_evaluates_and_predicts(text_run, pooled_run, sentiment_dir, tmp_path):
    out = tmp_path / "ens"
    result = run_cli(
        "ensemble",
        str(text_run),
        str(pooled_run),
        "--method",
        "weighted",
        "--data",
        str(sentiment_dir),
        "--out",
        str(out),
    )
    assert result.returncode == 0, result.stderr
    spec = json.loads((out / "model" / "ensemble.json").read_text())
    assert spec["method"] == "weighted" and len(spec["members"]) == 2 and abs(sum(spec["weights"]) - 1) < 1e-6
    assert all((out / "model" / m / "config.json").exists() for m in spec["members"])  # self-contained copies
    result = run_cli("evaluate", str(out), str(sentiment_dir), "--out", str(tmp_path / "eval"))
    assert result.returncode == 0, result.stderr
    assert json.loads((tmp_path / "eval" / "metrics.json").read_text())["metrics"]["accuracy"] > 0.8
    preds = load(out).predict(["it was great", "it was awful"])
    assert {p["label"] for p in preds} <= {"negative", "positive"}
    assert abs(sum(preds[0]["probabilities"].values()) - 1) < 1e-4


def test_members_with_different_labels_are_refused(text_run, tiny_base, tmp_path):
    from tests.conftest import finetune_tiny

    rows = [{"text": f"sample {i} words", "label": ["red", "green", "blue"][i % 3]} for i in range(60)]
    write_csv(tmp_path / "colours.csv", rows)
    other = finetune_tiny(tiny_base, tmp_path / "colours.csv", tmp_path / "colours", max_steps=1)
    with pytest.raises(ModelError, match="share task and labels"):
        ensemble.run(EnsembleConfig(models=[str(text_run), str(other.path)]), tmp_path / "ens")
    with pytest.raises(ConfigError, match="method"):
        build_config(EnsembleConfig, {"models": [str(text_run), str(text_run)], "method": "median"})
    assert not (tmp_path / "ens").exists()
