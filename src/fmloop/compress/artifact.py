"""What every compression command shares: where its data comes from, and how its output run dir
is written so that a failed parity check or a crash never leaves something that looks finished."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Callable

import yaml

from fmloop.core.artifacts import RunDir, fsync_dir, require_new_folder
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


def check_new_out(out: str | Path) -> RunDir:
    """The output run dir, refusing to write into an existing non-empty folder."""
    return RunDir(require_new_folder(out))


def write_run(run: RunDir, write_model: Callable[[Path], dict], **manifest) -> dict:
    """Build RUN/model in a hidden temp folder via `write_model(tmp) -> extra manifest fields`;
    only when it returns (parity passed) is the run dir created and the model moved into place.
    On any error the temp folder is removed and nothing is left at `run.path`."""
    tmp = run.path.with_name(f".{run.path.name}.building")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        tmp.mkdir(parents=True)
        extra = write_model(tmp) or {}
        for f in tmp.rglob("*"):
            if f.is_file():
                with open(f, "rb") as fh:
                    os.fsync(fh.fileno())
        run.create()
        os.replace(tmp, run.model_dir)
        fsync_dir(run.path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return run.write_manifest(status="finished", **manifest, **extra)


def folder_bytes(folder: Path) -> int:
    """Bytes on disk of a model folder (what a deployment ships)."""
    return sum(f.stat().st_size for f in Path(folder).rglob("*") if f.is_file())
