"""The deletion test cannot be passed by chance: real attributions beat random deletions on a model
whose label is decided by one word, and the same scores shuffled do not."""

import numpy as np

from fmloop.models.loading import load
from fmloop.trust.explain import explain_texts
from fmloop.trust.faithfulness import deletion_curve
from tests.conftest import make_sentiment


def test_attributions_beat_random_deletion_and_shuffled_attributions_do_not(text_run):
    model = load(text_run, device="cpu")
    texts = [r["text"] for r in make_sentiment(60, seed=7)]
    explained = explain_texts(model, texts)
    curve = deletion_curve(model, texts, explained)
    head = curve["headline"]
    assert curve["n"] == 60 and head["fraction"] == 0.2
    assert curve["faithful"] and head["top_drop"] > head["random_drop"], head
    rng = np.random.default_rng(0)
    for e in explained:  # the same scores on the wrong words: an explanation that tracks nothing
        scores = [w["score"] for w in e.words]
        for w, s in zip(e.words, rng.permutation(scores)):
            w["score"] = float(s)
    shuffled = deletion_curve(model, texts, explained)["headline"]
    assert shuffled["difference"] < head["difference"] / 2, (shuffled, head)
