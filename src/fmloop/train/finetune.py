"""The fine-tuning stage: a base model + labeled text -> a task model with an honest evaluation.

    run = finetune(load_config(FinetuneConfig, overrides={"model": {"name": "path/to/base"},
                                                          "data": {"path": "sst2/"}}), out="runs/sst2")

Defaults (when not set; the values used are written to RUN/config.yaml):
  batch_size    32, or 16 below 1,000 training rows
  epochs        10 below 1,000 rows, 5 below 5,000, 3 below 20,000, else 2
  lr            by trainable size of the base: < 15M params 3e-4, < 60M 1e-4, < 200M 5e-5, else 2e-5;
                x10 for LoRA (capped at 1e-3); 1e-2 for a linear probe
  LoRA          rank 32 (at most an eighth of the model's width), alpha 2 x rank, every linear layer
  warmup        6% of the steps, then linear decay to 0
  max_length    the longest training example in tokens (at most the model's limit and 512)
  evaluation    twice per epoch on the validation split; the best checkpoint by the task's
                headline metric (accuracy / micro-F1 / MSE) is restored at the end; early stopping
                after 3 evaluations without improvement
"""

from __future__ import annotations

import json
import logging
import math
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, ClassVar, Literal

import numpy as np
import torch
from pydantic import Field, field_validator
from torch import nn

from fmloop.adapt.strategies import STRATEGY_PATTERN, apply_strategy, freeze_input_embeddings
from fmloop.core.artifacts import RunDir, config_hash, save_dir_atomically
from fmloop.core.config import Duration, StageConfig, parse_duration
from fmloop.core.errors import ConfigError
from fmloop.core.runtime import Runtime, running
from fmloop.data.labeled import LabeledCollator, encode_split, load_labeled
from fmloop.data.sampling import per_class_sample
from fmloop.data.text import default_pad_multiple
from fmloop.data.tokenizer import load_tokenizer
from fmloop.evaluate.metrics import HEADLINE, task_metrics
from fmloop.models.classifier import build_task_model, choose_pooling, resolve_model_folder
from fmloop.models.presets import is_model_folder
from fmloop.train.callbacks import BestTracker, EarlyStopping, GracefulStop, MetricsLogger, ProgressBar, TimeBudget
from fmloop.train.config import FAST_CPU_DROPOUT
from fmloop.train.loop import BatchPlan, Loop, LoopSettings, to_device
from fmloop.train.objectives.supervised import Supervised, task_loss
from fmloop.train.optim import build_optimizer, build_scheduler

log = logging.getLogger(__name__)


class FinetuneData(StageConfig):
    path: str | None = Field(None, description="labeled data: file, folder with train/validation/test files, ...")
    text_column: str | None = Field(None, description="the text column (images: the image column)")
    label_column: str | None = None
    validation_fraction: float = Field(0.1, gt=0, lt=1)


class FinetuneModel(StageConfig):
    name: str | None = Field(None, description="base model folder, fmloop run dir, or a preset (random init)")
    tokenizer: str | None = Field(None, description="tokenizer folder (required with a preset)")
    dropout: float | None = Field(None, ge=0, lt=1)
    pooling: Literal["auto", "native", "mean"] = Field(
        "auto", description="native: the architecture's head (CLS pooler / last token); mean: masked mean of "
                            "token states; auto: mean for sentence-embedding checkpoints, else native")


class FinetuneTrain(StageConfig):
    lr: float | None = Field(None, gt=0, le=1)
    epochs: float | None = Field(None, gt=0)
    batch_size: int | None = Field(None, ge=1)
    max_length: int | None = Field(None, ge=8, le=32768)
    warmup_ratio: float = Field(0.06, ge=0, le=1)
    weight_decay: float = Field(0.01, ge=0)
    label_smoothing: float = Field(0.0, ge=0, lt=1)
    class_weights: Literal["none", "balanced"] = "none"
    augment: bool = Field(False, description="random token deletion (10%) on training examples")
    metric: str | None = Field(None, description="validation metric for best checkpoint / early stopping")
    early_stopping_patience: int | None = Field(3, ge=1)
    evals_per_epoch: int = Field(2, ge=1)
    max_steps: int | None = Field(None, ge=1)
    max_time: Duration = None
    limit_per_class: float | None = Field(None, gt=0, description="train on N examples per class (or that "
                                                                  "fraction of each class): a seeded label budget")
    augment_policy: Literal["none", "light", "randaugment"] = Field(
        "light", description="images: batched augmentation of training images")
    mixup: float = Field(0.0, ge=0, description="images: mixup Beta(a, a) strength (0 = off)")
    cutmix: float = Field(0.0, ge=0, description="images: cutmix Beta(a, a) strength (0 = off)")
    freeze_token_embeddings: bool = Field(
        False, description="keep the input token-embedding matrix fixed (full and llrd): about 4% faster CPU steps")
    llrd_decay: float = Field(0.8, gt=0, le=1)
    lora_r: int | None = Field(None, ge=1, description="LoRA rank (default: 32, at most an eighth of the model's width)")
    lora_alpha: int | None = Field(None, ge=1, description="LoRA scale: updates are scaled by alpha / r (default 2r)")
    lora_dora: bool = Field(False, description="DoRA: LoRA plus a trained magnitude per output channel (peft use_dora)")
    lora_targets: str = Field("all-linear", description="all-linear, attention (the architecture's query/value "
                                                        "projections), or comma-separated module names")
    grad_accum: int = Field(1, ge=1)
    clip_grad_norm: float = Field(1.0, ge=0)
    precision: Literal["auto", "bf16", "fp32"] = "auto"
    device: str = "auto"
    seed: int = 42
    deterministic: bool = False
    threads: int | None = Field(None, ge=1)
    fast_cpu_dropout: bool = FAST_CPU_DROPOUT
    tensorboard: bool = True
    log_every: int = Field(10, ge=1)



class FinetuneConfig(StageConfig):
    stage: ClassVar[str] = "finetune"
    task: Literal["classification", "multilabel", "regression"] = "classification"
    strategy: str = "full"
    data: FinetuneData = Field(default_factory=FinetuneData)
    model: FinetuneModel = Field(default_factory=FinetuneModel)
    train: FinetuneTrain = Field(default_factory=FinetuneTrain)

    @field_validator("strategy")
    @classmethod
    def _strategy(cls, value):
        if not STRATEGY_PATTERN.match(value):
            raise ValueError("must be one of full, linear-probe, freeze:K, gradual, llrd, lora")
        return value


def default_lr(n_params: int, strategy: str) -> float:
    if strategy == "linear-probe":   # one linear layer on fixed features: a large rate converges in time
        return 1e-2
    lr = 3e-4 if n_params < 15e6 else 1e-4 if n_params < 60e6 else 5e-5 if n_params < 200e6 else 2e-5
    return min(1e-3, lr * 10) if strategy == "lora" else lr


def default_epochs(n_train: int) -> float:
    return 10 if n_train < 1000 else 5 if n_train < 5000 else 3 if n_train < 20000 else 2


def auto_max_length(lengths: np.ndarray, model_limit: int) -> int:
    """The longest training example, within the model's limit and 512. Batches are
    length-bucketed, so a few long examples cost only their own batches, not every batch."""
    longest = int(lengths.max()) if len(lengths) else 128
    return int(min(model_limit, 512, max(16, math.ceil(longest / 8) * 8)))


def _model_limit(folder_or_preset: str) -> int:
    if is_model_folder(folder_or_preset):
        config = json.loads((resolve_model_folder(folder_or_preset) / "config.json").read_text())
        return int(config.get("max_position_embeddings") or config.get("n_positions") or 512)
    return 512


def _summary(data, encoded: dict, labels, task: str, max_length: int) -> dict:
    train_lengths = encoded["train"].full_lengths
    summary = {"rows": {name: len(ds) for name, ds in data.splits.items()},
               "max_length": max_length,
               "token_length_percentiles": {f"p{q}": int(np.percentile(train_lengths, q)) for q in (50, 90, 99)}
               | {"max": int(train_lengths.max())},
               "truncated": {name: int((e.full_lengths > max_length).sum()) for name, e in encoded.items()}}
    if task == "classification":
        counts = np.bincount(encoded["train"].labels, minlength=len(labels))
        summary["class_balance"] = {labels[i]: int(c) for i, c in enumerate(counts)}
    elif task == "multilabel":
        summary["label_counts"] = {labels[i]: int(c) for i, c in enumerate(encoded["train"].labels.sum(0))}
    return summary


class _Augmented:
    """Collate wrapper: drop 10% of non-special tokens per training example (seeded by epoch, index)."""

    def __init__(self, collate: LabeledCollator, special_ids: set[int], seed: int):
        self.collate, self.special, self.seed = collate, np.array(sorted(special_ids)), seed

    def __call__(self, indices, epoch):
        batch = self.collate(indices, epoch)
        ids, mask = batch["input_ids"].numpy().copy(), batch["attention_mask"].numpy().copy()
        for row, index in enumerate(indices):
            n = int(mask[row].sum())
            keep = np.random.default_rng([self.seed, epoch, int(index), 7]).random(n) >= 0.1
            keep |= np.isin(ids[row, :n], self.special)
            kept = ids[row, :n][keep]
            ids[row, :] = self.collate.pad_id
            mask[row, :] = 0
            ids[row, :len(kept)], mask[row, :len(kept)] = kept, 1
        batch["input_ids"], batch["attention_mask"] = torch.from_numpy(ids), torch.from_numpy(mask)
        return batch


def predict_logits(model, encoded, pad_id: int, runtime: Runtime, batch_size: int = 64) -> np.ndarray:
    """Logits for every example of an encoded split, in order (batches sorted by length)."""
    collate = LabeledCollator(encoded, pad_id, default_pad_multiple(runtime.device.type))
    order = np.argsort(encoded.store.lengths, kind="stable")
    out = None
    model.eval()
    with torch.no_grad():
        for start in range(0, len(order), batch_size):
            idx = order[start:start + batch_size]
            batch = to_device(collate(idx), runtime.device)
            with runtime.autocast():
                logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits.float()
            if out is None:
                out = np.zeros((len(order), logits.shape[-1]), dtype=np.float32)
            out[idx] = logits.cpu().numpy()
    return out


def finetune(cfg: FinetuneConfig, out: str | Path) -> RunDir:
    if cfg.data.path is None:
        raise ConfigError("The 'data.path' parameter of finetune is required. Pass --data PATH.")
    if cfg.model.name is None:
        raise ConfigError("The 'model.name' parameter of finetune is required. Pass --model PATH|PRESET.")
    with running(cfg.train) as runtime:
        return _finetune(cfg, runtime, RunDir(out))


@dataclass
class TaskInputs:
    """A modality's view of the labeled data, as the shared fine-tuning runner needs it."""

    model: nn.Module                                   # base + fresh task head, before the strategy
    parent: str | None
    labels: list[str] | None
    y: dict[str, np.ndarray]                           # targets per split
    train_lengths: np.ndarray                          # per training example (bucketing; images: ones)
    bucket: bool
    make_collate: Callable[[], Callable]               # -> (indices, epoch) -> batch
    logits: Callable[[nn.Module, str], np.ndarray]     # (model, split) -> logits in example order
    save_extra: Callable[[Path], None]                 # tokenizer / image preprocessor beside the weights
    summary: dict
    description: str
    fingerprint: str
    examples: Callable[[str], dict]                    # what the report shows per example of a split
    resolved: dict                                     # values chosen here, for RUN/config.yaml
    pooling: str = "native"
    default_batch_size: Callable[[int], int] | None = None   # n_train -> batch size (None: the text rule)
    default_lr: float | None = None                          # None: by model size (the text rule)


@dataclass
class StageHooks:
    """How a stage built on the fine-tuning runner differs from plain fine-tuning (distillation:
    its own preparation, which adds the teacher's outputs to each batch, and its own objective)."""

    kind: str = "finetune"
    prepare: Callable[[FinetuneConfig, Runtime], TaskInputs] | None = None
    objective: Callable[[nn.Module, torch.Tensor | None], nn.Module] | None = None   # (model, class weights)
    manifest: dict | None = None
    parent: str | None = None          # lineage for the manifest (the teacher), when not the base model
    callbacks: list = None             # extra loop callbacks (pruning: keep pruned weights at zero)


def _prepare_text(cfg: FinetuneConfig, runtime: Runtime, labels: list[str] | None = None,
                  extra_train=None) -> TaskInputs:
    """`labels` fixes the class order (a teacher's); `extra_train`, a function of the final
    training split returning a Dataset of text + label (or None), is appended to the training rows
    (teacher-labeled text); it runs after the validation rows were held out, so nothing derived
    from them can reach training."""
    t = cfg.train
    data = load_labeled(cfg.data.path, task=cfg.task, text_column=cfg.data.text_column,
                        label_column=cfg.data.label_column, validation_fraction=cfg.data.validation_fraction,
                        seed=t.seed, hold_out=not t.limit_per_class, labels=labels)
    if t.limit_per_class:
        # The label budget covers validation too (see finetune_image): limit first, then hold out.
        data.splits["train"] = _limit_text(data.splits["train"], cfg.task, t.limit_per_class, t.seed)
        if "validation" in data.splits:
            share = validation_budget(t.limit_per_class, cfg.data.validation_fraction)
            data.splits["validation"] = _limit_text(data.splits["validation"], cfg.task, share, t.seed)
        else:
            from fmloop.data.labeled import stratified_split
            data.splits["train"], data.splits["validation"] = stratified_split(
                data.splits["train"], cfg.task, cfg.data.validation_fraction, t.seed)
    extra = extra_train(data.splits["train"]) if extra_train is not None else None
    if extra is not None and len(extra):
        from datasets import concatenate_datasets
        data.splits["train"] = concatenate_datasets([data.splits["train"], extra.cast(data.splits["train"].features)])
    if is_model_folder(cfg.model.name):
        tokenizer = load_tokenizer(cfg.model.tokenizer or resolve_model_folder(cfg.model.name))
    elif cfg.model.tokenizer:
        tokenizer = load_tokenizer(cfg.model.tokenizer)
    else:
        raise ConfigError(f"Preset {cfg.model.name!r} starts from random weights and needs a tokenizer: "
                          f"pass --model.tokenizer=FOLDER (e.g. a pretraining run's RUN/tokenizer).")
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token  # decoder-only models: pad with end-of-text

    full = encode_split(data.splits["train"], tokenizer, 10**6)
    max_length = t.max_length or auto_max_length(full.full_lengths, _model_limit(cfg.model.name))
    encoded = {name: encode_split(ds, tokenizer, max_length) for name, ds in data.splits.items()}
    summary = _summary(data, encoded, data.labels, cfg.task, max_length)
    log.info("data: %s", data.description)
    log.info("rows %s; tokens p50/p90/p99/max %s; max_length %d (%d training rows truncated)%s",
             summary["rows"], "/".join(str(v) for v in summary["token_length_percentiles"].values()), max_length,
             summary["truncated"]["train"],
             f"; classes {summary['class_balance']}" if "class_balance" in summary else "")
    pooling = choose_pooling(cfg.model.name, cfg.model.pooling)
    model, parent = build_task_model(cfg.model.name, cfg.task, data.labels, tokenizer, cfg.model.dropout, max_length,
                                     pooling)
    pad_id = tokenizer.pad_token_id

    def make_collate():
        collate = LabeledCollator(encoded["train"], pad_id, default_pad_multiple(runtime.device.type))
        return _Augmented(collate, set(tokenizer.all_special_ids), t.seed) if t.augment else collate

    return TaskInputs(model=model, parent=parent, labels=data.labels,
                      y={name: e.labels for name, e in encoded.items()},
                      train_lengths=encoded["train"].store.lengths, bucket=True, make_collate=make_collate,
                      logits=lambda m, split: predict_logits(m, encoded[split], pad_id, runtime),
                      save_extra=tokenizer.save_pretrained, summary=summary, description=data.description,
                      fingerprint=data.fingerprint, examples=lambda split: {"texts": data.splits[split]["text"]},
                      resolved={"train": {"max_length": max_length}, "model": {"pooling": pooling}}, pooling=pooling)


def validation_budget(limit: float, fraction: float) -> float:
    """Per-class size of a validation split under a label budget of `limit` per class (or fraction)."""
    return max(1, round(limit * fraction)) if limit >= 1 else limit * fraction


def _limit_text(train, task: str, limit: float, seed: int):
    """A seeded per-class subset of the training rows (classification), or `limit` rows in all."""
    if task != "classification":
        n = int(limit) if limit >= 1 else max(1, int(round(len(train) * limit)))
        return train.select(np.sort(np.random.default_rng([seed, 17]).permutation(len(train))[:n]))
    return train.select(per_class_sample(np.asarray(train["label"]), limit, seed))


def _finetune(cfg: FinetuneConfig, runtime: Runtime, run: RunDir, hooks: StageHooks | None = None) -> RunDir:
    t = cfg.train
    hooks = hooks or StageHooks()
    if run.path.exists() and any(run.path.iterdir()):
        run.create()  # raises: never overwrite a run
    from fmloop.data.images import is_image_source
    if hooks.prepare is not None:
        inputs = hooks.prepare(cfg, runtime)
    elif is_image_source(cfg.data.path):
        from fmloop.train.finetune_image import prepare_images
        inputs = prepare_images(cfg, runtime)
    else:
        inputs = _prepare_text(cfg, runtime)
    model = inputs.model
    n_train = len(inputs.train_lengths)
    n_params = sum(p.numel() for p in model.parameters())
    batch_size = t.batch_size or (inputs.default_batch_size(n_train) if inputs.default_batch_size
                                  else 32 if n_train >= 1000 else 16)
    batch_size = min(batch_size, n_train)
    epochs = t.epochs or default_epochs(n_train)
    steps_per_epoch = max(1, n_train // batch_size)
    total_steps = t.max_steps or max(1, int(round(epochs * steps_per_epoch)))
    lr = t.lr or (inputs.default_lr if inputs.default_lr and cfg.strategy == "full" else default_lr(n_params, cfg.strategy))
    warmup = int(t.warmup_ratio * total_steps)
    eval_every = max(1, steps_per_epoch // t.evals_per_epoch)
    metric, mode = (t.metric, "min" if t.metric in ("eval_loss", "mse", "mae") else "max") if t.metric else HEADLINE[cfg.task]

    model.to(runtime.device)
    plan = apply_strategy(model, cfg.strategy, total_steps=total_steps, llrd_decay=t.llrd_decay, lora_r=t.lora_r,
                          lora_alpha=t.lora_alpha, lora_targets=t.lora_targets, dora=t.lora_dora)
    task_model = plan.model
    if t.freeze_token_embeddings and cfg.strategy in ("full", "llrd") and hasattr(model, "get_input_embeddings"):
        # The matrix is the largest dense gradient and optimizer update of a step (half of MiniLM's
        # parameters); a few thousand labeled sentences only touch a small part of it anyway.
        freeze_input_embeddings(model)
        plan.description += "; token embeddings fixed"
    class_weights = None
    if t.class_weights == "balanced" and cfg.task == "classification":
        counts = np.bincount(inputs.y["train"], minlength=len(inputs.labels)).astype(np.float64)
        class_weights = torch.tensor(counts.sum() / (len(counts) * np.maximum(counts, 1)), dtype=torch.float32)
    objective = (hooks.objective(task_model, class_weights) if hooks.objective
                 else Supervised(task_model, cfg.task, class_weights, t.label_smoothing))
    optimizer = build_optimizer(task_model, lr, t.weight_decay, (0.9, 0.999), lr_scale=plan.lr_scale,
                                include_frozen=plan.include_frozen)
    own = [p for name, p in objective.named_parameters() if not name.startswith("model.") and p.requires_grad]
    if own:   # the objective's own weights (distillation's projections) train with the model
        optimizer.add_param_group({"params": own, "lr": lr, "weight_decay": 0.0})
    scheduler = build_scheduler(optimizer, warmup, total_steps, "linear", 0.0)

    resolved = cfg.resolved()
    for section, values in inputs.resolved.items():
        resolved[section].update(values)
    resolved["train"].update(lr=lr, epochs=epochs, batch_size=batch_size, max_steps=total_steps, metric=metric,
                             **plan.settings)
    run.create()
    run.write_config(resolved)
    trainable = sum(p.numel() for p in task_model.parameters() if p.requires_grad)
    run.write_manifest(kind=hooks.kind, **(hooks.manifest or {}), parent=hooks.parent or inputs.parent, status="running", task=cfg.task, strategy=cfg.strategy,
                       strategy_detail=plan.description, model=cfg.model.name, parameters=n_params,
                       trainable_parameters=trainable, labels=inputs.labels, config_hash=config_hash(resolved),
                       data=inputs.description, data_fingerprint=inputs.fingerprint, data_summary=inputs.summary,
                       runtime=runtime.describe())
    log.info("model: %s (%.1fM parameters, %.2fM trainable: %s); %d steps of %d, lr %.2g, %s",
             cfg.model.name, n_params / 1e6, trainable / 1e6, plan.description, total_steps, batch_size, lr,
             runtime.describe())

    def evaluate():
        logits = inputs.logits(task_model, "validation")
        y = inputs.y["validation"]
        metrics = task_metrics(cfg.task, y, logits, inputs.labels)
        scalars = {k: v for k, v in metrics.items() if isinstance(v, float)}
        scalars["eval_loss"] = float(task_loss(cfg.task, torch.from_numpy(logits), torch.from_numpy(y),
                                               reduction="mean"))
        return scalars

    best = BestTracker(metric, mode, path=run.checkpoints_dir / "best.safetensors")
    callbacks = [ProgressBar(f"{hooks.kind} {cfg.strategy}", unit="tok" if inputs.bucket else "img"),
                 MetricsLogger(run.metrics_path, run.path / "tensorboard" if t.tensorboard else None),
                 GracefulStop(), best, *plan.callbacks, *(hooks.callbacks or [])]
    if t.early_stopping_patience:
        callbacks.append(EarlyStopping(t.early_stopping_patience))
    if t.max_time:
        callbacks.append(TimeBudget(parse_duration(t.max_time)))
    loop = Loop(objective=objective, model=task_model,
                train=BatchPlan(inputs.train_lengths, batch_size, inputs.make_collate(), t.seed, bucket=inputs.bucket),
                evaluate=evaluate, optimizer=optimizer, scheduler=scheduler, runtime=runtime,
                settings=LoopSettings(total_steps=total_steps, grad_accum=t.grad_accum, clip_grad_norm=t.clip_grad_norm,
                                      fast_cpu_dropout=t.fast_cpu_dropout,
                                      log_every=t.log_every, eval_every=eval_every, checkpoint_every=0),
                callbacks=callbacks, checkpoint_dir=None)
    state = loop.run()
    restored = best.restore(task_model)
    if restored:
        log.info("restored the best weights: %s %.4f at step %s", metric, state.best_metric, state.best_step)

    def write_model(tmp: Path) -> None:
        if cfg.strategy == "lora" and inputs.parent is None:
            # A preset base has no folder an adapter could point to: save the merged model instead.
            import copy
            copy.deepcopy(task_model).merge_and_unload().save_pretrained(tmp, safe_serialization=True)
        else:
            task_model.save_pretrained(tmp, safe_serialization=True)
            if cfg.strategy == "lora" and inputs.pooling != "mean":
                task_model.base_model.model.config.save_pretrained(tmp)  # labels and head size for reloading
        inputs.save_extra(tmp)

    save_dir_atomically(run.model_dir, write_model)
    shutil.rmtree(run.checkpoints_dir, ignore_errors=True)  # best weights now live in model/

    final, final_logits = {}, {}
    for split in ("validation", "test"):
        if split in inputs.y:
            final_logits[split] = inputs.logits(task_model, split)
            final[split] = {k: v for k, v in task_metrics(cfg.task, inputs.y[split], final_logits[split],
                                                          inputs.labels).items() if isinstance(v, float)}
    early = (state.stop_reason or "").startswith("early stopping")
    run.write_manifest(status="finished" if state.step >= total_steps or early else "stopped",
                       stop_reason=state.stop_reason, best_step=state.best_step,
                       metrics={"steps": state.step, "train_time_s": round(state.elapsed_s, 1),
                                "eval_time_s": round(state.extra.get("eval_s", 0.0), 1),
                                "train_samples_per_s": round(state.step * batch_size / max(state.elapsed_s - state.extra.get("eval_s", 0.0), 1e-9), 1),
                                **{f"{split}_{k}": v for split, m in final.items() for k, v in m.items()}})
    from fmloop.evaluate.evaluation import write_evaluation
    split = "test" if "test" in inputs.y else "validation"
    write_evaluation(out=run.path, model=str(run.model_dir), data=f"{cfg.data.path} [{split}]", task=cfg.task,
                     labels=inputs.labels, y_true=inputs.y[split], logits=final_logits[split],
                     curves=run.read_metrics(), **inputs.examples(split))
    return run
