"""Uncertainty of a metric on a finite test set: bootstrap intervals, and the paired bootstrap
test of two models scored on the same examples (Koehn 2004)."""

from __future__ import annotations

import numpy as np

from fmloop.tasks.catalog import Task, get_task

N_BOOTSTRAP = 1000


def bootstrap_intervals(
    task: str | Task,
    y_true: np.ndarray,
    logits: np.ndarray,
    seed: int = 0,
    n: int = N_BOOTSTRAP,
    labels: list[str] | None = None,
) -> dict[str, list[float]]:
    """95% percentile intervals of the task's main metrics over `n` resamples of the examples."""
    task = get_task(task)
    rng = np.random.default_rng(seed)
    samples = [rng.integers(0, len(y_true), len(y_true)) for _ in range(n)]
    out = {}
    scalar = task.resampler(y_true, logits, labels)
    for name in task.bootstrapped:
        values = [scalar(name, idx) for idx in samples]
        out[name] = [float(np.percentile(values, 2.5)), float(np.percentile(values, 97.5))]
    return out


def paired_bootstrap(
    task: str | Task,
    y_true: np.ndarray,
    logits_a: np.ndarray,
    logits_b: np.ndarray,
    seed: int = 0,
    n: int = N_BOOTSTRAP,
    labels: list[str] | None = None,
) -> dict:
    """Model A vs B on the same examples: difference of the headline metric (A - B), its 95%
    interval, and a two-sided p-value from resampling examples jointly."""
    task = get_task(task)
    name, mode = task.headline
    rng = np.random.default_rng(seed)
    a, b = task.resampler(y_true, logits_a, labels), task.resampler(y_true, logits_b, labels)
    every = np.arange(len(y_true))
    observed = a(name, every) - b(name, every)
    diffs = []
    for _ in range(n):
        idx = rng.integers(0, len(y_true), len(y_true))
        diffs.append(a(name, idx) - b(name, idx))
    diffs = np.asarray(diffs)
    p = 2 * min((diffs <= 0).mean(), (diffs >= 0).mean())
    better = "A" if (observed > 0) == (mode == "max") and observed != 0 else ("B" if observed != 0 else "neither")
    return {
        "metric": name,
        "difference": float(observed),
        "interval": [float(np.percentile(diffs, 2.5)), float(np.percentile(diffs, 97.5))],
        "p_value": float(min(1.0, p)),
        "better": better,
        "resamples": n,
    }


def mean_interval(values: np.ndarray, rng: np.random.Generator, n: int = 2000) -> list[float]:
    """The 95% percentile-bootstrap interval of the mean of per-example `values` ([nan, nan] for none)."""
    values = np.asarray(values, dtype=np.float64)
    if not len(values):
        return [float("nan"), float("nan")]
    means = values[rng.integers(0, len(values), (n, len(values)))].mean(1)
    return [round(float(np.quantile(means, 0.025)), 6), round(float(np.quantile(means, 0.975)), 6)]
