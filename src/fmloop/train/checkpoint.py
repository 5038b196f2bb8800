"""Crash-safe checkpoints: a kill -9 at any moment leaves the last good checkpoint loadable.

    RUN/checkpoints/
      step-00000200/         one complete checkpoint
        model.safetensors    weights (safetensors; shared/tied tensors handled)
        optimizer.pt         optimizer + scheduler state (tensors and plain values only)
        rng-rank0.pt         RNG states, one file per process
        state.json           step, epoch, data position, counters
      latest                 name of the newest complete checkpoint

A checkpoint is written into `.tmp-step-...`, every file fsynced, then the folder is renamed into
place (a rename is atomic) and the parent fsynced; only then is `latest` replaced (atomically).
Loading trusts `latest` but falls back to the newest complete `step-*` folder that loads, so a
damaged pointer or checkpoint costs at most the steps since the previous one.

Nothing here is unpickled: `.pt` files are read with `torch.load(weights_only=True)` and hold
only state fmloop itself wrote.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from safetensors.torch import load_model, save_model
from torch import nn

from fmloop.core.artifacts import atomic_write_text, fsync_dir
from fmloop.core.errors import ResumeError
from fmloop.core.runtime import Runtime, rng_state, set_rng_state

log = logging.getLogger(__name__)

LATEST = "latest"


@dataclass
class TrainState:
    """Everything besides tensors needed to continue a run exactly where it stopped."""

    step: int = 0  # optimizer steps taken
    epoch: int = 0  # current pass over the training data
    batch_in_epoch: int = 0  # global batches of `epoch` already consumed
    tokens_seen: int = 0
    skipped_steps: int = 0  # steps dropped for non-finite loss/gradients (total)
    bad_in_a_row: int = 0
    best_metric: float | None = None  # best value of the monitored held-out metric so far
    best_step: int | None = None
    evals_without_improvement: int = 0
    elapsed_s: float = 0.0  # training time over all sessions of this run
    stop_reason: str | None = None
    extra: dict = field(default_factory=dict)


def _fsync_file(path: Path) -> None:
    with open(path, "rb") as fh:
        os.fsync(fh.fileno())


def save_weights_atomically(model: nn.Module, path: Path) -> None:
    """model -> safetensors file at `path`, replacing any previous file only once complete."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    save_model(model, str(tmp))
    _fsync_file(tmp)
    os.replace(tmp, path)
    fsync_dir(path.parent)


def step_dir_name(step: int) -> str:
    return f"step-{step:08d}"


def save_checkpoint(
    root: Path,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler,
    state: TrainState,
    runtime: Runtime,
    keep: int = 2,
) -> Path:
    """Write a checkpoint of `model` (unwrapped) at `state.step`. Called on every rank."""
    root = Path(root)
    name = step_dir_name(state.step)
    final, tmp = root / name, root / f".tmp-{name}"
    if runtime.is_main:
        root.mkdir(parents=True, exist_ok=True)
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir()
    runtime.barrier()
    # Each process keeps its own RNG stream (dropout differs per rank).
    torch.save(rng_state(), tmp / f"rng-rank{runtime.rank}.pt")
    _fsync_file(tmp / f"rng-rank{runtime.rank}.pt")
    runtime.barrier()
    if runtime.is_main:
        save_model(model, str(tmp / "model.safetensors"))
        torch.save({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict()}, tmp / "optimizer.pt")
        (tmp / "state.json").write_text(json.dumps(asdict(state), indent=2))
        for f in tmp.iterdir():
            _fsync_file(f)
        fsync_dir(tmp)
        if final.exists():  # re-saving the same step (e.g. stop right after a periodic save)
            shutil.rmtree(final)
        os.replace(tmp, final)
        fsync_dir(root)
        atomic_write_text(root / LATEST, name + "\n")
        _prune(root, keep)
    runtime.barrier()
    return final


def _prune(root: Path, keep: int) -> None:
    steps = sorted(p for p in root.glob("step-*") if p.is_dir())
    for old in steps[:-keep] if keep > 0 else []:
        shutil.rmtree(old, ignore_errors=True)
    for stale in root.glob(".tmp-step-*"):
        shutil.rmtree(stale, ignore_errors=True)


def candidates(root: Path) -> list[Path]:
    """Checkpoint folders to try, best first: the one `latest` names, then newest to oldest."""
    root = Path(root)
    found = sorted((p for p in root.glob("step-*") if p.is_dir()), reverse=True)
    pointer = root / LATEST
    if pointer.exists():
        named = root / pointer.read_text().strip()
        if named in found:
            found.remove(named)
            found.insert(0, named)
    return found


def load_checkpoint(
    root: Path, model: nn.Module, optimizer: torch.optim.Optimizer, scheduler, runtime: Runtime
) -> TrainState:
    """Restore model, optimizer, scheduler and RNG from the newest loadable checkpoint."""
    tried = []
    for folder in candidates(root):
        try:
            state = TrainState(**json.loads((folder / "state.json").read_text()))
            load_model(model, str(folder / "model.safetensors"), device=str(runtime.device))
            blob = torch.load(folder / "optimizer.pt", map_location=runtime.device, weights_only=True)
            optimizer.load_state_dict(blob["optimizer"])
            scheduler.load_state_dict(blob["scheduler"])
            rng_file = folder / f"rng-rank{runtime.rank}.pt"
            if rng_file.exists():
                set_rng_state(torch.load(rng_file, weights_only=True))
            else:
                log.warning(
                    "%s has no RNG state for rank %d (different process count?); reseeding.", folder, runtime.rank
                )
            if tried:
                log.warning("Resumed from %s; newer checkpoint(s) could not be loaded: %s", folder, "; ".join(tried))
            return state
        except Exception as err:  # a damaged checkpoint: try the previous one
            tried.append(f"{folder.name} ({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''})")
    if tried:
        raise ResumeError(f"No loadable checkpoint in {root}: {'; '.join(tried)}.")
    raise ResumeError(f"{root} holds no checkpoint to resume from.")
