"""The typed record of a run: `RUN/manifest.json`, read and written only through this module.

    {"manifest_version": 2, "kind": "finetune", "status": "finished",
     "created": "...", "updated": "...", "fmloop_version": "0.1.0",
     "config_hash": "...", "data_fingerprint": "...", "metrics": {...},
     "parents": [{"path": "../base/model", "fingerprint": "3f2a..."}],
     ...stage-specific fields (task, labels, strategy, ...)}

Parent paths are stored relative to the run dir where they can be, so a runs folder moved to
another machine keeps its lineage; `Manifest.parent_paths(run)` turns them back into paths.
Manifests of earlier fmloop versions (version 1: `parent` as a string, a list or null) load as
version 2. A manifest from a newer fmloop, or one missing a required field, is refused with an
error naming the file.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from fmloop.core.errors import ManifestError

MANIFEST_VERSION = 2
# What a run's summary shows (fmloop info, the training report), in this order.
SUMMARY_FIELDS = (
    "kind",
    "status",
    "stop_reason",
    "model",
    "parameters",
    "objective",
    "tokenizer",
    "data",
    "data_fingerprint",
    "config_hash",
    "runtime",
    "fmloop_version",
    "created",
    "updated",
)
WEIGHT_SUFFIXES = (".safetensors", ".onnx")


class Parent(BaseModel):
    path: str  # relative to the run dir when on the same file system tree
    fingerprint: str | None = None  # content hash of the parent's weights when it was used


class Manifest(BaseModel):
    model_config = ConfigDict(extra="allow")

    manifest_version: int = MANIFEST_VERSION
    kind: str
    status: str = "running"
    created: str = Field(default_factory=lambda: _now())
    updated: str | None = None
    fmloop_version: str | None = None
    config_hash: str | None = None
    data_fingerprint: str | None = None
    metrics: dict[str, Any] = Field(default_factory=dict)
    parents: list[Parent] = Field(default_factory=list)

    # dict-style access for the stage-specific fields (task, labels, strategy, ...)
    def __getitem__(self, key: str) -> Any:
        data = self.model_dump()
        if key not in data:
            raise KeyError(key)
        return data[key]

    def get(self, key: str, default: Any = None) -> Any:
        return self.model_dump().get(key, default)

    def __contains__(self, key: str) -> bool:
        return key in self.model_dump()

    def parent_paths(self, run_path: Path) -> list[Path]:
        """The parents as paths, relative ones resolved against the run dir."""
        return [Path(p.path) if Path(p.path).is_absolute() else (Path(run_path) / p.path) for p in self.parents]


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def weights_fingerprint(folder: Path) -> str | None:
    """A content hash of a model folder's weight files (None when it has none)."""
    files = sorted(p for p in Path(folder).rglob("*") if p.is_file() and p.suffix in WEIGHT_SUFFIXES)
    if not files:
        return None
    digest = hashlib.sha256()
    for f in files:
        digest.update(f.relative_to(folder).as_posix().encode())
        with open(f, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()[:16]


def parent_entry(run_path: Path, parent: str | os.PathLike, fingerprint: bool = True) -> Parent:
    """A lineage entry for `parent` as seen from `run_path`: relative when possible."""
    target = Path(parent).expanduser().resolve()
    try:
        stored = os.path.relpath(target, Path(run_path).resolve())
    except ValueError:  # another drive on Windows
        stored = str(target)
    return Parent(path=stored, fingerprint=weights_fingerprint(target) if fingerprint and target.is_dir() else None)


def upgrade(data: dict, where: Path) -> dict:
    """A manifest of any earlier version as version 2 fields."""
    version = data.get("manifest_version", 1)
    if not isinstance(version, int) or version > MANIFEST_VERSION:
        raise ManifestError(
            f"{where} was written by a newer fmloop ({data.get('fmloop_version', '?')}, manifest "
            f"version {version}); upgrade fmloop (pip install -U fmloop) to read it."
        )
    if version == 1:
        data = dict(data)
        old = data.pop("parent", None)
        old = [old] if isinstance(old, str) else (old or [])
        data["parents"] = [{"path": p, "fingerprint": None} for p in old]
        data["manifest_version"] = MANIFEST_VERSION
    return data


def parse(text: str, where: Path) -> Manifest:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise ManifestError(f"{where} is corrupt ({err}); restore it from a backup or re-run the stage.") from None
    if not isinstance(data, dict):
        raise ManifestError(f"{where} is not a JSON object; restore it from a backup or re-run the stage.")
    try:
        return Manifest.model_validate(upgrade(data, where))
    except ValidationError as err:
        first = err.errors()[0]
        field = ".".join(str(p) for p in first["loc"]) or "?"
        raise ManifestError(
            f"{where}: field {field!r} {first['msg'].lower()}; the file was edited or written by "
            f"another tool. Restore it, or re-run the stage."
        ) from None


def dump(manifest: Manifest) -> str:
    return json.dumps(manifest.model_dump(mode="json"), indent=2, sort_keys=True, default=str) + "\n"
