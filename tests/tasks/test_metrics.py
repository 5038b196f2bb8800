import numpy as np
import pytest

from fmloop.tasks.bootstrap import bootstrap_intervals, paired_bootstrap
from fmloop.tasks.metrics import classification_metrics, expected_calibration_error, regression_metrics


def test_classification_metrics_on_a_known_case():
    y = np.array([0, 0, 1, 1])
    logits = np.array([[2.0, 0.0], [0.0, 2.0], [0.0, 2.0], [0.0, 2.0]])  # one false positive
    m = classification_metrics(y, logits, ["neg", "pos"])
    assert m["accuracy"] == 0.75 and m["confusion_matrix"] == [[1, 1], [0, 2]]
    assert m["per_class"]["pos"]["precision"] == pytest.approx(2 / 3) and m["per_class"]["neg"]["recall"] == 0.5
    assert m["roc_auc"] == 0.75


def test_ece_is_zero_when_confidence_matches_accuracy_and_large_when_not():
    probs = np.array([[0.75, 0.25]] * 4)
    assert expected_calibration_error(np.array([0, 0, 0, 1]), probs)[0] == pytest.approx(0.0)
    assert expected_calibration_error(np.array([1, 1, 1, 1]), np.array([[0.99, 0.01]] * 4))[0] == pytest.approx(0.99)


def test_regression_metrics():
    m = regression_metrics(np.array([1.0, 2.0, 3.0]), np.array([[1.0], [2.0], [4.0]]))
    assert m["mse"] == pytest.approx(1 / 3) and m["mae"] == pytest.approx(1 / 3)


def test_bootstrap_interval_brackets_the_estimate():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 400)
    logits = np.stack([np.zeros(400), np.where(rng.random(400) < 0.8, y, 1 - y) * 2.0 - 1], axis=1)
    acc = classification_metrics(y, logits, ["a", "b"])["accuracy"]
    low, high = bootstrap_intervals("classification", y, logits)["accuracy"]
    assert low < acc < high and high - low < 0.12


def test_paired_bootstrap_separates_a_better_model_from_a_copy():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 500)
    good = np.stack([np.zeros(500), np.where(rng.random(500) < 0.9, y, 1 - y) * 2.0 - 1], axis=1)
    weak = np.stack([np.zeros(500), np.where(rng.random(500) < 0.6, y, 1 - y) * 2.0 - 1], axis=1)
    test = paired_bootstrap("classification", y, good, weak)
    assert test["better"] == "A" and test["p_value"] < 0.01 and test["interval"][0] > 0
    same = paired_bootstrap("classification", y, good, good.copy())
    assert same["difference"] == 0 and same["better"] == "neither"
