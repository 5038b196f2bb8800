"""Masked language modelling (BERT): predict the original token at masked positions.

Fast path: run the encoder, gather only the masked positions (about 15% of tokens), and apply the
LM head to those. The vocabulary projection is the largest matmul in a small BERT, so skipping it
on the 85% of positions whose loss is ignored saves most of its cost; the loss is identical.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import nn

from fmloop.train.objectives import OBJECTIVES


def _split_head(model: nn.Module) -> tuple[nn.Module, nn.Module] | None:
    """(encoder, lm_head) for families whose head maps hidden states to vocabulary logits."""
    for encoder_name, head_name in (("bert", "cls"), ("roberta", "lm_head"), ("xlm_roberta", "lm_head")):
        encoder, head = getattr(model, encoder_name, None), getattr(model, head_name, None)
        if encoder is not None and head is not None:
            return encoder, head
    return None


@OBJECTIVES.register("mlm", help="masked language modelling (15% dynamic masking, 80/10/10)")
class MaskedLM(nn.Module):
    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        self._split = _split_head(model)

    def forward(self, batch: dict) -> dict:
        labels = batch["labels"]
        if self._split is not None:
            encoder, head = self._split
            hidden = encoder(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
            selected = labels != -100  # (B, T) bool
            logits = head(hidden[selected])  # (N_masked, V)
            targets = labels[selected]
        else:
            logits = self.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
            logits, targets = logits.view(-1, logits.size(-1)), labels.view(-1)
        loss_sum = F.cross_entropy(logits.float(), targets, ignore_index=-100, reduction="sum")
        return {"loss_sum": loss_sum, "count": int((targets != -100).sum())}
