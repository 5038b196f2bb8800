"""A Hugging Face task-model folder: config.json + model.safetensors, text (with its tokenizer) or
images (with preprocessor_config.json). Head-pruned folders load through models.heads."""

from __future__ import annotations

import json
from pathlib import Path

from transformers import (
    AutoConfig,
    AutoModelForImageClassification,
    AutoModelForSequenceClassification,
    AutoModelForTokenClassification,
)

from fmloop.data.tokenizer import load_tokenizer
from fmloop.models import vision  # noqa: F401  (registers fmloop's convolutional model type)
from fmloop.models.formats import Format, register
from fmloop.models.heads import from_pretrained
from fmloop.models.inference import ImageModel, TextModel
from fmloop.models.tokens import TokenModel
from fmloop.models.vision import is_image_model_folder, read_preprocessor
from fmloop.tasks.catalog import task_of_config


def config_of(folder: Path) -> dict:
    file = folder / "config.json"
    return json.loads(file.read_text()) if file.exists() else {}


def has_safe_weights(folder: Path) -> bool:
    return any(folder.glob("*.safetensors"))


def recognise(folder: Path) -> bool:
    return (folder / "config.json").exists() and has_safe_weights(folder)


def text_auto_class(config):
    """The transformers auto class of a text task model's config: token or sequence classification."""
    return (
        AutoModelForTokenClassification
        if task_of_config(config).name == "tokens"
        else AutoModelForSequenceClassification
    )


def load_module(folder: Path, image: bool | None = None):
    """The task model (nn.Module, eval mode) saved in `folder`."""
    image = is_image_model_folder(str(folder)) if image is None else image
    config = AutoConfig.from_pretrained(str(folder))
    auto = AutoModelForImageClassification if image else text_auto_class(config)
    return from_pretrained(auto, folder, config).eval()


def load(folder: Path, device="auto"):
    if is_image_model_folder(str(folder)):
        return ImageModel(load_module(folder, image=True), folder, read_preprocessor(folder), device)
    module = load_module(folder, image=False)
    model_class = TokenModel if task_of_config(module.config).name == "tokens" else TextModel
    return model_class(module, load_tokenizer(folder), folder, device)


FORMAT = register(Format("hf", recognise, load, priority=0))
