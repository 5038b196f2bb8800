"""`fmloop ensemble A B C --method vote|mean|weighted`: several models as one artifact.

    OUT/model/ensemble.json     method, weights, task, labels, member folders (relative)
    OUT/model/members/0-NAME/   a copy of each member's model folder

Members must predict the same task and label set. Their class probabilities (sigmoid for
multi-label, raw scores for regression) are averaged (`mean`), averaged with weights fit on the
validation split to minimise log loss (`weighted`), or each member casts one vote for its top
class (`vote`, ties broken by the mean probability). The ensemble's "logits" are the log of the
combined probabilities, so evaluation, calibration and prediction treat it like any model.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import numpy as np

from fmloop.compress.artifact import default_data, new_run, write_run
from fmloop.compress.config import EnsembleConfig
from fmloop.core.artifacts import RunDir
from fmloop.core.errors import ConfigError, ModelError
from fmloop.evaluate.evaluation import labeled_inputs, model_logits
from fmloop.models.formats.ensemble import ENSEMBLE_FILE
from fmloop.models.inference import InferenceModel
from fmloop.models.loading import load
from fmloop.tasks import get_task

log = logging.getLogger(__name__)


def fit_weights(task: str, y: np.ndarray, logits: list[np.ndarray]) -> list[float]:
    """Non-negative weights summing to 1 that minimise validation log loss (MSE for regression)."""
    from scipy.optimize import minimize

    task = get_task(task)
    probs = np.stack([task.probabilities(x) for x in logits])

    def loss(theta):
        w = np.exp(theta - theta.max())
        w /= w.sum()
        return task.probability_loss(np.tensordot(w, probs, axes=1), y)

    result = minimize(loss, np.zeros(len(logits)), method="Nelder-Mead" if len(logits) < 6 else "Powell")
    w = np.exp(result.x - result.x.max())
    return [round(float(v), 6) for v in w / w.sum()]


def check_members(paths: list[str]) -> list[InferenceModel]:
    members = [load(p) for p in paths]
    first = members[0]
    for path, m in zip(paths[1:], members[1:]):
        if (m.modality, m.task, m.labels) != (first.modality, first.task, first.labels):
            raise ModelError(
                f"{path} predicts {m.task} {m.labels or ''} on {m.modality}, but {paths[0]} predicts "
                f"{first.task} {first.labels or ''} on {first.modality}: ensemble members must "
                f"share task and labels."
            )
    return members


def run(cfg: EnsembleConfig, out: str | Path, *, overwrite: bool = False) -> RunDir:
    """Save the members and how to combine them as OUT/model; `weighted` fits weights on `cfg.data`."""

    run = new_run(out, overwrite)
    paths = cfg.models
    members = check_members(paths)
    if cfg.method == "vote" and not get_task(members[0].task).has_classes:
        raise ConfigError("Voting needs classes; for regression use --method mean or weighted.")
    weights = [1.0 / len(members)] * len(members)
    fit = None
    if cfg.method == "weighted":
        inputs, _, y, where = labeled_inputs(
            members[0], default_data(paths[0], cfg.data), ("validation",), cfg.text_column, cfg.label_column
        )
        logits = [model_logits(m, inputs, cfg.batch_size, f"scoring member {i}") for i, m in enumerate(members)]
        weights = fit_weights(members[0].task, y, logits)
        fit = {"data": where, "n": int(len(y))}
        log.info("weights fit on %s: %s", where, weights)

    def write(folder: Path) -> dict:
        names = []
        for i, (path, member) in enumerate(zip(paths, members)):
            name = f"members/{i}-{Path(path).name or 'model'}"
            shutil.copytree(member.folder, folder / name)
            names.append(name)
        spec = {
            "method": cfg.method,
            "weights": weights,
            "task": members[0].task,
            "labels": members[0].labels,
            "modality": members[0].modality,
            "members": names,
            "sources": [str(Path(p).resolve()) for p in paths],
        }
        (folder / ENSEMBLE_FILE).write_text(json.dumps(spec, indent=2) + "\n")
        return {"weights": weights, "weights_fit": fit}

    return write_run(
        run,
        cfg,
        write,
        parents=[m.folder for m in members],
        method=cfg.method,
        task=members[0].task,
        labels=members[0].labels,
    )
