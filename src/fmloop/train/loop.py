"""The training loop: the only one in fmloop. Pretraining, fine-tuning and distillation differ
only in the objective module and the data they hand it.

One optimizer step:
  1. take the next global batch (a data position that survives resume), slice out this
     process's micro-batches (gradient accumulation x processes),
  2. forward each under autocast, scale its summed loss by the number of targets in the whole
     global batch, backward (DDP syncs gradients on the last micro-batch only),
  3. check the gradient norm: a non-finite one skips the update (counted; too many in a row
     aborts) so NaN/Inf never reaches the weights or a checkpoint,
  4. clip, step optimizer and scheduler, then let callbacks log / stop / checkpoint.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from fmloop.core.callbacks import Callback, Control
from fmloop.core.errors import DataError, TrainingError
from fmloop.core.faults import crash_point
from fmloop.core.runtime import Runtime
from fmloop.data.text import epoch_batches, split_micro
from fmloop.train import cpu_dropout
from fmloop.train.checkpoint import TrainState, save_checkpoint

log = logging.getLogger(__name__)


@dataclass
class LoopSettings:
    total_steps: int
    grad_accum: int = 1
    clip_grad_norm: float | None = 1.0
    log_every: int = 10
    eval_every: int = 100
    checkpoint_every: int = 200
    keep_checkpoints: int = 2
    max_bad_steps: int = 5
    fast_cpu_dropout: bool = True

    @classmethod
    def of(cls, section, total_steps: int, **stage_specific) -> "LoopSettings":
        """The settings every train section shares (fmloop.train.config.CommonTrainSection), plus
        what the stage decides itself (evaluation and checkpoint cadence, ...)."""
        return cls(
            total_steps=total_steps,
            grad_accum=section.grad_accum,
            clip_grad_norm=section.clip_grad_norm,
            fast_cpu_dropout=section.fast_cpu_dropout,
            log_every=section.log_every,
            **stage_specific,
        )


@dataclass
class BatchPlan:
    """Which examples form each global batch: lengths (for bucketing) + a collate function."""

    lengths: np.ndarray
    batch_size: int  # global batch (all processes, all micro-batches)
    collate: Callable[[np.ndarray, int], dict]  # (indices, epoch) -> tensors
    seed: int
    bucket: bool = True

    def epoch(self, epoch: int) -> list[np.ndarray]:
        return epoch_batches(self.lengths, self.batch_size, self.seed, epoch, self.bucket)


def to_device(batch: dict, device: torch.device) -> dict:
    return {k: v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}


class Loop:
    def __init__(
        self,
        *,
        objective: nn.Module,
        model: nn.Module,
        train: BatchPlan,
        evaluate: Callable[[], dict] | None,
        optimizer: torch.optim.Optimizer,
        scheduler,
        runtime: Runtime,
        settings: LoopSettings,
        callbacks: Sequence[Callback] = (),
        checkpoint_dir: Path | None = None,
        state: TrainState | None = None,
    ):
        self.model = model  # unwrapped: what gets checkpointed and saved
        self.objective = objective.to(runtime.device)
        if settings.fast_cpu_dropout and runtime.device.type == "cpu":
            swapped = cpu_dropout.install(self.objective)
            if swapped:
                log.debug("%d dropout layers use fmloop's CPU dropout masks", swapped)
        self.train_plan = train
        self.evaluate_fn = evaluate
        self.optimizer, self.scheduler = optimizer, scheduler
        self.runtime, self.settings = runtime, settings
        self.callbacks = list(callbacks)
        self.checkpoint_dir = checkpoint_dir
        self.state = state or TrainState()
        self.control = Control()
        self.total_steps = settings.total_steps
        self._epoch_cache: tuple[int, list[np.ndarray]] | None = None
        self._last_eval_step: int | None = None
        if runtime.distributed:
            ids = [runtime.device.index] if runtime.device.type == "cuda" else None
            self.wrapped: nn.Module = DistributedDataParallel(self.objective, device_ids=ids)
        else:
            self.wrapped = self.objective

    # Data ------------------------------------------------------------------------------------
    def _next_global_batch(self) -> np.ndarray:
        for _ in range(2):
            if self._epoch_cache is None or self._epoch_cache[0] != self.state.epoch:
                self._epoch_cache = (self.state.epoch, self.train_plan.epoch(self.state.epoch))
            batches = self._epoch_cache[1]
            if not batches:
                raise DataError(
                    f"The training data ({len(self.train_plan.lengths)} examples) is smaller than one "
                    f"batch of {self.train_plan.batch_size}. Lower --train.batch_size or add data."
                )
            if self.state.batch_in_epoch < len(batches):
                batch = batches[self.state.batch_in_epoch]
                self.state.batch_in_epoch += 1
                return batch
            self.state.epoch += 1
            self.state.batch_in_epoch = 0
        raise AssertionError("unreachable")

    # One step --------------------------------------------------------------------------------
    def _step(self) -> dict | None:
        """One optimizer step. Returns step statistics, or None when the step was skipped."""
        rt, settings = self.runtime, self.settings
        indices = self._next_global_batch()
        epoch = self.state.epoch  # after the call: the batch may be the first of a new epoch
        micro = [
            self.train_plan.collate(part, epoch)
            for part in split_micro(indices, rt.rank, rt.world_size, settings.grad_accum)
        ]
        local_targets = sum(b["n_targets"] for b in micro)
        global_targets = rt.all_reduce_sum(local_targets)
        if global_targets == 0:
            return None
        self.wrapped.train()
        loss_total = 0.0
        tokens = 0
        for i, batch in enumerate(micro):
            last = i == len(micro) - 1
            sync = contextlib.nullcontext() if last or not rt.distributed else self.wrapped.no_sync()
            with sync:
                with rt.autocast():
                    out = self.wrapped(to_device(batch, rt.device))
                # DDP averages gradients over processes; multiplying by world_size turns that
                # average into a sum, so the step's loss is (sum over all targets) / all targets.
                loss = out["loss_sum"] * (rt.world_size / global_targets)
                loss.backward()
            loss_total += float(out["loss_sum"].detach())
            tokens += batch["n_tokens"]

        params = [p for p in self.model.parameters() if p.requires_grad]
        max_norm = settings.clip_grad_norm if settings.clip_grad_norm else float("inf")
        grad_norm = float(torch.nn.utils.clip_grad_norm_(params, max_norm))
        step_loss = rt.all_reduce_sum(loss_total) / global_targets
        if not (math.isfinite(grad_norm) and math.isfinite(step_loss)):
            self.optimizer.zero_grad(set_to_none=True)
            self.state.skipped_steps += 1
            self.state.bad_in_a_row += 1
            log.warning(
                "step %d: non-finite loss or gradients (loss=%s, grad_norm=%s); update skipped",
                self.state.step + 1,
                step_loss,
                grad_norm,
            )
            if self.state.bad_in_a_row >= settings.max_bad_steps:
                raise TrainingError(
                    f"Training diverged: {self.state.bad_in_a_row} steps in a row had non-finite loss or gradients. "
                    f"The last checkpoint is untouched; lower --train.lr or raise --train.warmup_steps and resume."
                )
            return None
        self.state.bad_in_a_row = 0
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        return {"loss": step_loss, "grad_norm": grad_norm, "tokens": int(rt.all_reduce_sum(tokens))}

    # Evaluation and checkpoints ------------------------------------------------------------
    def evaluate(self) -> dict | None:
        if self.evaluate_fn is None:
            return None
        self.objective.eval()
        start = time.perf_counter()
        cuda = [self.runtime.device.index or 0] if self.runtime.device.type == "cuda" else []
        # Evaluations never move the training RNG (MAE masks draw from it): an extra evaluation, e.g.
        # on SIGTERM, leaves a resumed run exactly on the path of an uninterrupted one.
        with torch.no_grad(), torch.random.fork_rng(devices=cuda):
            metrics = self.evaluate_fn()
        self.state.extra["eval_s"] = self.state.extra.get("eval_s", 0.0) + time.perf_counter() - start
        self._last_eval_step = self.state.step
        for cb in self.callbacks:
            cb.on_evaluate(self, metrics)
        return metrics

    def save(self) -> None:
        if self.checkpoint_dir is not None:
            save_checkpoint(
                self.checkpoint_dir,
                self.model,
                self.optimizer,
                self.scheduler,
                self.state,
                self.runtime,
                keep=self.settings.keep_checkpoints,
            )
            crash_point("train:checkpoint-saved")

    def _sync_stop(self) -> None:
        """All processes must stop at the same step, whichever of them got the signal."""
        if self.runtime.distributed:
            votes = self.runtime.all_reduce_sum(1.0 if self.control.should_stop else 0.0)
            if votes > 0 and not self.control.should_stop:
                self.control.stop("another process stopped")

    # The loop --------------------------------------------------------------------------------
    def run(self) -> TrainState:
        s, state = self.settings, self.state
        for cb in self.callbacks:
            cb.on_train_start(self)
        try:
            # elapsed_s is the run's wall time, evaluations included (they are also summed in
            # extra["eval_s"], so training time = elapsed_s - eval_s).
            session_start = time.perf_counter()
            elapsed_before = state.elapsed_s
            if state.step == 0 and state.batch_in_epoch == 0 and state.epoch == 0:
                self.evaluate()  # the starting point of the held-out curve
            # Throughput windows exclude evaluation and checkpoint time (they are not training speed).
            window_start, window_tokens, window_pause = time.perf_counter(), 0, 0.0
            while state.step < self.total_steps and not self.control.should_stop:
                stats = self._step()
                if stats is None:
                    continue
                state.step += 1
                state.tokens_seen += stats["tokens"]
                window_tokens += stats["tokens"]
                state.elapsed_s = elapsed_before + time.perf_counter() - session_start
                logs: dict = {}
                if state.step % s.log_every == 0 or state.step == self.total_steps:
                    now = time.perf_counter()
                    logs = {
                        "loss": stats["loss"],
                        "lr": self.scheduler.get_last_lr()[0],
                        "grad_norm": stats["grad_norm"],
                        "tokens_per_s": window_tokens / max(now - window_start - window_pause, 1e-9),
                        "epoch": state.epoch,
                        "tokens_seen": state.tokens_seen,
                        "elapsed_s": round(state.elapsed_s, 2),
                    }
                    window_start, window_tokens, window_pause = now, 0, 0.0
                for cb in self.callbacks:
                    cb.on_step_end(self, logs)
                self._sync_stop()
                done = state.step >= self.total_steps
                pause_start = time.perf_counter()
                if (s.eval_every and state.step % s.eval_every == 0) or done or self.control.should_evaluate:
                    self.control.should_evaluate = False
                    self.evaluate()
                    self._sync_stop()
                if self.control.should_save or done or (s.checkpoint_every and state.step % s.checkpoint_every == 0):
                    self.control.should_save = False
                    self.save()
                window_pause += time.perf_counter() - pause_start
                state.elapsed_s = elapsed_before + time.perf_counter() - session_start
            if self.control.should_stop:
                state.stop_reason = self.control.stop_reason
                if self._last_eval_step != state.step and state.step > 0:
                    self.evaluate()  # a time budget or SIGTERM: the best-checkpoint choice sees the last steps too
                if self.control.should_save:
                    self.save()
        finally:
            for cb in self.callbacks:
                cb.on_train_end(self)
        return state


def evaluate_batches(objective: nn.Module, batches: list[dict], runtime: Runtime) -> dict:
    """Held-out loss and perplexity over fixed batches; each process takes every world_size-th."""
    loss_sum, count = 0.0, 0
    for batch in batches[runtime.rank :: runtime.world_size]:
        with runtime.autocast():
            out = objective(to_device(batch, runtime.device))
        loss_sum += float(out["loss_sum"])
        count += out["count"]
    loss_sum, count = runtime.all_reduce_sum(loss_sum), runtime.all_reduce_sum(count)
    loss = loss_sum / max(count, 1)
    return {"eval_loss": loss, "eval_ppl": math.exp(min(loss, 50.0))}
