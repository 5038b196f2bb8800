"""Behaviour that hangs off the loop: progress, metrics logging, best-checkpoint tracking, early
stopping, time budgets and signals. The protocol (`Callback`, `Control`) is fmloop.core.callbacks."""

from __future__ import annotations

import json
import logging
import math
import signal
import time
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from fmloop.core import stop
from fmloop.core.artifacts import atomic_write_text, read_jsonl
from fmloop.core.callbacks import Callback
from fmloop.train.checkpoint import save_weights_atomically

if TYPE_CHECKING:
    pass

log = logging.getLogger(__name__)


class ProgressBar(Callback):
    """A rich progress bar on stderr: step, loss, tokens/s, held-out loss, elapsed and ETA.

    When stderr is not a terminal (a log file, CI, nohup), a live bar would print nothing until the
    end, so a plain progress line is logged every `every_s` seconds instead. Main process only.
    """

    def __init__(self, description: str = "training", every_s: float = 30.0, unit: str = "tok"):
        self.description, self.every_s, self.unit = description, every_s, unit
        self.progress: Progress | None = None
        self.task = None
        self.plain = False
        self.fields: dict[str, str] = {}  # what is known so far: loss, speed, held-out loss
        self.last_line = 0.0
        self.start = 0.0
        self.start_step = 0

    def on_train_start(self, loop):
        if not loop.runtime.is_main:
            return
        console = Console(stderr=True)
        self.start, self.start_step = time.monotonic(), loop.state.step
        if not console.is_terminal:
            self.plain, self.last_line = True, self.start
            return
        self.progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[status]}"),
            TimeElapsedColumn(),
            TextColumn("eta"),
            TimeRemainingColumn(),
            console=console,
            refresh_per_second=2,
            transient=False,
        )
        self.progress.start()
        self.task = self.progress.add_task(
            self.description, total=loop.total_steps, completed=loop.state.step, status=self.status()
        )

    def status(self) -> str:
        """The known fields only: nothing is shown as a placeholder before its first value."""
        names = {"loss": "loss {}", "speed": "{}", "eval": "held-out loss {}"}
        return ", ".join(form.format(self.fields[k]) for k, form in names.items() if k in self.fields)

    def on_step_end(self, loop, logs):
        if "loss" in logs:
            self.fields["loss"] = f"{logs['loss']:.3f}"
        if "tokens_per_s" in logs:
            self.fields["speed"] = f"{logs['tokens_per_s']:,.0f} {self.unit}/s"
        if self.progress is not None:
            self.progress.update(self.task, completed=loop.state.step, status=self.status())
        elif self.plain and (time.monotonic() - self.last_line >= self.every_s or loop.state.step >= loop.total_steps):
            self.last_line = time.monotonic()
            done = loop.state.step - self.start_step
            elapsed = self.last_line - self.start
            eta = elapsed / max(done, 1) * (loop.total_steps - loop.state.step)
            known = f", {self.status()}" if self.fields else ""
            log.info(
                "%s: step %d/%d%s, elapsed %s, eta %s",
                self.description,
                loop.state.step,
                loop.total_steps,
                known,
                _hms(elapsed),
                _hms(eta),
            )

    def on_evaluate(self, loop, metrics):
        self.fields["eval"] = f"{metrics['eval_loss']:.3f}"
        if self.progress is not None:
            self.progress.update(self.task, status=self.status())

    def on_train_end(self, loop):
        if self.progress is not None:
            self.progress.stop()
            self.progress = None


def _hms(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


class MetricsLogger(Callback):
    """Appends one JSON object per log step / evaluation to metrics.jsonl (+ TensorBoard if installed).

    On resume, lines past the checkpoint's step (written by the interrupted session after its last
    checkpoint) are dropped so the log matches the weights.
    """

    def __init__(self, path: Path, tensorboard_dir: Path | None = None):
        self.path = Path(path)
        self.tensorboard_dir = tensorboard_dir
        self.writer = None
        self.fh = None

    def on_train_start(self, loop):
        if not loop.runtime.is_main:
            return
        kept = [row for row in read_jsonl(self.path) if row.get("step", 0) <= loop.state.step]
        atomic_write_text(self.path, "".join(json.dumps(r) + "\n" for r in kept))
        self.fh = open(self.path, "a", encoding="utf-8")
        if self.tensorboard_dir is not None:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.writer = SummaryWriter(str(self.tensorboard_dir), purge_step=loop.state.step + 1)
            except ImportError:
                self.writer = None
                log.info("no TensorBoard logs: pip install 'fmloop[tensorboard]' (metrics.jsonl is written anyway)")

    def _write(self, row: dict) -> None:
        if self.fh is None:
            return
        self.fh.write(json.dumps(row) + "\n")
        self.fh.flush()
        if self.writer is not None:
            for key, value in row.items():
                if key != "step" and isinstance(value, (int, float)) and math.isfinite(value):
                    self.writer.add_scalar(key, value, row["step"])

    def on_step_end(self, loop, logs):
        if "loss" in logs:  # only steps the loop chose to log
            self._write({"step": loop.state.step, **logs})

    def on_evaluate(self, loop, metrics):
        self._write({"step": loop.state.step, "elapsed_s": round(loop.state.elapsed_s, 1), **metrics})

    def on_train_end(self, loop):
        if self.fh is not None:
            self.fh.close()
            self.fh = None
        if self.writer is not None:
            self.writer.close()


class BestTracker(Callback):
    """Tracks the best value of a held-out metric; optionally keeps those weights on disk.

    `mode` is "min" for losses and errors, "max" for accuracy-like metrics. With `path`, the best
    weights are written (atomically, safetensors) whenever the metric improves, and `restore()`
    loads them back into the model at the end of training.
    """

    def __init__(self, metric: str = "eval_loss", mode: str = "min", min_delta: float = 0.0, path: Path | None = None):
        if mode not in ("min", "max"):
            raise ValueError(f"mode must be 'min' or 'max', got {mode!r}")
        self.metric, self.mode, self.min_delta, self.path = metric, mode, min_delta, path

    def improved(self, value: float, best: float | None) -> bool:
        if best is None:
            return True
        return value < best - self.min_delta if self.mode == "min" else value > best + self.min_delta

    def on_evaluate(self, loop, metrics):
        if self.metric not in metrics:
            raise KeyError(f"metric {self.metric!r} is not computed; available: {', '.join(sorted(metrics))}")
        state, value = loop.state, float(metrics[self.metric])
        if self.improved(value, state.best_metric):
            state.best_metric, state.best_step, state.evals_without_improvement = value, state.step, 0
            if self.path is not None and loop.runtime.is_main:
                save_weights_atomically(loop.model, self.path)
        else:
            state.evals_without_improvement += 1

    def restore(self, model) -> bool:
        """Load the best weights back; False when none were saved."""
        if self.path is None or not Path(self.path).exists():
            return False
        from safetensors.torch import load_model

        load_model(model, str(self.path))
        return True


class EarlyStopping(Callback):
    """Stop when the tracked metric has not improved for `patience` evaluations (runs after a BestTracker)."""

    def __init__(self, patience: int):
        self.patience = patience

    def on_evaluate(self, loop, metrics):
        if loop.state.evals_without_improvement >= self.patience:
            loop.control.stop(f"early stopping: no improvement in {self.patience} evaluations")


class TimeBudget(Callback):
    """Stop (and checkpoint) once this session has trained for `seconds`."""

    def __init__(self, seconds: float):
        self.seconds = seconds
        self.start = time.monotonic()

    def on_train_start(self, loop):
        self.start = time.monotonic()

    def on_step_end(self, loop, logs):
        if time.monotonic() - self.start >= self.seconds:
            loop.control.stop(f"time budget of {self.seconds:.0f}s reached")


class GracefulStop(Callback):
    """SIGTERM/SIGINT -> finish the current step, checkpoint, exit 0. A second SIGINT aborts."""

    REASON_PREFIX = stop.REASON_PREFIX  # stop reasons look like "signal SIGTERM received"

    def __init__(self):
        self.previous: dict = {}

    def _handler(self, signum, frame):
        if stop.requested() and signum == signal.SIGINT:
            raise KeyboardInterrupt
        stop.request(signum)

    def on_train_start(self, loop):
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                self.previous[sig] = signal.signal(sig, self._handler)
            except ValueError:  # not the main thread (e.g. called from a worker thread)
                pass

    def on_step_end(self, loop, logs):
        # also a signal caught before training started (by the pipeline runner, during data loading)
        if stop.requested():
            loop.control.stop(f"{self.REASON_PREFIX}{stop.requested()} received")

    def on_train_end(self, loop):
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)
        self.previous.clear()
