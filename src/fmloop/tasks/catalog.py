"""The task catalog: everything that differs between classification, multi-label classification,
regression and token classification, so that no other module has to ask which task it is.

    task = get_task("multilabel")
    task.probabilities(logits)            # softmax / sigmoid / the scores themselves
    task.decode(logits, labels)           # what `predict` answers per input
    task.loss(logits, targets)            # the training loss (torch)
    task.metrics(y, logits, labels)       # scikit-learn metrics; task.headline = ("micro_f1", "max")
    task.agreement(logits_a, logits_b)    # per example: do two models give the same answer?

Targets are class indices (classification), 0/1 vectors (multi-label) or floats (regression);
logits are (N, K), with K = 1 for regression. Token classification (tokens.py) scores words:
targets (N, W) tag ids, -100 past a sentence's end; logits (N, W, K), NaN past it.
"""

from __future__ import annotations

import json
import math

import numpy as np
from sklearn import metrics as skm

from fmloop.core.catalog import Catalog
from fmloop.core.errors import ConfigError
from fmloop.tasks import metrics as M


class Task:
    name: str
    problem_type: str  # transformers' config.problem_type for this task
    headline: tuple[str, str]  # the metric checkpoints are chosen by, and "max" / "min"
    bootstrapped: tuple[str, ...]  # the metrics that get bootstrap intervals
    has_classes = True  # False: a score per input, no label names
    single_class = False  # one label per input (class balance, stratified splits, voting)

    def n_outputs(self, labels: list[str] | None) -> int:
        return len(labels)

    def probabilities(self, logits: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def decode(self, logits: np.ndarray, labels: list[str] | None) -> list[dict]:
        raise NotImplementedError

    def logits_from(self, probs: np.ndarray) -> np.ndarray:
        """The inverse of `probabilities` (ensembles combine probabilities, then hand back logits)."""
        raise NotImplementedError

    def vote(self, probs: np.ndarray, mean: np.ndarray) -> np.ndarray:
        """Majority vote of M members' probabilities (M, N, K), ties broken by their `mean` (N, K)."""
        raise NotImplementedError

    def probability_loss(self, probs: np.ndarray, y: np.ndarray) -> float:
        """Log loss of probabilities (N, K) against targets (MSE of scores for regression)."""
        raise NotImplementedError

    def targets_from(self, logits: np.ndarray) -> list:
        """The hard targets a model's logits stand for (a teacher's labels for extra text)."""
        raise NotImplementedError

    def loss(self, logits, targets, class_weights=None, label_smoothing: float = 0.0, reduction: str = "sum"):
        raise NotImplementedError

    def soft_loss(self, student, teacher, temperature: float):
        """Distillation: how far the student's logits are from the teacher's, summed over the batch."""
        raise NotImplementedError

    def metrics(self, y: np.ndarray, logits: np.ndarray, labels: list[str] | None) -> dict:
        raise NotImplementedError

    def agreement(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Per example, True where logits `a` and `b` give the same answer."""
        raise NotImplementedError

    def scalar(self, name: str, y: np.ndarray, logits: np.ndarray, labels: list[str] | None = None) -> float:
        """One of `bootstrapped`, computed fast (bootstrap resamples call this thousands of times)."""
        raise NotImplementedError

    def paired_outcomes(self, y, champion, challenger, labels: list[str] | None = None) -> np.ndarray:
        """Per example, +1 where the challenger's answer is the better one, -1 where the
        champion's is, 0 where neither (the promotion gate's evidence, feedback/sequential.py)."""
        return np.sign(self.example_scores(y, challenger, labels) - self.example_scores(y, champion, labels)).astype(
            np.int8
        )

    def example_scores(self, y, logits, labels: list[str] | None = None) -> np.ndarray:
        """How good one model's answer is on each example (higher is better; only compared)."""
        raise NotImplementedError

    # Labels as the feedback store keeps them (one string per answer or correction):
    # classification the class name, multi-label a JSON list of names (sorted), regression the
    # number's repr, token classification a JSON list of tags, one per word of the input (as
    # models/tokens.py's split_words cuts a text). The server writes them, retrain reads them back.
    def stored(self, target, labels: list[str] | None) -> str:
        """The stored form of a target (a class id, a 0/1 vector, a float)."""
        raise NotImplementedError

    def stored_answer(self, prediction: dict) -> str | None:
        """The stored form of a decoded answer (`decode`'s dict); None where it has none."""
        return None

    def target_of(self, stored: str, labels: list[str] | None):
        """The target a stored label stands for, or None when this model cannot have given it."""
        raise NotImplementedError

    def data_label(self, stored: str):
        """A stored label as a training file's `label` field holds it (JSONL; data/labeled.py)."""
        return stored

    def named_classes(self, target) -> set[int]:
        """The class ids a target names (retrain makes sure the challenger's rows name every class)."""
        return {int(target)}

    def stack(self, targets: list, labels: list[str] | None) -> np.ndarray:
        """`target_of`'s targets as one array, as `metrics` and the gate read them."""
        return np.asarray(targets, dtype=np.int64)

    def resampler(self, y: np.ndarray, logits: np.ndarray, labels: list[str] | None = None):
        """`(name, example indices) -> scalar` on a resample of the examples (bootstrap). A task
        whose metric is costly per example computes what it needs once, here."""
        return lambda name, idx: self.scalar(name, y[idx], logits[idx], labels)


EPS = 1e-7  # probabilities are clipped to [EPS, 1 - EPS] before a log


def _rounded(probs: np.ndarray, labels: list[str]) -> dict[str, float]:
    return {labels[j]: round(float(probs[j]), 6) for j in range(len(probs))}


TASKS: Catalog[Task] = Catalog("task", ConfigError)


class Classification(Task):
    name, problem_type = "classification", "single_label_classification"
    headline, bootstrapped = ("accuracy", "max"), ("accuracy", "macro_f1")
    single_class = True

    def probabilities(self, logits):
        return M.softmax(logits)

    def decode(self, logits, labels):
        return [
            {"label": labels[int(p.argmax())], "probabilities": _rounded(p, labels)} for p in self.probabilities(logits)
        ]

    def targets_from(self, logits):
        return logits.argmax(-1).tolist()

    def logits_from(self, probs):
        return np.log(np.clip(probs, EPS, 1.0)).astype(np.float32)

    def vote(self, probs, mean):
        votes = np.zeros_like(mean)
        for member in probs:
            votes[np.arange(len(member)), member.argmax(-1)] += 1
        return (votes + 1e-3 * mean) / (votes + 1e-3 * mean).sum(-1, keepdims=True)

    def probability_loss(self, probs, y):
        return float(-np.log(np.clip(probs[np.arange(len(y)), y], EPS, 1)).mean())

    def loss(self, logits, targets, class_weights=None, label_smoothing=0.0, reduction="sum"):
        import torch.nn.functional as F

        return F.cross_entropy(
            logits, targets, weight=class_weights, label_smoothing=label_smoothing, reduction=reduction
        )

    def soft_loss(self, student, teacher, temperature):
        import torch.nn.functional as F

        T = temperature
        return (
            F.kl_div(F.log_softmax(student / T, -1), F.log_softmax(teacher / T, -1), log_target=True, reduction="sum")
            * T
            * T
        )

    def metrics(self, y, logits, labels):
        return M.classification_metrics(y, logits, labels)

    def agreement(self, a, b):
        return a.argmax(-1) == b.argmax(-1)

    def example_scores(self, y, logits, labels=None):
        return (logits.argmax(-1) == y).astype(np.float64)  # right or wrong

    def stored(self, target, labels):
        return labels[int(target)]

    def stored_answer(self, prediction):
        return prediction.get("label")

    def target_of(self, stored, labels):
        return labels.index(stored) if stored in (labels or []) else None

    def scalar(self, name, y, logits, labels=None):
        pred = logits.argmax(axis=1)
        if name == "accuracy":
            return float((pred == y).mean())
        return float(skm.f1_score(y, pred, average="macro", labels=list(range(logits.shape[1])), zero_division=0))


class MultiLabel(Task):
    name, problem_type = "multilabel", "multi_label_classification"
    headline, bootstrapped = ("micro_f1", "max"), ("micro_f1", "macro_f1")

    def probabilities(self, logits):
        return M.sigmoid(logits)

    def decode(self, logits, labels):
        return [
            {"labels": [labels[j] for j in np.flatnonzero(p >= 0.5)], "probabilities": _rounded(p, labels)}
            for p in self.probabilities(logits)
        ]

    def targets_from(self, logits):
        return (logits >= 0).astype(np.float32).tolist()

    def logits_from(self, probs):
        probs = np.clip(probs, EPS, 1 - EPS)
        return np.log(probs / (1 - probs)).astype(np.float32)  # sigmoid gives it back

    def vote(self, probs, mean):  # majority per label
        return np.clip((probs >= 0.5).mean(0) + 1e-3 * (mean - 0.5), EPS, 1 - EPS)

    def probability_loss(self, probs, y):
        probs = np.clip(probs, EPS, 1 - EPS)
        return float(-(y * np.log(probs) + (1 - y) * np.log(1 - probs)).mean())

    def loss(self, logits, targets, class_weights=None, label_smoothing=0.0, reduction="sum"):
        import torch.nn.functional as F

        per_example = F.binary_cross_entropy_with_logits(logits, targets.float(), reduction="none").mean(-1)
        return per_example.sum() if reduction == "sum" else per_example.mean()

    def soft_loss(self, student, teacher, temperature):
        import torch
        import torch.nn.functional as F

        T = temperature
        targets = torch.sigmoid(teacher / T)
        return F.binary_cross_entropy_with_logits(student / T, targets, reduction="none").mean(-1).sum() * T * T

    def metrics(self, y, logits, labels):
        return M.multilabel_metrics(y, logits, labels)

    def agreement(self, a, b):
        return ((a >= 0) == (b >= 0)).all(-1)

    def example_scores(self, y, logits, labels=None):
        return ((logits >= 0) == (y >= 0.5)).sum(-1).astype(np.float64)  # labels decided right

    def stored(self, target, labels):
        return json.dumps(sorted(labels[j] for j in np.flatnonzero(np.asarray(target) >= 0.5)))

    def stored_answer(self, prediction):
        return json.dumps(sorted(prediction["labels"])) if "labels" in prediction else None

    def target_of(self, stored, labels):
        try:
            names = json.loads(stored)
        except ValueError:
            return None
        if not isinstance(names, list) or not all(isinstance(n, str) and n in (labels or []) for n in names):
            return None
        return np.isin(np.asarray(labels), names).astype(np.float32)

    def data_label(self, stored):
        return json.loads(stored)  # a list of names; [] where no label applies

    def named_classes(self, target):
        return {int(j) for j in np.flatnonzero(np.asarray(target) >= 0.5)}

    def stack(self, targets, labels):
        return np.asarray(targets, dtype=np.float32).reshape(len(targets), len(labels))

    def scalar(self, name, y, logits, labels=None):
        pred = (logits >= 0).astype(int)
        return float(skm.f1_score(y.astype(int), pred, average=name.split("_")[0], zero_division=0))


class Regression(Task):
    name, problem_type = "regression", "regression"
    headline, bootstrapped = ("mse", "min"), ("mse", "mae", "r2")
    has_classes = False

    def n_outputs(self, labels):
        return 1

    def probabilities(self, logits):
        return logits

    def decode(self, logits, labels):
        return [{"score": float(v[0])} for v in logits]

    def targets_from(self, logits):
        return logits[:, 0].tolist()

    def logits_from(self, probs):
        return probs.astype(np.float32)

    def vote(self, probs, mean):
        raise ConfigError("Voting needs classes; for regression use --method mean or weighted.")

    def probability_loss(self, probs, y):
        return float(((probs[:, 0] - y) ** 2).mean())

    def loss(self, logits, targets, class_weights=None, label_smoothing=0.0, reduction="sum"):
        import torch.nn.functional as F

        return F.mse_loss(logits.squeeze(-1), targets.float(), reduction=reduction)

    def soft_loss(self, student, teacher, temperature):
        import torch.nn.functional as F

        return F.mse_loss(student, teacher, reduction="sum")

    def metrics(self, y, logits, labels):
        return M.regression_metrics(y, logits)

    def agreement(self, a, b):
        # A prediction "agrees" when it moved by less than 1% of the first model's spread.
        tolerance = 0.01 * max(float(a.std()), 1e-6)
        return np.abs(a.astype(np.float64) - b.astype(np.float64))[:, 0] <= tolerance

    def example_scores(self, y, logits, labels=None):
        # Minus the absolute error, rounded so that float noise is no win.
        return -np.round(np.abs(logits.reshape(-1).astype(np.float64) - y.astype(np.float64)), 6)

    def stored(self, target, labels):
        return repr(float(target))

    def stored_answer(self, prediction):
        return repr(float(prediction["score"])) if "score" in prediction else None

    def target_of(self, stored, labels):
        try:
            value = float(stored)
        except (TypeError, ValueError):
            return None
        return value if math.isfinite(value) else None

    def data_label(self, stored):
        return float(stored)

    def named_classes(self, target):
        return set()

    def stack(self, targets, labels):
        return np.asarray(targets, dtype=np.float64)

    def scalar(self, name, y, logits, labels=None):
        pred = logits.reshape(-1)
        if name == "mse":
            return float(((pred - y) ** 2).mean())
        if name == "mae":
            return float(np.abs(pred - y).mean())
        return float(skm.r2_score(y, pred))


from fmloop.tasks.tokens import TokenClassification  # noqa: E402  (it subclasses Task)

for _task in (Classification(), MultiLabel(), Regression(), TokenClassification()):
    TASKS.register(_task.name, help=type(_task).__name__)(_task)

_BY_PROBLEM_TYPE = {TASKS.get(n).problem_type: TASKS.get(n) for n in TASKS.names()}


def get_task(name: str | Task) -> Task:
    """The task object for a name (a Task passes through)."""
    return name if isinstance(name, Task) else TASKS.get(name)


def task_of_config(config) -> Task:
    """The task a transformers config was saved for (a token-classification architecture, else its
    problem_type; classification if unset)."""
    if getattr(config, "fmloop_task", None) == "tokens" or any(
        a.endswith("ForTokenClassification") for a in getattr(config, "architectures", None) or ()
    ):  # fmloop_task: a LoRA adapter's saved config names no architecture
        return TASKS.get("tokens")
    return _BY_PROBLEM_TYPE.get(getattr(config, "problem_type", None) or "", TASKS.get("classification"))
