"""The model registry on MLflow's: versions with lineage, aliases, and `models:/` references.

    fmloop register RUN --name sst2          # a new version; RUN/model copied into the store
    fmloop alias sst2 champion 3             # point an alias at a version
    fmloop serve models:/sst2@champion       # any command that takes a model takes a reference

A version carries its lineage as tags: the weights fingerprint, the data fingerprint, the fmloop
version, the run's final metrics, and the registered versions its parents are (found by the
parents' weight fingerprints in the run's manifest). Its files live in the registry's artifact
store, so deleting the run dir loses nothing; a reference is downloaded once into the fmloop
cache and checked against the fingerprint before it is used; its recipe (config and training
data) is kept beside it (registry/recipe.py). Beside the files, an MLmodel file
makes each version an MLflow python_function model (registry/pyfunc.py), so
`mlflow.pyfunc.load_model("models:/NAME@ALIAS")` and `mlflow models serve` read it.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path

from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException

from fmloop.core.artifacts import RunDir, building
from fmloop.core.errors import RegistryError
from fmloop.core.faults import crash_point
from fmloop.core.home import cache_dir, tracking_uri
from fmloop.core.manifest import weights_fingerprint
from fmloop.models.presets import model_dir_of
from fmloop.registry.names import check_alias, check_name, parse_reference
from fmloop.registry.pyfunc import MLMODEL, write_mlmodel
from fmloop.registry.recipe import TRAINING_DATA_TAG, log_training_data
from fmloop.registry.tracking import client, track

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Version:
    """A registered model version as fmloop reads it."""

    name: str
    version: int
    aliases: tuple[str, ...]
    tags: dict[str, str]
    source: str
    created: int  # ms since the epoch

    @property
    def reference(self) -> str:
        return f"models:/{self.name}/{self.version}"

    @property
    def metrics(self) -> dict[str, float]:
        return {
            k.removeprefix("fmloop.metric."): float(v) for k, v in self.tags.items() if k.startswith("fmloop.metric.")
        }

    @property
    def labels(self) -> list[str] | None:
        raw = self.tags.get("fmloop.labels")
        return json.loads(raw) if raw else None


def _version(mv: ModelVersion) -> Version:
    return Version(
        name=mv.name,
        version=int(mv.version),
        aliases=tuple(getattr(mv, "aliases", []) or []),
        tags=dict(mv.tags or {}),
        source=mv.source,
        created=int(mv.creation_timestamp or 0),
    )


def _unreachable(err: Exception) -> RegistryError:
    first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return RegistryError(
        f"The model registry at {tracking_uri()} cannot be used: {first}. Check MLFLOW_TRACKING_URI "
        f"(unset: the embedded store under FMLOOP_HOME)."
    )


# Registering ---------------------------------------------------------------------------------


def register(
    path: str | Path, name: str, description: str | None = None, tags: dict[str, str] | None = None
) -> Version:
    """A new version of `name` from the finished fmloop run dir at `path` (or its `model/`), with
    `tags` beside the lineage tags (all set in the one call that creates the version)."""
    check_name(name)
    folder = model_dir_of(str(path))
    run = RunDir(folder.parent)
    if not run.manifest_path.exists() or not run.model_dir.is_dir():
        raise RegistryError(f"{path} is not an fmloop run dir with a model/ folder: register the run dir of a stage.")
    manifest = run.read_manifest()
    if manifest.status != "finished":
        raise RegistryError(
            f"{run.path} is a {manifest.status} {manifest.kind} run; only finished runs can be registered."
        )
    fingerprint = weights_fingerprint(run.model_dir)
    try:
        mlflow = client()
        run_id = track(run.path)
        logged = {Path(a.path).name for a in mlflow.list_artifacts(run_id, "model")}
        if not logged:
            mlflow.log_artifacts(run_id, str(run.model_dir), "model")
        if MLMODEL not in logged:  # MLflow's tools read the version as a python_function model
            with tempfile.TemporaryDirectory() as tmp:
                mlflow.log_artifact(run_id, str(write_mlmodel(Path(tmp), run_id)), "model")
        training_data = log_training_data(mlflow, run_id, run)  # so retrain and drift run on any machine
        try:
            mlflow.create_registered_model(name)
        except MlflowException as err:
            if "RESOURCE_ALREADY_EXISTS" not in str(err.error_code):
                raise
        parents = [v.reference.removeprefix("models:/") for v in _parent_versions(manifest)]
        tags = {
            "fmloop.kind": manifest.kind,
            "fmloop.task": str(manifest.get("task") or ""),
            "fmloop.labels": json.dumps(manifest.get("labels")) if manifest.get("labels") else "",
            "fmloop.weights_fingerprint": fingerprint or "",
            "fmloop.data_fingerprint": manifest.data_fingerprint or "",
            "fmloop.version": manifest.fmloop_version or "",
            "fmloop.run_dir": str(run.path.resolve()),
            "fmloop.parent_versions": ",".join(parents),
            TRAINING_DATA_TAG: training_data,
            **(tags or {}),
        }
        for key, value in manifest.metrics.items():
            if isinstance(value, float):
                tags[f"fmloop.metric.{key}"] = repr(value)
        source = f"{mlflow.get_run(run_id).info.artifact_uri}/model"
        mv = mlflow.create_model_version(name, source, run_id=run_id, tags=tags, description=description)
    except MlflowException as err:
        raise _unreachable(err) from None
    registered = [*(manifest.get("registered") or []), {"name": name, "version": int(mv.version)}]
    run.write_manifest(registered=registered)
    return _version(mv)


def _parent_versions(manifest) -> list[Version]:
    """Registered versions whose weights are the run's parents (by fingerprint)."""
    found = []
    for parent in manifest.parents:
        if not parent.fingerprint:
            continue
        for mv in client().search_model_versions(f"tags.`fmloop.weights_fingerprint` = '{parent.fingerprint}'"):
            found.append(_version(mv))
    return found


# Reading -------------------------------------------------------------------------------------


def list_models() -> list[dict]:
    """Every registered model: name, latest version, aliases."""
    try:
        out = []
        for rm in client().search_registered_models():
            versions = [int(v.version) for v in client().search_model_versions(f"name = '{rm.name}'")]
            out.append(
                {
                    "name": rm.name,
                    "versions": len(versions),
                    "latest": max(versions) if versions else None,
                    "aliases": dict(sorted((rm.aliases or {}).items())),
                }
            )
        return sorted(out, key=lambda m: m["name"])
    except MlflowException as err:
        raise _unreachable(err) from None


def versions(name: str) -> list[Version]:
    """The versions of `name`, newest first."""
    try:
        found = [_version(mv) for mv in client().search_model_versions(f"name = '{check_name(name)}'")]
        aliases = client().get_registered_model(name).aliases if found else {}
    except MlflowException as err:
        raise _unreachable(err) from None
    if not found:
        raise RegistryError(f"No registered model is named {name!r}: see `fmloop models list`.")
    # a search does not return aliases; the registered model holds them
    found = [replace(v, aliases=tuple(sorted(a for a, n in aliases.items() if int(n) == v.version))) for v in found]
    return sorted(found, key=lambda v: -v.version)


def get(ref: str) -> Version:
    """The version a `models:/NAME@ALIAS` or `models:/NAME/VERSION` reference names."""
    name, alias, number = parse_reference(ref)
    try:
        mlflow = client()
        mv = mlflow.get_model_version_by_alias(name, alias) if alias else mlflow.get_model_version(name, str(number))
    except MlflowException as err:
        if "RESOURCE_DOES_NOT_EXIST" in str(err.error_code) or "INVALID_PARAMETER_VALUE" in str(err.error_code):
            what = f"alias {alias!r}" if alias else f"version {number}"
            raise RegistryError(f"{ref}: model {name!r} has no {what}. See `fmloop models show {name}`.") from None
        raise _unreachable(err) from None
    return _version(mv)


def registered_from(name: str, run_dir: str | Path) -> Version | None:
    """The version of `name` registered from `run_dir`, if one was (a resumed job reuses it)."""
    wanted = str(Path(run_dir).resolve())
    try:
        found = versions(name)
    except RegistryError:
        return None
    return next((v for v in found if v.tags.get("fmloop.run_dir") == wanted), None)


def set_alias(name: str, alias: str, version: int) -> Version:
    """Point `alias` of `name` at `version`. @champion moves only through `promote`, whichever
    command moves it (register --alias, alias, a pipeline's register:, retrain), so the version it
    leaves is always kept as @previous and `fmloop rollback` can undo the move."""
    if alias == CHAMPION:
        return promote(name, version)
    return _point(name, alias, version)


def set_tags(name: str, version: int, tags: dict[str, str]) -> None:
    """Set tags of an existing version (each one an atomic update in the registry)."""
    try:
        for key, value in tags.items():
            client().set_model_version_tag(check_name(name), str(int(version)), key, value)
    except MlflowException as err:
        raise _unreachable(err) from None


def _point(name: str, alias: str, version: int) -> Version:
    """One alias -> one version (one atomic update in the registry)."""
    check_alias(alias)
    target = get(f"models:/{check_name(name)}/{int(version)}")
    try:
        client().set_registered_model_alias(name, alias, str(version))
    except MlflowException as err:
        raise _unreachable(err) from None
    return get(target.reference)


# Resolving references to folders ---------------------------------------------------------------


def local_folder(ref: str) -> Path | None:
    """The local model folder of a registry reference (downloaded once into the cache and checked
    against the registered fingerprint); None for anything that is not a reference."""
    if not ref.startswith("models:/"):
        return None
    version = get(ref)
    folder = cache_dir("models", version.name, str(version.version))
    expected = version.tags.get("fmloop.weights_fingerprint") or None
    if folder.is_dir() and weights_fingerprint(folder) == expected:
        return folder
    from mlflow.artifacts import download_artifacts

    with building(folder, replace=True) as tmp:
        try:
            got = Path(
                download_artifacts(
                    artifact_uri=version.source, dst_path=str(tmp / "download"), tracking_uri=tracking_uri()
                )
            )  # the tracking URI named: MLflow's process-wide one may point elsewhere
        except (MlflowException, OSError) as err:
            raise RegistryError(
                f"{ref}: the files of {version.reference} cannot be read from {version.source}: {err}"
            ) from None
        for item in got.iterdir():
            shutil.move(str(item), tmp / item.name)
        shutil.rmtree(tmp / "download", ignore_errors=True)
        if weights_fingerprint(tmp) != expected:
            raise RegistryError(
                f"{ref}: the downloaded files of {version.reference} do not match its registered "
                f"fingerprint {expected}; the store was changed after registration."
            )
    log.info("%s: downloaded %s into %s", ref, version.reference, folder)
    return folder


# Promotion -------------------------------------------------------------------------------------

CHAMPION, PREVIOUS = "champion", "previous"


def promote(name: str, version: int) -> Version:
    """`champion` -> `version`, the old champion kept as `previous`. `previous` moves first, so a
    crash between the two updates leaves both aliases on complete, loadable versions."""
    get(f"models:/{check_name(name)}/{int(version)}")  # a version that is not there moves nothing
    try:
        old = get(f"models:/{name}@{CHAMPION}")
    except RegistryError:
        old = None
    if old is not None and old.version != version:
        _point(name, PREVIOUS, old.version)
        crash_point("promote:previous-moved")
    return _point(name, CHAMPION, version)


def rollback(name: str) -> tuple[Version, Version]:
    """Put `previous` back as `champion` (the demoted version becomes `previous`): (new, demoted)."""
    demoted = get(f"models:/{name}@{CHAMPION}")
    try:
        restored = get(f"models:/{name}@{PREVIOUS}")
    except RegistryError:
        raise RegistryError(f"models:/{name} has no 'previous' version to roll back to.") from None
    _point(name, CHAMPION, restored.version)
    _point(name, PREVIOUS, demoted.version)
    return get(restored.reference), demoted
