"""The configs of the compression stages that train (distill, prune): pydantic models without
torch, so the command line is checked before any heavy import."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from fmloop.core.config import StageConfig
from fmloop.train.config import FinetuneConfig


class DistillSettings(StageConfig):
    temperature: float = Field(2.0, gt=0, description="softens both distributions; the loss is scaled by T^2")
    alpha: float = Field(0.7, ge=0, le=1, description="weight of the soft-target loss (1 - alpha: the labels)")
    unlabeled: str | None = Field(None, description="extra text without labels for the teacher to label")
    unlabeled_limit: int | None = Field(None, ge=1, description="use at most this many unlabeled rows (seeded)")
    init_embeddings: bool = Field(
        True,
        description="start a preset student's token embeddings from the "
        "teacher's, projected onto their top principal directions",
    )
    hidden_weight: float = Field(
        0.0,
        ge=0,
        description="weight of hidden-state matching (cosine between mean-pooled "
        "student and teacher layers; 0 = off; text only)",
    )
    augment: int = Field(
        0,
        ge=0,
        description="word-substitution variants of every labeled training text for "
        "the teacher to label (TinyBERT's augmentation; 0 = off; text only)",
    )
    augment_p: float = Field(0.4, gt=0, le=1, description="chance that a word of a variant is swapped")
    augment_k: int = Field(
        15, ge=1, description="swap a word for one of its k nearest words in the teacher's token embeddings"
    )


class DistillConfig(FinetuneConfig):
    stage: ClassVar[str] = "distill"
    teacher: list[str] = Field(default_factory=list, description="teacher model(s): folders, run dirs, ensembles")
    distill: DistillSettings = Field(default_factory=DistillSettings)


class PruneSettings(StageConfig):
    method: Literal["magnitude", "structured", "heads"] = "magnitude"
    sparsity: float = Field(
        0.5,
        gt=0,
        lt=1,
        description="fraction of body linear weights (or FFN channels, or attention heads per layer) removed",
    )


class PruneConfig(FinetuneConfig):
    stage: ClassVar[str] = "prune"
    prune: PruneSettings = Field(default_factory=PruneSettings)
