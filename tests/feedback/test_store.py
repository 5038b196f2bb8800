"""The feedback store: migrations, idempotent corrections, durability, and clear failures."""

import hashlib
import json
import subprocess
import sys
import textwrap
from concurrent.futures import ThreadPoolExecutor

import pytest
from alembic import command
from sqlalchemy import inspect

from fmloop.feedback.schema import Prediction
from fmloop.feedback.store import (
    IdempotencyConflict,
    NewPrediction,
    NotAudited,
    Store,
    StoreUnavailable,
    UnknownPrediction,
)


def _prediction(text="a fine film", label="positive"):
    return NewPrediction("sst2", 1, "text", text, label, {"negative": 0.2, "positive": 0.8}, None, 3.5)


def _hash(body: str) -> str:
    return hashlib.sha256(body.encode()).hexdigest()


def test_migrations_create_the_schema_once(store, store_url):
    assert store.schema_version() == store.head_version() == "0006"
    assert {"predictions", "feedback", "erasures", "alembic_version"} <= set(inspect(store.engine).get_table_names())
    again = Store.open(store_url)  # a second open migrates nothing and keeps the data
    assert again.schema_version() == "0006"
    again.close()


def store_at(store_url: str, revision: str) -> Store:
    """A store whose schema is that of migration `revision`, opened without migrating it further."""
    old = Store.open(store_url, migrate=False)
    config = old._alembic()
    with old.engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, revision)
    old.close()
    return Store.open(store_url, migrate=False)


def test_an_old_store_is_upgraded_with_its_rows(store_url):
    old = store_at(store_url, "0001")
    with old.engine.begin() as connection:  # a row written by the 0001 schema
        connection.exec_driver_sql(
            "INSERT INTO feedback (model_name, input, label, idempotency_key, body_hash, created_at) "
            "VALUES ('sst2', 'kept', 'neg', 'old', 'h', CURRENT_TIMESTAMP)"
        )
    old.close()
    upgraded = Store.open(store_url)
    assert upgraded.schema_version() == "0006"
    (row,) = upgraded.recent_feedback()
    assert (row.input, row.kind) == ("kept", "correction")
    upgraded.close()


def test_a_store_with_corrections_is_upgraded_to_long_labels(store_url):
    old = store_at(store_url, "0005")
    (pid,) = old.add_predictions([_prediction()])
    old.add_feedback(key="k", body_hash="h", model_name="sst2", label="negative", prediction_id=pid)
    old.close()
    upgraded = Store.open(store_url)  # the feedback row names the prediction: both tables keep their rows
    assert upgraded.schema_version() == "0006" and upgraded.prediction(pid).label == "positive"
    assert [f.label for f in upgraded.recent_feedback()] == ["negative"]
    upgraded.close()


def test_labels_of_any_length_are_kept(store):
    tags = json.dumps(["B-PER", "I-PER", "O"] * 150)  # a tagger's answer for a 450-word text
    (pid,) = store.add_predictions([_prediction("a long text", tags)])
    row, _ = store.add_feedback(key="long", body_hash="h", model_name="sst2", label=tags, prediction_id=pid)
    assert store.prediction(pid).label == tags == row.label and len(tags) > 3000


def test_audit_labels_only_for_sampled_predictions_and_the_queue_empties(store):
    sampled, plain = store.add_predictions([_prediction("audit me"), _prediction("not sampled")])
    with store.session() as session:  # what the server does for audit_fraction of its answers
        session.get(Prediction, sampled).audit = True
    assert [p.id for p in store.audit_queue("sst2")] == [sampled]
    with pytest.raises(NotAudited, match="not sampled for the audit"):
        store.add_feedback(key="a", body_hash="h", model_name="sst2", label="neg", prediction_id=plain, kind="audit")
    row, _ = store.add_feedback(
        key="b", body_hash="h", model_name="sst2", label="neg", prediction_id=sampled, kind="audit"
    )
    assert row.kind == "audit" and store.audit_queue("sst2") == []
    # a user's correction of a sampled prediction does not take it off the audit queue's books
    correction, _ = store.add_feedback(key="c", body_hash="h", model_name="sst2", label="pos", prediction_id=plain)
    assert correction.kind == "correction"


def test_predictions_and_their_corrections_come_back(store):
    ids = store.add_predictions([_prediction("good"), _prediction("bad", "positive")])
    assert len(set(ids)) == 2 and store.prediction(ids[0]).probabilities == {"negative": 0.2, "positive": 0.8}
    row, created = store.add_feedback(
        key="k1", body_hash=_hash("a"), model_name="sst2", label="negative", prediction_id=ids[1], user="ann"
    )
    assert created and row.id == store.high_water() == 1
    recent = {p.id: correction for p, correction in store.recent_predictions()}
    assert recent == {ids[0]: None, ids[1]: "negative"}


def test_a_replay_stores_nothing_and_a_reused_key_conflicts(store):
    (pid,) = store.add_predictions([_prediction()])
    first, created = store.add_feedback(
        key="k", body_hash=_hash("a"), model_name="sst2", label="neg", prediction_id=pid
    )
    again, created_again = store.add_feedback(
        key="k", body_hash=_hash("a"), model_name="sst2", label="neg", prediction_id=pid
    )
    assert created and not created_again and again.id == first.id
    assert len(store.recent_feedback()) == 1
    with pytest.raises(IdempotencyConflict, match="different feedback body"):
        store.add_feedback(key="k", body_hash=_hash("b"), model_name="sst2", label="pos", prediction_id=pid)
    assert len(store.recent_feedback()) == 1


def test_concurrent_replays_of_one_key_store_one_row(store):
    (pid,) = store.add_predictions([_prediction()])

    def send(_):
        return store.add_feedback(key="same", body_hash=_hash("x"), model_name="sst2", label="neg", prediction_id=pid)

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(send, range(16)))
    assert sum(created for _, created in results) == 1
    assert len({row.id for row, _ in results}) == 1 and len(store.recent_feedback()) == 1


def test_feedback_for_an_unknown_prediction_is_refused(store):
    with pytest.raises(UnknownPrediction, match="nope"):
        store.add_feedback(key="k", body_hash=_hash("a"), model_name="sst2", label="neg", prediction_id="nope")
    row, created = store.add_feedback(key="k2", body_hash=_hash("b"), model_name="sst2", label="neg", input="raw text")
    assert created and row.prediction_id is None and row.input == "raw text"


def test_an_unreachable_database_is_a_clear_error():
    with pytest.raises(StoreUnavailable, match="cannot be reached"):
        Store.open("postgresql://nobody@127.0.0.1:9/none")


KILL_WRITER = textwrap.dedent("""
    import hashlib, sys
    from fmloop.feedback.store import NewPrediction, Store
    store = Store.open(sys.argv[1])
    (pid,) = store.add_predictions([NewPrediction("m", 1, "text", "t", "a", None, None, 1.0)])
    for i in range(100000):
        store.add_feedback(key=f"k{i}", body_hash="h", model_name="m", label="a", prediction_id=pid)
        print(i, flush=True)  # acknowledged: committed before this line
""")


def test_kill_9_loses_no_acknowledged_row(store_url):
    Store.open(store_url).close()
    proc = subprocess.Popen([sys.executable, "-c", KILL_WRITER, store_url], stdout=subprocess.PIPE, text=True)
    acknowledged = -1
    for line in proc.stdout:
        acknowledged = int(line)
        if acknowledged >= 50:
            break
    proc.kill()
    proc.wait()
    store = Store.open(store_url)
    assert store.high_water() >= acknowledged + 1
    assert all(store.feedback_by_key(f"k{i}") is not None for i in range(acknowledged + 1))
    store.close()


def test_accepted_answers_are_those_nobody_corrected_or_audited_before_the_snapshot(store):
    corrected, audited, let_stand = store.add_predictions([_prediction(t) for t in ("corrected", "audited", "stands")])
    with store.session() as session:
        session.get(Prediction, audited).audit = True
    store.add_feedback(key="a", body_hash="h", model_name="sst2", label="negative", prediction_id=corrected)
    store.add_feedback(key="b", body_hash="h", model_name="sst2", label="negative", prediction_id=audited, kind="audit")
    store.add_predictions([_prediction("served after the snapshot")])
    assert store.accepted("sst2", high_water=2, limit=10) == [("stands", "positive")]
    store.add_feedback(key="c", body_hash="h", model_name="sst2", label="negative", input="a new text")
    assert store.accepted("sst2", high_water=3, limit=10) == [
        ("served after the snapshot", "positive"),
        ("stands", "positive"),
    ]
    assert store.accepted("sst2", high_water=3, limit=1) == [("served after the snapshot", "positive")]
    assert store.accepted("other-model", high_water=3, limit=10) == []


def test_a_challenger_asks_for_audit_labels_after_the_uniform_sample_in_its_random_order(store):
    uniform, first, second, already = store.add_predictions(
        [_prediction(t) for t in ("uniform", "asked first", "asked second", "already sampled")]
    )
    with store.session() as session:
        session.get(Prediction, uniform).audit = True
        session.get(Prediction, already).audit = True
    assert store.request_audit([second, first, already], "models:/sst2/2") == 2  # `already` keeps its place
    queue = [p.id for p in store.audit_queue("sst2")]
    assert set(queue[:2]) == {uniform, already} and queue[2:] == [second, first]  # one batch: one timestamp
    assert store.prediction(second).audit_for == "models:/sst2/2" and store.prediction(already).audit_for is None
    row, _ = store.add_feedback(key="a", body_hash="h", model_name="sst2", label="negative", prediction_id=second,
                                kind="audit")  # fmt: skip
    assert row.kind == "audit" and [p.id for p in store.audit_queue("sst2")][2:] == [first]
    assert store.served("sst2", 2, limit=10) == []
    assert {text for _, text, _ in store.served("sst2", 1, limit=10)} == {
        "uniform", "asked first", "asked second", "already sampled"
    }  # fmt: skip
    again = store.add_predictions([_prediction("uniform")])  # sent again: one input, its newest answer
    served = store.served("sst2", 1, limit=10)
    assert len(served) == 4 and served[0][:2] == (again[0], "uniform") and len(store.served("sst2", 1, limit=1)) == 1


def test_deleting_a_user_erases_their_inputs_and_feedback_and_is_recorded(store):
    import dataclasses

    from fmloop.feedback.schema import ERASED
    from fmloop.feedback.snapshot import read_snapshot

    ann_pred, bob_pred = store.add_predictions(
        [dataclasses.replace(_prediction("ann's private text"), user="ann"), _prediction("bob's text")]
    )
    store.add_feedback(key="a1", body_hash="h", model_name="sst2", label="negative", prediction_id=bob_pred, user="ann")
    store.add_feedback(key="a2", body_hash="h", model_name="sst2", label="negative", input="ann typed this", user="ann")
    store.add_feedback(key="b1", body_hash="h", model_name="sst2", label="negative", prediction_id=ann_pred, user="bob")
    record = store.erase_user("ann", done_by="admin")
    assert (record.predictions, record.feedback, record.reason, record.subject) == (1, 2, "user", "ann")
    assert store.prediction(ann_pred).input == ERASED and store.prediction(bob_pred).input == "bob's text"
    assert [f.user for f in store.recent_feedback()] == ["bob"]
    # bob's label of ann's erased input can no longer train anything
    assert read_snapshot(store, "sst2").examples == []
    assert store.served("sst2", 1, limit=10)[0][1] == "bob's text" and len(store.served("sst2", 1, limit=10)) == 1
    again = store.erase_user("ann")
    assert (again.predictions, again.feedback) == (0, 0)
    assert [(e.reason, e.subject, e.done_by) for e in store.erasures()] == [
        ("user", "ann", "admin"),
        ("user", "ann", None),
    ]


def test_retention_erases_inputs_older_than_the_cut_off_only(store):
    import datetime as dt

    from fmloop.feedback.schema import ERASED, Feedback

    old, new = store.add_predictions([_prediction("old text"), _prediction("new text")])
    store.add_feedback(key="o", body_hash="h", model_name="sst2", label="negative", input="old free text")
    store.add_feedback(key="n", body_hash="h", model_name="sst2", label="negative", prediction_id=old)
    long_ago = dt.datetime(2020, 1, 1, tzinfo=dt.timezone.utc)
    with store.session() as session:
        session.get(Prediction, old).created_at = long_ago
        session.query(Feedback).filter(Feedback.idempotency_key == "o").one().created_at = long_ago
    record = store.expire_inputs(dt.datetime(2021, 1, 1, tzinfo=dt.timezone.utc))
    assert (record.predictions, record.feedback, record.reason) == (1, 1, "retention")
    assert store.prediction(old).input == ERASED and store.prediction(new).input == "new text"
    assert store.prediction(old).label == "positive"  # what the metrics count stays
    assert {f.input for f in store.recent_feedback()} == {ERASED, None}
    assert store.audit_queue("sst2") == [] and [t for _, t, _ in store.served("sst2", 1, 10)] == ["new text"]
