"""The TF-IDF floor: fitted on the labels a model trained on, compared on the same test rows."""

import numpy as np

from fmloop.evaluate.floor import compare_floor, describe_floor, fit_floor, floor_logits
from tests.conftest import make_sentiment


def _rows(n, seed):
    rows = make_sentiment(n, seed)
    return [r["text"] for r in rows], np.array([r["label"] == "positive" for r in rows], dtype=np.int64)


def test_the_floor_learns_words_and_a_perfect_model_is_above_it():
    train_texts, y_train = _rows(80, 1)
    test_texts, y_test = _rows(200, 2)
    floor = fit_floor(train_texts, y_train)
    assert np.mean(floor.predict(test_texts) == y_test) > 0.8  # the sentiment words decide (chance 0.5)
    perfect = np.eye(2, dtype=np.float32)[y_test] * 10
    result = compare_floor(train_texts, y_train, test_texts, y_test, perfect)
    assert result["labels"] == 80 and result["difference"] == 1 - result["accuracy"] >= 0
    wrong = compare_floor(train_texts, y_train, test_texts, y_test, perfect[:, ::-1].copy())
    assert wrong["interval"][1] < 0 and "below it" in describe_floor(wrong, 0.0)


def test_classes_the_floor_never_saw_get_no_probability():
    floor = fit_floor(["good film", "bad film", "good day", "bad day"], np.array([0, 2, 0, 2]))
    logits = floor_logits(floor, ["good"], 3)
    assert logits.shape == (1, 3) and logits[0, 1] < -1e3 and np.argmax(logits) == 0
