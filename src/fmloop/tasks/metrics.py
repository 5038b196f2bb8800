"""Each task's metrics (scikit-learn) and calibration; `fmloop.tasks.catalog` picks which apply."""

from __future__ import annotations

import numpy as np
from sklearn import metrics as skm


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
        "per_class": {
            labels[i]: {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]), "support": int(support[i])}
            for i in ids
        },
        "confusion_matrix": skm.confusion_matrix(y_true, pred, labels=ids).tolist(),
    }
    present = np.unique(y_true)
    if len(present) == len(labels) and len(labels) >= 2:
        out["roc_auc"] = float(
            skm.roc_auc_score(y_true, probs[:, 1])
            if len(labels) == 2
            else skm.roc_auc_score(y_true, probs, multi_class="ovr", labels=ids)
        )
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
        "per_class": {
            labels[i]: {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]), "support": int(support[i])}
            for i in range(len(labels))
        },
    }
    if ((truth.sum(0) > 0) & (truth.sum(0) < len(truth))).all():
        out["roc_auc"] = float(skm.roc_auc_score(truth, probs, average="macro"))
    return out


def regression_metrics(y_true: np.ndarray, logits: np.ndarray) -> dict:
    pred = logits.reshape(-1)
    return {
        "mse": float(skm.mean_squared_error(y_true, pred)),
        "mae": float(skm.mean_absolute_error(y_true, pred)),
        "r2": float(skm.r2_score(y_true, pred)) if len(y_true) > 1 else float("nan"),
    }
