"""The retrain stage's config: a pydantic model without torch, so `fmloop retrain` checks its
command line at once."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import Field

from fmloop.core.config import StageConfig


class RetrainConfig(StageConfig):
    stage: ClassVar[str] = "retrain"
    name: str = Field(description="the registered model whose @champion is retrained")
    database: str | None = Field(None, description="feedback store URL (default: FMLOOP_DB, else SQLite in the home)")
    start: Literal["champion", "base"] = Field(
        "champion", description="fine-tune the champion further, or its base again with the champion's recipe"
    )
    replay_ratio: float = Field(
        1.0, ge=0, description="rows of the champion's own training data replayed per correction (against forgetting)"
    )
    holdout_fraction: float = Field(
        0.3, gt=0, lt=1, description="corrections held out to score both models when there is no audit sample"
    )
    min_corrections: int = Field(20, ge=1, description="fewer new corrections than this: nothing to retrain on")
    margin: float = Field(0.0, ge=0, description="the challenger must beat the champion by more than this")
    alpha: float = Field(0.05, gt=0, lt=1, description="... with a paired test's p-value below this")
    tolerance: float = Field(0.01, ge=0, description="allowed fall on the champion's validation set")
    shuffle_labels: bool = Field(False, description="train the challenger on shuffled labels (a deliberately bad one)")
    promote: bool = Field(True, description="move @champion when the gate says so (false: decide and register only)")
    seed: int = 0
    train: dict[str, Any] = Field(default_factory=dict, description="fine-tuning overrides, e.g. {'epochs': 2}")
