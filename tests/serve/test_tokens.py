"""A token model served: entities with character offsets from /v1 and the v2 protocol, in the
server's process and in a model process; corrections of its entities are refused by name."""

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


def test_corrections_and_explanations_of_entities_are_refused_by_name(token_run, tmp_path):
    with make_client(token_run, tmp_path) as client:
        pid = client.post("/v1/predict", json={"inputs": [TEXT]}).json()["predictions"][0]["prediction_id"]
        refused = client.post(
            "/v1/feedback", json={"prediction_id": pid, "label": "B-PER"}, headers={"Idempotency-Key": "k1"}
        )
        assert refused.status_code == 422 and "token model" in refused.text
        assert client.post("/v1/explain", json={"input": TEXT}).status_code == 422
