"""The pretraining stage: unlabeled text -> a base language model in a run dir.

    run = pretrain.run(load_config(PretrainConfig, overrides={...}), out="runs/base")

From scratch (a preset plus a tokenizer trained on the corpus) or continued from a local Hugging
Face model folder (domain-adaptive pretraining, using the model's own tokenizer).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn

from fmloop.core.artifacts import RunDir, building, config_hash, remove_output, require_new_folder
from fmloop.core.errors import ConfigError, ResumeError
from fmloop.core.runtime import Runtime, launched_as_main, main_process_first, running
from fmloop.data.images import is_image_source
from fmloop.data.sources import TextCorpus, load_text_corpus
from fmloop.data.text import (
    CausalLMCollator,
    MaskedLMCollator,
    TokenStore,
    default_pad_multiple,
    tokenize_for_clm,
    tokenize_for_mlm,
)
from fmloop.data.tokenizer import load_tokenizer, train_tokenizer
from fmloop.evaluate.report import write_training_report
from fmloop.models.pooled import keep_sentence_transformer_files
from fmloop.models.presets import is_model_folder, load_pretrained, resolve_preset
from fmloop.train.callbacks import BestTracker, EarlyStopping, GracefulStop, MetricsLogger, ProgressBar, TimeBudget
from fmloop.train.checkpoint import load_checkpoint
from fmloop.train.config import PretrainConfig
from fmloop.train.loop import BatchPlan, Loop, LoopSettings, evaluate_batches
from fmloop.train.objectives import OBJECTIVES
from fmloop.train.optim import build_optimizer, build_scheduler

log = logging.getLogger(__name__)


def _prepare_tokenizer(cfg: PretrainConfig, run: RunDir, runtime: Runtime, corpus: TextCorpus, resuming: bool):
    """The run's tokenizer, always kept in RUN/tokenizer so a resume never depends on outside files."""
    tok_dir = run.path / "tokenizer"
    if resuming:
        return load_tokenizer(tok_dir), str(tok_dir)
    source = cfg.tokenizer.path or (cfg.model.name if is_model_folder(cfg.model.name) else None)
    if source:
        description = str(source)
    else:
        kind = resolve_preset(cfg.model.name, cfg.objective).tokenizer_kind
        description = f"trained {kind} ({cfg.tokenizer.vocab_size})"
    with main_process_first(runtime):
        if runtime.is_main:
            if source:
                tokenizer = load_tokenizer(source)
            else:
                train = corpus.splits["train"]
                n = min(len(train), cfg.tokenizer.max_training_docs)
                sample = train.shuffle(seed=cfg.train.seed).select(range(n)) if n < len(train) else train
                log.info("training a %s tokenizer (vocab %d) on %d documents", kind, cfg.tokenizer.vocab_size, n)
                tokenizer = train_tokenizer(
                    (row["text"] for row in sample), kind, cfg.tokenizer.vocab_size, cfg.tokenizer.min_frequency
                )
            with building(tok_dir, replace=True) as tmp:
                tokenizer.save_pretrained(tmp)
    return load_tokenizer(tok_dir), description


def _build_model(cfg: PretrainConfig, tokenizer):
    name = cfg.model.name
    if is_model_folder(name):
        model = load_pretrained(name, cfg.objective, cfg.model.dropout)
        if model.get_input_embeddings().num_embeddings < len(tokenizer):
            model.resize_token_embeddings(len(tokenizer))
        return model, str(Path(name).expanduser().resolve())
    preset = resolve_preset(name, cfg.objective)
    vocab = int(math.ceil(len(tokenizer) / 8) * 8)  # multiple of 8: faster embedding/projection matmuls
    return preset.build(vocab, tokenizer, cfg.train.seq_len, cfg.model.dropout, cfg.model.overrides), None


def init_output_bias_to_unigram(model: nn.Module, store: TokenStore, special_ids) -> bool:
    """Start a from-scratch language model predicting the corpus's token frequencies.

    A fresh LM first spends its early steps learning the unigram distribution, and a model with
    no output bias to hold it learns it in the hidden states: every position is pushed to the
    same vector. Stopped on that plateau (a short run), the model has collapsed representations
    (every sentence looks alike) and fine-tunes to chance. Putting log-frequencies in the output
    bias from step 0 (the "initialise the last layer to the prior" rule) leaves the hidden states
    for context. Returns False for heads without an output bias (GPT-2's lm_head), left as built.
    """
    head = model.get_output_embeddings()
    bias = getattr(head, "bias", None)
    if bias is None:
        return False
    counts = np.bincount(store.values.astype(np.int64), minlength=bias.numel())[: bias.numel()].astype(np.float64)
    counts[[i for i in special_ids if i < counts.size]] = 0  # never a masked-LM target
    log_prior = np.log((counts + 1.0) / (counts.sum() + counts.size))  # add-one: unseen tokens stay possible
    with torch.no_grad():
        bias.copy_(torch.from_numpy(log_prior - log_prior.mean()).to(bias.dtype))
    return True


def _eval_batches(store: TokenStore, collate, batch_size: int, n_batches: int, seed: int) -> list[dict]:
    """Fixed held-out batches: the same examples and masks at every evaluation."""
    rng = np.random.default_rng([seed, 999])
    picked = rng.permutation(len(store))[: batch_size * n_batches]
    picked = picked[np.argsort(store.lengths[picked], kind="stable")]
    return [collate(picked[i : i + batch_size], -1) for i in range(0, len(picked), batch_size)]


def run(
    cfg: PretrainConfig, out: str | Path, *, resume: bool = False, overwrite: bool = False, extra_callbacks=()
) -> RunDir:
    """Pretrain into the run dir `out` (or continue it from its last checkpoint); returns the run
    dir holding `model/`, metrics and the report."""
    if cfg.data.path is None:
        raise ConfigError("The 'data.path' parameter of pretrain is required. Pass --data PATH.")
    if not resume and launched_as_main():
        if overwrite:
            remove_output(out)
        require_new_folder(out)
    cfg = resolve_modality(cfg)
    with running(cfg.train) as runtime:
        return _pretrain(cfg, runtime, Path(out), resuming=resume, extra_callbacks=extra_callbacks)


TEXT_OBJECTIVES, IMAGE_OBJECTIVES = ("mlm", "clm"), ("simclr", "mae")
# Image pretraining differs from text in scale: many small examples per step, larger steps.
IMAGE_TRAIN_DEFAULTS = {
    "batch_size": 256,
    "lr": 1e-3,
    "weight_decay": 0.05,
    "beta2": 0.95,
    "eval_every": 100,
    "checkpoint_every": 500,
}


def resolve_modality(cfg: PretrainConfig) -> PretrainConfig:
    """Fill in the modality (from the data), the objective and model (from the modality), and the
    image training defaults for whatever the user did not set; reject mixed-up combinations."""

    modality = cfg.modality or ("image" if is_image_source(cfg.data.path) else "text")
    allowed = IMAGE_OBJECTIVES if modality == "image" else TEXT_OBJECTIVES
    objective = cfg.objective or allowed[0]
    if objective not in allowed:
        raise ConfigError(
            f"The 'objective' parameter of pretrain must be one of {', '.join(allowed)} for "
            f"{modality} data. Got {objective!r} instead."
        )
    model = cfg.model.model_copy(
        update={"name": cfg.model.name or ("vit-mini" if modality == "image" else "bert-mini")}
    )
    train = cfg.train
    if modality == "image":
        train = train.model_copy(
            update={k: v for k, v in IMAGE_TRAIN_DEFAULTS.items() if k not in train.model_fields_set}
        )
    return cfg.model_copy(update={"modality": modality, "objective": objective, "model": model, "train": train})


@dataclass
class Prepared:
    """What a modality hands the shared pretraining runner."""

    model: nn.Module  # trained and checkpointed (for MAE, the whole autoencoder)
    objective: nn.Module
    train: BatchPlan
    eval_batches: list[dict]
    parent: str | None
    manifest: dict  # modality-specific manifest fields
    save_model: Callable[[Path], None]  # writes the final model folder into a temp dir
    summary: str  # one line for the log: what one step is made of
    unit: str = "tok"


def _start_run(
    run: RunDir, runtime: Runtime, resuming: bool, manifest: dict | None, fingerprint: str, data_path: str
) -> None:
    """Create the run dir only once the data is known to be good (a typo leaves no half-made run
    dir), and refuse to resume onto different data."""
    if not resuming and runtime.is_main:
        run.create()
    runtime.barrier()
    if resuming and manifest.get("data_fingerprint") != fingerprint:
        raise ResumeError(
            f"The data at {data_path} changed since {run.path} started "
            f"(fingerprint {fingerprint} != {manifest.get('data_fingerprint')}); "
            f"resuming would not continue the same run. Start a new run with --out."
        )


def _prepare_text(
    cfg: PretrainConfig, runtime: Runtime, run: RunDir, resuming: bool, manifest: dict | None
) -> Prepared:
    t = cfg.train
    corpus = load_text_corpus(
        cfg.data.path,
        column=cfg.data.column,
        validation_path=cfg.data.validation_path,
        validation_fraction=cfg.data.validation_fraction,
        max_validation_docs=cfg.data.max_validation_docs,
        max_docs=cfg.data.max_docs,
        seed=t.seed,
    )
    _start_run(run, runtime, resuming, manifest, corpus.fingerprint, cfg.data.path)
    log.info(
        "data: %s (%d train / %d held-out documents)",
        corpus.description,
        len(corpus.splits["train"]),
        len(corpus.splits["validation"]),
    )

    tokenizer, tokenizer_source = _prepare_tokenizer(cfg, run, runtime, corpus, resuming)
    tokenize = tokenize_for_mlm if cfg.objective == "mlm" else tokenize_for_clm
    train_store = tokenize(corpus.splits["train"], tokenizer, t.seq_len)
    eval_store = tokenize(corpus.splits["validation"], tokenizer, t.seq_len)
    if cfg.objective == "mlm":
        pad = default_pad_multiple(runtime.device.type)
        train_collate = MaskedLMCollator(train_store, tokenizer, t.seed, cfg.mlm_probability, pad)
        eval_collate = MaskedLMCollator(eval_store, tokenizer, t.seed, cfg.mlm_probability, pad)
    else:
        train_collate, eval_collate = CausalLMCollator(train_store), CausalLMCollator(eval_store)
    model, parent = _build_model(cfg, tokenizer)
    if parent is None and not resuming and init_output_bias_to_unigram(model, train_store, tokenizer.all_special_ids):
        log.info("output bias set to the log token frequencies of the training data")

    def save_model(tmp: Path) -> None:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        if parent is not None:
            keep_sentence_transformer_files(Path(parent), tmp)  # continued from a sentence encoder: still one

    eval_bs = max(1, t.batch_size // t.grad_accum)
    return Prepared(
        model=model,
        objective=OBJECTIVES.get(cfg.objective)(model),
        train=BatchPlan(train_store.lengths, t.batch_size, train_collate, t.seed, bucket=cfg.objective == "mlm"),
        eval_batches=_eval_batches(eval_store, eval_collate, eval_bs, t.eval_batches, t.seed),
        parent=parent,
        save_model=save_model,
        manifest=dict(tokenizer=tokenizer_source, data=corpus.description, data_fingerprint=corpus.fingerprint),
        summary=f"{t.seq_len} tokens each, {len(train_store)} training sequences",
    )


def _pretrain(cfg: PretrainConfig, runtime: Runtime, path: Path, resuming: bool, extra_callbacks) -> RunDir:
    t = cfg.train
    run = RunDir(path)
    manifest = None
    if resuming:
        manifest = run.read_manifest()
        if manifest.get("kind") != "pretrain":
            raise ResumeError(f"{path} holds a {manifest.get('kind')!r} run, not a pretraining run.")
        if not (run.checkpoints_dir.exists() and any(run.checkpoints_dir.glob("step-*"))):
            raise ResumeError(f"{path} has no checkpoint to resume from (it stopped before the first one was written).")
    elif run.path.exists() and any(run.path.iterdir()):
        run.create()  # raises: never write into an existing run without --resume
    for note in runtime.notes:
        log.info(note)
    if t.batch_size < runtime.world_size * t.grad_accum:
        raise ConfigError(
            f"The 'train.batch_size' parameter of pretrain must be >= processes x grad_accum "
            f"({runtime.world_size} x {t.grad_accum}). Got {t.batch_size} instead."
        )

    if cfg.modality == "image":
        from fmloop.train.pretrain_image import prepare_images

        prep = prepare_images(cfg, runtime, run, resuming, manifest, _start_run)
    else:
        prep = _prepare_text(cfg, runtime, run, resuming, manifest)
    batches_per_epoch = len(prep.train.lengths) // t.batch_size
    total_steps = t.max_steps or max(1, int(t.epochs * batches_per_epoch))
    warmup = t.warmup_steps if t.warmup_steps is not None else int(t.warmup_ratio * total_steps)

    model, objective = prep.model, prep.objective
    model.to(runtime.device)
    objective.to(runtime.device)
    optimizer = build_optimizer(objective, t.lr, t.weight_decay, (t.beta1, t.beta2))
    scheduler = build_scheduler(optimizer, warmup, total_steps, t.schedule, t.min_lr_ratio)
    state = load_checkpoint(run.checkpoints_dir, objective, optimizer, scheduler, runtime) if resuming else None

    n_params = sum(p.numel() for p in model.parameters())
    resolved = cfg.resolved()
    resolved["train"]["warmup_steps"] = warmup
    resolved["train"]["max_steps"] = total_steps
    if runtime.is_main:
        run.write_config(resolved)
        run.write_manifest(
            kind="pretrain",
            parents=[prep.parent] if prep.parent else [],
            status="running",
            objective=cfg.objective,
            modality=cfg.modality,
            model=cfg.model.name,
            parameters=n_params,
            config_hash=config_hash(resolved),
            runtime=runtime.describe(),
            **prep.manifest,
        )
        log.info(
            "model: %s, %.1fM parameters; %d steps of %d (%s); %s",
            cfg.model.name,
            n_params / 1e6,
            total_steps,
            t.batch_size,
            prep.summary,
            runtime.describe(),
        )

    callbacks = [
        ProgressBar(f"pretrain {cfg.objective}", unit=prep.unit),
        MetricsLogger(run.metrics_path, run.path / "tensorboard" if t.tensorboard else None),
        GracefulStop(),
    ]
    if t.max_time_s:
        callbacks.append(TimeBudget(t.max_time_s))
    callbacks.append(BestTracker("eval_loss", "min"))
    if t.early_stopping_patience:
        callbacks.append(EarlyStopping(t.early_stopping_patience))
    callbacks.extend(extra_callbacks)
    loop = Loop(
        objective=objective,
        model=objective,
        train=prep.train,
        evaluate=lambda: evaluate_batches(objective, prep.eval_batches, runtime),
        optimizer=optimizer,
        scheduler=scheduler,
        runtime=runtime,
        settings=LoopSettings.of(
            t,
            total_steps,
            eval_every=t.eval_every,
            checkpoint_every=t.checkpoint_every,
            keep_checkpoints=t.keep_checkpoints,
            max_bad_steps=t.max_bad_steps,
        ),
        callbacks=callbacks,
        checkpoint_dir=run.checkpoints_dir,
        state=state,
    )
    state = loop.run()

    if runtime.is_main:
        with building(run.model_dir, replace=True) as tmp:
            prep.save_model(tmp)
        evals = [r for r in run.read_metrics() if "eval_loss" in r]
        trains = [r for r in run.read_metrics() if "tokens_per_s" in r]
        finished = state.step >= total_steps
        seen = "tokens_seen" if prep.unit == "tok" else "images_seen"
        metrics = {
            "steps": state.step,
            seen: state.tokens_seen,
            "train_time_s": round(state.elapsed_s, 1),
            "skipped_steps": state.skipped_steps,
        }
        if evals:
            metrics.update(eval_loss=evals[-1]["eval_loss"], initial_eval_loss=evals[0]["eval_loss"])
            if cfg.modality == "text":
                metrics["eval_ppl"] = evals[-1]["eval_ppl"]
        if trains:
            key = "tokens_per_s" if prep.unit == "tok" else "images_per_s"
            metrics[key] = round(float(np.median([r["tokens_per_s"] for r in trains[1:] or trains])), 1)
        run.write_manifest(status="finished" if finished else "stopped", stop_reason=state.stop_reason, metrics=metrics)

        write_training_report(run)
    runtime.barrier()
    return run
