"""The gate's statistics on constructed outcomes: the wealth proves a real gain and not a tie, the
alpha shares sum to alpha, the labels-needed estimate is about right, and the forgetting guard tells
a tie from a loss beyond its margin."""

import math

import numpy as np
import pytest

from fmloop.feedback.sequential import alpha_for, evidence, gain, non_inferiority, outcomes, wealth


def test_alpha_is_spent_across_challengers_without_exceeding_it():
    shares = [alpha_for(k, 0.05) for k in range(1, 100_001)]
    assert sum(shares) < 0.05 and sum(shares) > 0.0499
    assert shares[0] == pytest.approx(0.05 * 6 / math.pi**2)
    with pytest.raises(ValueError):
        alpha_for(0, 0.05)


def test_outcomes_count_only_where_exactly_one_model_is_right():
    y = np.array([0, 1, 2, 2, 1])
    champion = np.array([0, 0, 1, 2, 1])
    challenger = np.array([1, 1, 0, 2, 1])
    assert outcomes(y, champion, challenger).tolist() == [-1, 1, 0, 0, 0]


def test_a_steady_gain_is_proven_and_a_tie_is_not():
    rng = np.random.default_rng(0)
    gain_steps = np.where(rng.random(400) < 0.75, 1, -1)
    proven = evidence(gain_steps, 0.03)
    assert proven.proven and proven.crossed_at < 150 and proven.labels_needed is None
    tie = evidence(np.tile([1, -1], 200), 0.03)
    assert not tie.proven and tie.e_value < 2 and tie.labels_needed is None  # no gain at this rate
    losing = evidence(-gain_steps, 0.03)
    assert losing.disproven and not losing.proven
    assert wealth(np.zeros(5, np.int8)).tolist() == [1.0] * 5  # agreements carry no evidence


def test_the_labels_needed_estimate_is_close_to_what_the_labels_then_take():
    steps = np.tile([1, 0, 1, 0, -1, 0, 0, 0, 0, 0], 300)  # wins at 2:1, 30% of the labels decisive
    early = evidence(steps[:60], 0.01)
    assert not early.proven and early.labels_needed is not None
    late = evidence(steps, 0.01)
    assert late.proven
    taken = late.crossed_at - 60
    assert 0.5 * taken < early.labels_needed < 2 * taken, (early.labels_needed, taken)


def test_the_gain_is_the_disagreement_rate_times_the_mean_step():
    steps = np.array([1] * 30 + [-1] * 10)
    estimate, low, high = gain(steps, disagreement_rate=0.2)
    assert estimate == pytest.approx(0.2 * 0.5) and low < estimate < high


def test_the_forgetting_guard_tells_a_tie_from_a_loss_beyond_the_margin():
    rng = np.random.default_rng(2)
    n = 900
    discordant = rng.random(n) < 0.06
    tie = np.where(discordant, np.where(rng.random(n) < 0.5, 1, -1), 0)
    assert non_inferiority(tie, margin=0.02, alpha=0.05).passed
    assert non_inferiority(np.zeros(n), margin=0.02, alpha=0.05).passed  # identical models
    loss = np.where(rng.random(n) < 0.08, -1, 0)  # 8 points worse
    guard = non_inferiority(loss, margin=0.02, alpha=0.05)
    assert not guard.passed and guard.p_value > 0.05 and guard.to_dict()["passed"] is False
