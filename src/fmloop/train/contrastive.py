"""The `contrastive` strategy: SetFit's method (Tunstall et al. 2022) on fmloop's one loop.

    pairs        for each labeled example, `train.pair_iterations` times: one partner of its own
                 class (target 1) and one of another class (target 0), drawn with the seed; a
                 fixed table, so an epoch is a pass over it and resume continues it exactly
    body         the encoder is trained on those pairs with the cosine-similarity loss
                 (objectives/contrastive.py) on its own embeddings (mean pooling, unit length):
                 progress, time budget, checkpoints, SIGTERM and --resume as every training run
    head         then the `embedding` strategy on the adapted encoder: a cross-validated logistic
                 regression on all the labels (fmloop.train.embedding)

Defaults (SetFit's): batch 16 pairs, 1 epoch over the pairs, lr 2e-5 with 10% warmup.
"""

from __future__ import annotations

import logging
import shutil

import numpy as np
import torch

from fmloop.core.artifacts import RunDir
from fmloop.core.config import parse_duration
from fmloop.core.runtime import Runtime
from fmloop.data.text import default_pad_multiple, pad_width
from fmloop.train.callbacks import GracefulStop, MetricsLogger, ProgressBar, TimeBudget
from fmloop.train.checkpoint import load_checkpoint
from fmloop.train.config import FinetuneConfig
from fmloop.train.embedding import check_embedding_model, finish, fit_head, fit_splits_of, start_run
from fmloop.train.loop import BatchPlan, Loop, LoopSettings
from fmloop.train.objectives.contrastive import CosinePairs
from fmloop.train.optim import build_optimizer, build_scheduler
from fmloop.train.supervised import TaskInputs, stopped_by_signal

log = logging.getLogger(__name__)


def sample_pairs(y: np.ndarray, iterations: int, seed: int) -> np.ndarray:
    """(P, 3) int64 rows (a, b, target): per iteration and example, a same-class partner (1) and
    an other-class partner (0). Classes with one example pair with themselves (SetFit does too)."""
    rng = np.random.default_rng([seed, 29])
    by_class = {c: np.flatnonzero(y == c) for c in np.unique(y)}
    others = {c: np.flatnonzero(y != c) for c in by_class}
    rows = []
    for _ in range(iterations):
        for i, c in enumerate(y):
            same = by_class[c]
            partner = same[same != i] if len(same) > 1 else same
            rows.append((i, rng.choice(partner), 1))
            if len(others[c]):
                rows.append((i, rng.choice(others[c]), 0))
    return np.asarray(rows, dtype=np.int64)


class PairCollator:
    """Pair indices -> both sides padded to their own longest (rounded to `pad_multiple`)."""

    def __init__(self, sequences: list[np.ndarray], pairs: np.ndarray, pad_id: int, pad_multiple: int = 1):
        self.sequences, self.pairs, self.pad_id, self.pad_multiple = sequences, pairs, pad_id, pad_multiple

    def _side(self, rows: np.ndarray) -> tuple[torch.Tensor, torch.Tensor, int]:
        seqs = [self.sequences[r] for r in rows]
        width = pad_width(max(len(s) for s in seqs), self.pad_multiple)
        ids = np.full((len(seqs), width), self.pad_id, dtype=np.int64)
        mask = np.zeros((len(seqs), width), dtype=np.int64)
        for k, s in enumerate(seqs):
            ids[k, : len(s)], mask[k, : len(s)] = s, 1
        return torch.from_numpy(ids), torch.from_numpy(mask), int(sum(len(s) for s in seqs))

    def __call__(self, indices: np.ndarray, epoch: int = 0) -> dict:
        chosen = self.pairs[indices]
        a_ids, a_mask, a_tokens = self._side(chosen[:, 0])
        b_ids, b_mask, b_tokens = self._side(chosen[:, 1])
        return {
            "a_input_ids": a_ids,
            "a_attention_mask": a_mask,
            "b_input_ids": b_ids,
            "b_attention_mask": b_mask,
            "target": torch.from_numpy(chosen[:, 2].astype(np.float32)),
            "n_targets": len(indices),
            "n_tokens": a_tokens + b_tokens,
        }


def run_contrastive(
    cfg: FinetuneConfig, runtime: Runtime, run: RunDir, inputs: TaskInputs, resuming: bool = False
) -> RunDir:
    t = cfg.train
    model = check_embedding_model(inputs.model, cfg)
    model.config.fmloop_normalize = True
    splits = fit_splits_of(inputs)
    sequences = [inputs.tokens[s].get(i) for s in splits for i in range(len(inputs.y[s]))]
    y = np.concatenate([inputs.y[s] for s in splits])
    pairs = sample_pairs(y, t.pair_iterations, t.seed)
    lengths = np.maximum([len(sequences[a]) for a in pairs[:, 0]], [len(sequences[b]) for b in pairs[:, 1]])
    batch_size = min(t.batch_size or 16, len(pairs))
    epochs = t.epochs or 1
    steps_per_epoch = max(1, len(pairs) // batch_size)
    total_steps = t.max_steps if t.max_steps is not None else max(1, int(round(epochs * steps_per_epoch)))
    lr = t.lr or 2e-5
    checkpoint_every = t.checkpoint_every if t.checkpoint_every is not None else max(1, min(200, total_steps // 4))
    model.to(runtime.device)
    objective = CosinePairs(model)
    optimizer = build_optimizer(model, lr, t.weight_decay, (0.9, 0.999))
    scheduler = build_scheduler(optimizer, int(0.1 * total_steps), max(1, total_steps), "linear", 0.0)
    settings = {"lr": lr, "epochs": epochs, "batch_size": batch_size, "max_steps": total_steps,
                "checkpoint_every": checkpoint_every}  # fmt: skip
    state = None
    if resuming:
        state = load_checkpoint(run.checkpoints_dir, model, optimizer, scheduler, runtime)
    else:
        detail = (f"encoder trained on {len(pairs)} same/different-class pairs of {len(y)} labeled rows "
                  f"({' + '.join(splits)}), then normalised mean pooling + logistic regression")  # fmt: skip
        start_run(cfg, runtime, run, inputs, detail, settings)
    log.info(
        "contrastive: %d pairs of %d labeled rows; %d steps of %d pairs, lr %.2g, %s",
        len(pairs), len(y), total_steps, batch_size, lr, runtime.describe(),
    )  # fmt: skip
    callbacks = [
        ProgressBar("finetune contrastive"),
        MetricsLogger(run.metrics_path, run.path / "tensorboard" if t.tensorboard else None),
        GracefulStop(),
    ]
    if t.max_time:
        callbacks.append(TimeBudget(parse_duration(t.max_time)))
    collate = PairCollator(sequences, pairs, inputs.pad_id, default_pad_multiple(runtime.device.type))
    loop = Loop(
        objective=objective,
        model=model,
        train=BatchPlan(lengths, batch_size, collate, t.seed, bucket=True),
        evaluate=None,
        optimizer=optimizer,
        scheduler=scheduler,
        runtime=runtime,
        settings=LoopSettings.of(t, total_steps, eval_every=10**9, checkpoint_every=checkpoint_every),
        callbacks=callbacks,
        checkpoint_dir=run.checkpoints_dir if checkpoint_every else None,
        state=state,
    )
    state = loop.run()
    if stopped_by_signal(run, state, total_steps):
        return run
    figures = fit_head(model, inputs, splits, t.seed)
    training = {
        "steps": state.step,
        "train_time_s": round(state.elapsed_s + figures["head_fit_s"], 1),
        "eval_time_s": 0.0,
        "train_samples_per_s": round(state.step * batch_size / max(state.elapsed_s, 1e-9), 1),
        **figures,
    }
    finish(cfg, run, inputs, model, training, splits, stop_reason=state.stop_reason, best_step=state.step)
    shutil.rmtree(run.checkpoints_dir, ignore_errors=True)  # the model is in model/ now
    return run
