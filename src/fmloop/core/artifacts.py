"""Run directories, manifests and crash-safe writes.

Every file that matters is written to a temp file in the same folder, fsynced, then
`os.replace`d over the target, and the folder is fsynced so the rename itself survives a power
cut. A reader therefore sees either the old complete file or the new complete file, never half.

A run dir looks like:

    RUN/
      manifest.json     kind, parents, config hash, data fingerprint, fmloop version, metrics
                        (typed: fmloop.core.manifest)
      config.yaml       the resolved config (every default filled in)
      metrics.jsonl     one JSON object per logged step / evaluation
      checkpoints/      resumable training state (see train/checkpoint.py)
      model/            Hugging Face save_pretrained layout, safetensors weights
      report.html       plots and numbers for people
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator

import yaml

from fmloop.core import manifest as manifest_io
from fmloop.core.errors import ManifestError, OutputExistsError
from fmloop.core.manifest import Manifest, parent_entry
from fmloop.core.version import __version__

MANIFEST = "manifest.json"
CONFIG = "config.yaml"
METRICS = "metrics.jsonl"


def fsync_dir(path: str | os.PathLike) -> None:
    """Make a rename or file creation inside `path` durable (no-op where unsupported)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "wb") -> Iterator[Any]:
    """Open a temp file beside `path`; on clean exit fsync it and rename it over `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        fsync_dir(path.parent)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_open(path, "wb") as fh:
        fh.write(data)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def config_hash(config: dict) -> str:
    """A short stable hash of a resolved config (key order does not matter)."""
    blob = json.dumps(config, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def fingerprint_paths(paths: list[Path]) -> str:
    """Content hash of input files (sorted), so a manifest says exactly which data trained it."""
    digest = hashlib.sha256()
    for path in sorted(paths):
        digest.update(path.name.encode())
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()[:16]


def fmloop_version() -> str:

    return __version__


@contextlib.contextmanager
def building(target: str | os.PathLike, *, replace: bool = False) -> Iterator[Path]:
    """The one way fmloop writes a folder: build it in a hidden sibling, fsync it, then rename it to
    `target` when the block ends cleanly; remove it when the block raises. An existing `target` is
    swapped out only when `replace` (it survives until the rename), else it must be empty."""
    target = Path(target)
    tmp, old = target.with_name(f".{target.name}.building"), target.with_name(f".{target.name}.old")
    for leftover in (tmp, old):  # from a crash mid-build
        shutil.rmtree(leftover, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        yield tmp
        for f in tmp.rglob("*"):
            if f.is_file():
                with open(f, "rb") as fh:
                    os.fsync(fh.fileno())
        fsync_dir(tmp)
        if target.exists():
            if replace:
                os.replace(target, old)
            else:
                target.rmdir()  # empty: callers checked with require_new_folder
        os.replace(tmp, target)
        fsync_dir(target.parent)
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def require_new_folder(out: str | os.PathLike) -> Path:
    """`out` as a Path; an error saying what the folder holds when it exists and is not empty
    (outputs never overwrite unless the user passes --overwrite)."""
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        run = RunDir(out)
        manifest = run.read_manifest() if run.manifest_path.exists() else None
        if manifest is None:
            hint = "it is not an fmloop run"
        elif run.resumable() and manifest.status != "finished":
            hint = f"it is an unfinished run with a checkpoint: pass --resume {out} to continue it"
        else:
            hint = f"it holds a {manifest.status} {manifest.kind} run"
        raise OutputExistsError(
            f"Output folder {out} already exists and is not empty ({hint}). Choose a new "
            f"--out, or pass --overwrite to replace it."
        )
    return out


def remove_output(out: str | os.PathLike) -> None:
    """--overwrite: delete an existing output folder before a stage writes it again."""
    out = Path(out)
    if out.exists():
        shutil.rmtree(out)


@contextlib.contextmanager
def new_folder(out: str | os.PathLike) -> Iterator[Path]:
    """Build a new output folder: `out` is either complete or absent, never half-written."""
    with building(require_new_folder(out)) as tmp:
        yield tmp


class RunDir:
    """One stage's output folder: manifest, resolved config, metrics, model."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    # Paths -----------------------------------------------------------------------------------
    @property
    def manifest_path(self) -> Path:
        return self.path / MANIFEST

    @property
    def config_path(self) -> Path:
        return self.path / CONFIG

    @property
    def metrics_path(self) -> Path:
        return self.path / METRICS

    @property
    def model_dir(self) -> Path:
        return self.path / "model"

    @property
    def checkpoints_dir(self) -> Path:
        return self.path / "checkpoints"

    # Writing ---------------------------------------------------------------------------------
    def create(self, *, allow_existing: bool = False) -> "RunDir":
        """Create the folder. Refuses to write into an existing run unless resuming."""
        if not allow_existing:
            require_new_folder(self.path)
        self.path.mkdir(parents=True, exist_ok=True)
        return self

    def resumable(self) -> bool:
        """True when the run wrote a checkpoint and did not finish."""
        return self.checkpoints_dir.is_dir() and any(self.checkpoints_dir.glob("step-*"))

    def write_config(self, resolved: dict) -> None:
        atomic_write_text(self.config_path, yaml.safe_dump(resolved, sort_keys=False))

    def write_manifest(self, *, parents: list | None = None, **fields: Any) -> Manifest:
        """Update RUN/manifest.json with `fields` (created on first write). `parents`: model folders
        this run was made from, stored relative to the run dir with their weights' fingerprint."""
        current = (
            self.read_manifest().model_dump()
            if self.manifest_path.exists()
            else {"manifest_version": manifest_io.MANIFEST_VERSION}
        )
        current.update(fields)
        if parents is not None:
            current["parents"] = [parent_entry(self.path, p).model_dump() for p in parents if p]
        current["updated"] = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
        current["fmloop_version"] = fmloop_version()
        manifest = manifest_io.parse(json.dumps(current, default=str), self.manifest_path)
        atomic_write_text(self.manifest_path, manifest_io.dump(manifest))
        return manifest

    # Reading ---------------------------------------------------------------------------------
    def read_manifest(self) -> Manifest:
        try:
            text = self.manifest_path.read_text()
        except FileNotFoundError:
            raise ManifestError(f"{self.path} is not an fmloop run dir: it has no {MANIFEST}.") from None
        return manifest_io.parse(text, self.manifest_path)

    def read_config(self) -> dict:
        return yaml.safe_load(self.config_path.read_text()) or {}

    def read_metrics(self) -> list[dict]:
        return read_jsonl(self.metrics_path)


def read_jsonl(path: Path) -> list[dict]:
    """Read a JSONL log, ignoring a torn last line (a crash mid-append leaves one)."""
    if not path.exists():
        return []
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line:
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return rows
