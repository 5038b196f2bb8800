"""`fmloop drift` on a real registry and store: served inputs of another kind are flagged (exit 10),
more of the training kind are not."""

import csv
import shutil

import pytest

from fmloop.feedback.store import NewPrediction, Store
from fmloop.registry import models
from tests.conftest import finetune_tiny, make_corpus, make_sentiment, needs_shared, run_cli

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


def test_imdb_after_sst2_is_flagged_and_sst2_test_after_sst2_train_is_not(home, tiny_base, tmp_path):
    """On the real datasets: a champion trained on SST-2 sentences, served IMDb reviews (long, other
    style) drifts; served SST-2 test sentences do not."""
    import gzip
    import json

    sst2 = needs_shared("text/sst2")
    imdb = needs_shared("text/imdb/test.jsonl.gz")
    run = finetune_tiny(tiny_base, sst2, tmp_path / "champion", max_steps=40, epochs=1, batch_size=32)
    models.register(run.path, "sst2")
    models.promote("sst2", 1)
    with gzip.open(imdb, "rt") as fh:
        reviews = [json.loads(line)["text"] for _, line in zip(range(300), fh)]
    with open(sst2 / "test.csv", newline="") as fh:
        sentences = [row["text"] for row in csv.DictReader(fh)][:300]
    for name, texts, flagged in [("imdb", reviews, True), ("sst2-test", sentences, False)]:
        db = f"sqlite:///{tmp_path / name}.db"
        _served(db, texts)
        result = run_cli("drift", "sst2", "--db", db, "--out", str(tmp_path / f"drift-{name}"))
        assert result.returncode == (10 if flagged else 0), f"{name}: {result.stderr}"
        tests = json.loads((tmp_path / f"drift-{name}" / "drift.json").read_text())["tests"]
        assert all(isinstance(t["drifted"], bool) for t in tests)
