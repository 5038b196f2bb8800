"""A real server app around the tiny fine-tuned text model, with its own SQLite feedback store.
The model runs in the test's process (a model process per test would cost seconds each);
tests/serve/test_process.py serves from a model process."""

import pytest
from fastapi.testclient import TestClient

from fmloop.serve.app import create_app
from fmloop.serve.config import ServeConfig


def make_client(model, tmp_path, **settings) -> TestClient:
    settings = {"model_process": False, **settings}
    config = ServeConfig(model=str(model), database=f"sqlite:///{tmp_path / 'feedback.db'}", **settings)
    return TestClient(create_app(config))


@pytest.fixture
def client(text_run, tmp_path):
    with make_client(text_run, tmp_path, max_wait_ms=20) as test_client:
        yield test_client
