"""The promotion gate: a challenger replaces the champion only when it is measurably better where
users are (the audit sample / recent feedback) and no worse, beyond a tolerance, on what the
champion was validated on.

Both models are scored through the one scoring path on the same examples, so the comparison is
paired: the difference of the headline metric with a paired bootstrap (its interval and p-value),
plus McNemar's exact test on the examples where exactly one of the two is right (classification).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy.stats import binomtest

from fmloop.tasks import get_task
from fmloop.tasks.bootstrap import paired_bootstrap


@dataclass
class GateSettings:
    margin: float = 0.0  # the challenger must beat the champion by more than this on the target set
    alpha: float = 0.05  # ... with a paired test's p-value below this
    tolerance: float = 0.01  # and fall by at most this on the champion's validation set


@dataclass
class Comparison:
    """Challenger against champion on one set of examples."""

    name: str
    n: int
    metric: str
    champion: float
    challenger: float
    difference: float  # challenger - champion
    interval: list[float]
    p_value: float
    mcnemar_p: float | None
    discordant: list[int] | None  # [challenger right & champion wrong, the reverse]


@dataclass
class Decision:
    promote: bool
    reason: str
    target: Comparison
    guard: Comparison
    settings: GateSettings

    def to_dict(self) -> dict:
        return {**asdict(self), "settings": asdict(self.settings)}


def compare(name: str, task: str, y: np.ndarray, champion: np.ndarray, challenger: np.ndarray) -> Comparison:
    """Paired comparison of two models' logits on the same labeled examples."""
    task_ = get_task(task)
    metric, _ = task_.headline
    test = paired_bootstrap(task_, y, challenger, champion)
    mcnemar, discordant = None, None
    if task == "classification":
        right_a, right_b = challenger.argmax(-1) == y, champion.argmax(-1) == y
        only_a, only_b = int((right_a & ~right_b).sum()), int((right_b & ~right_a).sum())
        discordant = [only_a, only_b]
        mcnemar = float(binomtest(only_a, only_a + only_b, 0.5).pvalue) if only_a + only_b else 1.0
    return Comparison(
        name=name,
        n=int(len(y)),
        metric=metric,
        champion=float(task_.scalar(metric, y, champion)),
        challenger=float(task_.scalar(metric, y, challenger)),
        difference=test["difference"],
        interval=test["interval"],
        p_value=test["p_value"],
        mcnemar_p=mcnemar,
        discordant=discordant,
    )


def decide(target: Comparison, guard: Comparison, settings: GateSettings, higher_is_better: bool = True) -> Decision:
    """Promote when the challenger wins on `target` by more than the margin with p < alpha, and
    loses at most `tolerance` on `guard`."""
    sign = 1 if higher_is_better else -1
    gain, loss = sign * target.difference, -sign * guard.difference
    p = max(target.p_value, target.mcnemar_p) if target.mcnemar_p is not None else target.p_value
    if gain <= settings.margin:
        reason = (
            f"refused: on {target.name} the challenger's {target.metric} is {target.challenger:.4f} against the "
            f"champion's {target.champion:.4f} (difference {target.difference:+.4f}, margin {settings.margin:g})"
        )
        return Decision(False, reason, target, guard, settings)
    if p >= settings.alpha:
        reason = (
            f"refused: the gain of {gain:+.4f} on {target.name} is not significant (p = {p:.3g}, "
            f"alpha {settings.alpha:g}, n = {target.n})"
        )
        return Decision(False, reason, target, guard, settings)
    if loss > settings.tolerance:
        reason = (
            f"refused: it forgets: on {guard.name} {guard.metric} falls from {guard.champion:.4f} to "
            f"{guard.challenger:.4f} ({-loss:+.4f}, tolerance {settings.tolerance:g})"
        )
        return Decision(False, reason, target, guard, settings)
    reason = (
        f"promoted: {target.metric} on {target.name} {target.champion:.4f} -> {target.challenger:.4f} "
        f"(p = {p:.3g}); on {guard.name} {guard.champion:.4f} -> {guard.challenger:.4f}"
    )
    return Decision(True, reason, target, guard, settings)
