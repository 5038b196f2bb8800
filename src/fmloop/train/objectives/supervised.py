"""Supervised objectives on a sequence-classification model: cross-entropy (optionally with
class weights and label smoothing), binary cross-entropy per label, or squared error."""

from __future__ import annotations

import torch
from torch import nn

from fmloop.tasks import get_task
from fmloop.train.objectives import OBJECTIVES

MODEL_INPUTS = ("input_ids", "attention_mask", "pixel_values")


def model_inputs(batch: dict) -> dict:
    """The entries of a batch that the model reads (text: ids + mask; images: pixels)."""
    return {k: batch[k] for k in MODEL_INPUTS if k in batch}


@OBJECTIVES.register("supervised", help="classification / multi-label / regression loss on a task head")
class Supervised(nn.Module):
    def __init__(
        self, model: nn.Module, task: str, class_weights: torch.Tensor | None = None, label_smoothing: float = 0.0
    ):
        super().__init__()
        self.model, self.task, self.label_smoothing = model, get_task(task), label_smoothing
        self.register_buffer("class_weights", class_weights, persistent=False)

    def forward(self, batch: dict) -> dict:
        logits = self.model(**model_inputs(batch)).logits.float()
        labels = batch["labels"]
        loss = self.task.loss(logits, labels, self.class_weights, self.label_smoothing)
        return {"loss_sum": loss, "count": len(labels), "logits": logits.detach()}
