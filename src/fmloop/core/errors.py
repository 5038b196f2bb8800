"""User-facing errors and the exit codes the CLI maps them to.

A `FmloopError` is a mistake the user can fix (a wrong path, a bad value): the CLI prints its
message on one line and exits with its code, never a traceback. Anything else is a bug.
"""

from __future__ import annotations

import enum


class ExitCode(enum.IntEnum):
    OK = 0
    ERROR = 1  # unexpected failure (a bug): traceback shown
    USAGE = 2  # bad command line or config value
    DATA = 3  # input data missing, empty, unreadable or malformed
    MODEL = 4  # unknown preset, unloadable model folder
    RESUME = 5  # run dir cannot be resumed (corrupt or incompatible)
    TRAINING = 6  # training diverged (non-finite loss or gradients)
    PARITY = 7  # a compressed or exported model disagrees with its parent beyond the threshold
    RUN_DIR = 8  # a run dir's manifest is missing, corrupt, or from a newer fmloop
    REGISTRY = 9  # the model registry or feedback store cannot be reached, or lacks what was asked
    DRIFT = 10  # fmloop drift: the served inputs drifted away from the training data (for alerting)
    NOT_ENOUGH = 11  # fmloop retrain: too little feedback to train a challenger on or to judge it with
    INTERRUPTED = 130  # stopped by Ctrl-C (SIGINT: 128 + 2), after its last checkpoint
    TERMINATED = 143  # stopped by SIGTERM (128 + 15), after its last checkpoint


# The contract every command keeps, as docs/cli.md prints it (tests/cli/test_exit_codes.py runs
# each class of command into each of them).
EXIT_MEANINGS = {
    ExitCode.OK: "done (`fmloop retrain` and `loop`: a decision was made, promoted or refused, or nothing was due)",
    ExitCode.ERROR: "a failure its message explains (a challenger that failed to train, a server that did not start), or a bug (traceback shown)",
    ExitCode.USAGE: "a bad command line, option, config key or value, or an --out folder that already holds something",
    ExitCode.DATA: "input data missing, empty, unreadable or malformed (the message names the file and row)",
    ExitCode.MODEL: "a model that cannot be loaded: unknown preset, not a model folder, unsupported format",
    ExitCode.RESUME: "a run dir that cannot be resumed",
    ExitCode.TRAINING: "training diverged (non-finite loss or gradients); the last good checkpoint is kept",
    ExitCode.PARITY: "a compressed or exported model disagrees with its parent beyond the threshold; nothing is written",
    ExitCode.RUN_DIR: "a run dir whose manifest is missing, corrupt or from a newer fmloop",
    ExitCode.REGISTRY: "the registry or the feedback store cannot be reached, or lacks the model, version or alias named",
    ExitCode.DRIFT: "`fmloop drift`: the served inputs drifted away from the training data, for alerting",
    ExitCode.NOT_ENOUGH: "`fmloop retrain`: too little feedback to train a challenger or to judge it; nothing changed",
    ExitCode.INTERRUPTED: "stopped by Ctrl-C (SIGINT) after its last checkpoint: the same command continues it",
    ExitCode.TERMINATED: "stopped by SIGTERM after its last checkpoint: the same command continues it",
}


def signal_exit_code(signal_name: str | None) -> ExitCode:
    """The exit code of a command a signal stopped (the shell's 128 + signal number)."""
    return ExitCode.TERMINATED if signal_name == "SIGTERM" else ExitCode.INTERRUPTED


class FmloopError(Exception):
    """An error caused by input the user can fix; `str(err)` says what and how."""

    exit_code: ExitCode = ExitCode.ERROR

    def __init__(self, message: str, exit_code: ExitCode | None = None):
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code


class ConfigError(FmloopError):
    exit_code = ExitCode.USAGE


class DataError(FmloopError):
    exit_code = ExitCode.DATA


class ModelError(FmloopError):
    exit_code = ExitCode.MODEL


class ResumeError(FmloopError):
    exit_code = ExitCode.RESUME


class TrainingError(FmloopError):
    exit_code = ExitCode.TRAINING


class ParityError(FmloopError):
    exit_code = ExitCode.PARITY


class OutputExistsError(ConfigError):
    """The --out folder already holds something; outputs never overwrite."""


class ManifestError(FmloopError):
    exit_code = ExitCode.RUN_DIR


class Interrupted(FmloopError):
    """A signal stopped the work after its last checkpoint; rerunning the command continues it."""

    exit_code = ExitCode.INTERRUPTED


class RegistryError(FmloopError):
    """A registry reference that names nothing, or a store that cannot be reached."""

    exit_code = ExitCode.REGISTRY


class NotEnoughFeedback(FmloopError):
    """Too few corrections or audit labels for a retrain: nothing was trained, nothing changed."""

    exit_code = ExitCode.NOT_ENOUGH
