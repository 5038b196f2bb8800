"""A LoRA (or DoRA) adapter folder: adapter_config.json + adapter_model.safetensors, the task
config (labels, head size) and, for mean pooling, head.safetensors. The adapter names its base
by absolute path; when that path is gone (a runs folder moved to another machine), the base is
found through the run's manifest lineage, stored relative to the run dir."""

from __future__ import annotations

import json
from pathlib import Path

from transformers import AutoConfig, AutoModelForImageClassification

from fmloop.core.artifacts import RunDir
from fmloop.core.errors import ModelError
from fmloop.data.tokenizer import load_tokenizer
from fmloop.models.formats import Format, register
from fmloop.models.formats.hf import text_auto_class
from fmloop.models.inference import ImageModel, TextModel
from fmloop.models.pooled import MeanPoolClassifier
from fmloop.models.tokens import TokenModel
from fmloop.models.vision import is_image_model_folder, read_preprocessor
from fmloop.tasks.catalog import task_of_config

ADAPTER_FILE = "adapter_config.json"


def recognise(folder: Path) -> bool:
    return (folder / ADAPTER_FILE).exists()


def adapter_base(folder: Path) -> Path:
    """The base model folder of an adapter: its recorded path, else the run's lineage."""
    recorded = json.loads((folder / ADAPTER_FILE).read_text()).get("base_model_name_or_path")
    tried = []
    if recorded:
        tried.append(str(recorded))
        if (Path(recorded) / "config.json").exists():
            return Path(recorded)
    run = RunDir(folder.parent)
    if run.manifest_path.exists():
        for path in run.read_manifest().parent_paths(run.path):
            tried.append(str(path))
            if (path / "config.json").exists():
                return path.resolve()
    raise ModelError(
        f"{folder} is a LoRA adapter whose base model is missing (looked in: {', '.join(tried) or 'nothing recorded'}). "
        f"Put the base model folder back at the first of those paths, or set base_model_name_or_path "
        f"in {folder / ADAPTER_FILE} to where it is now."
    )


def load_module(folder: Path):
    """The adapter merged into its base: a plain task model in eval mode (inference costs the same)."""
    from peft import PeftModel

    base = adapter_base(folder)
    config = AutoConfig.from_pretrained(str(folder))  # the task config saved with the adapter
    if getattr(config, "fmloop_pooling", None) == "mean":
        return MeanPoolClassifier.load(folder, base=base)
    auto = AutoModelForImageClassification if is_image_model_folder(str(base)) else text_auto_class(config)
    model = PeftModel.from_pretrained(auto.from_pretrained(str(base), config=config), str(folder))
    return model.merge_and_unload().eval()


def load(folder: Path, device="auto"):
    module = load_module(folder)
    if is_image_model_folder(str(adapter_base(folder))):
        return ImageModel(module, folder, read_preprocessor(folder), device)
    model_class = TokenModel if task_of_config(module.config).name == "tokens" else TextModel
    return model_class(module, load_tokenizer(folder), folder, device)


FORMAT = register(Format("lora", recognise, load, priority=20))
