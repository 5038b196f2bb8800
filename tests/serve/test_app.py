"""The HTTP API in process: predictions equal fmloop.load's, feedback is idempotent and checked,
bad input is a 4xx naming the field, limits and auth hold, and the store can go away."""

from concurrent.futures import ThreadPoolExecutor

import pytest

from fmloop.models.loading import load
from tests.serve.conftest import make_client

TEXTS = ["my friend sees the river and it was great today", "the cat likes a long song and it was awful again"]


def _predict(client, inputs):
    response = client.post("/v1/predict", json={"inputs": inputs})
    assert response.status_code == 200, response.text
    return response.json()


def _feedback(client, body, key="k1", **headers):
    return client.post("/v1/feedback", json=body, headers={"Idempotency-Key": key, **headers} if key else headers)


def test_predictions_are_those_of_the_model(client, text_run):
    body = _predict(client, TEXTS)
    assert body["model"] == {"name": text_run.name, "version": 0}
    expected = load(text_run).predict(TEXTS)
    assert [p["label"] for p in body["predictions"]] == [e["label"] for e in expected]
    for got, want in zip(body["predictions"], expected):
        assert got["probabilities"] == pytest.approx(want["probabilities"], abs=1e-5)
    assert len({p["prediction_id"] for p in body["predictions"]}) == 2


def test_feedback_is_stored_once_per_key_and_checked(client):
    pid = _predict(client, TEXTS[:1])["predictions"][0]["prediction_id"]
    first = _feedback(client, {"prediction_id": pid, "label": "negative"})
    replay = _feedback(client, {"prediction_id": pid, "label": "negative"})
    assert first.status_code == replay.status_code == 200
    assert first.json()["stored"] and not replay.json()["stored"]
    assert first.json()["feedback_id"] == replay.json()["feedback_id"]
    assert _feedback(client, {"prediction_id": pid, "label": "positive"}).status_code == 409
    wrong = _feedback(client, {"prediction_id": pid, "label": "maybe"}, key="k2")
    assert wrong.status_code == 422 and "not one of the model's labels" in wrong.json()["error"]
    assert _feedback(client, {"prediction_id": pid, "label": "negative"}, key=None).status_code == 400
    unknown = _feedback(client, {"prediction_id": "0" * 32, "label": "negative"}, key="k3")
    assert unknown.status_code == 404
    new_input = _feedback(client, {"input": "never predicted", "label": "positive"}, key="k4")
    assert new_input.status_code == 200 and new_input.json()["prediction_id"] is None
    recent = client.get("/v1/recent").json()
    assert [f["label"] for f in recent["feedback"]] == ["positive", "negative"]
    assert recent["predictions"][0]["corrected"] == "negative"


@pytest.mark.parametrize(
    "body,status,field",
    [
        ('{"inputs": ["a"', 422, "not valid JSON"),
        ({"inputs": []}, 422, "inputs"),
        ({"inputs": "a text"}, 422, "inputs"),
        ({"inputs": [""]}, 422, "inputs.0: empty text"),
        ({"inputs": [7]}, 422, "inputs.0"),
        ({"inputs": ["a"], "extra": 1}, 422, "extra"),
        ({"inputs": ["a"] * 65}, 413, "over the limit of 64"),
        ({"inputs": ["a" * 20_001]}, 422, "over the limit of 20000"),
        ({"inputs": [{"image_base64": "aGk="}]}, 422, "this model reads text"),
    ],
)
def test_bad_input_is_a_4xx_naming_the_field(client, body, status, field):
    kwargs = (
        {"content": body, "headers": {"Content-Type": "application/json"}} if isinstance(body, str) else {"json": body}
    )
    response = client.post("/v1/predict", **kwargs)
    assert response.status_code == status and field in response.json()["error"], response.text
    assert client.get("/livez").status_code == 200  # and the server keeps serving


def test_an_oversized_body_is_refused_before_it_is_read(text_run, tmp_path):
    with make_client(text_run, tmp_path, max_body_bytes=2048) as client:
        response = client.post("/v1/predict", json={"inputs": ["x" * 4000]})
    assert response.status_code == 413


def test_concurrent_requests_share_batches(client):
    with ThreadPoolExecutor(16) as pool:
        bodies = list(pool.map(lambda t: _predict(client, [t]), [TEXTS[i % 2] + f" {i}" for i in range(32)]))
    assert all(len(b["predictions"]) == 1 for b in bodies)
    metrics = client.get("/metrics").text
    batches = float(
        next(line.split()[-1] for line in metrics.splitlines() if line.startswith("fmloop_batch_size_count"))
    )
    assert batches < 32
    assert 'fmloop_requests_total{route="/v1/predict",status="200"} 32.0' in metrics


def test_health_docs_and_page(client):
    assert client.get("/readyz").json()["status"] == "ready"
    assert "/v1/feedback" in client.get("/openapi.json").json()["paths"]
    assert client.get("/docs").status_code == 200
    assert "Predict" in client.get("/").text
    info = client.get("/v1/model").json()
    assert info["labels"] == ["negative", "positive"] and info["auth"] is False


def test_a_token_guards_feedback(text_run, tmp_path, monkeypatch):
    monkeypatch.setenv("FMLOOP_API_TOKEN", "s3cret")
    with make_client(text_run, tmp_path) as client:
        pid = _predict(client, TEXTS[:1])["predictions"][0]["prediction_id"]  # predicting needs no token
        body = {"prediction_id": pid, "label": "negative"}
        assert _feedback(client, body).status_code == 401
        assert _feedback(client, body, Authorization="Bearer wrong").status_code == 401
        assert _feedback(client, body, Authorization="Bearer s3cret").status_code == 200


def test_without_a_store_predictions_go_on_and_feedback_is_503(text_run, tmp_path):
    config_db = "postgresql://nobody@127.0.0.1:9/none"  # nothing listens there
    from fastapi.testclient import TestClient

    from fmloop.serve.app import create_app
    from fmloop.serve.config import ServeConfig

    with TestClient(create_app(ServeConfig(model=str(text_run), database=config_db))) as client:
        pid = _predict(client, TEXTS[:1])["predictions"][0]["prediction_id"]
        response = _feedback(client, {"prediction_id": pid, "label": "negative"})
        assert response.status_code == 503 and response.headers["Retry-After"]
        assert client.get("/v1/recent").status_code == 503
        assert client.get("/readyz").status_code == 200


@pytest.mark.parametrize(
    "task,labels,given,stored",
    [
        ("regression", None, 3.5, "3.5"),
        ("regression", None, "high", None),
        ("multilabel", ["a", "b", "c"], ["c", "a"], '["a", "c"]'),
        ("multilabel", ["a", "b"], ["a", "z"], None),
        ("classification", ["neg", "pos"], ["neg"], None),
    ],
)
def test_corrected_labels_take_the_task_s_form(task, labels, given, stored):
    from types import SimpleNamespace

    from fmloop.serve.guards import ApiError
    from fmloop.serve.routes import check_label

    served = SimpleNamespace(task=task, labels=labels)
    if stored is None:
        with pytest.raises(ApiError) as err:
            check_label(given, served)
        assert err.value.status == 422
    else:
        assert check_label(given, served) == stored


def test_too_many_requests_in_progress_are_shed_with_retry_after(client):
    client.app.state.server.in_flight = 256  # as if 256 predictions were in progress
    response = client.post("/v1/predict", json={"inputs": ["a text"]})
    assert response.status_code == 503 and response.headers["Retry-After"] == "1"
    client.app.state.server.in_flight = 0
    assert client.post("/v1/predict", json={"inputs": ["a text"]}).status_code == 200


def test_sampled_predictions_wait_for_audit_labels(text_run, tmp_path):
    with make_client(text_run, tmp_path, audit_fraction=1.0) as client:
        ids = [p["prediction_id"] for p in _predict(client, TEXTS)["predictions"]]
        client.app.state.server.writer.flush()
        queue = client.get("/v1/audit").json()
        assert {p["prediction_id"] for p in queue["predictions"]} == set(ids)
        assert "label" not in queue["predictions"][0] and queue["labels"] == ["negative", "positive"]
        labelled = _feedback(client, {"prediction_id": ids[0], "label": "positive", "kind": "audit"}, key="a1")
        assert labelled.status_code == 200, labelled.text
        assert [p["prediction_id"] for p in client.get("/v1/audit").json()["predictions"]] == [ids[1]]
    with make_client(text_run, tmp_path / "none", audit_fraction=0.0) as client:
        (pid,) = [p["prediction_id"] for p in _predict(client, TEXTS[:1])["predictions"]]
        refused = _feedback(client, {"prediction_id": pid, "label": "positive", "kind": "audit"})
        assert refused.status_code == 422 and "not sampled for the audit" in refused.json()["error"]
        assert client.get("/v1/audit").json()["predictions"] == []


def test_explain_answers_word_scores_for_the_answer_and_refuses_an_unknown_target(client):
    text = "my friend sees the river and it was great today"
    body = client.post("/v1/explain", json={"input": text}).json()
    e = body["explanation"]
    assert e["target"] == _predict(client, [text])["predictions"][0]["label"]
    assert [w["word"] for w in e["words"]] == text.split() and "convergence_delta" in e
    bad = client.post("/v1/explain", json={"input": text, "target": "neutral"})
    assert bad.status_code == 422 and "target" in bad.json()["error"]
    assert client.post("/v1/explain", json={"input": ""}).status_code == 422
