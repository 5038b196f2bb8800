"""`strategy: auto`: the transfer strategy from the label budget and the kind of base, said aloud.

    sentence-embedding encoder (sentence-transformers files), single-label text classification,
    at most FEW_LABELS labeled rows per class          -> contrastive (SetFit's method: pairs train
                                                          the encoder, then a cross-validated
                                                          logistic regression on every label)
    anything else (more labels, an MLM-pretrained or
    preset base, other tasks, images)                   -> full

Measured where it was decided: bench/few_labels.py (docs/benchmarks.md, "Few labels").
"""

from __future__ import annotations

import logging

import numpy as np

from fmloop.data.images import is_image_source
from fmloop.data.labeled import load_labeled
from fmloop.models.classifier import resolve_model_folder
from fmloop.models.pooled import is_sentence_transformer
from fmloop.models.presets import is_model_folder
from fmloop.train.config import FinetuneConfig

log = logging.getLogger(__name__)

FEW_LABELS = 64  # labeled rows per class at or below which a sentence-embedding base gets `contrastive`


def labels_per_class(cfg: FinetuneConfig) -> int:
    """The fewest labeled rows of any class that fine-tuning will see (train + validation)."""
    limit = cfg.train.limit_per_class
    if limit is not None and limit >= 1:
        return int(limit)
    data = load_labeled(cfg.data.path, task=cfg.task, text_column=cfg.data.text_column,
                        label_column=cfg.data.label_column, hold_out=False)  # fmt: skip
    y = np.concatenate([np.asarray(data.splits[s]["label"]) for s in data.splits if s != "test"])
    counts = np.bincount(y, minlength=len(data.labels))
    share = limit if limit is not None else 1.0
    return int(counts[counts > 0].min() * share)


def choose_strategy(cfg: FinetuneConfig) -> tuple[str, str]:
    """(strategy, why) for `strategy: auto`."""
    if cfg.task != "classification" or is_image_source(cfg.data.path):
        return "full", f"{'images' if cfg.task == 'classification' else cfg.task}: full fine-tuning"
    if not is_model_folder(cfg.model.name) or not is_sentence_transformer(resolve_model_folder(cfg.model.name)):
        return "full", "the base is not a sentence-embedding encoder: full fine-tuning"
    per_class = labels_per_class(cfg)
    if per_class <= FEW_LABELS:
        return "contrastive", (
            f"{per_class} labeled rows per class (at most {FEW_LABELS}) on a sentence-embedding encoder: contrastive "
            f"pairs adapt it, then a cross-validated logistic regression reads it"
        )
    return "full", f"{per_class} labeled rows per class (more than {FEW_LABELS}): full fine-tuning"


def resolve_auto(cfg: FinetuneConfig) -> FinetuneConfig:
    """`cfg` with `strategy: auto` replaced by the chosen strategy (logged with the reason)."""
    if cfg.strategy != "auto":
        return cfg
    strategy, why = choose_strategy(cfg)
    log.info("strategy auto -> %s: %s (set --strategy to choose another)", strategy, why)
    chosen = cfg.model_copy(deep=True)
    chosen.strategy = strategy
    return chosen
