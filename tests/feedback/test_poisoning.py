"""One identity cannot make the challenger: the corrections it alone backs are capped at a share of
the challenger's feedback rows, however many it floods (with fresh idempotency keys, on as many
inputs as it likes), while agreeing identities and labellers are not capped."""

import random

from fmloop.feedback.config import RetrainConfig
from fmloop.feedback.retrain import cap_identities, plan
from fmloop.feedback.snapshot import Example
from fmloop.feedback.store import NewPrediction, Store
from fmloop.registry import models
from tests.feedback.users import FLIP, REST, SUBJECTS, register_champion


def _inputs(n: int, rng: random.Random, tag: str) -> list[tuple[str, str]]:
    rows = []
    for i in range(n):
        subject = rng.choice(list(SUBJECTS))
        rows.append((f"{subject} {rng.choice(REST)} {tag}{i}", SUBJECTS[subject]))
    return rows


def test_a_flood_of_contradictory_corrections_from_one_identity_stays_within_the_cap(home, text_run, tmp_path):
    register_champion(text_run, tmp_path)
    champion = models.get("models:/sst2@champion")
    rng = random.Random(0)
    store = Store.open(f"sqlite:///{tmp_path / 'feedback.db'}")
    honest, flood = _inputs(60, rng, "h"), _inputs(400, rng, "m")
    ids = store.add_predictions([NewPrediction("sst2", 1, "text", t, "positive", None, None, 1.0)
                                 for t, _ in honest + flood])  # fmt: skip
    for i, (pid, (_, label)) in enumerate(zip(ids, honest)):
        store.add_feedback(key=f"h{i}", body_hash="h", model_name="sst2", label=label, prediction_id=pid,
                           user=f"user{i % 30}")  # fmt: skip
    for i, (pid, (_, label)) in enumerate(zip(ids[len(honest) :], flood)):
        store.add_feedback(key=f"m{i}", body_hash="h", model_name="sst2", label=FLIP[label], prediction_id=pid,
                           user="mallory")  # fmt: skip
    train_split = [("a dog sees the river", champion.labels[0])] * 10
    cfg = RetrainConfig(name="sst2", label_check=False, accepted_ratio=0, replay_ratio=0)
    training = plan(store, champion, cfg, since=0, high_water=store.high_water(), pool=train_split)
    flooded = {t for t, _ in flood}
    rows = [(e.text, e.label) for e in training.picking] + training.rows
    from_mallory = sum(t in flooded for t, _ in rows)
    assert training.counts["capped_per_identity"] == {"mallory": 400 - from_mallory}
    assert from_mallory / len(rows) <= cfg.max_identity_share  # 400 of 460 sent; at most a quarter kept
    assert from_mallory >= 15  # capped, not silenced: 20 = a third of the 60 others' rows
    wrong = sum(label != SUBJECTS[next(s for s in SUBJECTS if t.startswith(s))] for t, label in rows)
    assert wrong == from_mallory  # every honest row is right, and kept
    uncapped = plan(store, champion, cfg.model_copy(update={"max_identity_share": 1.0}), 0, store.high_water(),
                    train_split)  # fmt: skip
    assert len(uncapped.rows) + len(uncapped.picking) == 460
    store.close()


def test_rows_two_identities_agree_on_and_rows_without_one_are_not_capped():
    rows = [Example(f"t{i}", "a", 1.0, users=("eve",)) for i in range(30)]
    rows += [Example(f"s{i}", "a", 2.0, users=("eve", "fay")) for i in range(10)]
    rows += [Example(f"o{i}", "b", 1.0) for i in range(10)]  # stored before identities
    kept, capped = cap_identities(rows, others=10, share=0.25, rng=random.Random(0))
    alone = sum(e.users == ("eve",) for e in kept)
    assert alone / (len(kept) + 10) <= 0.25 and capped == {"eve": 30 - alone}
    assert sum(len(e.users) != 1 for e in kept) == 20
    assert cap_identities(rows, 10, 1.0, random.Random(0)) == (rows, {})
