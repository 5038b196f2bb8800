"""The gate's decisions on constructed predictions: a real gain is promoted; no gain, a gain that is
not significant, and a gain that forgets the validation set are refused, each with its reason."""

import numpy as np

from fmloop.feedback.gate import GateSettings, compare, decide


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


def test_a_real_gain_that_keeps_validation_is_promoted():
    target = compare("audit", "classification", *_pair(400, 0.70, 0.80))
    guard = compare("validation", "classification", *_pair(400, 0.90, 0.90, seed=1))
    decision = decide(target, guard, GateSettings())
    assert decision.promote and decision.reason.startswith("promoted")
    assert target.discordant[1] == 0 and target.mcnemar_p < 0.001


def test_no_gain_a_weak_gain_and_forgetting_are_refused():
    guard = compare("validation", "classification", *_pair(400, 0.90, 0.90, seed=1))
    worse = decide(compare("audit", "classification", *_pair(400, 0.80, 0.60)), guard, GateSettings())
    assert not worse.promote and "difference -0.2" in worse.reason
    y = np.arange(30) % 2
    champion_right = np.arange(30) < 21
    challenger_right = np.arange(30) < 23  # two more right, none lost: McNemar p = 0.5
    weak_pair = (y, _logits(champion_right, y), _logits(challenger_right, y))
    weak = decide(compare("audit", "classification", *weak_pair), guard, GateSettings())
    assert not weak.promote and "not significant" in weak.reason
    forgets = compare("validation", "classification", *_pair(400, 0.90, 0.80, seed=1))
    decision = decide(compare("audit", "classification", *_pair(400, 0.70, 0.80)), forgets, GateSettings())
    assert not decision.promote and "forgets" in decision.reason
    assert decision.to_dict()["settings"]["tolerance"] == 0.01
