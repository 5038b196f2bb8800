"""The evaluate stage's config: a pydantic model without torch, so the command line is checked
before any heavy import."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from fmloop.core.config import StageConfig


class EvaluateConfig(StageConfig):
    stage: ClassVar[str] = "evaluate"
    model: str = Field(description="a fine-tuned model folder, run dir, LoRA adapter, ONNX export or ensemble")
    data: str = Field(description="labeled data (a folder: its test split, else validation)")
    baseline: str | None = Field(None, description="another model scored on the same examples (paired bootstrap)")
    text_column: str | None = Field(None, description="the text column (images: the image column)")
    label_column: str | None = None
    batch_size: int = Field(64, ge=1)
    slices: list[str] = Field(
        default_factory=list, description="columns of the data to report metrics by (length and language always are)"
    )
    robustness: bool = Field(False, description="run the perturbation suite (rescores the data about a dozen times)")
    faithfulness: int = Field(
        100, ge=0, description="texts in the explanations' deletion test (0 skips it and the explained mistakes)"
    )
