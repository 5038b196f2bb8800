"""fmloop's mean-pooling classifier (models/pooled.py): the base model's own folder plus
head.safetensors, with `fmloop_pooling: "mean"` in config.json."""

from __future__ import annotations

from pathlib import Path

from fmloop.data.tokenizer import load_tokenizer
from fmloop.models.formats import Format, register
from fmloop.models.formats.hf import config_of, has_safe_weights
from fmloop.models.inference import TextModel
from fmloop.models.pooled import HEAD_FILE, MeanPoolClassifier


def recognise(folder: Path) -> bool:
    return (
        config_of(folder).get("fmloop_pooling") == "mean"
        and (folder / HEAD_FILE).exists()
        and has_safe_weights(folder)
        and not (folder / "adapter_config.json").exists()
    )


def load(folder: Path, device="auto"):
    return TextModel(MeanPoolClassifier.load(folder), load_tokenizer(folder), folder, device)


FORMAT = register(Format("mean-pool", recognise, load, priority=10))
