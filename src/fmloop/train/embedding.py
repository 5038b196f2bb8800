"""The `embedding` strategy: a frozen encoder's embeddings and a logistic regression.

With few labels, a pretrained encoder's sentence embeddings and a linear model fitted in closed
form beat a head trained for a few dozen noisy steps: every label trains (none is spent on picking
a checkpoint) and the regularisation is chosen by cross-validation on those same labels.

    encode       every labeled text once, in eval mode, through fmloop's scoring path: mean
                 pooling over the tokens, then unit length (cosine geometry, as sentence-embedding
                 models are trained)
    fit          scikit-learn LogisticRegressionCV: balanced class weights, C from a grid by
                 stratified K-fold cross-validation (K = min(5, the rarest class's count)) on the
                 log loss (accuracy is flat across C on a few dozen rows, and the most regularised C
                 would win its ties with probabilities near uniform); then refit on all the rows. With a test split, the validation rows train too (the test
                 split judges); without one, validation stays held out for the report.
    write        the coefficients become the classifier's linear head (binary: logits [0, w.x + b],
                 whose softmax is the regression's sigmoid), so the run dir is an ordinary mean-pooled
                 fmloop model (`fmloop_normalize: true`): predict, evaluate, serve, register, export,
                 quantize and retrain read it like any other.
"""

from __future__ import annotations

import logging
import time

import numpy as np
import torch

from fmloop.core.artifacts import RunDir, building
from fmloop.core.errors import ConfigError
from fmloop.core.runtime import Runtime
from fmloop.evaluate.floor import logistic_cv
from fmloop.models.pooled import Embeddings, MeanPoolClassifier
from fmloop.train.config import FinetuneConfig
from fmloop.train.supervised import TaskInputs, write_results, write_running_manifest

log = logging.getLogger(__name__)

C_GRID = np.logspace(-2, 3, 11)  # inverse regularisation strengths tried by cross-validation


def check_embedding_model(model, cfg: FinetuneConfig) -> MeanPoolClassifier:
    if cfg.task != "classification":
        raise ConfigError(
            f"The 'embedding' strategy fits a logistic regression: it takes task classification (got {cfg.task!r}). "
            f"Use --strategy full or linear-probe for {cfg.task}."
        )
    if not isinstance(model, MeanPoolClassifier):
        raise ConfigError(
            f"The 'embedding' strategy reads a text encoder's mean-pooled embeddings; {cfg.model.name} gives "
            f"{type(model).__name__}. Use a text encoder (a model folder or an MLM run dir)."
        )
    return model


def fit_logistic(features: np.ndarray, y: np.ndarray, n_classes: int, seed: int):
    """LogisticRegressionCV on unit-length features; returns (weight (K, H), bias (K,), C, CV accuracy)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_score

    rarest = int(np.bincount(y, minlength=n_classes)[np.unique(y)].min())
    if rarest >= 2:
        folds = StratifiedKFold(n_splits=min(5, rarest), shuffle=True, random_state=seed)
        fitted = logistic_cv(C_GRID, folds, seed).fit(features, y)
        c = float(np.ravel(fitted.C_)[0])
        chosen = LogisticRegression(C=c, class_weight="balanced", max_iter=5000)
        cv_accuracy = float(cross_val_score(chosen, features, y, cv=folds, scoring="accuracy").mean())
    else:  # one example of some class: nothing to cross-validate, a moderate C
        c, cv_accuracy = 1.0, float("nan")
        fitted = LogisticRegression(C=c, class_weight="balanced", max_iter=5000).fit(features, y)
    weight = np.zeros((n_classes, features.shape[1]), dtype=np.float32)
    bias = np.zeros(n_classes, dtype=np.float32)
    present = fitted.classes_
    if len(present) == 2:  # one score s = w.x + b for the second class: logits [0, s]
        weight[present[1]], bias[present[1]] = fitted.coef_[0], fitted.intercept_[0]
        bias[[k for k in range(n_classes) if k not in present]] = -1e4  # classes never seen: never predicted
    else:
        weight[present], bias[present] = fitted.coef_, fitted.intercept_
        bias[[k for k in range(n_classes) if k not in present]] = -1e4
    return weight, bias, c, cv_accuracy


def fit_splits_of(inputs: TaskInputs) -> list[str]:
    """The splits the regression (and contrastive pairs) learn from: validation too when a test
    split judges, else train alone (validation then stays held out for the report)."""
    return ["train", "validation"] if "test" in inputs.y and "validation" in inputs.y else ["train"]


def start_run(cfg: FinetuneConfig, runtime: Runtime, run: RunDir, inputs: TaskInputs, detail: str, settings: dict):
    """RUN/config.yaml (with the values chosen here) and the running manifest."""
    resolved = cfg.resolved()
    for section, values in inputs.resolved.items():
        resolved[section].update(values)
    resolved["train"].update(settings)
    run.create()
    run.write_config(resolved)
    parameters = list(inputs.model.parameters())
    write_running_manifest(
        run, cfg, inputs, runtime, resolved, kind="finetune", detail=detail,
        n_params=sum(p.numel() for p in parameters), trainable=sum(p.numel() for p in parameters if p.requires_grad),
    )  # fmt: skip


def fit_head(model: MeanPoolClassifier, inputs: TaskInputs, splits: list[str], seed: int) -> dict:
    """Encode the rows of `splits` with the (frozen) encoder, fit the regression, and make it the
    model's head; returns the figures for the manifest."""
    model.config.fmloop_normalize = True
    model.eval()
    start = time.perf_counter()
    features = np.concatenate([inputs.logits(Embeddings(model), split) for split in splits])
    y = np.concatenate([inputs.y[split] for split in splits])
    encode_s = time.perf_counter() - start
    weight, bias, c, cv_accuracy = fit_logistic(features, y, len(inputs.labels), seed)
    fit_s = time.perf_counter() - start - encode_s
    with torch.no_grad():
        model.classifier.weight.copy_(torch.from_numpy(weight))
        model.classifier.bias.copy_(torch.from_numpy(bias))
    log.info(
        "embedding: %d labeled rows (%s) encoded in %.1f s; logistic regression C=%g by %s in %.1f s",
        len(y), " + ".join(splits), encode_s, c,
        f"cross-validation (accuracy {cv_accuracy:.4f})" if np.isfinite(cv_accuracy) else "default (too few to cross-validate)",
        fit_s,
    )  # fmt: skip
    return {
        "head_fit_s": round(encode_s + fit_s, 1),
        "embedding_c": c,
        **({"cv_accuracy": round(cv_accuracy, 4)} if np.isfinite(cv_accuracy) else {}),
    }


def finish(cfg: FinetuneConfig, run: RunDir, inputs: TaskInputs, model: MeanPoolClassifier, training: dict,
           splits: list[str], **manifest) -> None:  # fmt: skip
    """RUN/model, then the finished manifest and report; rows the regression trained on are not
    scored as held out (with validation fitted, test alone)."""
    with building(run.model_dir, replace=True) as tmp:
        model.save_pretrained(tmp)
        inputs.save_extra(tmp)
    held_out = ("test",) if "validation" in splits else None
    write_results(cfg, run, inputs, model, training, splits=held_out, **manifest)


def run_embedding(cfg: FinetuneConfig, runtime: Runtime, run: RunDir, inputs: TaskInputs) -> RunDir:
    """Encode, fit, write the run dir (a mean-pooled model whose head is the fitted regression)."""
    model = check_embedding_model(inputs.model, cfg)
    model.to(runtime.device)
    for p in model.parameters():
        p.requires_grad_(False)
    splits = fit_splits_of(inputs)
    detail = f"frozen encoder, normalised mean pooling, logistic regression on {' + '.join(splits)}"
    start_run(cfg, runtime, run, inputs, detail, {})
    figures = fit_head(model, inputs, splits, cfg.train.seed)
    n_rows = sum(len(inputs.y[s]) for s in splits)
    training = {
        "steps": 0,
        "train_time_s": figures["head_fit_s"],
        "eval_time_s": 0.0,
        "train_samples_per_s": round(n_rows / max(figures["head_fit_s"], 0.1), 1),
        **figures,
    }
    finish(cfg, run, inputs, model, training, splits, stop_reason="fitted", best_step=0)
    return run
