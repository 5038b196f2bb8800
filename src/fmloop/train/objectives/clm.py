"""Causal language modelling (GPT): predict each next token of a packed block."""

from __future__ import annotations

import torch.nn.functional as F
from torch import nn

from fmloop.train.objectives import OBJECTIVES


@OBJECTIVES.register("clm", help="causal (next-token) language modelling on packed blocks")
class CausalLM(nn.Module):
    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, batch: dict) -> dict:
        ids = batch["input_ids"]  # (B, T)
        logits = self.model(input_ids=ids).logits[:, :-1]  # (B, T-1, V)
        targets = ids[:, 1:]
        loss_sum = F.cross_entropy(logits.reshape(-1, logits.size(-1)).float(), targets.reshape(-1), reduction="sum")
        return {"loss_sum": loss_sum, "count": targets.numel()}
