"""SetFit's body objective (Tunstall et al. 2022): sentence pairs of the same class should embed
close together, pairs of different classes apart. For a pair (a, b) with target 1 (same class) or
0, the loss is the squared error between cos(embed(a), embed(b)) and the target, as
sentence-transformers' CosineSimilarityLoss computes it. Embeddings are the classifier's own
(mean pooling, unit length), so what this trains is what its head reads."""

from __future__ import annotations

from torch import nn

from fmloop.train.objectives import OBJECTIVES


@OBJECTIVES.register("contrastive-pairs", help="cosine similarity of same / different-class sentence pairs")
class CosinePairs(nn.Module):
    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model  # a MeanPoolClassifier: model.embed(ids, mask) -> ((B, H), ...)

    def forward(self, batch: dict) -> dict:
        a = self.model.embed(batch["a_input_ids"], batch["a_attention_mask"])[0].float()  # (B, H)
        b = self.model.embed(batch["b_input_ids"], batch["b_attention_mask"])[0].float()  # (B, H)
        similarity = nn.functional.cosine_similarity(a, b, dim=-1)  # (B,)
        target = batch["target"].float()
        return {"loss_sum": ((similarity - target) ** 2).sum(), "count": len(target)}
