"""The fine-tuning stage: a base model + labeled text or images -> a task model with an honest
evaluation.

    run(load_config(FinetuneConfig, overrides={"model": {"name": "path/to/base"}, "data": {"path": "sst2/"}}),
        out="runs/sst2")
    run(cfg, out="runs/sst2", resume=True)      # after Ctrl-C, SIGTERM or kill -9: continues exactly

`model.name` may be a pretrained base (a new task head), a preset (random init), or a model fmloop
fine-tuned before: then its pooling and trained head are kept when the label set matches, and a
new head starts (said in the log and the manifest) when it does not. Defaults are listed in
fmloop.train.supervised.
"""

from __future__ import annotations

import logging
from pathlib import Path

from fmloop.core.artifacts import RunDir, remove_output, require_new_folder
from fmloop.core.errors import ConfigError
from fmloop.core.runtime import launched_as_main, running
from fmloop.data.images import is_image_source
from fmloop.data.tagged import is_tagged_source
from fmloop.train.choose import resolve_auto
from fmloop.train.config import FinetuneConfig
from fmloop.train.contrastive import run_contrastive
from fmloop.train.embedding import run_embedding
from fmloop.train.finetune_image import prepare_images
from fmloop.train.finetune_text import prepare_text
from fmloop.train.finetune_tokens import prepare_tokens
from fmloop.train.supervised import run_supervised

log = logging.getLogger(__name__)


def check(cfg: FinetuneConfig, stage: str = "finetune") -> None:
    """The required settings, checked before any data is read."""
    if cfg.data.path is None:
        raise ConfigError(f"The 'data.path' parameter of {stage} is required. Pass --data PATH.")
    if cfg.model.name is None:
        raise ConfigError(f"The 'model.name' parameter of {stage} is required. Pass --model PATH|PRESET.")


def run(cfg: FinetuneConfig, out: str | Path, *, resume: bool = False, overwrite: bool = False) -> RunDir:
    """Fine-tune `cfg.model.name` on `cfg.data.path` into the run dir `out` (or continue it)."""
    check(cfg)
    check_task(cfg)
    cfg = resolve_auto(cfg)
    out = Path(out)
    if not resume and launched_as_main():
        if overwrite:
            remove_output(out)
        require_new_folder(out)
    if cfg.strategy in ("embedding", "contrastive"):
        if is_image_source(cfg.data.path):
            raise ConfigError(
                f"The {cfg.strategy!r} strategy reads text encoders; for images use full or linear-probe."
            )
        if resume and cfg.strategy == "embedding":
            raise ConfigError(f"{out}: an embedding fit has no checkpoints to resume; run it again with --overwrite.")
        if cfg.model.pooling == "auto":  # embeddings are mean-pooled, whatever the base's own head reads
            cfg = cfg.model_copy(deep=True)
            cfg.model.pooling = "mean"
    with running(cfg.train) as runtime:
        if cfg.task == "tokens":
            prepare = prepare_tokens
        else:
            prepare = prepare_images if is_image_source(cfg.data.path) else prepare_text
        inputs = prepare(cfg, runtime)
        try:
            if cfg.strategy == "embedding":
                return run_embedding(cfg, runtime, RunDir(out), inputs)
            if cfg.strategy == "contrastive":
                return run_contrastive(cfg, runtime, RunDir(out), inputs, resuming=resume)
            return run_supervised(cfg, runtime, RunDir(out), inputs, kind="finetune", resuming=resume)
        except BaseException:
            discard_unstarted(out, resume)
            raise


def check_task(cfg: FinetuneConfig) -> None:
    """Tagged data needs --task tokens, and token classification needs tagged data and a strategy
    that trains a tag per word."""
    tagged = is_tagged_source(cfg.data.path)
    if cfg.task != "tokens" and tagged:
        raise ConfigError(
            f"{cfg.data.path} holds tagged words (CoNLL / JSONL tokens and tags): pass --task tokens to "
            f"train a tagger, or give {cfg.task} data a text and a label column."
        )
    if cfg.task == "tokens":
        if not tagged:
            raise ConfigError(
                f"--task tokens reads tagged words: {cfg.data.path} is not a CoNLL file (.conll, .bio, .iob), "
                'a JSONL file of {"tokens": [...], "tags": [...]}, or a folder of such split files.'
            )
        if cfg.strategy in ("embedding", "contrastive", "gradual"):
            raise ConfigError(
                f"The {cfg.strategy!r} strategy does not apply to token classification; use full, llrd, "
                "linear-probe or lora."
            )


def discard_unstarted(out: Path, resumed: bool) -> None:
    """A run that failed before its first checkpoint leaves nothing behind to confuse a rerun."""
    run = RunDir(out)
    if not resumed and run.path.exists() and not run.resumable() and not run.model_dir.exists():
        remove_output(out)
