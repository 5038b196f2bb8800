"""Self-supervised image objectives.

  mae     masked autoencoding (He et al. 2021): the ViT encoder sees a random 25% of the patches, a
          small decoder reconstructs the pixels of the rest; the loss is the mean squared error on
          the hidden patches (per-patch normalised targets). transformers' ViTMAEForPreTraining.
  simclr  contrastive (Chen et al. 2020): two augmented views of each image, a projection MLP on
          the backbone's pooled output, NT-Xent over the batch (every other image is a negative).
          Under torch.distributed the negatives are the rank's own micro-batch.

Both hand back a plain backbone (`export_backbone`) that fine-tuning loads like any other.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from transformers import ViTConfig, ViTMAEConfig, ViTMAEForPreTraining, ViTModel

from fmloop.core.errors import ConfigError
from fmloop.train.objectives import OBJECTIVES


def pooled_features(backbone: nn.Module, pixel_values: torch.Tensor) -> torch.Tensor:
    """The representation a classification head reads: ViT's final-norm CLS token, else pooler_output."""
    out = backbone(pixel_values=pixel_values)
    if getattr(backbone.config, "model_type", "") == "vit":
        return out.last_hidden_state[:, 0]
    return out.pooler_output.flatten(1)


def mae_model(vit: ViTConfig, mask_ratio: float = 0.75) -> ViTMAEForPreTraining:
    if vit.model_type != "vit":
        raise ConfigError(
            f"The mae objective needs a ViT backbone (vit-mini, vit-tiny or a ViT folder); got "
            f"{vit.model_type!r}. Use --objective simclr for convolutional backbones."
        )
    decoder = max(64, vit.hidden_size // 2)
    config = ViTMAEConfig(
        hidden_size=vit.hidden_size,
        num_hidden_layers=vit.num_hidden_layers,
        num_attention_heads=vit.num_attention_heads,
        intermediate_size=vit.intermediate_size,
        image_size=vit.image_size,
        patch_size=vit.patch_size,
        num_channels=vit.num_channels,
        layer_norm_eps=vit.layer_norm_eps,
        qkv_bias=vit.qkv_bias,
        decoder_hidden_size=decoder,
        decoder_num_hidden_layers=2,
        decoder_num_attention_heads=4,
        decoder_intermediate_size=4 * decoder,
        mask_ratio=mask_ratio,
        norm_pix_loss=True,
    )
    return ViTMAEForPreTraining(config)


def mae_encoder_as_vit(mae: ViTMAEForPreTraining) -> ViTModel:
    """The MAE encoder as a plain ViTModel (same parameter names), loadable by any ViT head."""
    c = mae.config
    config = ViTConfig(
        hidden_size=c.hidden_size,
        num_hidden_layers=c.num_hidden_layers,
        num_attention_heads=c.num_attention_heads,
        intermediate_size=c.intermediate_size,
        image_size=c.image_size,
        patch_size=c.patch_size,
        num_channels=c.num_channels,
        layer_norm_eps=c.layer_norm_eps,
        qkv_bias=c.qkv_bias,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )
    vit = ViTModel(config, add_pooling_layer=False)
    missing, unexpected = vit.load_state_dict(mae.vit.state_dict(), strict=False)
    if missing or unexpected:
        raise RuntimeError(f"MAE encoder does not map onto ViT: missing {missing}, unexpected {unexpected}")
    return vit


@OBJECTIVES.register("mae", help="masked autoencoding on ViT patches")
class MaskedAutoencoder(nn.Module):
    def __init__(self, model: ViTMAEForPreTraining):
        super().__init__()
        self.model = model

    def forward(self, batch: dict) -> dict:
        loss = self.model(pixel_values=batch["pixel_values"]).loss.float()
        n = batch["pixel_values"].shape[0]
        return {"loss_sum": loss * n, "count": n}

    def export_backbone(self) -> nn.Module:
        return mae_encoder_as_vit(self.model)


@OBJECTIVES.register("simclr", help="contrastive learning on two augmented views (NT-Xent)")
class SimCLR(nn.Module):
    def __init__(self, backbone: nn.Module, projection_dim: int = 128, temperature: float = 0.2):
        super().__init__()
        self.backbone, self.temperature = backbone, temperature
        width = (
            backbone.config.hidden_size if hasattr(backbone.config, "hidden_size") else backbone.config.hidden_sizes[-1]
        )
        self.projection = nn.Sequential(nn.Linear(width, width), nn.ReLU(), nn.Linear(width, projection_dim))

    def forward(self, batch: dict) -> dict:
        views = torch.cat([batch["view1"], batch["view2"]])
        z = F.normalize(self.projection(pooled_features(self.backbone, views)).float(), dim=1)
        n = batch["view1"].shape[0]
        logits = z @ z.t() / self.temperature
        logits.fill_diagonal_(float("-inf"))  # an image is not its own negative
        targets = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)]).to(z.device)
        loss_sum = F.cross_entropy(logits, targets, reduction="sum") / 2  # two directions per pair
        return {"loss_sum": loss_sum, "count": n}

    def export_backbone(self) -> nn.Module:
        return self.backbone
