"""Snapshots: exactly the feedback up to the high-water id while inserts go on; majority labels."""

import threading

from fmloop.feedback.schema import Prediction
from fmloop.feedback.snapshot import read_snapshot
from fmloop.feedback.store import NewPrediction


def _predict(store, texts):
    return store.add_predictions([NewPrediction("m", 1, "text", t, "pos", None, None, 1.0) for t in texts])


def test_the_snapshot_is_exactly_the_rows_up_to_the_high_water_id_while_inserts_go_on(store):
    ids = _predict(store, [f"text {i}" for i in range(400)])
    for i in range(50):
        store.add_feedback(key=f"a{i}", body_hash="h", model_name="m", label="neg", prediction_id=ids[i])
    high_water = store.high_water()
    stop = threading.Event()

    def keep_inserting():
        i = 50
        while not stop.is_set() and i < 400:
            store.add_feedback(key=f"a{i}", body_hash="h", model_name="m", label="neg", prediction_id=ids[i])
            i += 1

    writer = threading.Thread(target=keep_inserting)
    writer.start()
    try:
        snapshots = [read_snapshot(store, "m", high_water) for _ in range(5)]
    finally:
        stop.set()
        writer.join()
    assert store.high_water() > high_water  # inserts really went on
    expected = {f"text {i}" for i in range(50)}
    for snap in snapshots:
        assert snap.high_water == high_water and {e.text for e in snap.examples} == expected


def test_conflicting_corrections_take_the_majority_and_ties_are_left_out(store):
    a, b, c = _predict(store, ["a", "b", "c"])
    votes = [(a, "neg"), (a, "neg"), (a, "pos"), (b, "neg"), (b, "pos"), (c, "pos")]
    for i, (pid, label) in enumerate(votes):
        store.add_feedback(key=f"k{i}", body_hash="h", model_name="m", label=label, prediction_id=pid)
    store.add_feedback(key="raw", body_hash="h", model_name="m", label="neg", input="never predicted")
    store.add_feedback(key="other", body_hash="h", model_name="other-model", label="neg", input="x")
    snap = read_snapshot(store, "m")
    assert {(e.text, e.label, e.votes) for e in snap.examples} == {
        ("a", "neg", 2),
        ("c", "pos", 1),
        ("never predicted", "neg", 1),
    }
    assert snap.ties == [{"input": "b", "votes": {"neg": 1, "pos": 1}}]
    assert snap.corrections == 7 and snap.labels == {"neg": 2, "pos": 1}


def test_audit_labels_and_corrections_are_read_apart_and_trust_weighs_votes(store):
    a, b = _predict(store, ["a", "b"])
    with store.session() as session:
        session.get(Prediction, b).audit = True
    store.add_feedback(key="1", body_hash="h", model_name="m", label="neg", prediction_id=a, user="spammer")
    store.add_feedback(key="2", body_hash="h", model_name="m", label="neg", prediction_id=a, user="spammer2")
    store.add_feedback(key="3", body_hash="h", model_name="m", label="pos", prediction_id=a, user="expert")
    store.add_feedback(key="4", body_hash="h", model_name="m", label="pos", prediction_id=b, kind="audit")
    assert [(e.text, e.label) for e in read_snapshot(store, "m").examples] == [("a", "neg")]
    trusted = read_snapshot(store, "m", trust={"expert": 3.0, "spammer2": 0})
    assert [(e.text, e.label, e.votes) for e in trusted.examples] == [("a", "pos", 3.0)]
    assert [(e.text, e.label) for e in read_snapshot(store, "m", kind="audit").examples] == [("b", "pos")]
