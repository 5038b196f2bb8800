"""Does a compressed or exported model still behave like its parent? Both score the same real
examples; we report the largest logit difference and how often their predictions agree, and
refuse the artifact when agreement falls below the user's threshold."""

from __future__ import annotations

import logging

import numpy as np

from fmloop.core.errors import ParityError
from fmloop.evaluate.evaluation import model_logits
from fmloop.tasks import get_task

log = logging.getLogger(__name__)


def compare_outputs(
    task: str, parent: np.ndarray, child: np.ndarray, y_true: np.ndarray | None = None, labels: list[str] | None = None
) -> dict:
    """max/mean absolute logit difference, prediction agreement and (given labels) both accuracies;
    for token classification, the share of words tagged alike and both entity F1s."""
    diff = np.nan_to_num(np.abs(parent.astype(np.float64) - child.astype(np.float64)))  # NaN: past a sentence
    result = {
        "n": int(len(parent)),
        "max_abs_diff": float(diff.max()) if diff.size else 0.0,
        "mean_abs_diff": float(diff.mean()) if diff.size else 0.0,
    }
    task = get_task(task)
    result["agreement"] = float(task.agreement(parent, child).mean()) if len(parent) else 1.0
    if task.single_class and y_true is not None:
        result["parent_accuracy"] = float((parent.argmax(-1) == y_true).mean())
        result["accuracy"] = float((child.argmax(-1) == y_true).mean())
    if task.name == "tokens":
        words = ~np.isnan(parent[..., 0])
        result["word_agreement"] = float((parent.argmax(-1) == child.argmax(-1))[words].mean()) if words.any() else 1.0
        if y_true is not None and labels is not None:
            result["parent_entity_f1"] = task.scalar("entity_f1", y_true, parent, labels)
            result["entity_f1"] = task.scalar("entity_f1", y_true, child, labels)
    return result


def require_parity(parity: dict, min_agreement: float, max_abs_diff: float | None, what: str) -> None:
    """Raise ParityError when `what` disagrees with its parent beyond the thresholds."""
    log.info(
        "parity of %s on %d examples: agreement %.4f, max |logit diff| %.3g",
        what,
        parity["n"],
        parity["agreement"],
        parity["max_abs_diff"],
    )
    if "entity_f1" in parity:  # token classification: judged on the entities users get
        log.info(
            "entity F1 %.4f (parent %.4f), words tagged alike %.4f",
            parity["entity_f1"], parity["parent_entity_f1"], parity["word_agreement"],
        )  # fmt: skip
        drop = parity["parent_entity_f1"] - parity["entity_f1"]
        if drop > 1 - min_agreement:
            raise ParityError(
                f"{what} loses {drop:.4f} entity F1 against its parent ({parity['entity_f1']:.4f} vs "
                f"{parity['parent_entity_f1']:.4f} on {parity['n']} sentences), more than 1 - --min-agreement = "
                f"{1 - min_agreement:.4f}. Nothing was saved. Lower --min-agreement if that is acceptable."
            )
        return
    if parity["agreement"] < min_agreement:
        raise ParityError(
            f"{what} agrees with its parent on {parity['agreement']:.2%} of {parity['n']} examples, "
            f"below the required {min_agreement:.2%} (max |logit diff| {parity['max_abs_diff']:.3g}). "
            f"Nothing was saved. Lower --min-agreement if that is acceptable."
        )
    if max_abs_diff is not None and parity["max_abs_diff"] > max_abs_diff:
        raise ParityError(
            f"{what} differs from its parent by up to {parity['max_abs_diff']:.3g} in logits, above "
            f"--max-abs-diff {max_abs_diff:g}. Nothing was saved."
        )


def gate(
    child,
    reference: np.ndarray,
    inputs,
    y: np.ndarray,
    where: str,
    folder,
    *,
    task: str,
    labels: list[str] | None = None,
    min_agreement: float,
    max_abs_diff: float | None,
    what: str,
    batch_size: int = 64,
) -> dict:
    """Score `child` on the parent's examples, write folder/parity.json, and raise ParityError when
    it disagrees beyond the thresholds; returns the manifest fields."""
    import json

    parity = compare_outputs(task, reference, model_logits(child, inputs, batch_size, f"scoring {what}"), y, labels)
    parity["data"] = where
    (folder / "parity.json").write_text(json.dumps(parity, indent=2) + "\n")
    require_parity(parity, min_agreement, max_abs_diff, what)
    return {"parity": parity}
