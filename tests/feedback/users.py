"""Simulated users of a served sentiment model for the feedback tests: they teach it a rule it never
saw, a few of them send wrong corrections, and labellers answer the audit sample truthfully."""

import random
import shutil
from pathlib import Path

from fmloop.feedback.store import NewPrediction, Store
from fmloop.registry import models

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
# 16 epochs: with 8, the challenger learned the rule from 4 of 6 tiny bases (their vocabularies
# differing only in tied merges); with 16, from 12 of 12.
TRAIN = {"epochs": 16, "lr": 3e-3, "max_steps": None, "early_stopping_patience": None, "threads": 1}


FLIP = {"positive": "negative", "negative": "positive"}


def truth(text: str) -> str:
    """The rule's label of a simulated input."""
    return next(label for subject, label in SUBJECTS.items() if text.startswith(subject))


def send_feedback(
    db: str, corrections: int, audit: int, wrong: int = 0, seed: int = 0, served: int = 200, version: int = 1
) -> set[str]:
    """Corrections that follow the rule (the first `wrong` of them flipped), then audit labels of
    sampled predictions, then `served` answers nobody labels (what a challenger is scored on and
    asks labels for); the champion (`version`) answered "positive" throughout. Returns the texts of
    the wrong corrections."""
    rng = random.Random(seed)
    store = Store.open(db)
    rows = []
    for _ in range(corrections + audit + served):
        subject = rng.choice(list(SUBJECTS))
        rows.append((f"{subject} {rng.choice(REST)} {rng.choice(ENDS)} {rng.randint(0, 9999)}", SUBJECTS[subject]))
    ids = store.add_predictions(
        [
            NewPrediction(
                "sst2", version, "text", t, "positive", None, None, 1.0, audit=corrections <= i < corrections + audit
            )
            for i, (t, _) in enumerate(rows)
        ],
        # fixed ids: the rows share one timestamp, and the store breaks ties by id, so random ids
        # would change which answers a retrain takes as accepted from one run to the next
        ids=[f"{seed:04x}{i:028x}" for i in range(len(rows))],
    )
    rows, ids = rows[: corrections + audit], ids[: corrections + audit]
    for i, (pid, (_, label)) in enumerate(zip(ids, rows)):
        kind = "audit" if i >= corrections else "correction"
        sent = FLIP[label] if i < wrong else label
        store.add_feedback(
            key=f"s{seed}-{i}", body_hash="h", model_name="sst2", label=sent, prediction_id=pid, kind=kind
        )
    store.close()
    return {t for t, _ in rows[:wrong]}


def register_champion(text_run: Path, tmp_path: Path) -> Path:
    """A copy of the tiny sentiment run registered as models:/sst2/1 and promoted to @champion."""
    run = tmp_path / "champion"
    shutil.copytree(text_run, run)
    models.register(run, "sst2")
    models.promote("sst2", 1)
    return run


def label_audit_queue(db: str, limit: int = 10_000) -> int:
    """Labellers answer every prediction waiting in the audit queue truthfully; returns how many."""
    store = Store.open(db)
    queue = store.audit_queue("sst2", limit)
    for prediction in queue:
        store.add_feedback(
            key=f"audit-{prediction.id}", body_hash="h", model_name="sst2", label=truth(prediction.input),
            prediction_id=prediction.id, kind="audit",
        )  # fmt: skip
    store.close()
    return len(queue)
