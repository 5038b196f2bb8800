"""The feedback store on each backend: SQLite always, PostgreSQL when FMLOOP_TEST_POSTGRES_URL
names a server (`.ci/run` starts one on loopback and sets it)."""

import os
import uuid

import pytest
from sqlalchemy import create_engine, text

from fmloop.feedback.config import RetrainConfig
from fmloop.feedback.store import Store

POSTGRES = os.environ.get("FMLOOP_TEST_POSTGRES_URL")


def _fresh_postgres_database() -> str:
    """A new empty database on the test server, so every test starts from nothing."""
    name = f"fmloop_{uuid.uuid4().hex[:12]}"
    admin = create_engine(POSTGRES.replace("postgresql://", "postgresql+psycopg://"), isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return POSTGRES.rsplit("/", 1)[0] + "/" + name


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'feedback.db'}"
    if not POSTGRES:
        pytest.skip("FMLOOP_TEST_POSTGRES_URL is not set (.ci/run starts PostgreSQL and sets it)")
    return _fresh_postgres_database()


@pytest.fixture
def store(store_url):
    opened = Store.open(store_url)
    yield opened
    opened.close()


def served_retrain(name: str, db: str, **settings) -> RetrainConfig:
    """Retrain settings for a champion corrected over HTTP in a test: a dozen epochs of a tiny
    model, and no cap per identity (the loopback caller sends every correction there)."""
    train = {"epochs": 12, "lr": 3e-3, "max_steps": None, "early_stopping_patience": None, "threads": 1}
    return RetrainConfig(name=name, database=db, train=train, min_corrections=10, max_identity_share=1.0, **settings)
