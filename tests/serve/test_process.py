"""The model in a process of its own: the same answers as in the server's process, explanations
from the server's side, a model process killed mid-service started again for the next batch, and
a model that cannot load is a one-line error at start-up."""

import base64
import os
import signal
from concurrent.futures import ThreadPoolExecutor

import pytest

from fmloop.core.errors import ModelError
from fmloop.serve.model import load_served
from fmloop.serve.process import ModelProcess
from tests.serve.conftest import make_client

TEXTS = ["it was great", "a dull and tired film", "the cat sees the river today", "not bad at all"]


def test_a_model_process_answers_as_the_server_process_would_and_survives_a_kill(text_run, tmp_path):
    expected = load_served(str(text_run), "torch", 1).predict(TEXTS)
    with make_client(text_run, tmp_path, model_process=True, backend="torch", threads=1, max_wait_ms=20) as client:
        info = client.get("/v1/model").json()
        assert info["backend"]["name"] == "torch"
        with ThreadPoolExecutor(4) as pool:  # concurrent requests: batched in the model process
            answers = list(pool.map(lambda t: client.post("/v1/predict", json={"inputs": [t]}), TEXTS))
        assert [a.status_code for a in answers] == [200] * 4
        got = [a.json()["predictions"][0] for a in answers]
        assert [g["label"] for g in got] == [e["label"] for e in expected]
        assert [g["probabilities"] for g in got] == [e["probabilities"] for e in expected]

        explained = client.post("/v1/explain", json={"input": TEXTS[0]})  # the PyTorch model, in this process
        assert explained.status_code == 200 and "convergence_delta" in explained.json()["explanation"]

        served = client.app.state.server.holder.current
        os.kill(served._process.pid, signal.SIGKILL)
        served._process.join(10)
        again = client.post("/v1/predict", json={"inputs": TEXTS})
        assert again.status_code == 200, again.text
        assert [p["label"] for p in again.json()["predictions"]] == [e["label"] for e in expected]
        assert served._process.is_alive()  # started again


def test_a_model_that_cannot_load_is_one_line_naming_it(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelError, match="empty"):
        ModelProcess.start(str(tmp_path / "empty"), "torch", 1)


def test_images_cross_the_pipe_as_raw_bytes_and_come_back_as_in_process(image_run, image_dir, tmp_path):
    files = sorted(image_dir.rglob("*.png"))[:4]
    inputs = [{"image_base64": base64.b64encode(f.read_bytes()).decode()} for f in files]
    answers = []
    for process in (True, False):
        with make_client(image_run, tmp_path / str(process), model_process=process, backend="torch") as client:
            response = client.post("/v1/predict", json={"inputs": inputs})
            assert response.status_code == 200, response.text
            answers.append([(p["label"], p["probabilities"]) for p in response.json()["predictions"]])
    assert answers[0] == answers[1]
