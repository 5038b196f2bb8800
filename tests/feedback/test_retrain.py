"""Retraining from feedback, end to end on a tiny model and a real registry and store: users teach
the champion a rule it never saw (a few of them send wrong corrections, which the label check
drops). A challenger is registered as pending and asks for audit labels where it disagrees with the
champion on recent traffic; once labellers answer, the one that learned the rule is promoted and
one trained on shuffled labels is refused; nothing changes when there is nothing to learn from."""

import json

import pytest

from fmloop.core.errors import FmloopError
from fmloop.feedback import retrain
from fmloop.feedback.config import RetrainConfig
from fmloop.feedback.store import NewPrediction, Store
from fmloop.registry import models
from fmloop.registry.tracking import client
from tests.feedback.users import TRAIN, label_audit_queue, register_champion, send_feedback

pytestmark = pytest.mark.slow


@pytest.fixture
def champion(home, text_run, tmp_path):
    return register_champion(text_run, tmp_path)


def test_a_challenger_that_learned_from_users_is_promoted_once_labelled_and_a_shuffled_one_refused(champion, tmp_path):
    db = f"sqlite:///{tmp_path / 'feedback.db'}"
    wrong = send_feedback(db, corrections=140, audit=60, wrong=10)
    # The users' rule lives in a few words, so the challenger is more brittle to typos in them than
    # the champion by about the default 0.03: wide here, where the labels' statistics are tested.
    settings = dict(name="sst2", database=db, train=TRAIN, max_labels=80, robustness_tolerance=0.5)
    bad = retrain.run(RetrainConfig(**settings, shuffle_labels=True), tmp_path / "bad")
    manifest = bad.read_manifest()
    assert manifest["decision"] == "refused" and "forget" in manifest["reason"], manifest["reason"]
    assert json.loads((bad.path / "shadow.json").read_text())["requested"] == 0  # refused: it asks for nothing
    assert client().get_registered_model("sst2").aliases == {"champion": 1}
    assert models.get("models:/sst2/2").tags["fmloop.gate"] == "refused"

    good = retrain.run(RetrainConfig(**settings), tmp_path / "good")
    manifest = good.read_manifest()
    assert manifest["decision"] == "pending" and "more labels" in manifest["reason"], manifest["reason"]
    feedback = manifest["feedback"]
    assert feedback["high_water"] == 200 and feedback["audit"] == 60 and feedback["inputs"] == 140
    shadow = json.loads((good.path / "shadow.json").read_text())
    # the inputs it never trained on: served answers not taken as accepted, and corrections the label check dropped
    assert (
        shadow["scored"] == 200 - feedback["accepted"] + feedback["dropped_by_label_check"]
        and shadow["requested"] == min(300, shadow["disagreements"]) > 0
    )
    assert label_audit_queue(db) == shadow["requested"]  # the queue holds just what the challenger asked for
    judged = retrain.run(RetrainConfig(**settings), tmp_path / "good-judged")  # it judges the pending one
    promoted = judged.read_manifest()
    assert promoted["kind"] == "review" and promoted["challenger"] == "models:/sst2/3"
    assert promoted["decision"] == "promoted" and promoted["promoted"] is True, promoted["reason"]
    trust = json.loads((judged.path / "decision.json").read_text())["trust"]  # measured, and in the report
    assert trust["robustness_rows"] == 100 and 0 <= trust["robust_champion"] < 1 and trust["robust_challenger"] < 1
    assert "accuracy lost under perturbations" in (judged.path / "report.html").read_text()
    assert promoted["metrics"]["challenger_target"] > promoted["metrics"]["champion_target"] + 0.2
    assert client().get_registered_model("sst2").aliases == {"champion": 3, "previous": 1}
    assert models.get("models:/sst2/3").tags["fmloop.gate_index"] == "2"  # alpha spent: the second challenger
    # the label check drops mostly the wrong corrections, and the report lists what it dropped
    dropped = {row for row in wrong if row[:60] in (good.path / "report.html").read_text()}
    assert len(dropped) >= 3 and feedback["dropped_by_label_check"] <= 2 * len(dropped)
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


def test_too_few_corrections_train_nothing(champion, tmp_path):
    db = f"sqlite:///{tmp_path / 'feedback.db'}"
    send_feedback(db, corrections=5, audit=5)
    with pytest.raises(FmloopError, match="5 corrected inputs .* nothing to retrain on yet"):
        retrain.run(RetrainConfig(name="sst2", database=db), tmp_path / "r")
    assert [v.version for v in models.versions("sst2")] == [1] and not (tmp_path / "r").exists()


def test_the_fast_path_refits_only_the_classifier_and_is_judged_like_any_challenger(
    home, tiny_base, sentiment_dir, tmp_path
):
    from fmloop.core.config import load_config
    from fmloop.train.config import FinetuneConfig
    from fmloop.train.finetune import run as finetune

    tree = {"model": {"name": str(tiny_base)}, "data": {"path": str(sentiment_dir)}, "strategy": "embedding",
            "train": {"seed": 0, "threads": 1, "tensorboard": False}}  # fmt: skip
    champion = finetune(load_config(FinetuneConfig, overrides=tree), tmp_path / "champion")  # a mean-pooled model
    models.register(champion.path, "sst2")
    models.promote("sst2", 1)
    db = f"sqlite:///{tmp_path / 'feedback.db'}"
    send_feedback(db, corrections=140, audit=60)
    run = retrain.run(RetrainConfig(name="sst2", database=db, strategy="embedding"), tmp_path / "fast")
    challenger = json.loads((run.path / "challenger" / "manifest.json").read_text())
    assert challenger["strategy"] == "embedding" and challenger["status"] == "finished"
    manifest = run.read_manifest()
    assert manifest["decision"] in ("pending", "refused") and models.get("models:/sst2/2").tags["fmloop.gate"]
