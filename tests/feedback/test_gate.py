"""The gate's decisions on constructed predictions: a proven gain that keeps validation is promoted;
a challenger that forgets, one shown worse, one whose labels run out, and one still short of
evidence are refused or kept waiting, each with its reason."""

import numpy as np
import pytest

from fmloop.feedback.gate import GateSettings, decide


def _logits(right: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Two-class logits that are right exactly where `right` is True."""
    predicted = np.where(right, y, 1 - y)
    out = np.zeros((len(y), 2), np.float32)
    out[np.arange(len(y)), predicted] = 2.0
    return out


def _pair(n, champion_acc, challenger_acc, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    champion = rng.random(n) < champion_acc
    challenger = champion | (rng.random(n) < (challenger_acc - champion_acc) / max(1 - champion_acc, 1e-9))
    if challenger_acc < champion_acc:
        challenger = champion & (rng.random(n) < challenger_acc / champion_acc)
    return y, _logits(champion, y), _logits(challenger, y)


KEEPS = _pair(900, 0.90, 0.90, seed=1)


def test_a_proven_gain_that_keeps_validation_is_promoted():
    decision = decide(_pair(400, 0.70, 0.80), KEEPS, index=1, disagreement_rate=0.1, settings=GateSettings())
    assert decision.promote and decision.reason.startswith("promoted"), decision.reason
    assert decision.evidence.crossed_at <= 400 and decision.target.discordant[1] == 0
    assert 0 < decision.gain[0] <= 0.1  # the gain on the stream is at most the disagreement rate
    assert decision.to_dict()["forgetting"]["passed"] is True


def test_forgetting_a_worse_challenger_and_spent_labels_are_refused_and_little_evidence_waits():
    forgets = decide(_pair(400, 0.70, 0.80), _pair(900, 0.90, 0.80, seed=1), 1, 0.1, GateSettings())
    assert forgets.outcome == "refused" and "forget" in forgets.reason
    worse = decide(_pair(400, 0.80, 0.60), KEEPS, 1, 0.1, GateSettings())
    assert worse.outcome == "refused" and "worse" in worse.reason
    few = decide(_pair(30, 0.70, 0.80), KEEPS, 1, 0.1, GateSettings())
    assert few.outcome == "pending" and "more labels" in few.reason
    spent = decide(_pair(30, 0.70, 0.80), KEEPS, 1, 0.1, GateSettings(max_labels=30))
    assert spent.outcome == "refused" and "max_labels" in spent.reason
    later = decide(_pair(60, 0.70, 0.80, seed=3), KEEPS, index=1, disagreement_rate=0.1, settings=GateSettings())
    tenth = decide(_pair(60, 0.70, 0.80, seed=3), KEEPS, index=10, disagreement_rate=0.1, settings=GateSettings())
    assert tenth.evidence.threshold == later.evidence.threshold * 100  # alpha spent across challengers


def test_a_challenger_that_loses_a_slice_or_its_robustness_is_refused_whatever_the_labels_say():
    from fmloop.feedback.gate import TrustGuard

    winning = (_pair(400, 0.70, 0.80), KEEPS, 1, 0.1, GateSettings())
    sliced = TrustGuard(worst_slice="length (words) = 1-5", slice_rows=120, slice_champion=0.85, slice_challenger=0.78)
    refused = decide(*winning, trust=sliced)
    assert refused.outcome == "refused" and "slice length (words) = 1-5" in refused.reason, refused.reason
    assert refused.to_dict()["trust"]["slice_difference"] == pytest.approx(-0.07)
    brittle = TrustGuard(robustness_rows=300, robust_champion=0.01, robust_challenger=0.05)  # accuracy lost
    assert "perturbation suite" in decide(*winning, trust=brittle).reason
    within = TrustGuard(slice_champion=0.85, slice_challenger=0.82, worst_slice="language = en", slice_rows=900)
    assert decide(*winning, trust=within).promote  # a 3-point slice loss is within the default 0.05
    assert decide(*winning[:4], GateSettings(slice_tolerance=0.02), trust=within).outcome == "refused"


def test_each_task_is_judged_by_its_own_paired_comparison():
    """Regression: the challenger with the smaller error on most examples is promoted; multi-label:
    the one deciding more labels right; neither by an accuracy of argmaxes."""
    rng = np.random.default_rng(3)
    y = rng.normal(size=400)
    champion = (y + rng.normal(0, 1.0, 400))[:, None].astype(np.float32)
    challenger = (y + rng.normal(0, 0.3, 400))[:, None].astype(np.float32)
    keeps = (y, challenger, challenger)
    decision = decide((y, champion, challenger), keeps, index=1, disagreement_rate=1.0, settings=GateSettings(),
                      task="regression")  # fmt: skip
    assert decision.promote, decision.reason
    assert decision.target.metric == "mse" and decision.target.challenger < decision.target.champion
    worse = decide((y, challenger, champion), keeps, index=1, disagreement_rate=1.0, settings=GateSettings(),
                   task="regression")  # fmt: skip
    assert not worse.promote

    truth = (rng.random((400, 3)) < 0.5).astype(np.float32)
    exact = np.where(truth > 0.5, 2.0, -2.0).astype(np.float32)
    one_wrong = exact.copy()
    one_wrong[:, 0] *= -1  # the champion gets the first label wrong everywhere, the rest right
    decision = decide((truth, one_wrong, exact), (truth, exact, exact), index=1, disagreement_rate=1.0,
                      settings=GateSettings(), task="multilabel")  # fmt: skip
    assert decision.promote and decision.target.metric == "micro_f1", decision.reason
