"""A tagger through the loop: it is served, its users correct its entities over HTTP (character
spans, stored as the tags of the words), a retrain trains a challenger on them beside a replay of
the champion's own tagged sentences, and the gate judges it by entity errors."""

import json
import random
import shutil

import pytest
from seqeval.metrics.sequence_labeling import get_entities

from fmloop.feedback import retrain
from fmloop.feedback.store import Store
from fmloop.models.loading import load
from fmloop.models.tokens import as_words
from fmloop.registry import models
from tests.conftest import tagged_sentence
from tests.feedback.conftest import served_retrain
from tests.serve.conftest import make_client

pytestmark = pytest.mark.slow

NEW_PLACE = "berlin"  # a word the champion never read: its users say it is a place


def users_sentence(rng: random.Random) -> tuple[str, list[str]]:
    """A sentence whose person is replaced by the new place, and its true tags."""
    words, tags = zip(*tagged_sentence(rng))
    words = [NEW_PLACE if t.endswith("PER") and t.startswith("B") else w for w, t in zip(words, tags)]
    tags = ["B-LOC" if w == NEW_PLACE else t for w, t in zip(words, tags)]
    kept = [i for i, t in enumerate(tags) if t != "I-PER"]
    return " ".join(words[i] for i in kept), [tags[i] for i in kept]


def spans(text: str, tags: list[str]) -> list[dict]:
    """The entities of `tags` as the character spans a client sends."""
    _, offsets, _ = as_words([text])
    return [{"label": kind, "start": offsets[0][a][0], "end": offsets[0][b][1]} for kind, a, b in get_entities(tags)]


def place_said(model, texts: list[str]) -> float:
    """The share of `texts` in which the model calls the new place a place."""
    said = [any(e["text"] == NEW_PLACE and e["label"] == "LOC" for e in p["entities"]) for p in model.predict(texts)]
    return sum(said) / len(said)


def test_entity_corrections_over_http_teach_the_challenger(home, token_run, tmp_path):
    run = tmp_path / "champion"
    shutil.copytree(token_run, run)
    models.register(run, "tagger")
    models.promote("tagger", 1)
    rng = random.Random(7)
    sentences = [users_sentence(rng) for _ in range(160)]
    truth = dict(sentences)
    texts = list(truth)
    corrected, unseen = texts[:60], texts[100:]
    db = f"sqlite:///{tmp_path / 'feedback.db'}"

    def send(client, pid, text, key, kind="correction"):
        body = {"prediction_id": pid, "label": spans(text, truth[text]), "kind": kind}
        response = client.post("/v1/feedback", json=body, headers={"Idempotency-Key": key})
        assert response.status_code == 200, response.text
        assert json.loads(response.json()["label"]) == truth[text]

    with make_client("models:/tagger@champion", tmp_path, audit_fraction=0.0) as client:
        answers = [a for k in range(0, 100, 20)
                   for a in client.post("/v1/predict", json={"inputs": texts[k : k + 20]}).json()["predictions"]]  # fmt: skip
        for i, (text, answer) in enumerate(zip(corrected, answers)):
            send(client, answer["prediction_id"], text, f"fix-{i}")
    champion = load(run)
    assert place_said(champion, unseen) <= 0.2  # it does not know the new place

    cfg = served_retrain("tagger", db, accepted_ratio=0.25)  # 15 of 40 uncorrected answers: the rest go to the shadow
    done = retrain.run(cfg, tmp_path / "retrain")
    manifest = done.read_manifest()
    assert manifest["feedback"]["inputs"] == 60 and manifest["feedback"]["replayed"] > 0
    rows = [json.loads(line) for line in (done.path / "data" / "train.jsonl").read_text().splitlines()]
    assert {"tokens", "tags"} == set(rows[0]) and any(NEW_PLACE in r["tokens"] for r in rows)
    assert "one class per row" in manifest["label_check"]
    decision = json.loads((done.path / "decision.json").read_text())
    assert decision["guard"]["metric"] == "entity_f1" and decision["guard"]["n"] > 0
    shadow = json.loads((done.path / "shadow.json").read_text())
    assert shadow["scored"] == 40 - manifest["feedback"]["accepted"] > 0  # served sentences it did not train on

    challenger = load(manifest["challenger"], device="cpu")
    assert place_said(challenger, unseen) >= 0.8, place_said(challenger, unseen)
    if manifest["decision"] == "pending":  # labellers answer what it asked for, then the gate judges it
        store = Store.open(db)
        for p in store.audit_queue("tagger", 10_000):
            store.add_feedback(key=f"q-{p.id}", body_hash="h", model_name="tagger", label=json.dumps(truth[p.input]),
                               prediction_id=p.id, kind="audit")  # fmt: skip
        store.close()
        manifest = retrain.run(cfg, tmp_path / "judged").read_manifest()
    assert manifest["decision"] == "promoted", manifest["reason"]
    assert models.get("models:/tagger@champion").version == 2
