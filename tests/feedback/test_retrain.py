"""Retraining from corrections, end to end on a tiny model and a real registry and store: users
teach the champion a rule it never saw (a few of them send wrong corrections, which the label check
drops); judged on audit labels, the challenger that learned it is promoted, one trained on shuffled
labels is refused, and nothing changes when there is nothing to learn from or nothing to judge with."""

import random
import shutil

import pytest

from fmloop.core.errors import FmloopError
from fmloop.feedback import retrain
from fmloop.feedback.config import RetrainConfig
from fmloop.feedback.store import NewPrediction, Store
from fmloop.registry import models
from fmloop.registry.tracking import client

pytestmark = pytest.mark.slow
# The new domain: who the sentence is about decides the label (no sentiment words at all).
SUBJECTS = {"the cat": "positive", "our teacher": "positive", "a dog": "negative", "the old man": "negative"}
REST = [
    "sees the river",
    "likes a long song",
    "finds the red ball",
    "watches the bright moon",
    "describes a small house",
]
ENDS = ["today", "at night", "again", "in the morning", "with joy", "without a word"]
TRAIN = {"epochs": 8, "lr": 3e-3, "max_steps": None, "early_stopping_patience": None, "threads": 1}


FLIP = {"positive": "negative", "negative": "positive"}


def _send_feedback(db: str, corrections: int, audit: int, wrong: int = 0, seed: int = 0) -> set[str]:
    """Corrections that follow the rule (the first `wrong` of them flipped), then audit labels of
    sampled predictions; returns the texts of the wrong corrections."""
    rng = random.Random(seed)
    store = Store.open(db)
    rows = []
    for _ in range(corrections + audit):
        subject = rng.choice(list(SUBJECTS))
        rows.append((f"{subject} {rng.choice(REST)} {rng.choice(ENDS)} {rng.randint(0, 9999)}", SUBJECTS[subject]))
    ids = store.add_predictions(
        [
            NewPrediction("sst2", 1, "text", t, "positive", None, None, 1.0, audit=i >= corrections)
            for i, (t, _) in enumerate(rows)
        ]
    )
    for i, (pid, (_, label)) in enumerate(zip(ids, rows)):
        kind = "audit" if i >= corrections else "correction"
        sent = FLIP[label] if i < wrong else label
        store.add_feedback(
            key=f"s{seed}-{i}", body_hash="h", model_name="sst2", label=sent, prediction_id=pid, kind=kind
        )
    store.close()
    return {t for t, _ in rows[:wrong]}


@pytest.fixture
def champion(home, text_run, tmp_path):
    run = tmp_path / "champion"
    shutil.copytree(text_run, run)
    models.register(run, "sst2")
    models.promote("sst2", 1)
    return run


def test_a_challenger_that_learned_from_users_is_promoted_and_a_shuffled_one_refused(champion, tmp_path):
    db = f"sqlite:///{tmp_path / 'feedback.db'}"
    wrong = _send_feedback(db, corrections=140, audit=60, wrong=10)
    settings = dict(name="sst2", database=db, tolerance=0.05, train=TRAIN)
    bad = retrain.run(RetrainConfig(**settings, shuffle_labels=True), tmp_path / "bad")
    assert bad.read_manifest()["promoted"] is False and "refused" in bad.read_manifest()["reason"]
    assert client().get_registered_model("sst2").aliases == {"champion": 1}
    good = retrain.run(RetrainConfig(**settings), tmp_path / "good")
    manifest = good.read_manifest()
    assert manifest["promoted"] is True, manifest["reason"]
    assert manifest["metrics"]["challenger_target"] > manifest["metrics"]["champion_target"] + 0.2
    assert client().get_registered_model("sst2").aliases == {"champion": 3, "previous": 1}
    feedback = manifest["feedback"]
    assert feedback["high_water"] == 200 and feedback["audit"] == 60 and feedback["inputs"] == 140
    # the label check drops mostly the wrong corrections, and the report lists what it dropped
    dropped = {row for row in wrong if row[:60] in (good.path / "report.html").read_text()}
    assert len(dropped) >= 5 and feedback["dropped_by_label_check"] <= 2 * len(dropped)
    assert models.get("models:/sst2/3").tags["fmloop.feedback_high_water"] == "200"
    with pytest.raises(FmloopError, match="nothing to retrain on yet"):  # the champion's snapshot is used up
        retrain.run(RetrainConfig(**settings), tmp_path / "again")
    assert client().get_registered_model("sst2").aliases == {"champion": 3, "previous": 1}


def test_single_class_feedback_changes_nothing(champion, tmp_path):
    db = f"sqlite:///{tmp_path / 'feedback.db'}"
    store = Store.open(db)
    ids = store.add_predictions(
        [NewPrediction("sst2", 1, "text", f"text {i}", "positive", None, None, 1.0) for i in range(30)]
    )
    for i, pid in enumerate(ids):
        store.add_feedback(key=f"k{i}", body_hash="h", model_name="sst2", label="negative", prediction_id=pid)
    store.close()
    with pytest.raises(FmloopError, match="carry one label"):
        retrain.run(RetrainConfig(name="sst2", database=db), tmp_path / "r")
    assert [v.version for v in models.versions("sst2")] == [1]


def test_without_enough_audit_labels_nothing_is_trained(champion, tmp_path):
    db = f"sqlite:///{tmp_path / 'feedback.db'}"
    _send_feedback(db, corrections=60, audit=5)
    with pytest.raises(FmloopError, match="5 audit labels .* never on corrections alone"):
        retrain.run(RetrainConfig(name="sst2", database=db), tmp_path / "r")
    assert [v.version for v in models.versions("sst2")] == [1] and not (tmp_path / "r").exists()
