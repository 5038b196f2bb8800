"""A token model served: entities with character offsets from /v1 and the v2 protocol, in the
server's process and in a model process; corrections of its entities are stored as the tags of the
input's words, and spans that do not fit are refused by name."""

import json

import pytest

from tests.serve.conftest import make_client

TEXT = "we saw tom smith in rome today"
EXPECTED = [("PER", "tom smith", 7, 16), ("LOC", "rome", 20, 24)]


def entities(prediction: dict) -> list[tuple]:
    return [(e["label"], e["text"], e["start"], e["end"]) for e in prediction["entities"]]


@pytest.mark.parametrize("model_process", [False, True])
def test_predict_answers_entities_with_offsets(token_run, tmp_path, model_process):
    with make_client(token_run, tmp_path, model_process=model_process) as client:
        info = client.get("/v1/model").json()
        assert info["task"] == "tokens" and "B-PER" in info["labels"]
        answer = client.post("/v1/predict", json={"inputs": [TEXT, "the film was good"]})
        assert answer.status_code == 200, answer.text
        first, second = answer.json()["predictions"]
        assert entities(first) == EXPECTED and second["entities"] == []
        assert first["prediction_id"] and "label" not in first


def test_v2_infer_returns_entities_as_json(token_run, tmp_path):
    with make_client(token_run, tmp_path) as client:
        name = client.get("/v1/model").json()["name"]
        body = {"inputs": [{"name": "input", "datatype": "BYTES", "shape": [1], "data": [TEXT]}]}
        answer = client.post(f"/v2/models/{name}/infer", json=body)
        assert answer.status_code == 200, answer.text
        outputs = {o["name"]: o for o in answer.json()["outputs"]}
        assert [(e["label"], e["text"]) for e in json.loads(outputs["entities"]["data"][0])] == [
            (kind, text) for kind, text, _, _ in EXPECTED
        ]


def test_corrected_entities_are_stored_as_the_tags_of_the_words(token_run, tmp_path):
    with make_client(token_run, tmp_path) as client:
        pid = client.post("/v1/predict", json={"inputs": [TEXT]}).json()["predictions"][0]["prediction_id"]

        def send(label, key, **body):
            return client.post("/v1/feedback", json={"prediction_id": pid, "label": label, **body},
                               headers={"Idempotency-Key": key})  # fmt: skip

        # "tom" alone is the person, and "rome today" one place (a span covers every word it touches)
        fixed = send([{"label": "PER", "start": 7, "end": 10}, {"label": "LOC", "start": 21, "end": 27}], "k1")
        assert fixed.status_code == 200, fixed.text
        assert json.loads(fixed.json()["label"]) == ["O", "O", "B-PER", "O", "O", "B-LOC", "I-LOC"]
        assert json.loads(send([], "k2").json()["label"]) == ["O"] * 7  # no entity at all
        for label, needle in (
            ([{"label": "ORG", "start": 0, "end": 2}], "'ORG' is not an entity type"),
            ([{"label": "PER", "start": 20, "end": 99}], "not a span"),
            ([{"label": "PER", "start": 2, "end": 3}], "hold no word"),
            ([{"label": "PER", "start": 7, "end": 16}, {"label": "LOC", "start": 11, "end": 16}], "overlaps"),
            ("B-PER", "list of {label, start, end}"),
        ):
            refused = send(label, f"bad-{needle}")
            assert refused.status_code == 422 and needle in refused.text, refused.text
        assert client.post("/v1/explain", json={"input": TEXT}).status_code == 422


def test_served_answers_are_stored_as_tags(token_run, tmp_path):
    from fmloop.feedback.store import Store

    with make_client(token_run, tmp_path) as client:
        pid = client.post("/v1/predict", json={"inputs": [TEXT]}).json()["predictions"][0]["prediction_id"]
    store = Store.open(f"sqlite:///{tmp_path / 'feedback.db'}")
    assert json.loads(store.prediction(pid).label) == ["O", "O", "B-PER", "I-PER", "O", "B-LOC", "O"]
