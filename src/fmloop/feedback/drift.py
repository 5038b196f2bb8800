"""Drift statistics: is what the server sees now still what the model was trained on?

Three views, each with a p-value from an existing, well-understood test:
- inputs, as embeddings: maximum mean discrepancy (Gaussian kernel, median-distance bandwidth) with a
  permutation p-value;
- predicted labels: chi-squared test of the label counts (and PSI, the population stability index,
  as an effect size dashboards know);
- confidence (top-class probability): two-sample Kolmogorov-Smirnov (scipy).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from scipy.stats import chi2_contingency, ks_2samp

from fmloop.core.home import home

EPS = 1e-6


def latest_path(name: str) -> Path:
    """The newest `fmloop drift` result of a model, which servers expose on /metrics."""
    return home() / "drift" / f"{name}.json"


@dataclass
class DriftTest:
    name: str
    statistic: float
    p_value: float
    drifted: bool
    detail: dict

    def __post_init__(self):
        self.drifted = bool(self.drifted)  # numpy's bool would reach the JSON as the string "True"

    def to_dict(self) -> dict:
        return asdict(self)


def mmd_test(reference: np.ndarray, current: np.ndarray, permutations: int = 200, alpha: float = 0.01, seed: int = 0):
    """Squared MMD between two samples of vectors with a permutation p-value."""
    x = np.vstack([reference, current]).astype(np.float64)
    n = len(reference)
    sq = np.sum(x**2, 1)
    distances = np.maximum(sq[:, None] + sq[None, :] - 2 * x @ x.T, 0)
    bandwidth = np.median(distances[np.triu_indices(len(x), 1)]) or 1.0
    kernel = np.exp(-distances / bandwidth)

    def mmd(idx: np.ndarray) -> float:
        a, b = idx[:n], idx[n:]
        return float(kernel[np.ix_(a, a)].mean() + kernel[np.ix_(b, b)].mean() - 2 * kernel[np.ix_(a, b)].mean())

    rng = np.random.default_rng(seed)
    observed = mmd(np.arange(len(x)))
    null = np.array([mmd(rng.permutation(len(x))) for _ in range(permutations)])
    p = float((1 + np.sum(null >= observed)) / (1 + permutations))
    return DriftTest(
        "embeddings (MMD)", observed, p, p < alpha, {"bandwidth": float(bandwidth), "n": [n, len(current)]}
    )


def label_test(reference: list[str], current: list[str], labels: list[str], alpha: float = 0.01) -> DriftTest:
    """Chi-squared on predicted-label counts, with PSI as the effect size."""
    ref = np.array([reference.count(label) for label in labels], dtype=float)
    cur = np.array([current.count(label) for label in labels], dtype=float)
    keep = (ref + cur) > 0
    table = np.vstack([ref[keep], cur[keep]])
    statistic, p = (0.0, 1.0) if table.shape[1] < 2 else chi2_contingency(table)[:2]
    ref_share, cur_share = (ref + EPS) / (ref.sum() + EPS), (cur + EPS) / (cur.sum() + EPS)
    psi = float(np.sum((cur_share - ref_share) * np.log(cur_share / ref_share)))
    detail = {"psi": psi, "reference": dict(zip(labels, ref.tolist())), "current": dict(zip(labels, cur.tolist()))}
    return DriftTest("predicted labels (chi-squared)", float(statistic), float(p), float(p) < alpha, detail)


def confidence_test(reference: np.ndarray, current: np.ndarray, alpha: float = 0.01) -> DriftTest:
    """Kolmogorov-Smirnov on the top-class probabilities."""
    result = ks_2samp(reference, current)
    detail = {"reference_mean": float(np.mean(reference)), "current_mean": float(np.mean(current))}
    return DriftTest("confidence (KS)", float(result.statistic), float(result.pvalue), result.pvalue < alpha, detail)
