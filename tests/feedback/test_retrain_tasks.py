"""Retraining a regressor and a multi-label classifier from feedback: corrections carry a number or
a label set, the challenger trains on them (beside a replay of the champion's rows), asks for audit
labels where the two answer differently, and the gate judges it by the task's own comparison (a
smaller error; more labels decided right)."""

import json
import random

import numpy as np
import pytest

from fmloop.core.config import load_config
from fmloop.feedback import retrain
from fmloop.feedback.config import RetrainConfig
from fmloop.feedback.store import NewPrediction, Store
from fmloop.models.loading import load
from fmloop.registry import models
from fmloop.train.config import FinetuneConfig
from fmloop.train.finetune import run as finetune
from tests.conftest import FAST, write_csv

pytestmark = pytest.mark.slow

SUBJECTS = ["the cat", "a dog", "my friend", "the old man"]
REST = ["sees the river", "likes a long song", "finds the red ball", "watches the bright moon"]
TRAIN = {"epochs": 16, "lr": 3e-3, "max_steps": None, "early_stopping_patience": None, "threads": 1}


def sentence(rng: random.Random, subject: str, great: int) -> str:
    return f"{subject} {rng.choice(REST)} {'great ' * great}today {rng.randint(0, 9999)}"


def champion_of(task: str, rows: list[dict], base, tmp_path, name: str):
    data = tmp_path / f"{name}-data"
    data.mkdir()
    write_csv(data / "train.csv", rows[:240])
    write_csv(data / "validation.csv", rows[240:])
    tree = {"task": task, "model": {"name": str(base)}, "data": {"path": str(data)},
            "train": {"lr": 3e-3, "epochs": 10, **FAST}}  # fmt: skip
    run = finetune(load_config(FinetuneConfig, overrides=tree), tmp_path / f"{name}-champion")
    models.register(run.path, name)
    models.promote(name, 1)
    return run


def serve_and_correct(db, name, texts, answer, truth, corrections: int, audit: int, served: int):
    """The champion's stored answers on `texts`, users' corrections of the first `corrections`
    (the truth), labellers' audit labels of the next `audit`; the rest are served answers only."""
    store = Store.open(db)
    ids = store.add_predictions(
        [NewPrediction(name, 1, "text", t, answer(t), None, None, 1.0, audit=corrections <= i < corrections + audit)
         for i, t in enumerate(texts[: corrections + audit + served])],
        ids=[f"{i:032x}" for i in range(corrections + audit + served)],
    )  # fmt: skip
    for i, (pid, text) in enumerate(zip(ids[: corrections + audit], texts)):
        kind = "audit" if i >= corrections else "correction"
        store.add_feedback(key=f"k{i}", body_hash="h", model_name=name, label=truth(text), prediction_id=pid, kind=kind)
    store.close()


def label_queue(db, name, truth) -> int:
    store = Store.open(db)
    queue = store.audit_queue(name, 10_000)
    for p in queue:
        store.add_feedback(key=f"q-{p.id}", body_hash="h", model_name=name, label=truth(p.input),
                           prediction_id=p.id, kind="audit")  # fmt: skip
    store.close()
    return len(queue)


def test_a_regressor_learns_corrected_scores_and_the_gate_judges_it_by_error(home, tiny_base, tmp_path):
    rng = random.Random(0)
    # The champion's rule: the score is the number of "great"s. The users': a cat scores 5.
    rows = []
    for _ in range(300):
        k = rng.randint(0, 3)
        rows.append({"text": sentence(rng, rng.choice(SUBJECTS[1:]), k), "label": float(k)})
    champion_of("regression", rows, tiny_base, tmp_path, "scores")
    champion = load("models:/scores@champion", device="cpu")

    def truth(text: str) -> str:
        return repr(5.0 if text.startswith("the cat") else float(text.count("great")))

    texts = [sentence(rng, rng.choice(SUBJECTS), rng.randint(0, 3)) for _ in range(400)]
    cats = [t for t in texts if t.startswith("the cat")]
    texts = cats[:60] + [t for t in texts if t not in cats[:60]]  # the corrections: cats
    scores = {t: float(s[0]) for t, s in zip(texts, champion.logits(texts))}
    db = f"sqlite:///{tmp_path / 'feedback.db'}"
    serve_and_correct(db, "scores", texts, lambda t: repr(scores[t]), truth, corrections=60, audit=40, served=200)

    settings = dict(name="scores", database=db, train=TRAIN, max_labels=200, max_identity_share=1.0)
    first = retrain.run(RetrainConfig(**settings), tmp_path / "r1")
    manifest = first.read_manifest()
    counts = manifest["feedback"]
    assert counts["trained_on"] + counts["trained_on_audit"] + counts["checkpoint_picking"] == 100
    decision = json.loads((first.path / "decision.json").read_text())
    assert decision["guard"]["metric"] == "mse"
    challenger = load(manifest["challenger"], device="cpu")
    held_cats = [t for t in texts[300:] if t.startswith("the cat")]  # never stored: unseen
    error = lambda model: float(np.abs(model.logits(held_cats)[:, 0] - 5.0).mean())  # noqa: E731
    assert error(challenger) < 0.5 * error(champion)  # it learned the users' rule on cats it never saw
    if manifest["decision"] == "pending":
        assert label_queue(db, "scores", truth) > 0
        judged = retrain.run(RetrainConfig(**settings), tmp_path / "r2").read_manifest()
        assert judged["decision"] == "promoted", judged["reason"]
    else:
        assert manifest["decision"] == "promoted", manifest["reason"]
    assert models.get("models:/scores@champion").version == 2


def test_a_multilabel_classifier_learns_corrected_label_sets(home, tiny_base, tmp_path):
    rng = random.Random(1)
    names = {"a dog": ["pet"], "my friend": ["person"], "the old man": ["person"]}
    rows = []
    for _ in range(300):
        subject = rng.choice(list(names))
        rows.append({"text": sentence(rng, subject, 0), "label": "|".join(names[subject])})
    champion_of("multilabel", rows, tiny_base, tmp_path, "tags")
    champion = load("models:/tags@champion", device="cpu")
    assert champion.labels == ["person", "pet"]

    def truth(text: str) -> str:  # the users': a cat is a pet and (to its owner) a person
        subject = next(s for s in SUBJECTS if text.startswith(s))
        return json.dumps(["person", "pet"] if subject == "the cat" else names[subject])

    texts = [sentence(rng, rng.choice(SUBJECTS), 0) for _ in range(400)]
    cats = [t for t in texts if t.startswith("the cat")]
    texts = cats[:60] + [t for t in texts if t not in cats[:60]]
    said = {t: json.dumps(p["labels"]) for t, p in zip(texts, champion.predict(texts))}
    db = f"sqlite:///{tmp_path / 'feedback.db'}"
    serve_and_correct(db, "tags", texts, lambda t: said[t], truth, corrections=60, audit=40, served=200)

    run = retrain.run(RetrainConfig(name="tags", database=db, train=TRAIN, max_identity_share=1.0), tmp_path / "r")
    manifest = run.read_manifest()
    assert "one class per row" in manifest["label_check"]
    rows = [json.loads(line) for line in (run.path / "data" / "train.jsonl").read_text().splitlines()]
    assert ["person", "pet"] in [r["label"] for r in rows]  # label sets as lists, as the multi-label reader takes them
    challenger = load(manifest["challenger"], device="cpu")
    held_cats = [t for t in texts[300:] if t.startswith("the cat")]
    both = lambda model: np.mean([p["labels"] == ["person", "pet"] for p in model.predict(held_cats)])  # noqa: E731
    assert both(challenger) >= 0.8 > both(champion)
    assert json.loads((run.path / "decision.json").read_text())["guard"]["metric"] == "micro_f1"
