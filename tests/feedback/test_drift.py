"""Drift statistics on constructed samples: a shifted sample is flagged, an unshifted one is not."""

import numpy as np

from fmloop.feedback.drift import confidence_test, label_test, mmd_test


def test_mmd_flags_a_shifted_sample_and_not_a_fresh_draw_of_the_same():
    rng = np.random.default_rng(0)
    reference = rng.normal(size=(150, 8))
    same = rng.normal(size=(150, 8))
    shifted = rng.normal(size=(150, 8)) + np.r_[0.8, np.zeros(7)]
    assert not mmd_test(reference, same).drifted
    flagged = mmd_test(reference, shifted)
    assert flagged.drifted and flagged.p_value < 0.01


def test_label_counts_and_confidence():
    labels = ["neg", "pos"]
    reference = ["neg"] * 100 + ["pos"] * 100
    assert not label_test(reference, ["neg"] * 48 + ["pos"] * 52, labels).drifted
    shifted = label_test(reference, ["neg"] * 20 + ["pos"] * 80, labels)
    assert shifted.drifted and shifted.detail["psi"] > 0.1
    rng = np.random.default_rng(1)
    confident = rng.uniform(0.8, 1.0, 300)
    assert not confidence_test(confident, rng.uniform(0.8, 1.0, 300)).drifted
    assert confidence_test(confident, rng.uniform(0.5, 0.9, 300)).drifted
