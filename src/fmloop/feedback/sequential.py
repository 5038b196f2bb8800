"""The gate's statistics: an anytime-valid, one-sided test of "the challenger is right more often than
the champion", alpha spent across successive challengers, and a non-inferiority guard.

Only the labelled inputs where the two models disagree carry evidence about which is better: on
each, the challenger wins (it is right, the champion wrong), loses (the reverse) or neither is
right (more than two classes). Under the null hypothesis, "no gain", a win is at most as likely as a
loss. The test bets on wins (Waudby-Smith and Ramdas, "Estimating means of bounded random variables
by betting", 2023): wealth starts at 1 and each decisive label multiplies it by 1 + bet * (+1 for a
win, -1 for a loss), with the bet chosen from the labels before it (the Kelly bet for the
Krichevsky-Trofimov estimate of the win rate, never negative, capped). Under the null the wealth is
a nonnegative supermartingale, so by Ville's inequality it ever reaches 1/alpha with probability at
most alpha, however often it is looked at and whenever labels stop arriving: the gate may decide
at the first label that carries it over, and may wait for more when it has not.

Alpha is spent across a model's successive challengers: the k-th gets alpha * 6 / (pi^2 k^2), a
series that sums to alpha, so any number of rounds promotes a no-better challenger with probability
at most alpha in all (a union bound: it holds whatever labels the rounds share).

Forgetting is a non-inferiority test on the champion's validation set: the challenger passes when
the one-sided (1 - alpha) lower confidence bound of its paired accuracy difference is above
-margin, so a challenger that truly loses more than the margin passes with probability at most
alpha, and one that loses nothing fails only when the set is too small to tell.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
from scipy.stats import norm

MAX_BET = 0.8  # never stake more than this share of the wealth on one label


def alpha_for(index: int, alpha: float) -> float:
    """The alpha the `index`-th challenger (1, 2, ...) of one model is tested at."""
    if index < 1:
        raise ValueError(f"challenger index {index}: the first challenger is 1")
    return alpha * 6 / (math.pi**2 * index**2)


def outcomes(y: np.ndarray, champion: np.ndarray, challenger: np.ndarray) -> np.ndarray:
    """+1 where only the challenger's answer is right, -1 where only the champion's is, 0 elsewhere."""
    right_challenger, right_champion = challenger == y, champion == y
    return right_challenger.astype(np.int8) - right_champion.astype(np.int8)


def wealth(steps: np.ndarray) -> np.ndarray:
    """The betting wealth after each outcome (+1, -1 or 0) in the order they arrived."""
    path = np.empty(len(steps))
    current, wins, losses = 1.0, 0, 0
    for i, step in enumerate(steps):
        if step:
            rate = (wins + 0.5) / (wins + losses + 1)  # Krichevsky-Trofimov: the bet uses only earlier labels
            current *= 1 + min(max(2 * rate - 1, 0.0), MAX_BET) * float(step)
            wins, losses = wins + (step > 0), losses + (step < 0)
        path[i] = current
    return path


@dataclass
class Evidence:
    """What the labels so far say about a challenger against its champion."""

    labels: int  # labelled inputs read
    wins: int
    losses: int
    alpha: float  # this challenger's share of the gate's alpha
    e_value: float  # the wealth after the last label
    threshold: float  # 1 / alpha: the wealth that proves a gain
    crossed_at: int | None  # labels read when the wealth first reached the threshold
    worse_at: int | None  # labels read when the bet against the challenger first reached it
    labels_needed: int | None  # more labels, at the rates so far, for the wealth to reach the threshold

    @property
    def proven(self) -> bool:
        return self.crossed_at is not None

    @property
    def disproven(self) -> bool:
        return self.worse_at is not None and self.crossed_at is None

    def to_dict(self) -> dict:
        return asdict(self)


def evidence(steps: np.ndarray, alpha: float) -> Evidence:
    """The sequential test on `steps` (see `outcomes`), at level `alpha`."""
    steps = np.asarray(steps, dtype=np.int8)
    threshold = 1 / alpha
    for_challenger, against = wealth(steps), wealth(-steps)
    crossed = np.flatnonzero(for_challenger >= threshold)
    worse = np.flatnonzero(against >= threshold)
    wins, losses = int((steps > 0).sum()), int((steps < 0).sum())
    final = float(for_challenger[-1]) if len(steps) else 1.0
    return Evidence(
        labels=int(len(steps)),
        wins=wins,
        losses=losses,
        alpha=alpha,
        e_value=final,
        threshold=threshold,
        crossed_at=int(crossed[0]) + 1 if len(crossed) else None,
        worse_at=int(worse[0]) + 1 if len(worse) else None,
        labels_needed=None if len(crossed) else labels_needed(wins, losses, len(steps), final, threshold),
    )


def labels_needed(wins: int, losses: int, labels: int, current: float, threshold: float) -> int | None:
    """Labels still to read for the wealth to reach `threshold`, if wins and losses keep their
    rates (None when the labels so far show no gain: at that rate no number of labels would)."""
    decisive = wins + losses
    if decisive == 0 or wins <= losses:
        return None
    rate = wins / decisive
    bet = min(2 * rate - 1, MAX_BET)
    growth = rate * math.log1p(bet) + (1 - rate) * math.log1p(-bet)  # expected log-wealth per decisive label
    more_decisive = max(0.0, math.log(threshold) - math.log(max(current, 1e-300))) / growth
    return int(math.ceil(more_decisive * labels / decisive))


@dataclass
class NonInferiority:
    """The forgetting guard: the challenger's accuracy against the champion's on the same rows."""

    n: int
    difference: float  # challenger - champion
    lower_bound: float  # one-sided (1 - alpha) lower confidence bound of the difference
    margin: float
    alpha: float
    p_value: float  # of "the challenger is worse by at least the margin"

    @property
    def passed(self) -> bool:
        return self.lower_bound > -self.margin

    def to_dict(self) -> dict:
        return asdict(self) | {"passed": self.passed}


def non_inferiority(steps: np.ndarray, margin: float, alpha: float) -> NonInferiority:
    """`steps` (see `outcomes`) on the champion's validation rows; a normal interval on the paired
    differences (hundreds of rows), with its standard error at least that of one discordant row so
    that two identical models still have an interval."""
    steps = np.asarray(steps, dtype=float)
    n = len(steps)
    if n == 0:
        return NonInferiority(0, 0.0, -math.inf, margin, alpha, 1.0)
    mean = float(steps.mean())
    spread = float(steps.std(ddof=1)) if n > 1 else 1.0
    se = max(spread, 1.0 / math.sqrt(n)) / math.sqrt(n)
    lower = mean - float(norm.ppf(1 - alpha)) * se
    p = float(norm.sf((mean + margin) / se))
    return NonInferiority(n, mean, lower, margin, alpha, p)


def gain(steps: np.ndarray, disagreement_rate: float = 1.0, confidence: float = 0.95) -> tuple[float, float, float]:
    """(estimate, low, high) of the challenger's accuracy gain on the whole stream, from `steps` on
    a uniform sample of the inputs where the models disagree (`disagreement_rate` of all inputs; 1
    when `steps` are a uniform sample of all inputs): the rate times the mean step, with a normal
    interval."""
    steps = np.asarray(steps, dtype=float)
    if not len(steps):
        return 0.0, -disagreement_rate, disagreement_rate
    mean = float(steps.mean())
    se = float(steps.std(ddof=1)) / math.sqrt(len(steps)) if len(steps) > 1 else 1.0
    half = float(norm.ppf(0.5 + confidence / 2)) * se
    return disagreement_rate * mean, disagreement_rate * (mean - half), disagreement_rate * (mean + half)
