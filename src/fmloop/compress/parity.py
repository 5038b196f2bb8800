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


def compare_outputs(task: str, parent: np.ndarray, child: np.ndarray, y_true: np.ndarray | None = None) -> dict:
    """max/mean absolute logit difference, prediction agreement and (given labels) both accuracies."""
    diff = np.abs(parent.astype(np.float64) - child.astype(np.float64))
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
    min_agreement: float,
    max_abs_diff: float | None,
    what: str,
    batch_size: int = 64,
) -> dict:
    """Score `child` on the parent's examples, write folder/parity.json, and raise ParityError when
    it disagrees beyond the thresholds; returns the manifest fields."""
    import json

    parity = compare_outputs(task, reference, model_logits(child, inputs, batch_size, f"scoring {what}"), y)
    parity["data"] = where
    (folder / "parity.json").write_text(json.dumps(parity, indent=2) + "\n")
    require_parity(parity, min_agreement, max_abs_diff, what)
    return {"parity": parity}
