"""A fresh fmloop home per test: its own tracking store, registry files and cache."""

import pytest


@pytest.fixture
def home(tmp_path, monkeypatch):
    """A fresh fmloop home (tracking store, registry files, cache) for one test."""
    monkeypatch.setenv("FMLOOP_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    import fmloop.registry

    fmloop.registry._resolved.clear()
    return tmp_path / "home"
