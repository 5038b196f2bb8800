"""Where fmloop keeps what outlives a run dir: the tracking store, the model registry's files, the
feedback database and the cache of registry models.

    FMLOOP_HOME           default ~/.fmloop
    MLFLOW_TRACKING_URI   default sqlite:///$FMLOOP_HOME/mlflow.db (runs and the model registry)
    FMLOOP_DB             default sqlite:///$FMLOOP_HOME/feedback.db (predictions and feedback)

With PostgreSQL for FMLOOP_DB and an MLflow server for MLFLOW_TRACKING_URI, several machines share
one registry and one feedback store.
"""

from __future__ import annotations

import os
from pathlib import Path

DEFAULT_HOME = "~/.fmloop"


def home() -> Path:
    """The fmloop home folder (created on first use)."""
    path = Path(os.environ.get("FMLOOP_HOME") or DEFAULT_HOME).expanduser().resolve()
    path.mkdir(parents=True, exist_ok=True)
    return path


def tracking_uri() -> str:
    """The MLflow tracking (and registry) store fmloop logs to."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{home() / 'mlflow.db'}"


def artifact_root() -> str:
    """Where the embedded MLflow store keeps run and model files (an MLflow server keeps its own)."""
    return (home() / "mlartifacts").as_uri()


def database_url() -> str:
    """The SQLAlchemy URL of the feedback store."""
    return os.environ.get("FMLOOP_DB") or f"sqlite:///{home() / 'feedback.db'}"


def cache_dir(*parts: str) -> Path:
    """A folder under HOME/cache, e.g. cache_dir('models', name, version)."""
    path = home().joinpath("cache", *parts)
    path.parent.mkdir(parents=True, exist_ok=True)
    return path
