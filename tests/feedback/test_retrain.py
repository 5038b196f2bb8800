"""Retraining from corrections, end to end on a tiny model and a real registry and store: users
teach the champion a rule it never saw (a few of them send wrong corrections, which the label check
drops); judged on audit labels, the challenger that learned it is promoted, one trained on shuffled
labels is refused, and nothing changes when there is nothing to learn from or nothing to judge with."""

import pytest

from fmloop.core.errors import FmloopError
from fmloop.feedback import retrain
from fmloop.feedback.config import RetrainConfig
from fmloop.feedback.store import NewPrediction, Store
from fmloop.registry import models
from fmloop.registry.tracking import client
from tests.feedback.users import TRAIN, register_champion, send_feedback

pytestmark = pytest.mark.slow


@pytest.fixture
def champion(home, text_run, tmp_path):
    return register_champion(text_run, tmp_path)


def test_a_challenger_that_learned_from_users_is_promoted_and_a_shuffled_one_refused(champion, tmp_path):
    db = f"sqlite:///{tmp_path / 'feedback.db'}"
    wrong = send_feedback(db, corrections=140, audit=60, wrong=10)
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
    assert len(dropped) >= 3 and feedback["dropped_by_label_check"] <= 2 * len(dropped)
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
    send_feedback(db, corrections=60, audit=5)
    with pytest.raises(FmloopError, match="5 audit labels .* never on corrections alone"):
        retrain.run(RetrainConfig(name="sst2", database=db), tmp_path / "r")
    assert [v.version for v in models.versions("sst2")] == [1] and not (tmp_path / "r").exists()
