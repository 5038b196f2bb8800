"""The supervised runner behind `fmloop finetune`, `distill` and `prune`: a modality's prepared
inputs (`TaskInputs`) in, a run dir with the best model, its metrics and report out.

    inputs = prepare_text(cfg, runtime)        # or prepare_images; distill / prune adjust them
    run_supervised(cfg, runtime, run, inputs, kind="finetune")

Defaults (when not set; the values used are written to RUN/config.yaml):
  batch_size    32, or 16 below 1,000 training rows (images: by data size)
  epochs        10 below 1,000 rows, 5 below 5,000, 3 below 20,000, else 2
  lr            by trainable size of the base: < 15M params 3e-4, < 60M 1e-4, < 200M 5e-5, else 2e-5;
                x10 for LoRA (capped at 1e-3); 1e-2 for a linear probe
  steps         at least MIN_STEPS below 1,000 training rows (a pretrained body needs hundreds of
                updates to move; 10 epochs of 16 rows would be 10 steps)
  warmup        6% of the steps, then linear decay to 0
  evaluation    twice per epoch on the validation split; the best checkpoint by the task's
                headline metric (accuracy / micro-F1 / MSE) is restored at the end; early stopping
                after 3 evaluations without improvement; a resumable checkpoint at every evaluation
  few labels    a validation split of fewer than SMALL_VALIDATION rows is too small to choose a
                checkpoint on (one example moves accuracy by more than training does): the fixed
                schedule runs to its end and its last weights are kept, no early stopping; text
                data with a test split trains on those validation rows too (prepare_text)
"""

from __future__ import annotations

import copy
import logging
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn

from fmloop.adapt.strategies import apply_strategy, freeze_input_embeddings, scale_head_lr
from fmloop.core import stop
from fmloop.core.artifacts import RunDir, building, config_hash
from fmloop.core.callbacks import Callback
from fmloop.core.config import parse_duration
from fmloop.core.errors import ResumeError
from fmloop.core.runtime import Runtime
from fmloop.evaluate.evaluation import write_evaluation
from fmloop.evaluate.floor import MAX_FLOOR_ROWS, compare_floor, describe_floor
from fmloop.models.calibration import MIN_ROWS, calibrate, write_calibration
from fmloop.tasks import get_task
from fmloop.train.callbacks import BestTracker, EarlyStopping, GracefulStop, MetricsLogger, ProgressBar, TimeBudget
from fmloop.train.checkpoint import load_checkpoint
from fmloop.train.config import FinetuneConfig
from fmloop.train.loop import BatchPlan, Loop, LoopSettings
from fmloop.train.objectives.supervised import Supervised
from fmloop.train.optim import build_optimizer, build_scheduler

log = logging.getLogger(__name__)


@dataclass
class TaskInputs:
    """A modality's view of the labeled data, as the shared runner needs it."""

    model: nn.Module  # the model to start from, before the strategy
    parents: list[str]  # model folders it was built from (lineage)
    labels: list[str] | None
    y: dict[str, np.ndarray]  # targets per split
    train_lengths: np.ndarray  # per training example (bucketing; images: ones)
    bucket: bool
    make_collate: Callable[[], Callable]  # -> (indices, epoch) -> batch
    logits: Callable[[nn.Module, str], np.ndarray]  # (model, split) -> logits, fmloop's scoring path
    save_extra: Callable[[Path], None]  # tokenizer / image preprocessor beside the weights
    summary: dict
    description: str
    fingerprint: str
    examples: Callable[[str], dict]  # what the report shows per example of a split
    resolved: dict  # values chosen here, for RUN/config.yaml
    pooling: str = "native"
    continued: str | None = None  # "head kept" / "new head": continuing a fine-tuned model
    default_batch_size: Callable[[int], int] | None = None  # n_train -> batch size (None: the text rule)
    default_lr: float | None = None  # None: by model size (the text rule)
    extra_manifest: dict = field(default_factory=dict)  # stage-specific manifest fields
    tokens: dict | None = None  # text: split -> TokenStore of the truncated ids (contrastive pairs read them)
    pad_id: int | None = None
    # False: early stopping only when train.early_stopping_patience is set explicitly (a task whose
    # headline metric sits at zero for many steps before it moves)
    early_stop_by_default: bool = True
    new_head_lr_scale: float = 1.0  # the head's learning rate as a multiple of lr when the head is new


MIN_STEPS = 200  # optimizer steps at least, below 1,000 training rows (unless epochs or max_steps are set)
SMALL_VALIDATION = 100  # validation rows below which no checkpoint is chosen and no early stop is made on them


def validation_budget(limit: float, fraction: float) -> float:
    """Per-class size of a validation split under a label budget of `limit` per class (or fraction)."""
    return max(1, round(limit * fraction)) if limit >= 1 else limit * fraction


def default_lr(n_params: int, strategy: str) -> float:
    if strategy == "linear-probe":  # one linear layer on fixed features: a large rate converges in time
        return 1e-2
    lr = 3e-4 if n_params < 15e6 else 1e-4 if n_params < 60e6 else 5e-5 if n_params < 200e6 else 2e-5
    return min(1e-3, lr * 10) if strategy == "lora" else lr


def default_epochs(n_train: int) -> float:
    return 10 if n_train < 1000 else 5 if n_train < 5000 else 3 if n_train < 20000 else 2


def schedule(t, n_train: int, batch_size: int) -> tuple[float, int, int]:
    """(epochs, total optimizer steps, steps between evaluations) from the settings and the data."""
    epochs = t.epochs or default_epochs(n_train)
    steps_per_epoch = max(1, n_train // batch_size)
    total = max(1, int(round(epochs * steps_per_epoch)))
    eval_every = max(1, steps_per_epoch // t.evals_per_epoch)
    if t.max_steps is not None:
        total = t.max_steps
    elif t.epochs is None and total < MIN_STEPS and n_train < 1000:
        # stretched to MIN_STEPS: as many evaluations as the epochs would have had
        total = MIN_STEPS
        eval_every = max(1, total // max(1, int(round(epochs * t.evals_per_epoch))))
    return epochs, total, eval_every


def run_supervised(
    cfg: FinetuneConfig,
    runtime: Runtime,
    run: RunDir,
    inputs: TaskInputs,
    *,
    kind: str = "finetune",
    objective: Callable[[nn.Module, torch.Tensor | None], nn.Module] | None = None,
    callbacks: list[Callback] = (),
    parents: list[str] | None = None,
    resuming: bool = False,
) -> RunDir:
    """Train `inputs.model` on the prepared data and write the run dir. `objective(model, class
    weights)` replaces the task loss (distillation); `callbacks` join the loop's (pruning masks);
    `parents` replaces the lineage (a teacher instead of the base)."""
    t, task = cfg.train, get_task(cfg.task)
    model = inputs.model
    n_train = len(inputs.train_lengths)
    n_params = sum(p.numel() for p in model.parameters())
    batch_size = t.batch_size or (
        inputs.default_batch_size(n_train) if inputs.default_batch_size else 32 if n_train >= 1000 else 16
    )
    batch_size = min(batch_size, n_train)
    epochs, total_steps, eval_every = schedule(t, n_train, batch_size)
    lr = t.lr or (
        inputs.default_lr if inputs.default_lr and cfg.strategy == "full" else default_lr(n_params, cfg.strategy)
    )
    warmup = int(t.warmup_ratio * total_steps)
    patience = t.early_stopping_patience
    if not inputs.early_stop_by_default and "early_stopping_patience" not in t.model_fields_set:
        patience = None
    checkpoint_every = eval_every if t.checkpoint_every is None else t.checkpoint_every
    if t.metric:
        metric, mode = t.metric, "min" if t.metric in ("eval_loss", "mse", "mae") else "max"
    else:
        metric, mode = task.headline

    model.to(runtime.device)
    plan = apply_strategy(
        model,
        cfg.strategy,
        total_steps=max(1, total_steps),
        llrd_decay=t.llrd_decay,
        lora_r=t.lora_r,
        lora_alpha=t.lora_alpha,
        lora_targets=t.lora_targets,
        dora=t.lora_dora,
    )
    new_head = cfg.strategy == "full" and inputs.continued != "head kept"  # measured on full fine-tuning only
    head_lr_scale = t.head_lr_scale or (inputs.new_head_lr_scale if new_head else 1.0)
    scale_head_lr(plan, model, head_lr_scale)
    task_model = plan.model
    if t.freeze_token_embeddings and cfg.strategy in ("full", "llrd") and hasattr(model, "get_input_embeddings"):
        # The matrix is the largest dense gradient and optimizer update of a step (half of MiniLM's
        # parameters); a few thousand labeled sentences only touch a small part of it anyway.
        freeze_input_embeddings(model)
        plan.description += "; token embeddings fixed"
    class_weights = None
    if t.class_weights == "balanced" and task.single_class:
        counts = np.bincount(inputs.y["train"], minlength=len(inputs.labels)).astype(np.float64)
        class_weights = torch.tensor(counts.sum() / (len(counts) * np.maximum(counts, 1)), dtype=torch.float32)
    loss = (
        objective(task_model, class_weights)
        if objective
        else Supervised(task_model, cfg.task, class_weights, t.label_smoothing)
    )
    optimizer = build_optimizer(
        task_model, lr, t.weight_decay, (0.9, 0.999), lr_scale=plan.lr_scale, include_frozen=plan.include_frozen
    )
    own = [p for name, p in loss.named_parameters() if not name.startswith("model.") and p.requires_grad]
    if own:  # the objective's own weights (distillation's projections) train with the model
        optimizer.add_param_group({"params": own, "lr": lr, "weight_decay": 0.0})
    scheduler = build_scheduler(optimizer, warmup, max(1, total_steps), "linear", 0.0)

    resolved = cfg.resolved()
    for section, values in inputs.resolved.items():
        resolved[section].update(values)
    resolved["train"].update(
        lr=lr,
        epochs=epochs,
        batch_size=batch_size,
        max_steps=total_steps,
        metric=metric,
        checkpoint_every=checkpoint_every,
        early_stopping_patience=patience,
        head_lr_scale=head_lr_scale,
        **plan.settings,
    )
    state = None
    if resuming:
        manifest = run.read_manifest()
        if manifest.data_fingerprint != inputs.fingerprint:
            raise ResumeError(
                f"The data at {cfg.data.path} changed since {run.path} started (fingerprint "
                f"{inputs.fingerprint} != {manifest.data_fingerprint}); resuming would not continue "
                f"the same run. Start a new run with --out."
            )
        state = load_checkpoint(run.checkpoints_dir, task_model, optimizer, scheduler, runtime)
    elif runtime.is_main:  # under torchrun, rank 0 alone writes the run dir
        run.create()
        run.write_config(resolved)
    trainable = sum(p.numel() for p in task_model.parameters() if p.requires_grad)
    if runtime.is_main:
        write_running_manifest(
            run, cfg, inputs, runtime, resolved, kind=kind, detail=plan.description, n_params=n_params,
            trainable=trainable, parents=parents,
        )  # fmt: skip
    runtime.barrier()
    log.info(
        "model: %s (%s%.1fM parameters, %.2fM trainable: %s); %d steps of %d, lr %.2g, %s",
        cfg.model.name,
        f"a fine-tuned model continued, {inputs.pooling} pooling, {inputs.continued}; " if inputs.continued else "",
        n_params / 1e6,
        trainable / 1e6,
        plan.description,
        total_steps,
        batch_size,
        lr,
        runtime.describe(),
    )

    def evaluate() -> dict:
        logits = inputs.logits(task_model, "validation")
        y = inputs.y["validation"]
        scalars = {k: v for k, v in task.metrics(y, logits, inputs.labels).items() if isinstance(v, float)}
        scalars["eval_loss"] = float(task.loss(torch.from_numpy(logits), torch.from_numpy(y), reduction="mean"))
        return scalars

    n_validation = len(inputs.y.get("validation", ()))
    choose = n_validation >= SMALL_VALIDATION  # else: the fixed schedule's last weights (see the module doc)
    if not choose:
        log.info(
            "validation: %s: a fixed schedule of %d steps, its last weights kept (no checkpoint choice, "
            "no early stopping)",
            f"{n_validation} rows, fewer than {SMALL_VALIDATION}" if n_validation else "none (its rows train)",
            total_steps,
        )
    best = BestTracker(metric, mode, path=run.checkpoints_dir / "best.safetensors" if choose else None)
    loop_callbacks = [
        ProgressBar(f"{kind} {cfg.strategy}", unit="tok" if inputs.bucket else "img"),
        MetricsLogger(run.metrics_path, run.path / "tensorboard" if t.tensorboard else None),
        GracefulStop(),
        best,
        *plan.callbacks,
        *callbacks,
    ]
    if patience and choose:
        loop_callbacks.append(EarlyStopping(patience))
    if t.max_time:
        loop_callbacks.append(TimeBudget(parse_duration(t.max_time)))
    loop = Loop(
        objective=loss,
        model=task_model,
        train=BatchPlan(inputs.train_lengths, batch_size, inputs.make_collate(), t.seed, bucket=inputs.bucket),
        evaluate=evaluate if n_validation else None,
        optimizer=optimizer,
        scheduler=scheduler,
        runtime=runtime,
        settings=LoopSettings.of(t, total_steps, eval_every=eval_every, checkpoint_every=checkpoint_every),
        callbacks=loop_callbacks,
        checkpoint_dir=run.checkpoints_dir if checkpoint_every else None,
        state=state,
    )
    state = loop.run()
    if stopped_by_signal(run, state, total_steps, write=runtime.is_main):
        return run
    runtime.barrier()  # rank 0's best weights are on disk before any process reads them
    if best.restore(task_model):
        log.info("restored the best weights: %s %.4f at step %s", metric, state.best_metric, state.best_step)
        if state.best_step == 0 and total_steps > 0:
            log.warning(
                "the best validation %s was the starting model's (step 0): training did not improve "
                "on it, so the saved model is the untrained start. Train longer, or change the lr.",
                metric,
            )
    if runtime.is_main:
        save_model(run, task_model, inputs, cfg.strategy)
        _finish(cfg, run, inputs, task_model, state, batch_size)
    runtime.barrier()
    return run


def write_running_manifest(
    run: RunDir, cfg: FinetuneConfig, inputs: TaskInputs, runtime: Runtime, resolved: dict, *, kind: str,
    detail: str, n_params: int, trainable: int, parents: list[str] | None = None,
) -> None:  # fmt: skip
    """The manifest of a run that has started: what it trains, on what, from what."""
    run.write_manifest(
        kind=kind,
        parents=parents if parents is not None else inputs.parents,
        status="running",
        task=cfg.task,
        strategy=cfg.strategy,
        strategy_detail=detail,
        model=cfg.model.name,
        parameters=n_params,
        trainable_parameters=trainable,
        labels=inputs.labels,
        config_hash=config_hash(resolved),
        data=inputs.description,
        data_fingerprint=inputs.fingerprint,
        data_summary=inputs.summary,
        continued=inputs.continued,
        runtime=runtime.describe(),
        **inputs.extra_manifest,
    )


def stopped_by_signal(run: RunDir, state, total_steps: int, write: bool = True) -> bool:
    """After the loop: a run Ctrl-C or SIGTERM stopped has its checkpoint and can be resumed, but no
    model yet; its manifest says so (True; written when `write`, by one process). False for a run
    that went to its end."""
    if state.step >= total_steps or not loop_stopped_by_signal(state.stop_reason):
        return False
    if not write:
        return True
    run.write_manifest(
        status="stopped",
        stop_reason=state.stop_reason,
        metrics={"steps": state.step, "train_time_s": round(state.elapsed_s, 1)},
    )
    log.warning(
        "stopped at step %d of %d (%s); continue with: fmloop finetune --resume %s",
        state.step, total_steps, state.stop_reason, run.path,
    )  # fmt: skip
    return True


def loop_stopped_by_signal(reason: str | None) -> bool:
    """True for a stop asked by the user (Ctrl-C, SIGTERM), not by early stopping or a time budget."""
    return stop.by_signal(reason)


def save_model(run: RunDir, task_model: nn.Module, inputs: TaskInputs, strategy: str) -> None:
    """RUN/model: the weights (a LoRA adapter where it applies) and the tokenizer or image processor."""

    def write_model(tmp: Path) -> None:
        if strategy == "lora" and not inputs.parents:
            # A preset base has no folder an adapter could point to: save the merged model instead.
            copy.deepcopy(task_model).merge_and_unload().save_pretrained(tmp, safe_serialization=True)
        else:
            task_model.save_pretrained(tmp, safe_serialization=True)
            if strategy == "lora" and inputs.pooling != "mean":
                task_model.base_model.model.config.save_pretrained(tmp)  # labels and head size for reloading
        inputs.save_extra(tmp)

    with building(run.model_dir, replace=True) as tmp:
        write_model(tmp)
    shutil.rmtree(run.checkpoints_dir, ignore_errors=True)  # best weights now live in model/


def _finish(cfg: FinetuneConfig, run: RunDir, inputs: TaskInputs, task_model: nn.Module, state, batch_size: int):
    train_s = max(state.elapsed_s - state.extra.get("eval_s", 0.0), 1e-9)
    training = {
        "steps": state.step,
        "train_time_s": round(state.elapsed_s, 1),
        "eval_time_s": round(state.extra.get("eval_s", 0.0), 1),
        "train_samples_per_s": round(state.step * batch_size / train_s, 1),
    }
    write_results(cfg, run, inputs, task_model, training, stop_reason=state.stop_reason, best_step=state.best_step)


def write_results(
    cfg: FinetuneConfig,
    run: RunDir,
    inputs: TaskInputs,
    task_model: nn.Module,
    training: dict,
    splits: tuple[str, ...] | None = None,
    **manifest,
) -> None:
    """The finished manifest (training figures + the model's metrics on the held-out `splits`,
    default validation and test) and the evaluation report on the test split (else validation)."""
    task = get_task(cfg.task)
    final, final_logits = {}, {}
    for split in splits or ("validation", "test"):
        if split in inputs.y:
            final_logits[split] = inputs.logits(task_model, split)
    calibration = _calibrate(cfg, run, inputs, final_logits)
    uncalibrated = dict(final_logits)
    if calibration:
        manifest["calibration"] = calibration
        final_logits = {split: logits / calibration["temperature"] for split, logits in final_logits.items()}
    for split, logits in final_logits.items():
        metrics = task.metrics(inputs.y[split], logits, inputs.labels)
        final[split] = {k: v for k, v in metrics.items() if isinstance(v, float)}
    floor = _floor(cfg, inputs, final_logits, splits)
    if floor:
        manifest["floor"] = floor
        training = {**training, "floor_test_accuracy": floor["accuracy"]}
    run.write_manifest(
        status="finished",
        **manifest,
        metrics={**training, **{f"{split}_{k}": v for split, m in final.items() for k, v in m.items()}},
    )
    split = "test" if "test" in inputs.y else "validation"
    write_evaluation(
        out=run.path,
        model=str(run.model_dir),
        data=f"{cfg.data.path} [{split}]",
        task=cfg.task,
        labels=inputs.labels,
        y_true=inputs.y[split],
        logits=final_logits[split],
        curves=run.read_metrics(),
        uncalibrated_logits=uncalibrated[split] if calibration else None,
        **inputs.examples(split),
    )


def _calibrate(cfg: FinetuneConfig, run: RunDir, inputs: TaskInputs, logits: dict) -> dict | None:
    """Temperature scaling fitted on the validation split, stored in RUN/model (models.calibration);
    None where it does not apply or there are too few validation rows to fit on."""
    if cfg.task != "classification" or "validation" not in logits:
        return None
    y = inputs.y["validation"]
    calibration = calibrate(logits["validation"], y, f"validation split ({len(y)} rows)")
    if calibration is None:
        log.info(
            "calibration: %d validation rows, fewer than %d: the model keeps its own confidences", len(y), MIN_ROWS
        )
        return None
    write_calibration(run.model_dir, calibration)
    log.info(
        "calibration: temperature %.3f fitted on %d validation rows (ECE %.4f -> %.4f there)",
        calibration["temperature"], len(y), calibration["ece_before"], calibration["ece_after"],
    )  # fmt: skip
    return calibration


def _floor(
    cfg: FinetuneConfig, inputs: TaskInputs, final_logits: dict, held_out: tuple[str, ...] | None
) -> dict | None:
    """TF-IDF + logistic regression on the rows this model trained on, scored on its test split
    (single-label text classification; evaluate.floor)."""
    if cfg.task != "classification" or "test" not in final_logits or "texts" not in inputs.examples("train"):
        return None
    trained = ["train"] + (
        ["validation"] if held_out and "validation" not in held_out and "validation" in inputs.y else []
    )
    texts = [t for split in trained for t in inputs.examples(split)["texts"]]
    if len(texts) > MAX_FLOOR_ROWS:
        return None
    y = np.concatenate([inputs.y[split] for split in trained])
    floor = compare_floor(
        texts, y, inputs.examples("test")["texts"], inputs.y["test"], final_logits["test"], cfg.train.seed
    )
    model_accuracy = float(np.mean(np.argmax(final_logits["test"], -1) == inputs.y["test"]))
    log.info("%s", describe_floor(floor, model_accuracy))
    return floor
