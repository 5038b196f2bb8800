"""The audit sample through Label Studio: exported tasks carry the prediction id and not the model's
answer; their annotations come back as audit labels, once, with disagreements and strangers skipped."""

import json

import pytest

from fmloop.core.errors import DataError
from fmloop.feedback import audit
from fmloop.feedback.snapshot import read_snapshot
from fmloop.feedback.store import NewPrediction

LABELS = ["negative", "positive"]


def _annotated(task, *choices):
    """What Label Studio's JSON export holds for a task once annotators chose `choices`."""
    results = [{"result": [{"type": "choices", "value": {"choices": [c]}}]} for c in choices]
    return {**task, "id": 17, "annotations": results}


def test_export_then_import_stores_audit_labels_once(store, tmp_path):
    rows = [NewPrediction("m", 2, "text", t, "positive", None, None, 1.0, audit=a) for t, a in
            [("sampled one", True), ("sampled two", True), ("not sampled", False)]]  # fmt: skip
    store.add_predictions(rows)
    assert audit.export(store, "m", LABELS, tmp_path / "out") == 2
    tasks = json.loads((tmp_path / "out" / "tasks.json").read_text())
    assert {t["data"]["text"] for t in tasks} == {"sampled one", "sampled two"}
    assert all("predictions" not in t for t in tasks)  # the model's answer would sway the annotator
    assert '<Choice value="positive"/>' in (tmp_path / "out" / "label_config.xml").read_text()

    exported = tmp_path / "export.json"
    exported.write_text(json.dumps([_annotated(tasks[0], "negative"), _annotated(tasks[1], "negative", "positive")]))
    summary = audit.import_labels(store, "m", LABELS, str(exported))
    assert summary["stored"] == 1 and "annotators disagree" in summary["skipped"][0]["reason"]
    assert audit.import_labels(store, "m", LABELS, str(exported))["already"] == 1  # idempotent
    snap = read_snapshot(store, "m", kind="audit")
    assert [(e.text, e.label) for e in snap.examples] == [(tasks[0]["data"]["text"], "negative")]
    assert [p.input for p in store.audit_queue("m")] == [tasks[1]["data"]["text"]]

    exported.write_text(json.dumps([_annotated(tasks[0], "positive")]))  # a changed label: a conflict
    with pytest.raises(DataError, match="no annotation could be imported.*different feedback body"):
        audit.import_labels(store, "m", LABELS, str(exported))


TAGS = ["O", "B-LOC", "I-LOC", "B-PER", "I-PER"]


def _marked(task, *annotations):
    """A task as Label Studio exports it once annotators marked spans: each annotation a list of
    (type, start, end)."""
    results = [
        {"result": [{"type": "labels", "value": {"start": a, "end": b, "labels": [kind]}} for kind, a, b in spans]}
        for spans in annotations
    ]
    return {**task, "annotations": results}


def test_a_taggers_audit_is_marked_as_spans_and_stored_as_tags(store, tmp_path):
    texts = ["we saw tom smith in rome", "the film was good", "anna in paris"]
    store.add_predictions([NewPrediction("ner", 1, "text", t, json.dumps(["O"] * 4), None, None, 1.0, audit=True)
                           for t in texts])  # fmt: skip
    assert audit.export(store, "ner", TAGS, tmp_path / "out", tagger=True) == 3
    config = (tmp_path / "out" / "label_config.xml").read_text()
    assert '<Labels name="label" toName="text">' in config and '<Label value="PER"/>' in config
    tasks = {t["data"]["text"]: t for t in json.loads((tmp_path / "out" / "tasks.json").read_text())}

    exported = tmp_path / "export.json"
    exported.write_text(json.dumps([
        _marked(tasks[texts[0]], [("PER", 7, 16), ("LOC", 20, 24)]),
        _marked(tasks[texts[1]], []),  # marked: no entity in it
        _marked(tasks[texts[2]], [("PER", 0, 4)], [("LOC", 0, 4)]),  # two annotators disagree
    ]))  # fmt: skip
    summary = audit.import_labels(store, "ner", TAGS, str(exported), tagger=True)
    assert summary["stored"] == 2 and "annotators disagree" in summary["skipped"][0]["reason"]
    labels = {e.text: json.loads(e.label) for e in read_snapshot(store, "ner", kind="audit").examples}
    assert labels == {texts[0]: ["O", "O", "B-PER", "I-PER", "O", "B-LOC"], texts[1]: ["O"] * 4}

    exported.write_text(json.dumps([_marked(tasks[texts[2]], [("ORG", 0, 4)])]))
    with pytest.raises(DataError, match="'ORG' is not an entity type"):
        audit.import_labels(store, "ner", TAGS, str(exported), tagger=True)
