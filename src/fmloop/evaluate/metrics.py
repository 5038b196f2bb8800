"""Task metrics (scikit-learn), calibration, bootstrap intervals and the paired bootstrap test."""

from __future__ import annotations

import numpy as np
from sklearn import metrics as skm

N_BOOTSTRAP = 1000


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def expected_calibration_error(y_true: np.ndarray, probs: np.ndarray, bins: int = 15) -> tuple[float, dict]:
    """ECE of the top-class confidence over equal-width bins, and the reliability-diagram data."""
    confidence = probs.max(axis=1)
    correct = (probs.argmax(axis=1) == y_true).astype(float)
    edges = np.linspace(0, 1, bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1]), 0, bins - 1)
    ece, acc, conf, count = 0.0, [], [], []
    for b in range(bins):
        members = which == b
        n = int(members.sum())
        count.append(n)
        acc.append(float(correct[members].mean()) if n else None)
        conf.append(float(confidence[members].mean()) if n else None)
        if n:
            ece += n / len(y_true) * abs(acc[-1] - conf[-1])
    return float(ece), {"edges": edges.tolist(), "accuracy": acc, "confidence": conf, "count": count}


def classification_metrics(y_true: np.ndarray, logits: np.ndarray, labels: list[str]) -> dict:
    probs = softmax(logits)
    pred = probs.argmax(axis=1)
    ids = list(range(len(labels)))
    p, r, f, support = skm.precision_recall_fscore_support(y_true, pred, labels=ids, zero_division=0)
    out = {
        "accuracy": float(skm.accuracy_score(y_true, pred)),
        "macro_f1": float(skm.f1_score(y_true, pred, average="macro", labels=ids, zero_division=0)),
        "micro_f1": float(skm.f1_score(y_true, pred, average="micro", labels=ids, zero_division=0)),
        "per_class": {labels[i]: {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]),
                                  "support": int(support[i])} for i in ids},
        "confusion_matrix": skm.confusion_matrix(y_true, pred, labels=ids).tolist(),
    }
    present = np.unique(y_true)
    if len(present) == len(labels) and len(labels) >= 2:
        out["roc_auc"] = float(skm.roc_auc_score(y_true, probs[:, 1]) if len(labels) == 2
                               else skm.roc_auc_score(y_true, probs, multi_class="ovr", labels=ids))
    out["ece"], out["reliability"] = expected_calibration_error(y_true, probs)
    return out


def multilabel_metrics(y_true: np.ndarray, logits: np.ndarray, labels: list[str]) -> dict:
    probs = sigmoid(logits)
    pred = (probs >= 0.5).astype(int)
    truth = y_true.astype(int)
    p, r, f, support = skm.precision_recall_fscore_support(truth, pred, zero_division=0)
    out = {
        "subset_accuracy": float(skm.accuracy_score(truth, pred)),
        "macro_f1": float(skm.f1_score(truth, pred, average="macro", zero_division=0)),
        "micro_f1": float(skm.f1_score(truth, pred, average="micro", zero_division=0)),
        "per_class": {labels[i]: {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]),
                                  "support": int(support[i])} for i in range(len(labels))},
    }
    if ((truth.sum(0) > 0) & (truth.sum(0) < len(truth))).all():
        out["roc_auc"] = float(skm.roc_auc_score(truth, probs, average="macro"))
    return out


def regression_metrics(y_true: np.ndarray, logits: np.ndarray) -> dict:
    pred = logits.reshape(-1)
    return {"mse": float(skm.mean_squared_error(y_true, pred)), "mae": float(skm.mean_absolute_error(y_true, pred)),
            "r2": float(skm.r2_score(y_true, pred)) if len(y_true) > 1 else float("nan")}


def task_metrics(task: str, y_true: np.ndarray, logits: np.ndarray, labels: list[str] | None) -> dict:
    if task == "classification":
        return classification_metrics(y_true, logits, labels)
    if task == "multilabel":
        return multilabel_metrics(y_true, logits, labels)
    return regression_metrics(y_true, logits)


# The scalar each task's intervals and comparisons are about, and whether higher is better.
HEADLINE = {"classification": ("accuracy", "max"), "multilabel": ("micro_f1", "max"), "regression": ("mse", "min")}
BOOTSTRAPPED = {"classification": ("accuracy", "macro_f1"), "multilabel": ("micro_f1", "macro_f1"),
                "regression": ("mse", "mae", "r2")}


def _scalar(task: str, name: str, y_true: np.ndarray, logits: np.ndarray) -> float:
    if task == "classification":
        pred = logits.argmax(axis=1)
        if name == "accuracy":
            return float((pred == y_true).mean())
        return float(skm.f1_score(y_true, pred, average="macro", labels=list(range(logits.shape[1])), zero_division=0))
    if task == "multilabel":
        pred = (logits >= 0).astype(int)
        return float(skm.f1_score(y_true.astype(int), pred, average=name.split("_")[0], zero_division=0))
    pred = logits.reshape(-1)
    if name == "mse":
        return float(((pred - y_true) ** 2).mean())
    if name == "mae":
        return float(np.abs(pred - y_true).mean())
    return float(skm.r2_score(y_true, pred))


def bootstrap_intervals(task: str, y_true: np.ndarray, logits: np.ndarray, seed: int = 0,
                        n: int = N_BOOTSTRAP) -> dict[str, list[float]]:
    """95% percentile intervals of the task's main metrics over `n` resamples of the examples."""
    rng = np.random.default_rng(seed)
    samples = [rng.integers(0, len(y_true), len(y_true)) for _ in range(n)]
    out = {}
    for name in BOOTSTRAPPED[task]:
        values = [_scalar(task, name, y_true[idx], logits[idx]) for idx in samples]
        out[name] = [float(np.percentile(values, 2.5)), float(np.percentile(values, 97.5))]
    return out


def paired_bootstrap(task: str, y_true: np.ndarray, logits_a: np.ndarray, logits_b: np.ndarray, seed: int = 0,
                     n: int = N_BOOTSTRAP) -> dict:
    """Model A vs B on the same examples: difference of the headline metric (A - B), its 95%
    interval, and a two-sided p-value from resampling examples jointly (Koehn 2004)."""
    name, mode = HEADLINE[task]
    rng = np.random.default_rng(seed)
    observed = _scalar(task, name, y_true, logits_a) - _scalar(task, name, y_true, logits_b)
    diffs = []
    for _ in range(n):
        idx = rng.integers(0, len(y_true), len(y_true))
        diffs.append(_scalar(task, name, y_true[idx], logits_a[idx]) - _scalar(task, name, y_true[idx], logits_b[idx]))
    diffs = np.asarray(diffs)
    p = 2 * min((diffs <= 0).mean(), (diffs >= 0).mean())
    better = "A" if (observed > 0) == (mode == "max") and observed != 0 else ("B" if observed != 0 else "neither")
    return {"metric": name, "difference": float(observed), "interval": [float(np.percentile(diffs, 2.5)),
            float(np.percentile(diffs, 97.5))], "p_value": float(min(1.0, p)), "better": better, "resamples": n}
