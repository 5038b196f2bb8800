"""Run tracking: a run dir becomes an MLflow run with its config, metric history and reports, once;
a tracking store that cannot be reached never fails the stage."""

import shutil

from fmloop.registry.tracking import client, track
from tests.conftest import run_cli


def test_a_run_dir_is_logged_with_its_history_once(home, text_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(text_run, run)
    run_id = track(run)
    logged = client().get_run(run_id)
    assert logged.data.params["train.lr"] == "0.003" and logged.data.tags["fmloop.kind"] == "finetune"
    history = client().get_metric_history(run_id, "accuracy")
    assert len(history) >= 2 and sorted(m.step for m in history) == [m.step for m in history]
    assert logged.data.metrics["validation_accuracy"] > 0.5
    assert {"config.yaml", "manifest.json", "report.html"} <= {a.path for a in client().list_artifacts(run_id)}
    assert logged.info.status == "FINISHED"
    assert track(run) == run_id  # the same state is not logged twice
    assert len(client().search_runs([logged.info.experiment_id])) == 1


def test_an_unreachable_store_is_reported_once_and_the_stage_succeeds(home, text_run, sentiment_dir, tmp_path):
    env = {
        "FMLOOP_TRACKING": "on",
        "MLFLOW_TRACKING_URI": "http://127.0.0.1:9",  # nothing listens on the discard port
        "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0",
        "MLFLOW_HTTP_REQUEST_TIMEOUT": "3",
    }
    out = tmp_path / "eval"
    result = run_cli("evaluate", str(text_run), str(sentiment_dir), "--out", str(out), env=env)
    assert result.returncode == 0, result.stderr
    assert result.stderr.count("not tracked") == 1 and (out / "metrics.json").exists()


def test_a_stage_run_from_the_cli_is_tracked(home, text_run, sentiment_dir, tmp_path):
    out = tmp_path / "eval"
    result = run_cli("evaluate", str(text_run), str(sentiment_dir), "--out", str(out), env={"FMLOOP_TRACKING": "on"})
    assert result.returncode == 0, result.stderr
    runs = client().search_runs([client().get_experiment_by_name("fmloop").experiment_id])
    assert [r.data.tags["fmloop.kind"] for r in runs] == ["evaluate"]
    assert runs[0].data.metrics["accuracy"] > 0.5
