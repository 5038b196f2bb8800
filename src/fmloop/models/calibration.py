"""Temperature scaling: the one number that makes a classifier's confidence mean what it says.

A fine-tuned classifier is usually over-confident: its 0.95 answers are right less than 95% of the
time. Dividing its logits by a temperature T > 1 fitted on held-out labels (Guo et al., 2017) fixes
most of that without changing a single answer (the argmax is the same). fmloop fits T on the
validation split at the end of fine-tuning (and of every retrain), stores it in the model folder
as calibration.json, and every scoring path (`fmloop.load(...).logits`, predict, evaluate, serve,
the ONNX and int8 exports, which copy the file) divides by it.

Single-label classification only: regression has no confidence to fix, and multi-label models
would need one temperature per label.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np

from fmloop.core.artifacts import atomic_write_json

CALIBRATION_FILE = "calibration.json"
MIN_ROWS = 50  # below this a fitted temperature is mostly noise: the model keeps T = 1
BOUNDS = (0.05, 20.0)


def read_temperature(folder: Path) -> float:
    """The temperature stored with a model folder (1.0 when it has none)."""
    path = Path(folder) / CALIBRATION_FILE
    if not path.exists():
        return 1.0
    return float(json.loads(path.read_text())["temperature"])


def write_calibration(folder: Path, calibration: dict) -> None:
    atomic_write_json(Path(folder) / CALIBRATION_FILE, calibration)


def copy_calibration(source: Path, folder: Path) -> None:
    """An export of a model keeps its parent's temperature."""
    if (Path(source) / CALIBRATION_FILE).exists():
        shutil.copy2(Path(source) / CALIBRATION_FILE, Path(folder) / CALIBRATION_FILE)


def _nll(logits: np.ndarray, y: np.ndarray, temperature: float) -> float:
    z = logits / temperature
    z = z - z.max(axis=1, keepdims=True)
    log_probs = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    return float(-log_probs[np.arange(len(y)), y].mean())


def fit_temperature(logits: np.ndarray, y: np.ndarray) -> float:
    """The T minimising the negative log-likelihood of `y` under softmax(logits / T): a bounded
    one-dimensional search on log T (the loss is convex in 1/T, so it has one minimum)."""
    from scipy.optimize import minimize_scalar

    logits = np.asarray(logits, dtype=np.float64)
    y = np.asarray(y, dtype=np.int64)
    lo, hi = np.log(BOUNDS[0]), np.log(BOUNDS[1])
    found = minimize_scalar(lambda t: _nll(logits, y, float(np.exp(t))), bounds=(lo, hi), method="bounded")
    return float(np.exp(found.x))


def calibrate(logits: np.ndarray, y: np.ndarray, source: str) -> dict | None:
    """{temperature, fitted_on, rows, nll_before, nll_after, ece_before, ece_after} fitted on
    held-out `logits`/`y`, or None with too few rows to fit on."""
    from fmloop.tasks.metrics import expected_calibration_error, softmax

    if len(y) < MIN_ROWS or logits.shape[1] < 2:
        return None
    temperature = fit_temperature(logits, y)
    return {
        "temperature": round(temperature, 6),
        "fitted_on": source,
        "rows": int(len(y)),
        "nll_before": round(_nll(logits, y, 1.0), 6),
        "nll_after": round(_nll(logits, y, temperature), 6),
        "ece_before": round(expected_calibration_error(y, softmax(logits))[0], 6),
        "ece_after": round(expected_calibration_error(y, softmax(logits / temperature))[0], 6),
    }
