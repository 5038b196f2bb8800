"""What every command shares: logging, error handling, config assembly."""

from __future__ import annotations

import functools
import logging
import os
import sys
from typing import Callable

import typer
from rich.logging import RichHandler

from fmloop.core import stop
from fmloop.core.console import err_console  # noqa: F401  (the commands print through it)
from fmloop.core.errors import ExitCode, FmloopError, Interrupted, signal_exit_code


def setup_logging(verbose: bool = False) -> None:
    rank = os.environ.get("RANK", "0")
    level = logging.DEBUG if verbose else (logging.INFO if rank == "0" else logging.WARNING)
    logging.basicConfig(
        level=level,
        format="%(message)s",
        datefmt="[%X]",
        handlers=[RichHandler(console=err_console, show_path=False, rich_tracebacks=False)],
        force=True,
    )
    # Libraries are chatty at INFO; their warnings still show.
    for name in ("datasets", "transformers", "httpx", "huggingface_hub", "filelock", "urllib3", "mlflow", "alembic"):
        logging.getLogger(name).setLevel(logging.WARNING)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "true")
    # fmloop draws its own progress; the libraries' bars ("Map: ...", "Writing model shards") and
    # load reports stay off, while downloads from the hub keep theirs. The datasets variable covers
    # the library before it is imported (its import is slow), the call after.
    os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")  # its store set-up chatter
    if "datasets" in sys.modules:
        sys.modules["datasets"].disable_progress_bars()
    import huggingface_hub.utils
    from transformers.utils import logging as hf_logging  # light: transformers loads lazily, no torch

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    huggingface_hub.utils.enable_progress_bars()


def user_errors(func: Callable) -> Callable:
    """Turn a FmloopError into one red line and its exit code; never a traceback for user mistakes."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except Interrupted as err:
            for line in str(err).splitlines():
                err_console.print(f"[yellow]stopped:[/] {line}", highlight=False, soft_wrap=True)
            raise typer.Exit(int(signal_exit_code(stop.requested()))) from None
        except FmloopError as err:
            for line in str(err).splitlines():
                err_console.print(f"[bold red]error:[/] {line}", highlight=False, soft_wrap=True)
            raise typer.Exit(int(err.exit_code)) from None
        except KeyboardInterrupt:
            err_console.print("[yellow]interrupted[/]")
            raise typer.Exit(int(ExitCode.INTERRUPTED)) from None

    return wrapper


def exit_if_stopped(manifest, command: str) -> None:
    """A training run a signal stopped at its checkpoint: say how to continue it and exit 130
    (SIGINT) or 143 (SIGTERM), as every command a signal stops does; a run cut by its time budget,
    early stopping or a step limit is done (exit 0)."""
    reason = manifest.get("stop_reason")
    if manifest.get("status") == "finished" or not stop.by_signal(reason):
        return
    err_console.print(f"[yellow]stopped[/] ({reason}); continue with: {command}", highlight=False)
    signal_name = stop.requested() or reason.removeprefix(stop.REASON_PREFIX).split()[0]
    raise typer.Exit(int(signal_exit_code(signal_name)))


# The preset catalogs' names, for help texts written before torch is imported (a test keeps them
# equal to models.presets.PRESETS and models.vision.VISION_PRESETS).
TEXT_PRESETS = ("bert-tiny", "bert-mini", "bert-small", "gpt2-nano", "gpt2-mini")
IMAGE_PRESETS = ("vit-mini", "vit-tiny", "convnext-nano", "resnet-mini", "resnet-micro", "cnn-small")
PRESET_NAMES = f"text: {', '.join(TEXT_PRESETS)}; images: {', '.join(IMAGE_PRESETS)}"

# Commands that take config overrides (--section.key=value) as extra words.
EXTRA = {"allow_extra_args": True, "ignore_unknown_options": True}


def split_overrides(args: list[str]) -> list[str]:
    """Extra command-line words must be config overrides: --section.key=value or --section.key value."""
    from fmloop.core.errors import ConfigError

    joined, i = [], 0
    while i < len(args):
        word = args[i]
        if (
            word.startswith("--")
            and "." in word
            and "=" not in word
            and i + 1 < len(args)
            and not args[i + 1].startswith("--")
        ):
            word, i = f"{word}={args[i + 1]}", i + 1
        joined.append(word)
        i += 1
    bad = [a for a in joined if not (a.startswith("--") and "." in a.split("=", 1)[0])]
    if bad:
        raise ConfigError(f"Unexpected argument(s): {' '.join(bad)}. Config overrides look like --train.lr=3e-4.")
    return joined


def build_stage_config(cls, **values):
    """A stage's config from command-line options (None: the config's default), validated before
    any heavy import."""
    from fmloop.core.config import build_config

    return build_config(cls, {k: v for k, v in values.items() if v is not None})


def track(run) -> None:
    """Log a finished stage's run dir to the tracking store; a store that cannot be reached is
    reported once and never fails the command (FMLOOP_TRACKING=off skips it)."""
    from fmloop.registry.tracking import track_quietly

    track_quietly(run.path)


def check_output(out, overwrite: bool = False) -> None:
    """Refuse an existing --out before any heavy import or data read (unless --overwrite)."""
    from fmloop.core.artifacts import require_new_folder

    if out is not None and not overwrite:
        require_new_folder(out)


def check_model_name(name: str | None) -> None:
    """A --model that is neither an existing folder nor a preset: say so, with the presets."""
    if name is None or "/" not in name and "\\" not in name and not name.startswith("."):
        return  # a preset name (checked against the catalog when the model is built)
    if name.startswith("models:/"):
        from fmloop.registry.names import parse_reference

        parse_reference(name)  # its form now; whether it exists when the registry is read
        return
    from pathlib import Path

    from fmloop.core.errors import ModelError

    if not Path(name).expanduser().exists():
        raise ModelError(
            f"--model {name}: no such folder. Pass an existing model folder or run dir, or a preset ({PRESET_NAMES})."
        )
