"""The promotion gate: a challenger replaces the champion only when labels it never trained on prove
it right more often than the champion (an anytime-valid one-sided test at its share of alpha, see
sequential.py), and it is shown no worse, beyond a stated margin, on the champion's validation set
(a non-inferiority test). Until then it waits for labels; it is refused when it forgets, when the
labels show it worse, or when its label budget is spent without proof.

Both models are scored through the one scoring path on the same examples, so the comparison is
paired. The accuracies, their paired difference and its bootstrap interval are reported beside the
test (`compare`), for reading; the decision is the sequential test's.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from fmloop.feedback.sequential import Evidence, NonInferiority, alpha_for, evidence, gain, non_inferiority
from fmloop.tasks import Task, get_task
from fmloop.tasks.bootstrap import paired_bootstrap

PROMOTED, REFUSED, PENDING = "promoted", "refused", "pending"


@dataclass
class GateSettings:
    alpha: float = 0.05  # one-sided, spent across the model's successive challengers
    tolerance: float = 0.03  # non-inferiority margin on the champion's validation set
    margin: float = 0.0  # the estimated gain must also exceed this
    max_labels: int = 600  # target labels after which a challenger not proven better is refused
    slice_tolerance: float = 0.05  # largest loss on any slice of the guard set
    robustness_tolerance: float = 0.03  # largest extra accuracy lost under the perturbation suite


@dataclass
class TrustGuard:
    """Challenger against champion on the guard set's slices and under perturbations (trust/)."""

    worst_slice: str | None = None  # "column = slice" where the challenger loses most
    slice_rows: int = 0
    slice_champion: float | None = None
    slice_challenger: float | None = None
    robustness_rows: int = 0
    # accuracy lost under the perturbations (clean minus the mean over the suite): how brittle
    # each model is, apart from how accurate (forgetting is the other guard's)
    robust_champion: float | None = None
    robust_challenger: float | None = None

    @property
    def slice_difference(self) -> float | None:
        return None if self.worst_slice is None else self.slice_challenger - self.slice_champion

    @property
    def robustness_difference(self) -> float | None:
        """How much more accuracy the challenger loses under perturbations than the champion."""
        return None if self.robust_champion is None else self.robust_challenger - self.robust_champion


@dataclass
class Comparison:
    """Challenger against champion on one set of examples (for reading; the test is separate)."""

    name: str
    n: int
    metric: str
    champion: float
    challenger: float
    difference: float  # challenger - champion
    interval: list[float]
    discordant: list[int]  # [challenger right & champion wrong, the reverse]


def compare(
    name: str, y: np.ndarray, champion: np.ndarray, challenger: np.ndarray, task: Task | str = "classification",
    labels: list[str] | None = None,
) -> Comparison:  # fmt: skip
    """The task's headline metric of two models' logits on the same labeled examples, paired."""
    task = get_task(task)
    metric = "accuracy" if task.name == "classification" else task.headline[0]
    if not len(y):
        return Comparison(name, 0, metric, float("nan"), float("nan"), 0.0, [0.0, 0.0], [0, 0])
    steps = task.paired_outcomes(y, champion, challenger, labels)
    test = paired_bootstrap(task, y, challenger, champion, labels=labels)
    return Comparison(
        name=name,
        n=int(len(y)),
        metric=metric,
        champion=float(task.scalar(metric, y, champion, labels)),
        challenger=float(task.scalar(metric, y, challenger, labels)),
        difference=test["difference"],
        interval=test["interval"],
        discordant=[int((steps > 0).sum()), int((steps < 0).sum())],
    )


@dataclass
class Decision:
    outcome: str  # promoted | refused | pending
    reason: str
    target: Comparison
    guard: Comparison
    evidence: Evidence
    forgetting: NonInferiority
    gain: list[float]  # estimated accuracy gain on the served stream: [estimate, low, high]
    disagreement_rate: float  # share of the recent served inputs where the two models disagree
    settings: GateSettings
    trust: TrustGuard

    @property
    def promote(self) -> bool:
        return self.outcome == PROMOTED

    def to_dict(self) -> dict:
        return {
            **asdict(self),
            "evidence": self.evidence.to_dict(),
            "forgetting": self.forgetting.to_dict(),
            "settings": asdict(self.settings),
            "trust": {
                **asdict(self.trust),
                "slice_difference": self.trust.slice_difference,
                "robustness_difference": self.trust.robustness_difference,
            },
        }


def decide(
    target: tuple[np.ndarray, np.ndarray, np.ndarray],
    guard: tuple[np.ndarray, np.ndarray, np.ndarray],
    index: int,
    disagreement_rate: float,
    settings: GateSettings,
    target_name: str = "the labels since the challenger's snapshot",
    guard_name: str = "the champion's validation set",
    trust: TrustGuard | None = None,
    task: Task | str = "classification",
    labels: list[str] | None = None,
) -> Decision:
    """`target` and `guard` are (labels, champion logits, challenger logits), the target's rows in
    the order their labels arrived; `index` is the challenger's place among its model's challengers.
    Each labeled example is a win, a loss or neither as the task compares two answers
    (`Task.paired_outcomes`: right against wrong for a classifier, more labels decided right for a
    multi-label one, a smaller error for a regressor, fewer entity errors for a tagger)."""
    task = get_task(task)
    y, champion, challenger = target
    steps = task.paired_outcomes(y, champion, challenger, labels)
    found = evidence(steps, alpha_for(index, settings.alpha))
    disagree = ~task.agreement(champion, challenger)
    estimate = list(gain(steps[disagree], disagreement_rate)) if disagree.any() else [0.0, 0.0, 0.0]
    gy, g_champion, g_challenger = guard
    forgetting = non_inferiority(
        task.paired_outcomes(gy, g_champion, g_challenger, labels), settings.tolerance, settings.alpha
    )
    trust = trust or TrustGuard()
    outcome, reason = _verdict(found, forgetting, estimate[0], settings, target_name, guard_name)
    if forgetting.passed:  # forgetting is named first; then a lost slice or robustness, whatever the labels say
        outcome, reason = _trust_verdict(trust, settings, guard_name) or (outcome, reason)
    return Decision(
        outcome, reason, compare(target_name, y, champion, challenger, task, labels),
        compare(guard_name, gy, g_champion, g_challenger, task, labels),
        found, forgetting, estimate, disagreement_rate, settings, trust,
    )  # fmt: skip


def _trust_verdict(trust: TrustGuard, settings: GateSettings, guard: str) -> tuple[str, str] | None:
    """A refusal when the challenger loses beyond its tolerance on a slice or under perturbations,
    whatever the labels say; None otherwise."""
    if trust.slice_difference is not None and trust.slice_difference < -settings.slice_tolerance:
        return REFUSED, (
            f"refused: on the slice {trust.worst_slice} of {guard} ({trust.slice_rows} rows) its accuracy is "
            f"{trust.slice_challenger:.4f} against the champion's {trust.slice_champion:.4f} "
            f"({trust.slice_difference:+.4f}, beyond the slice tolerance {settings.slice_tolerance:g})"
        )
    if trust.robustness_difference is not None and trust.robustness_difference > settings.robustness_tolerance:
        return REFUSED, (
            f"refused: under the perturbation suite ({trust.robustness_rows} rows of {guard}) it loses "
            f"{trust.robust_challenger:.4f} of its accuracy against the champion's {trust.robust_champion:.4f} "
            f"({trust.robustness_difference:+.4f} more, beyond the robustness tolerance {settings.robustness_tolerance:g})"
        )
    return None


def _verdict(found: Evidence, forgetting: NonInferiority, estimate: float, settings: GateSettings, target, guard):
    so_far = f"{found.wins} wins, {found.losses} losses in {found.labels} labels of {target}"
    if not forgetting.passed:
        return REFUSED, (
            f"refused: it may forget: on {guard} its accuracy differs by {forgetting.difference:+.4f} and the "
            f"{1 - forgetting.alpha:.0%} lower bound {forgetting.lower_bound:+.4f} is below -{forgetting.margin:g} "
            f"(the non-inferiority margin)"
        )
    if found.proven and estimate > settings.margin:
        return PROMOTED, (
            f"promoted: {so_far}; evidence {found.e_value:.3g} reached 1/alpha = {found.threshold:.3g} at label "
            f"{found.crossed_at}; estimated gain {estimate:+.4f}; on {guard} {forgetting.difference:+.4f} "
            f"(non-inferior at margin {forgetting.margin:g})"
        )
    if found.proven:
        return REFUSED, f"refused: {so_far} prove a gain, but the estimated {estimate:+.4f} is within the margin"
    if found.disproven:
        return REFUSED, f"refused: {so_far} show it worse than the champion (evidence against it reached 1/alpha)"
    if found.labels >= settings.max_labels:
        return REFUSED, (
            f"refused: {so_far} did not prove a gain within max_labels {settings.max_labels} (evidence "
            f"{found.e_value:.3g} of {found.threshold:.3g})"
        )
    needed = (
        f"about {found.labels_needed} more labels at the rates so far"
        if found.labels_needed is not None
        else "more labels: so far they show no gain"
    )
    return PENDING, (
        f"pending: {so_far}; evidence {found.e_value:.3g} of the {found.threshold:.3g} that proves a gain: "
        f"it needs {needed}"
    )
