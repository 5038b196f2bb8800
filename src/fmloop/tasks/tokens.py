"""Token classification (named entities and other per-word tags) as a task of the catalog.

Arrays are per word, padded: targets `y` (N, W) tag ids with -100 past a sentence's end; logits
(N, W, K) with NaN rows past it (so a sentence's length travels with its logits). Entities are
read from IOB2/BIOES tags exactly as seqeval reads them (its `get_entities`, default mode, the
mode of the conlleval script and of Hugging Face's token-classification recipe), and entity
precision, recall and F1 are seqeval's micro averages: per-sentence counts of true, predicted and
matching entities, summed (which is what makes bootstrap resamples cheap).
"""

from __future__ import annotations

import json

import numpy as np
from seqeval.metrics import classification_report
from seqeval.metrics.sequence_labeling import get_entities

from fmloop.core.errors import ConfigError
from fmloop.tasks import metrics as M
from fmloop.tasks.catalog import EPS, Task

IGNORE = -100  # the target of a position no loss or metric reads (padding, a word's later pieces)


def entity_types(labels: list[str]) -> list[str]:
    """The entity types a tag set names (B-PER, I-PER -> PER), sorted."""
    return sorted({t[2:] for t in labels if t != "O"})


def lengths_of(logits: np.ndarray) -> np.ndarray:
    """Words per sentence: the rows before the NaN padding."""
    if logits.ndim != 3:
        raise ValueError(f"token logits are (sentences, words, tags); got shape {logits.shape}")
    return (~np.isnan(logits[..., 0])).sum(-1)


def predicted_tags(logits: np.ndarray, labels: list[str], y: np.ndarray | None = None) -> list[list[str]]:
    """The argmax tag of every word; with targets `y`, one per labeled word (a word the model did not
    score, past its reading, is O)."""
    ids = np.where(np.isnan(logits[..., 0]), -1, np.nan_to_num(logits).argmax(-1))
    n = (y != IGNORE).sum(-1) if y is not None else lengths_of(logits)
    return [[labels[j] if j >= 0 else "O" for j in ids[i, : n[i]]] for i in range(len(ids))]


def true_tags(y: np.ndarray, labels: list[str]) -> list[list[str]]:
    return [[labels[j] for j in row[row != IGNORE]] for row in y]


def entity_counts(truth: list[list[str]], predicted: list[list[str]]) -> np.ndarray:
    """(N, 3) per sentence: true entities, predicted entities, predicted entities that match a true
    one exactly (type and span)."""
    out = np.zeros((len(truth), 3), dtype=np.int64)
    for i, (t, p) in enumerate(zip(truth, predicted)):
        a, b = set(get_entities(t)), set(get_entities(p))
        out[i] = len(a), len(b), len(a & b)
    return out


def _from_counts(name: str, counts: np.ndarray) -> float:
    n_true, n_pred, n_match = counts.sum(0) if counts.ndim == 2 else counts
    precision = n_match / n_pred if n_pred else 0.0
    recall = n_match / n_true if n_true else 0.0
    if name == "entity_precision":
        return float(precision)
    if name == "entity_recall":
        return float(recall)
    return float(2 * precision * recall / (precision + recall)) if precision + recall else 0.0


class TokenClassification(Task):
    name, problem_type = "tokens", "token_classification"
    headline, bootstrapped = ("entity_f1", "max"), ("entity_f1", "entity_precision", "entity_recall")

    def probabilities(self, logits):
        return M.softmax(logits)

    def decode(self, logits, labels):
        """Per sentence: its tags, and its entities as word ranges ({"label", "first", "last"
        (inclusive), "score": the mean probability of the entity's tags})."""
        probs = self.probabilities(logits)
        out = []
        for p, tags in zip(probs, predicted_tags(logits, labels)):
            entities = [
                {"label": kind, "first": int(a), "last": int(b), "score": round(float(p[a : b + 1].max(-1).mean()), 6)}
                for kind, a, b in get_entities(tags)
            ]
            out.append({"tags": tags, "entities": entities})
        return out

    def targets_from(self, logits):
        ids = np.nan_to_num(logits).argmax(-1)
        return np.where(np.isnan(logits[..., 0]), IGNORE, ids).tolist()

    def logits_from(self, probs):
        return np.log(np.clip(probs, EPS, 1.0)).astype(np.float32)  # NaN rows stay NaN

    def vote(self, probs, mean):
        raise ConfigError("Ensembles of token classifiers are not supported yet; use --method mean.")

    def probability_loss(self, probs, y):
        valid = y != IGNORE
        picked = np.take_along_axis(np.nan_to_num(probs), np.where(valid, y, 0)[..., None], -1)[..., 0]
        return float(-np.log(np.clip(picked[valid], EPS, 1)).mean())

    def loss(self, logits, targets, class_weights=None, label_smoothing=0.0, reduction="sum"):
        import torch
        import torch.nn.functional as F

        return F.cross_entropy(
            torch.nan_to_num(logits).reshape(-1, logits.shape[-1]),
            targets.reshape(-1).long(),
            weight=class_weights,
            ignore_index=IGNORE,
            label_smoothing=label_smoothing,
            reduction=reduction,
        )

    def soft_loss(self, student, teacher, temperature):
        raise ConfigError("Distillation of token classifiers is not supported yet.")

    def metrics(self, y, logits, labels):
        truth, predicted = true_tags(y, labels), predicted_tags(logits, labels, y)
        counts = entity_counts(truth, predicted)
        report = classification_report(truth, predicted, output_dict=True, zero_division=0)
        words = np.concatenate([np.asarray(t) == np.asarray(p) for t, p in zip(truth, predicted)] or [np.zeros(0)])
        return {
            "entity_f1": _from_counts("entity_f1", counts),
            "entity_precision": _from_counts("entity_precision", counts),
            "entity_recall": _from_counts("entity_recall", counts),
            "word_accuracy": float(words.mean()) if len(words) else float("nan"),
            "per_class": {
                kind: {
                    "precision": float(m["precision"]),
                    "recall": float(m["recall"]),
                    "f1": float(m["f1-score"]),
                    "support": int(m["support"]),
                }
                for kind, m in report.items()
                if not kind.endswith(" avg")
            },
            "entities": {"true": int(counts[:, 0].sum()), "predicted": int(counts[:, 1].sum())},
        }

    def stored(self, target, labels):
        return json.dumps([labels[int(j)] for j in target if j != IGNORE])

    def stored_answer(self, prediction):
        return json.dumps(prediction["tags"]) if "tags" in prediction else None

    def target_of(self, stored, labels):
        try:
            tags = json.loads(stored)
        except ValueError:
            return None
        if not isinstance(tags, list) or not tags or not all(isinstance(t, str) and t in (labels or []) for t in tags):
            return None
        return np.asarray([labels.index(t) for t in tags], dtype=np.int64)

    def data_label(self, stored):
        return json.loads(stored)  # the tags, one per word

    def named_classes(self, target):
        return {int(j) for j in target}

    def stack(self, targets, labels):
        out = np.full((len(targets), max((len(t) for t in targets), default=0)), IGNORE, dtype=np.int64)
        for i, row in enumerate(targets):
            out[i, : len(row)] = row
        return out

    def agreement(self, a, b):
        n = lengths_of(a)
        same = np.nan_to_num(a).argmax(-1) == np.nan_to_num(b).argmax(-1)
        return np.array([bool(same[i, : n[i]].all()) for i in range(len(a))], dtype=bool)

    def example_scores(self, y, logits, labels=None):
        if labels is None:
            raise ValueError("entity matches read the tag names (B-/I- prefixes): pass labels")
        counts = entity_counts(true_tags(y, labels), predicted_tags(logits, labels, y))
        return (2 * counts[:, 2] - counts[:, 0] - counts[:, 1]).astype(np.float64)  # -(misses + false entities)

    def scalar(self, name, y, logits, labels=None):
        return self.resampler(y, logits, labels)(name, np.arange(len(y)))

    def resampler(self, y, logits, labels=None):
        if labels is None:
            raise ValueError("entity metrics read the tag names (B-/I- prefixes): pass labels")
        counts = entity_counts(true_tags(y, labels), predicted_tags(logits, labels, y))
        return lambda name, idx: _from_counts(name, counts[idx])
