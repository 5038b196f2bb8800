"""The Open Inference Protocol v2 beside /v1: a KServe-style client's health, metadata and infer
calls answer as the protocol says, with the same predictions /v1 gives (stored, with ids for
feedback), and bad tensors are a 4xx naming the problem. Also: one JSON log line per request."""

import json
import logging

import pytest

from tests.serve.conftest import make_client

TEXTS = ["my friend sees the river and it was great today", "the cat likes a long song and it was awful again"]


def _infer(client, name, data, shape=None, datatype="BYTES", **extra):
    tensor = {"name": "text", "shape": shape or [len(data)], "datatype": datatype, "data": data}
    return client.post(f"/v2/models/{name}/infer", json={"inputs": [tensor], **extra})


def test_health_metadata_and_infer_match_v1(client, text_run):
    name = text_run.name
    assert client.get("/v2/health/live").json() == {"live": True}
    assert client.get("/v2/health/ready").json() == {"ready": True}
    assert client.get(f"/v2/models/{name}/ready").json() == {"name": name, "ready": True}
    meta = client.get(f"/v2/models/{name}").json()
    assert meta["name"] == name and meta["versions"] == ["0"] and meta["inputs"][0]["datatype"] == "BYTES"
    assert {o["name"] for o in meta["outputs"]} == {"prediction_id", "probabilities", "label"}
    answer = _infer(client, name, TEXTS, id="req-1")
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["model_name"] == name and body["model_version"] == "0" and body["id"] == "req-1"
    outputs = {o["name"]: o for o in body["outputs"]}
    v1 = client.post("/v1/predict", json={"inputs": TEXTS}).json()["predictions"]
    assert outputs["label"]["data"] == [p["label"] for p in v1] and outputs["label"]["shape"] == [2]
    probabilities = outputs["probabilities"]
    assert probabilities["shape"] == [2, 2] and probabilities["datatype"] == "FP32"
    expected = [p["probabilities"][label] for p in v1 for label in ("negative", "positive")]
    assert probabilities["data"] == pytest.approx(expected, abs=1e-5)
    # the ids are real predictions: feedback takes them
    pid = outputs["prediction_id"]["data"][0]
    feedback = client.post(
        "/v1/feedback", json={"prediction_id": pid, "label": "negative"}, headers={"Idempotency-Key": "v2"}
    )
    assert feedback.status_code == 200, feedback.text
    only = _infer(client, name, [[t] for t in TEXTS], shape=[2, 1], outputs=[{"name": "label"}]).json()
    assert [o["name"] for o in only["outputs"]] == ["label"]
    versioned = client.post(f"/v2/models/{name}/versions/0/infer", json={"inputs": [
        {"name": "t", "shape": [1], "datatype": "BYTES", "data": TEXTS[:1]}]})  # fmt: skip
    assert versioned.status_code == 200


@pytest.mark.parametrize(
    "path_name,data,shape,datatype,status,words",
    [
        ("other", TEXTS, None, "BYTES", 404, "not served here"),
        (None, TEXTS, None, "FP32", 422, "datatype"),
        (None, TEXTS, [3], "BYTES", 422, "shape says 3"),
        (None, [1, 2], None, "BYTES", 422, "send a string"),
        (None, TEXTS, [2, 2], "BYTES", 422, "shape [2, 2]"),
        (None, [""], None, "BYTES", 422, "empty text"),
        (None, [], [0], "BYTES", 422, "no data"),
    ],
)
def test_bad_requests_are_named(client, text_run, path_name, data, shape, datatype, status, words):
    answer = _infer(client, path_name or text_run.name, data, shape=shape, datatype=datatype)
    assert answer.status_code == status and words in answer.json()["error"], answer.text


def test_one_json_line_per_request_on_demand(text_run, tmp_path, caplog):
    with make_client(text_run, tmp_path, log_json=True) as client:
        logger = logging.getLogger("fmloop.access")
        logger.addHandler(caplog.handler)  # the access log does not propagate to the root's handlers
        try:
            answer = client.post("/v1/predict", json={"inputs": TEXTS[:1]}, headers={"X-Request-ID": "abc"})
            client.get("/nowhere")
        finally:
            logger.removeHandler(caplog.handler)
    assert answer.headers["X-Request-ID"] == "abc"
    lines = [json.loads(r.getMessage()) for r in caplog.records if r.name == "fmloop.access"]
    assert [(x["route"], x["status"]) for x in lines] == [("/v1/predict", 200), ("other", 404)]
    assert lines[0]["request_id"] == "abc" and lines[0]["model"] == text_run.name and lines[0]["latency_ms"] > 0
    assert lines[0]["identity"] == "local" and lines[0]["model_version"] == 0
