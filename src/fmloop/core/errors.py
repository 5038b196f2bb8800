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
    INTERRUPTED = 130  # stopped by Ctrl-C before anything could be saved


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
