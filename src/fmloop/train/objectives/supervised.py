"""Supervised objectives on a sequence-classification model: cross-entropy (optionally with
class weights and label smoothing), binary cross-entropy per label, or squared error."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from fmloop.train.objectives import OBJECTIVES


@OBJECTIVES.register("supervised", help="classification / multi-label / regression loss on a task head")
class Supervised(nn.Module):
    def __init__(self, model: nn.Module, task: str, class_weights: torch.Tensor | None = None,
                 label_smoothing: float = 0.0):
        super().__init__()
        self.model, self.task, self.label_smoothing = model, task, label_smoothing
        self.register_buffer("class_weights", class_weights, persistent=False)

    def forward(self, batch: dict) -> dict:
        logits = self.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits.float()
        labels = batch["labels"]
        if self.task == "classification":
            loss = F.cross_entropy(logits, labels, weight=self.class_weights, label_smoothing=self.label_smoothing,
                                   reduction="sum")
        elif self.task == "multilabel":
            loss = F.binary_cross_entropy_with_logits(logits, labels.float(), reduction="none").mean(-1).sum()
        else:
            loss = F.mse_loss(logits.squeeze(-1), labels.float(), reduction="sum")
        return {"loss_sum": loss, "count": len(labels), "logits": logits.detach()}
