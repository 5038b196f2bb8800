"""The token-classification task: seqeval's entity metrics, cheap bootstrap resamples, decoding."""

import numpy as np
import pytest
import torch
from seqeval.metrics import f1_score, precision_score, recall_score

from fmloop.tasks import get_task
from fmloop.tasks.bootstrap import bootstrap_intervals, paired_bootstrap
from fmloop.tasks.tokens import predicted_tags, true_tags

LABELS = ["O", "B-LOC", "I-LOC", "B-PER", "I-PER"]


def random_case(seed=0, n=150, width=10):
    rng = np.random.default_rng(seed)
    y = np.full((n, width), -100)
    logits = np.full((n, width, len(LABELS)), np.nan, dtype=np.float32)
    for i, length in enumerate(rng.integers(1, width + 1, n)):
        y[i, :length] = rng.integers(0, len(LABELS), length)
        logits[i, :length] = rng.normal(size=(length, len(LABELS)))
        logits[i, np.arange(length), y[i, :length]] += 1.5
    return y, logits


def test_entity_metrics_are_seqeval_s():
    y, logits = random_case()
    task = get_task("tokens")
    metrics = task.metrics(y, logits, LABELS)
    truth, predicted = true_tags(y, LABELS), predicted_tags(logits, LABELS, y)
    assert metrics["entity_f1"] == pytest.approx(f1_score(truth, predicted))
    assert metrics["entity_precision"] == pytest.approx(precision_score(truth, predicted))
    assert metrics["entity_recall"] == pytest.approx(recall_score(truth, predicted))
    assert set(metrics["per_class"]) == {"LOC", "PER"}
    assert task.scalar("entity_f1", y, logits, LABELS) == pytest.approx(metrics["entity_f1"])


def test_intervals_hold_the_estimate_and_the_paired_test_sees_a_better_model():
    y, logits = random_case(n=300)
    task = get_task("tokens")
    f1 = task.metrics(y, logits, LABELS)["entity_f1"]
    low, high = bootstrap_intervals(task, y, logits, labels=LABELS)["entity_f1"]
    assert low < f1 < high
    perfect = np.where(np.isnan(logits), np.nan, -5.0).astype(np.float32)
    rows, cols = np.nonzero(y != -100)
    perfect[rows, cols, y[rows, cols]] = 5.0
    test = paired_bootstrap(task, y, perfect, logits, labels=LABELS)
    assert test["better"] == "A" and test["interval"][0] > 0


def test_decode_gives_tags_and_entity_word_ranges():
    logits = np.full((1, 5, len(LABELS)), np.nan, dtype=np.float32)
    logits[0, :4] = -5.0
    for word, tag in enumerate([3, 4, 0, 1]):  # B-PER I-PER O B-LOC
        logits[0, word, tag] = 5.0
    (answer,) = get_task("tokens").decode(logits, LABELS)
    assert answer["tags"] == ["B-PER", "I-PER", "O", "B-LOC"]
    assert [(e["label"], e["first"], e["last"]) for e in answer["entities"]] == [("PER", 0, 1), ("LOC", 3, 3)]


def test_loss_reads_labeled_words_only_and_agreement_ignores_padding():
    y, logits = random_case(n=4)
    task = get_task("tokens")
    loss = task.loss(torch.from_numpy(logits), torch.from_numpy(y), reduction="mean")
    assert torch.isfinite(loss)
    noisy = logits.copy()
    noisy[np.isnan(noisy)] = 0  # what sits past a sentence's end changes no answer
    assert task.agreement(logits, noisy).all()


def test_stored_tags_round_trip_and_stack_into_padded_targets():
    task = get_task("tokens")
    stored = task.stored([0, 3, 4, -100], LABELS)
    assert stored == '["O", "B-PER", "I-PER"]' and task.data_label(stored) == ["O", "B-PER", "I-PER"]
    target = task.target_of(stored, LABELS)
    assert target.tolist() == [0, 3, 4] and task.named_classes(target) == {0, 3, 4}
    assert task.stored_answer({"tags": ["O", "B-LOC"], "entities": []}) == '["O", "B-LOC"]'
    for bad in ('["B-ORG"]', "[]", "not json", '"O"'):
        assert task.target_of(bad, LABELS) is None
    y = task.stack([target, np.array([1])], LABELS)
    assert y.tolist() == [[0, 3, 4], [1, -100, -100]]
