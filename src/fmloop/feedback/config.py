"""The retrain stage's config: a pydantic model without torch, so `fmloop retrain` checks its
command line at once."""

from __future__ import annotations

import difflib
from typing import Any, ClassVar, Literal

from pydantic import Field, ValidationError, field_validator

from fmloop.core.config import StageConfig
from fmloop.train.config import FinetuneConfig, FinetuneTrain


def check_overrides(value: dict, section: type[StageConfig], reserved: tuple[str, ...] = ()) -> dict:
    """`value` (a partial override of `section`, kept as given so that only these keys change the
    champion's recipe) with each key and value checked against `section`; the error lists the
    valid keys."""
    valid = [key for key in section.model_fields if key not in reserved]
    unknown = [key for key in value if key not in valid]
    if unknown:
        close = difflib.get_close_matches(unknown[0], valid, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ValueError(f"has an unknown key {unknown[0]!r}{hint}; valid keys: {', '.join(valid)}")
    try:
        section.model_validate(value)
    except ValidationError as err:
        first = err.errors()[0]
        msg = first["msg"][0].lower() + first["msg"][1:]
        raise ValueError(f"has a bad {'.'.join(map(str, first['loc']))!r} ({msg})") from None
    return value


class RetrainConfig(StageConfig):
    stage: ClassVar[str] = "retrain"
    name: str = Field(description="the registered model whose @champion is retrained")
    database: str | None = Field(None, description="feedback store URL (default: FMLOOP_DB, else SQLite in the home)")
    high_water: int | None = Field(
        None, ge=0, description="read the feedback up to this id (default: the newest id when the run starts)"
    )
    start: Literal["champion", "base"] = Field(
        "champion", description="fine-tune the champion further, or its base again with the champion's recipe"
    )
    replay_ratio: float = Field(
        1.0, ge=0, description="rows of the champion's own training data replayed per correction (against forgetting)"
    )
    accepted_ratio: float = Field(
        1.0,
        ge=0,
        description="served answers nobody corrected, trained on with the served label, per correction: corrections "
        "alone hold only the champion's mistakes, and a model trained on them learns to contradict it (0: off)",
    )
    min_corrections: int = Field(20, ge=1, description="fewer new corrections than this: nothing to retrain on")
    judge_only: bool = Field(
        False, description="only judge the challenger waiting for labels (none waiting: nothing to do); train none"
    )
    strategy: str | None = Field(
        None,
        description="the challenger's fine-tuning strategy (default: the champion's); 'embedding' refits only the "
        "classifier on the frozen encoder's embeddings: seconds on a CPU instead of a fine-tune",
    )
    label_check: bool = Field(
        True, description="drop corrections that confident learning flags as likely wrong (listed in the report)"
    )
    trust: dict[str, float] = Field(
        default_factory=dict,
        description="weight of each identity's votes (identities not listed: 1; 0 ignores one)",
    )
    max_identity_share: float = Field(
        0.25,
        gt=0,
        le=1,
        description="the most of the challenger's feedback rows that corrections from one identity alone may make "
        "(a flood beyond it is sampled down; 1: no cap)",
    )
    alpha: float = Field(
        0.05, gt=0, lt=1, description="the gate's one-sided level, spent across the model's successive challengers"
    )
    tolerance: float = Field(
        0.03, ge=0, description="non-inferiority margin: how much accuracy on the champion's validation set may be lost"
    )
    margin: float = Field(0.0, ge=0, description="the estimated gain on the served stream must exceed this")
    shadow_n: int = Field(
        2000, ge=0, description="newest inputs the champion served that the challenger is scored on offline"
    )
    shadow_labels: int = Field(
        300, ge=0, description="audit labels asked for, at random, among those inputs where the two disagree"
    )
    max_labels: int = Field(600, ge=1, description="a challenger not proven better after this many labels is refused")
    slice_tolerance: float = Field(
        0.05,
        ge=0,
        description="refused when, on a slice of the champion's validation set (length, language; 50+ rows), "
        "its accuracy falls further than this below the champion's",
    )
    robustness_tolerance: float = Field(
        0.03,
        ge=0,
        description="refused when it loses more accuracy under the perturbation suite than the champion does, by more than this",
    )
    robustness_rows: int = Field(
        300, ge=0, description="validation rows the perturbation suite runs on for the gate (0: no robustness check)"
    )
    shuffle_labels: bool = Field(False, description="train the challenger on shuffled labels (a deliberately bad one)")
    promote: bool = Field(True, description="move @champion when the gate says so (false: decide and register only)")
    seed: int = 0
    train: dict[str, Any] = Field(
        default_factory=dict, description="fine-tuning overrides of the champion's recipe (keys of finetune's train)"
    )

    @field_validator("train")
    @classmethod
    def _known_train_keys(cls, value: dict) -> dict:
        return check_overrides(value, FinetuneTrain)

    @field_validator("strategy")
    @classmethod
    def _known_strategy(cls, value: str | None) -> str | None:
        if value is not None:
            FinetuneConfig.model_validate({"model": {"name": "-"}, "data": {"path": "-"}, "strategy": value})
        return value


class LoopConfig(StageConfig):
    stage: ClassVar[str] = "loop"
    name: str = Field(description="the registered model whose @champion the loop keeps improving")
    database: str | None = Field(None, description="feedback store URL (default: FMLOOP_DB, else SQLite in the home)")
    min_new: int = Field(
        100,
        ge=1,
        description="new feedback rows (corrections and audit labels) since the last attempt that call for a retrain",
    )
    drift: bool = Field(True, description="check drift each time; a drifted stream calls for a retrain sooner")
    drift_n: int = Field(300, ge=30, description="newest served inputs the drift check compares")
    drift_alpha: float = Field(0.01, gt=0, lt=1, description="a drift test with a p-value below this flags drift")
    retention_days: float | None = Field(
        None, gt=0, description="each pass erases stored inputs older than this many days (recorded; none: keep)"
    )
    retrain: dict[str, Any] = Field(default_factory=dict, description="retrain settings, e.g. {'shadow_labels': 200}")

    @field_validator("retrain")
    @classmethod
    def _known_retrain_keys(cls, value: dict) -> dict:
        return check_overrides(value, _RetrainOverrides, reserved=("name", "database"))


class _RetrainOverrides(RetrainConfig):
    """What a loop's `retrain` may set: a retrain config but its name and store, which the loop gives."""

    name: str = "-"
