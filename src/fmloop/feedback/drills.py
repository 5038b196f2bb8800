"""Drills that measure the gate instead of trusting it: the whole sequential procedure replayed
many times on outcomes where the truth is known.

- A/A: the challenger is as good as the champion. From stored scores, each disagreement's outcome
  is kept or swapped with probability 1/2 (the two models exchanged), which keeps every other
  property of the real comparison and makes a win exactly as likely as a loss.
- Shuffled: the challenger's answers permuted across the inputs (a model trained on shuffled
  labels: its answers keep their mix of classes and lose their link to the inputs).
- Power: synthetic disagreements with a given win rate, so a given true gain.

Each replay runs what the gate runs: `rounds` successive challengers, challenger k tested at its
share of alpha (sequential.alpha_for), each looked at after every `look_every` labels up to
`budget` labels, promoted at the first look whose wealth reached 1/alpha_k. The false-promotion
rate is the share of replays in which any challenger was promoted, with a Clopper-Pearson interval.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy.stats import beta

from fmloop.feedback.sequential import alpha_for, outcomes, wealth

__all__ = ["DrillResult", "aa_draw", "outcomes", "run", "shuffled_draw", "synthetic_draw"]


@dataclass
class DrillResult:
    name: str
    replays: int
    promoted: int
    rate: float
    interval: tuple[float, float]  # 95% Clopper-Pearson
    median_labels: float | None  # labels read until the promotion, over the replays that promoted

    def to_dict(self) -> dict:
        return asdict(self)


def clopper_pearson(k: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    tail = (1 - confidence) / 2
    low = float(beta.ppf(tail, k, n - k + 1)) if k else 0.0
    high = float(beta.ppf(1 - tail, k + 1, n - k)) if k < n else 1.0
    return low, high


def promoted_at(steps: np.ndarray, alpha: float, look_every: int) -> int | None:
    """Labels read at the first look (every `look_every` labels, and at the end) whose wealth
    reached 1/alpha; None when none did."""
    path = wealth(steps)
    looks = np.unique(np.r_[np.arange(look_every, len(steps) + 1, look_every), len(steps)])
    looks = looks[looks > 0]
    hit = [int(n) for n in looks if path[n - 1] >= 1 / alpha]
    return hit[0] if hit else None


def run(name: str, draw, replays: int, rounds: int, budget: int, look_every: int, alpha: float, seed: int = 0):
    """`draw(rng, n)` gives one challenger's `n` outcomes in arrival order."""
    rng = np.random.default_rng(seed)
    promoted, spent = 0, []
    for _ in range(replays):
        for k in range(1, rounds + 1):
            at = promoted_at(draw(rng, budget), alpha_for(k, alpha), look_every)
            if at is not None:
                promoted += 1
                spent.append(at)
                break
    return DrillResult(
        name, replays, promoted, promoted / replays, clopper_pearson(promoted, replays),
        float(np.median(spent)) if spent else None,
    )  # fmt: skip


def aa_draw(steps: np.ndarray):
    """A/A from stored outcomes: drawn with replacement, each swapped with probability 1/2."""
    steps = np.asarray(steps, dtype=np.int8)

    def draw(rng, n):
        picked = steps[rng.integers(0, len(steps), n)]
        return np.where(rng.random(n) < 0.5, picked, -picked).astype(np.int8)

    return draw


def shuffled_draw(y: np.ndarray, champion: np.ndarray, challenger: np.ndarray):
    """A challenger whose answers are permuted across the inputs, against the real champion."""

    def draw(rng, n):
        rows = rng.integers(0, len(y), n)
        permuted = challenger[rng.permutation(len(y))]
        return outcomes(y[rows], champion[rows], permuted[rows])

    return draw


def synthetic_draw(win_rate: float, disagreement_rate: float = 1.0):
    """Labels on inputs where the models disagree with probability `disagreement_rate` (1: every
    label is on a disagreement, as in the shadow audit), two classes: a disagreement is a win
    with probability `win_rate`. The true gain is disagreement_rate * (2 win_rate - 1)."""

    def draw(rng, n):
        disagree = rng.random(n) < disagreement_rate
        return np.where(disagree, np.where(rng.random(n) < win_rate, 1, -1), 0).astype(np.int8)

    return draw
