"""Temperature scaling: the fit finds a known temperature, fine-tuning stores one, and every scoring
path divides by it without changing an answer."""

import json

import numpy as np
import pytest

from fmloop.models.calibration import CALIBRATION_FILE, MIN_ROWS, calibrate, fit_temperature, read_temperature
from fmloop.models.loading import load
from fmloop.tasks.metrics import softmax


def _overconfident(n: int, temperature: float, seed: int = 0):
    """Labels drawn from softmax(z), reported as logits z * temperature (over-confident by that factor)."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0, 1.5, (n, 3))
    y = np.array([rng.choice(3, p=p) for p in softmax(z)])
    return z * temperature, y


def test_the_fit_recovers_the_temperature_that_made_a_model_overconfident():
    logits, y = _overconfident(4000, 2.5)
    assert fit_temperature(logits, y) == pytest.approx(2.5, rel=0.1)
    fitted = calibrate(logits, y, "synthetic")
    assert fitted["ece_after"] < fitted["ece_before"] / 2 and fitted["nll_after"] < fitted["nll_before"]
    assert calibrate(logits[: MIN_ROWS - 1], y[: MIN_ROWS - 1], "too few") is None


def test_fine_tuning_stores_a_temperature_that_every_scoring_path_applies(text_run):
    stored = json.loads((text_run / "model" / CALIBRATION_FILE).read_text())
    assert stored["rows"] == 100 and stored["fitted_on"].startswith("validation")
    manifest = json.loads((text_run / "manifest.json").read_text())
    assert manifest["calibration"]["temperature"] == stored["temperature"] == read_temperature(text_run / "model")
    model = load(text_run)
    texts = ["my friend sees the river and it was great today", "a dull song and it was awful", "the cat"]
    raw, served = model.raw_logits(texts), model.logits(texts)
    np.testing.assert_allclose(served, raw / stored["temperature"], rtol=1e-6)
    assert (served.argmax(-1) == raw.argmax(-1)).all()  # same answers, other confidences
    expected = softmax(raw / stored["temperature"])
    got = [[p["probabilities"][k] for k in model.labels] for p in model.predict(texts)]
    np.testing.assert_allclose(got, expected, atol=1e-4)  # answers carry rounded probabilities
    report = (text_run / "report.html").read_text()
    assert "Before temperature scaling the expected calibration error was" in report
