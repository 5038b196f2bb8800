"""What every compression command shares: where its data comes from, and how its output run dir
is written so that a failed parity check or a crash never leaves something that looks finished."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import yaml

from fmloop.core.artifacts import RunDir, config_hash, new_folder, remove_output, require_new_folder
from fmloop.core.config import StageConfig
from fmloop.core.errors import ConfigError
from fmloop.models.presets import model_dir_of


def default_data(model_path: str, data: str | None) -> str:
    """`data`, else the labeled data the model's run was fine-tuned on (RUN/config.yaml)."""
    if data:
        return data
    folder = model_dir_of(model_path)
    config = folder.parent / "config.yaml"
    if (folder.parent / "manifest.json").exists() and config.exists():
        path = ((yaml.safe_load(config.read_text()) or {}).get("data") or {}).get("path")
        if path and Path(path).exists():
            return path
    raise ConfigError(
        f"Pass --data PATH: labeled examples to check the new model against {model_path} "
        f"(it is not a run dir whose config.yaml names existing data)."
    )


def new_run(out: str | Path, overwrite: bool = False) -> RunDir:
    """The output run dir: an existing folder is refused, or removed first with `overwrite`."""
    if overwrite:
        remove_output(out)
    return RunDir(require_new_folder(out))


def write_run(run: RunDir, cfg: StageConfig, write_model: Callable[[Path], dict], **manifest) -> RunDir:
    """Build RUN/model via `write_model(folder) -> extra manifest fields`; only when it returns
    (parity passed) does the run dir appear, so a failed check or a crash leaves nothing at
    `run.path`."""
    with new_folder(run.path) as tmp:
        (tmp / "model").mkdir()
        extra = write_model(tmp / "model") or {}
    run.write_config(cfg.resolved())
    run.write_manifest(kind=cfg.stage, status="finished", config_hash=config_hash(cfg.resolved()), **manifest, **extra)
    return run


def folder_bytes(folder: Path) -> int:
    """Bytes on disk of a model folder (what a deployment ships)."""
    return sum(f.stat().st_size for f in Path(folder).rglob("*") if f.is_file())
