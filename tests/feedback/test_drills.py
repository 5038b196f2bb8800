"""The drills on synthetic scores: the whole sequential procedure (five successive challengers,
a look every 25 labels) replayed 500 times promotes a no-better challenger at most alpha of the
time, and a real gain most of the time; labels on disagreements only need a fraction of a
uniform audit's."""

import numpy as np

from fmloop.feedback import drills

SETTINGS = {"replays": 500, "rounds": 5, "budget": 300, "look_every": 25, "alpha": 0.05}


def _stored_scores(n=1000, seed=0):
    """A champion right 80% of the time and a challenger that disagrees with it on 20% of the rows."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    champion = np.where(rng.random(n) < 0.8, y, 1 - y)
    challenger = np.where(rng.random(n) < 0.2, 1 - champion, champion)
    return y, champion, challenger


def test_a_no_better_challenger_is_promoted_at_most_alpha_of_the_time():
    y, champion, challenger = _stored_scores()
    steps = drills.outcomes(y, champion, challenger)
    aa = drills.run("A/A", drills.aa_draw(steps[steps != 0]), **SETTINGS)
    assert aa.replays == 500 and aa.rate <= 0.05, aa
    shuffled = drills.run("shuffled", drills.shuffled_draw(y, champion, challenger), **SETTINGS)
    assert shuffled.rate <= 0.05, shuffled
    low, high = aa.interval
    assert low <= aa.rate <= high


def test_a_real_gain_is_promoted_and_targeted_labels_cost_a_fraction_of_uniform_ones():
    targeted = drills.run("gain", drills.synthetic_draw(0.7), **SETTINGS)
    assert targeted.rate > 0.9 and targeted.median_labels < 150, targeted
    uniform = drills.run("uniform", drills.synthetic_draw(0.7, disagreement_rate=0.2), **SETTINGS | {"budget": 1500})
    assert uniform.median_labels > 3 * targeted.median_labels, (uniform, targeted)
