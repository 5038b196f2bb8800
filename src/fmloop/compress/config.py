"""The configs of the compression stages (distill, prune, export, quantize, ensemble): pydantic
models without torch, so the command line is checked before any heavy import."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field, field_validator, model_validator

from fmloop.adapt import LOOP_STRATEGY_NAMES, LOOP_STRATEGY_PATTERN
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


class LoopTrained(FinetuneConfig):
    """Distillation and pruning train a student / the pruned model on the loop: the strategies
    that do (no auto, embedding or contrastive), full by default."""

    strategy: str = "full"

    @field_validator("strategy")
    @classmethod
    def _loop_strategy(cls, value):
        if not LOOP_STRATEGY_PATTERN.match(value):
            raise ValueError(f"must be one of {LOOP_STRATEGY_NAMES}")
        return value


class DistillConfig(LoopTrained):
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


class PruneConfig(LoopTrained):
    stage: ClassVar[str] = "prune"
    prune: PruneSettings = Field(default_factory=PruneSettings)


class ParityCheck(StageConfig):
    """What every stage that rewrites a model shares: the data it is checked on against its parent."""

    model: str = Field(description="a fine-tuned model folder or run dir")
    data: str | None = Field(
        None, description="labeled data to check against the parent (validation split); default: the run's own data"
    )
    limit: int | None = Field(None, ge=1, description="check on at most this many examples (seeded sample)")
    batch_size: int = Field(64, ge=1)
    text_column: str | None = Field(None, description="the text column (images: the image column)")
    label_column: str | None = None


class ExportConfig(ParityCheck):
    stage: ClassVar[str] = "export"
    format: Literal["onnx"] = "onnx"
    opset: int = Field(17, ge=11, description="ONNX opset")
    min_agreement: float = Field(0.99, gt=0, le=1, description="fail when fewer predictions agree with the parent")
    max_abs_diff: float | None = Field(None, gt=0, description="also fail when any logit differs by more than this")


class QuantizeConfig(ParityCheck):
    stage: ClassVar[str] = "quantize"
    backend: Literal["onnx", "torch"] = Field("onnx", description="onnx (ONNX Runtime int8) or torch (torch.ao)")
    mode: Literal["dynamic", "static"] = Field(
        "dynamic", description="dynamic: int8 weights; static: activations too, calibrated (onnx only)"
    )
    calibration_size: int = Field(256, ge=1, description="training examples that calibrate static int8")
    min_agreement: float = Field(0.97, gt=0, le=1, description="fail when fewer predictions agree with the fp32 model")

    @model_validator(mode="after")
    def _static_needs_onnx(self):
        if self.backend == "torch" and self.mode == "static":
            raise ValueError("static int8 is available through ONNX Runtime: use backend onnx (or mode dynamic)")
        return self


class EnsembleConfig(StageConfig):
    stage: ClassVar[str] = "ensemble"
    models: list[str] = Field(min_length=2, description="two or more models with the same task and labels")
    method: Literal["vote", "mean", "weighted"] = Field(
        "mean", description="vote, mean of probabilities, or weighted (weights fit on the validation split)"
    )
    data: str | None = Field(None, description="labeled data whose validation split fits the weights (weighted)")
    batch_size: int = Field(64, ge=1)
    text_column: str | None = None
    label_column: str | None = None
