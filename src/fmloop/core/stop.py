"""The process's one stop request: SIGTERM or Ctrl-C asks whatever is running to stop at its next
safe point. A training loop checks it after every step (then checkpoints); the pipeline runner
checks it between stages, so a signal that arrives while a stage prepares its data or scores a
model still stops the pipeline before the next stage starts."""

from __future__ import annotations

import signal

_requested: str | None = None


def request(signum: int) -> None:
    global _requested
    _requested = signal.Signals(signum).name


def requested() -> str | None:
    """The name of the signal that asked for a stop (e.g. 'SIGTERM'), or None."""
    return _requested


def clear() -> None:
    global _requested
    _requested = None


# A training run's stop_reason after a signal reads "signal SIGTERM received"; a time budget, early
# stopping or a step limit read otherwise, and such a run is complete as far as a pipeline goes.
REASON_PREFIX = "signal "


def by_signal(stop_reason: str | None) -> bool:
    """True for a run stopped by Ctrl-C or SIGTERM (resumable, not done), from its stop_reason."""
    return bool(stop_reason) and stop_reason.startswith(REASON_PREFIX)
