"""An ensemble folder written by `fmloop ensemble`: ensemble.json (method, weights, task, labels,
member folders) and a copy of each member's model folder under members/. The ensemble's
"logits" are the task's inverse of the combined probabilities, so evaluation, calibration and
prediction treat it like any model."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from fmloop.models.formats import Format, register
from fmloop.models.inference import InferenceModel
from fmloop.tasks import get_task

ENSEMBLE_FILE = "ensemble.json"


def combine(task: str, method: str, logits: list[np.ndarray], weights: list[float]) -> np.ndarray:
    """The ensemble's logits from its members' logits."""
    task = get_task(task)
    probs = np.stack([task.probabilities(x) for x in logits])  # (M, N, K)
    w = np.asarray(weights, dtype=np.float64).reshape(-1, 1, 1)
    mean = (probs * w).sum(0) / w.sum()
    return task.logits_from(task.vote(probs, mean) if method == "vote" else mean)


class EnsembleModel(InferenceModel):
    def __init__(self, folder: Path, members: list[InferenceModel], method: str, weights: list[float]):
        self.folder, self.members, self.method, self.weights = folder, members, method, weights
        first = members[0]
        self.modality, self.task, self.labels = first.modality, first.task, first.labels
        if self.modality == "image":
            self.size, self.channels = first.size, first.channels

    @classmethod
    def load(cls, folder: Path, device="auto") -> "EnsembleModel":
        from fmloop.models.formats import detect  # members are folders of any format

        spec = json.loads((folder / ENSEMBLE_FILE).read_text())
        members = [detect(folder / m).load(folder / m, device) for m in spec["members"]]
        return cls(folder, members, spec["method"], spec["weights"])

    def raw_logits(self, inputs, batch_size: int = 64, progress=None) -> np.ndarray:
        if self.modality == "image":
            inputs = self.to_pixels(inputs)
        outputs = []
        for i, member in enumerate(self.members):
            # Progress counts the last member only, so the bar still ends at len(inputs).
            outputs.append(member.logits(inputs, batch_size, progress if i == len(self.members) - 1 else None))
        return combine(self.task, self.method, outputs, self.weights)


def recognise(folder: Path) -> bool:
    return (folder / ENSEMBLE_FILE).exists()


FORMAT = register(Format("ensemble", recognise, EnsembleModel.load, priority=50, fp32=False))
