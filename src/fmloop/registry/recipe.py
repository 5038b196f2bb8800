"""A registered version's recipe: the config it was trained with and its training data, kept in the
registry so that retrain and drift run on any machine that reaches the registry and the feedback
store, not only on the one that trained it.

At registration the run's config.yaml is already an artifact of its MLflow run (tracking.py); the
training data is logged beside it under `training_data/` when it is a local file or folder of at
most MAX_SNAPSHOT_BYTES, and the version's `fmloop.training_data` tag says where it is:
`artifact:training_data/NAME`, or the path or hub id as the config gave it (larger data, or data
that is not a local path, must then be reachable from where retrain runs).

`training_recipe(version)` reads the run dir when this machine has it, else downloads config.yaml and the
snapshot once into the fmloop cache.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import yaml
from mlflow.exceptions import MlflowException

from fmloop.core.artifacts import RunDir, building
from fmloop.core.errors import DataError, RegistryError
from fmloop.core.home import cache_dir, tracking_uri

TRAINING_DATA_TAG = "fmloop.training_data"
ARTIFACT_PREFIX = "artifact:"
SNAPSHOT_FOLDER = "training_data"
MAX_SNAPSHOT_BYTES = 256 * 1024 * 1024


def _size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def log_training_data(mlflow, run_id: str, run: RunDir) -> str:
    """Log the run's training data beside its model when it is a local path small enough; returns
    the value of the version's TRAINING_DATA_TAG."""
    config = run.read_config() if run.config_path.exists() else {}
    given = (config.get("data") or {}).get("path")
    if not given:
        return ""
    path = Path(given)
    if not path.exists() or _size(path) > MAX_SNAPSHOT_BYTES:
        return str(given)  # a hub id, a URI, or too large to copy: recorded as given
    logged = {Path(a.path).name for a in mlflow.list_artifacts(run_id, SNAPSHOT_FOLDER)}
    if path.name not in logged:
        if path.is_dir():
            mlflow.log_artifacts(run_id, str(path), f"{SNAPSHOT_FOLDER}/{path.name}")
        else:
            mlflow.log_artifact(run_id, str(path), SNAPSHOT_FOLDER)
    return f"{ARTIFACT_PREFIX}{SNAPSHOT_FOLDER}/{path.name}"


def training_recipe(version) -> tuple[dict, str]:
    """(the resolved config, the training data's path) of a registered version."""
    run = RunDir(version.tags.get("fmloop.run_dir", ""))
    if version.tags.get("fmloop.run_dir") and run.config_path.exists():
        config = run.read_config()
        data = (config.get("data") or {}).get("path")
        if data and Path(data).exists():
            return config, data
    return _from_registry(version)


def _from_registry(version) -> tuple[dict, str]:
    recorded = version.tags.get(TRAINING_DATA_TAG, "")
    if not recorded:
        raise RegistryError(
            f"{version.reference} was registered without its training data, and its run dir "
            f"({version.tags.get('fmloop.run_dir') or 'unknown'}) is not on this machine: run this where the run "
            f"dir is, or register the run again."
        )
    folder = cache_dir("recipes", version.name, str(version.version))
    if not (folder / "config.yaml").exists():
        root = version.source.removesuffix("/model")
        from mlflow.artifacts import download_artifacts

        with building(folder, replace=True) as tmp:
            try:
                # the tracking URI named: MLflow's process-wide one may point elsewhere
                uri = tracking_uri()
                download_artifacts(artifact_uri=f"{root}/config.yaml", dst_path=str(tmp), tracking_uri=uri)
                if recorded.startswith(ARTIFACT_PREFIX):
                    got = Path(
                        download_artifacts(
                            artifact_uri=f"{root}/{SNAPSHOT_FOLDER}", dst_path=str(tmp), tracking_uri=uri
                        )
                    )
                    if got != tmp / SNAPSHOT_FOLDER:
                        shutil.move(str(got), tmp / SNAPSHOT_FOLDER)
            except (MlflowException, OSError) as err:
                raise RegistryError(
                    f"the recipe of {version.reference} cannot be read from {root}: {str(err).splitlines()[0]}"
                ) from None
    config = yaml.safe_load((folder / "config.yaml").read_text()) or {}
    if recorded.startswith(ARTIFACT_PREFIX):
        data = str(folder / recorded.removeprefix(ARTIFACT_PREFIX))
    else:
        data = recorded
        if "://" not in data and not Path(data).exists() and Path(data).is_absolute():
            raise DataError(
                f"The training data of {version.reference} ({data}) is not on this machine and was too large to "
                f"keep in the registry; make it reachable at that path."
            )
    config.setdefault("data", {})["path"] = data
    return config, data
