"""Run tracking with MLflow: a finished (or stopped) run dir becomes an MLflow run with its
resolved config as params, every logged step of metrics.jsonl as metric history, the manifest's
final metrics, and config.yaml, manifest.json and the reports as artifacts.

The run dir stays the source of truth: tracking reads it after the stage, so the same function
serves every stage, the pipeline runner, and runs made before tracking was switched on. Tracking
never makes a stage fail: when the store cannot be reached, `track_quietly` says so once and the
stage's result stands.

    mlflow ui --backend-store-uri sqlite:///$HOME/.fmloop/mlflow.db   # see `fmloop info --tracking`
"""

from __future__ import annotations

import logging
import math
import os
import time
from pathlib import Path

from mlflow.entities import Metric, Param, RunTag
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from fmloop.core.artifacts import RunDir
from fmloop.core.home import artifact_root, tracking_uri

log = logging.getLogger(__name__)

EXPERIMENT = "fmloop"
ARTIFACTS = ("config.yaml", "manifest.json", "metrics.json", "report.html")
PARAM_LIMIT = 500  # characters per param value that every MLflow store accepts
BATCH = 1000  # metrics per log_batch call (MLflow's limit)
_warned = False


def client() -> MlflowClient:
    uri = tracking_uri()
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def enabled() -> bool:
    return os.environ.get("FMLOOP_TRACKING", "on").lower() not in ("off", "0", "false", "no")


def experiment_id(mlflow: MlflowClient, name: str = EXPERIMENT) -> str:
    """The experiment fmloop logs to, created with its files under the fmloop home for the embedded
    store (an MLflow server chooses its own artifact location)."""
    found = mlflow.get_experiment_by_name(name)
    if found is not None:
        return found.experiment_id
    embedded = tracking_uri().startswith("sqlite:") or tracking_uri().startswith("file:")
    return mlflow.create_experiment(name, artifact_location=f"{artifact_root()}/{name}" if embedded else None)


def flatten(tree: dict, prefix: str = "") -> dict[str, str]:
    """{'train': {'lr': 0.001}} -> {'train.lr': '0.001'} (MLflow params are flat strings)."""
    flat: dict[str, str] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            flat.update(flatten(value, name + "."))
        else:
            flat[name] = str(value)[:PARAM_LIMIT]
    return flat


def step_metrics(rows: list[dict], final: dict, final_step: int) -> list[Metric]:
    """metrics.jsonl rows as MLflow metric history, then the manifest's final numbers."""
    now = int(time.time() * 1000)
    out = []
    for row in rows:
        step = int(row.get("step", 0))
        for key, value in row.items():
            if key != "step" and isinstance(value, (int, float)) and not isinstance(value, bool):
                if math.isfinite(value):
                    out.append(Metric(key, float(value), now, step))
    for key, value in final.items():
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            out.append(Metric(key, float(value), now, final_step))
    return out


def track(path: str | Path) -> str:
    """Log the run dir at `path` as an MLflow run; returns its run id. A run dir already tracked in
    the same state (same store, same status) is not logged twice."""
    run = RunDir(path)
    manifest = run.read_manifest()
    recorded = manifest.get("tracking") or {}
    mlflow = client()
    if recorded.get("uri") == tracking_uri() and recorded.get("status") == manifest.status:
        try:
            return mlflow.get_run(recorded["run_id"]).info.run_id
        except MlflowException:
            pass  # the store was reset or replaced: log the run again
    tags = {
        "fmloop.kind": manifest.kind,
        "fmloop.status": manifest.status,
        "fmloop.run_dir": str(run.path.resolve()),
        "fmloop.version": manifest.fmloop_version or "",
        "fmloop.config_hash": manifest.config_hash or "",
        "fmloop.data_fingerprint": manifest.data_fingerprint or "",
    }
    created = mlflow.create_run(experiment_id(mlflow), run_name=run.path.name, tags=tags)
    run_id = created.info.run_id
    params = flatten(run.read_config()) if run.config_path.exists() else {}
    rows = run.read_metrics()
    final_step = max([int(r.get("step", 0)) for r in rows] + [int(manifest.metrics.get("steps", 0) or 0)])
    metrics = step_metrics(rows, manifest.metrics, final_step)
    items = [Param(k, v) for k, v in params.items()]
    for start in range(0, max(len(items), 1), 100):  # MLflow takes at most 100 params per call
        mlflow.log_batch(run_id, params=items[start : start + 100])
    for start in range(0, len(metrics), BATCH):
        mlflow.log_batch(run_id, metrics=metrics[start : start + BATCH])
    mlflow.log_batch(run_id, tags=[RunTag("mlflow.note.content", f"fmloop {manifest.kind} run {run.path}")])
    for name in ARTIFACTS:
        if (run.path / name).exists():
            mlflow.log_artifact(run_id, str(run.path / name))
    mlflow.set_terminated(run_id, "FINISHED" if manifest.status == "finished" else "KILLED")
    run.write_manifest(tracking={"uri": tracking_uri(), "run_id": run_id, "status": manifest.status})
    return run_id


def track_quietly(path: str | Path) -> str | None:
    """`track`, except that a store that cannot be reached is reported once and never fails the
    stage that called it. FMLOOP_TRACKING=off switches tracking off."""
    global _warned
    if not enabled():
        return None
    # MLflow's defaults retry an unreachable server for minutes; a stage that is done should not wait
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "20")
    try:
        return track(path)
    except Exception as err:  # the stage's result stands whatever the tracking store does
        if not _warned:
            _warned = True
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            log.warning("not tracked: the tracking store at %s cannot be reached (%s)", tracking_uri(), first)
        return None
