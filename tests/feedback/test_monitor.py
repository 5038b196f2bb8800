"""`fmloop drift` on a real registry and store: served inputs of another kind are flagged (exit 10),
more of the training kind are not."""

import shutil

import pytest

from fmloop.feedback.store import NewPrediction, Store
from fmloop.registry import models
from tests.conftest import make_corpus, make_sentiment, run_cli

pytestmark = pytest.mark.slow


def _served(db: str, texts: list[str]) -> None:
    store = Store.open(db)
    store.add_predictions([NewPrediction("sst2", 1, "text", t, "positive", None, None, 1.0) for t in texts])
    store.close()


@pytest.mark.parametrize("shifted", [False, True])
def test_a_shifted_stream_is_flagged_and_an_unshifted_one_is_not(home, text_run, tmp_path, shifted):
    run = tmp_path / "champion"
    shutil.copytree(text_run, run)
    models.register(run, "sst2")
    models.promote("sst2", 1)
    db = f"sqlite:///{tmp_path / 'feedback.db'}"
    texts = make_corpus(150, seed=5) if shifted else [r["text"] for r in make_sentiment(150, seed=9)]
    _served(db, texts)
    result = run_cli("drift", "sst2", "--db", db, "--n", "150", "--out", str(tmp_path / "drift"))
    assert result.returncode == (10 if shifted else 0), result.stderr
    assert (tmp_path / "drift" / "report.html").exists() and (home / "drift" / "sst2.json").exists()
    from tests.serve.conftest import make_client

    with make_client("models:/sst2@champion", tmp_path / "serve") as client:  # the server shows it
        metrics = client.get("/metrics").text
    assert f"fmloop_drift_detected {1.0 if shifted else 0.0}" in metrics
