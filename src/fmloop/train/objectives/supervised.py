"""Supervised objectives on a sequence-classification model: cross-entropy (optionally with
class weights and label smoothing), binary cross-entropy per label, or squared error."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from fmloop.train.objectives import OBJECTIVES


MODEL_INPUTS = ("input_ids", "attention_mask", "pixel_values")


def model_inputs(batch: dict) -> dict:
    """The entries of a batch that the model reads (text: ids + mask; images: pixels)."""
    return {k: batch[k] for k in MODEL_INPUTS if k in batch}


def task_loss(task: str, logits: torch.Tensor, labels: torch.Tensor, class_weights: torch.Tensor | None = None,
              label_smoothing: float = 0.0, reduction: str = "sum") -> torch.Tensor:
    """The task's loss over a batch of logits: summed (training) or averaged (reporting)."""
    if task == "classification":
        return F.cross_entropy(logits, labels, weight=class_weights, label_smoothing=label_smoothing,
                               reduction=reduction)
    if task == "multilabel":
        per_example = F.binary_cross_entropy_with_logits(logits, labels.float(), reduction="none").mean(-1)
        return per_example.sum() if reduction == "sum" else per_example.mean()
    return F.mse_loss(logits.squeeze(-1), labels.float(), reduction=reduction)


@OBJECTIVES.register("supervised", help="classification / multi-label / regression loss on a task head")
class Supervised(nn.Module):
    def __init__(self, model: nn.Module, task: str, class_weights: torch.Tensor | None = None,
                 label_smoothing: float = 0.0):
        super().__init__()
        self.model, self.task, self.label_smoothing = model, task, label_smoothing
        self.register_buffer("class_weights", class_weights, persistent=False)

    def forward(self, batch: dict) -> dict:
        logits = self.model(**model_inputs(batch)).logits.float()
        labels = batch["labels"]
        loss = task_loss(self.task, logits, labels, self.class_weights, self.label_smoothing)
        return {"loss_sum": loss, "count": len(labels), "logits": logits.detach()}
