"""What every deployment meets first: stored user data needs the token, an input no tokenizer or
store can take is its own request's 422 (never its batch-mates' failure), odd headers and chunked
bodies are 4xx, the store's URL never reaches a client, and the prediction-write queue is bounded."""

import json
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fmloop.serve.batching import Batcher
from fmloop.serve.guards import ApiError, check_text
from fmloop.serve.identity import Credentials
from fmloop.serve.metrics import ServerMetrics
from fmloop.serve.writer import PredictionWriter
from tests.serve.conftest import make_client

GOOD = "my friend sees the river and it was great today"


def _post_json(client, path, body, **headers):
    # ensure_ascii: a lone surrogate travels as the legal JSON escape \ud800
    raw = json.dumps(body, ensure_ascii=True).encode()
    return client.post(path, content=raw, headers={"Content-Type": "application/json", **headers})


@pytest.fixture
def guarded(text_run, tmp_path, monkeypatch):
    monkeypatch.setenv("FMLOOP_API_TOKEN", "s3cret")
    with make_client(text_run, tmp_path, max_wait_ms=50, audit_fraction=1.0) as client:
        yield client


def test_stored_user_data_needs_the_token(guarded):
    pid = _post_json(guarded, "/v1/predict", {"inputs": [GOOD]}).json()["predictions"][0]["prediction_id"]
    assert pid
    for path in ("/v1/recent", "/v1/audit"):
        assert guarded.get(path).status_code == 401
        assert guarded.get(path, headers={"Authorization": "Bearer wrong"}).status_code == 401
        answer = guarded.get(path, headers={"Authorization": "Bearer s3cret"})
        assert answer.status_code == 200, answer.text
    assert GOOD in guarded.get("/v1/recent", headers={"Authorization": "Bearer s3cret"}).text


@pytest.mark.parametrize("value", ["Bearer s\xe9cret", "Bearer \xff\xfe", "s3cret\xa0"])
def test_a_non_ascii_authorization_header_is_a_401(guarded, value):
    response = guarded.get("/v1/recent", headers={"Authorization": value.encode("latin-1")})
    assert response.status_code == 401, response.text


def test_token_comparison_never_raises():
    def known(authorization, token):
        return Credentials(shared_token=token).identify(authorization, "127.0.0.1") is not None

    assert known("Bearer s3cret", "s3cret")
    assert not known("Bearer s\xe9cret", "s3cret")
    assert not known(None, "s3cret") and not known("", "tökén")
    assert known("Bearer " + "tökén".encode().decode("latin-1"), "tökén")  # UTF-8 bytes, latin-1 decoded


@pytest.mark.parametrize("text,why", [("good \ud800 film", "lone surrogate at character 5"), ("a\x00b", "NUL")])
def test_check_text_names_the_problem(text, why):
    with pytest.raises(ApiError, match=why) as err:
        check_text(text, "inputs.3")
    assert err.value.status == 422 and "inputs.3" in err.value.message


def test_a_lone_surrogate_is_422_while_concurrent_good_requests_are_answered(guarded):
    bodies = [{"inputs": [GOOD + f" {i}"]} for i in range(12)]
    bodies[5] = {"inputs": [GOOD, "bad \ud800 text"]}
    with ThreadPoolExecutor(12) as pool:
        answers = list(pool.map(lambda b: _post_json(guarded, "/v1/predict", b), bodies))
    assert answers[5].status_code == 422 and "inputs.1" in answers[5].json()["error"]
    assert [a.status_code for i, a in enumerate(answers) if i != 5] == [200] * 11
    pid = answers[0].json()["predictions"][0]["prediction_id"]
    feedback = _post_json(
        guarded, "/v1/feedback", {"input": "x\ud800", "label": "negative"},
        **{"Idempotency-Key": "k1", "Authorization": "Bearer s3cret"},
    )  # fmt: skip
    assert feedback.status_code == 422 and "input" in feedback.json()["error"]
    ok = _post_json(
        guarded, "/v1/feedback", {"prediction_id": pid, "label": "negative"},
        **{"Idempotency-Key": "k2", "Authorization": "Bearer s3cret"},
    )  # fmt: skip
    assert ok.status_code == 200, ok.text


def test_an_error_in_one_input_fails_only_its_own_future():
    def run(values):
        if "poison" in values:
            raise ValueError("cannot score poison")
        return [v.upper() for v in values]

    batcher = Batcher(run, max_batch_size=8, max_wait_ms=200)
    batcher.start()
    for _ in range(3):
        batcher.announce()
    futures = [batcher.submit([v], announced=True)[0] for v in ("a", "poison", "b")]
    assert futures[0].result(5) == "A" and futures[2].result(5) == "B"
    with pytest.raises(ValueError, match="poison"):
        futures[1].result(5)
    batcher.stop()


def test_a_chunked_body_over_the_limit_is_413(text_run, tmp_path):
    chunks = (b"x" * 65536 for _ in range(144))  # 9 MB with no Content-Length: only the bytes read can tell
    with make_client(text_run, tmp_path, max_body_bytes=1_000_000) as client:
        response = client.post("/v1/predict", content=chunks, headers={"Content-Type": "application/json"})
        assert response.status_code == 413, response.text
        assert "over the limit of 1000000" in response.json()["error"]
        small = client.post(
            "/v1/predict",
            content=iter([b'{"inputs": ', b'["a fine film"]}']),
            headers={"Content-Type": "application/json"},
        )
        assert small.status_code == 200, small.text


def test_the_body_limit_stops_reading_at_the_limit():
    # ASGI level (the test client reads a body whole before the app sees it): 100 chunks of 500 bytes
    # against a limit of 1,200 bytes are refused after the third chunk, and the app never runs.
    import asyncio

    from fmloop.serve.guards import BodyLimit

    received, sent, called = [], [], []

    async def receive():
        received.append(1)
        return {"type": "http.request", "body": b"y" * 500, "more_body": len(received) < 100}

    async def send(message):
        sent.append(message)

    async def app(scope, receive, send):
        called.append(1)

    scope = {"type": "http", "headers": [(b"transfer-encoding", b"chunked")]}
    asyncio.run(BodyLimit(app, limit=1200)(scope, receive, send))
    assert len(received) == 3 and not called
    assert sent[0]["status"] == 413


@pytest.fixture(scope="module")
def fuzz_client(text_run, tmp_path_factory):
    with make_client(text_run, tmp_path_factory.mktemp("fuzz"), max_wait_ms=1) as client:
        yield client


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck), database=None)
@given(text=st.text(st.characters(codec=None, exclude_categories=()), min_size=1, max_size=40))
def test_any_json_string_is_answered_200_or_422(fuzz_client, text):
    # every code point, surrogates and NUL included: 200 when a tokenizer and a store can take it, else 422
    response = _post_json(fuzz_client, "/v1/predict", {"inputs": [text]})
    bad = not text.strip() or "\x00" in text or any(0xD800 <= ord(c) < 0xE000 for c in text)
    assert response.status_code == (422 if bad else 200), (repr(text), response.text)


def test_the_store_s_url_never_reaches_a_client(text_run, tmp_path):
    from fastapi.testclient import TestClient

    from fmloop.serve.app import create_app
    from fmloop.serve.config import ServeConfig

    url = "postgresql://nobody:pw@127.0.0.1:9/secretdb"  # nothing listens there
    with TestClient(create_app(ServeConfig(model=str(text_run), database=url))) as client:
        pid = client.post("/v1/predict", json={"inputs": [GOOD]}).json()["predictions"][0]["prediction_id"]
        answers = [
            client.post(
                "/v1/feedback", json={"prediction_id": pid, "label": "negative"}, headers={"Idempotency-Key": "k"}
            ),
            client.get("/v1/recent"),
            client.get("/v1/audit"),
        ]
    for answer in answers:
        assert answer.status_code == 503
        assert "127.0.0.1" not in answer.text and "secretdb" not in answer.text and "postgresql" not in answer.text


class _SlowStore:
    def __init__(self):
        self.release, self.rows, self.calls, self.entered = threading.Event(), [], 0, threading.Event()

    def add_predictions(self, rows, ids, images=None):
        self.calls += 1
        self.entered.set()
        self.release.wait(10)
        self.rows += rows


def test_requests_queued_during_a_commit_share_the_next_transaction():
    store = _SlowStore()
    writer = PredictionWriter(store, ServerMetrics())
    writer.start()
    writer.put(["id0"], ["row0"])
    assert store.entered.wait(10)  # the first transaction is committing (held)
    for i in range(1, 10):
        writer.put([f"id{i}"], [f"row{i}"])
    store.release.set()
    writer.flush()
    assert store.rows == [f"row{i}" for i in range(10)] and store.calls == 2
    writer.stop()


def test_the_prediction_write_queue_is_bounded_and_drains_on_stop():
    store, metrics = _SlowStore(), ServerMetrics()
    writer = PredictionWriter(store, metrics, max_rows=4)
    writer.start()
    accepted = [writer.put([f"id{i}"], [f"row{i}"]) for i in range(10)]
    assert accepted.count(True) == 4 and accepted[:4] == [True] * 4
    assert metrics.predictions_not_stored._value.get() == 6
    store.release.set()
    writer.stop()
    assert store.rows == ["row0", "row1", "row2", "row3"]  # nothing accepted is lost on a clean stop


_HEADER_BYTES = st.binary(min_size=1, max_size=30).map(lambda b: bytes(c for c in b if c not in b"\r\n\x00"))


@settings(max_examples=100, deadline=None, suppress_health_check=list(HealthCheck), database=None)
@given(auth=_HEADER_BYTES, key=_HEADER_BYTES)
def test_odd_header_bytes_are_never_a_5xx(fuzz_client, auth, key):
    headers = {"Authorization": auth, "Idempotency-Key": key, "Content-Type": "application/json"}
    answers = [
        fuzz_client.get("/v1/recent", headers={"Authorization": auth}),
        fuzz_client.post("/v1/feedback", content=b'{"input": "a fine film", "label": "positive"}', headers=headers),
    ]
    assert all(a.status_code < 500 for a in answers), [(a.status_code, a.text) for a in answers]
