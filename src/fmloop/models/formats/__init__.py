"""Artifact formats: how to recognise a model folder, and how to load it for inference.

One module per format registers a `Format` in `FORMATS`; `detect(folder)` asks each, most specific
first, and `fmloop.load` loads with the one that answers. Writers live with the stage that makes
the format (`fmloop.compress` exports ONNX, int8 and ensembles); readers live here, so loading
never imports a stage.

| format     | recognised by                                   | module          |
|------------|-------------------------------------------------|-----------------|
| ensemble   | ensemble.json                                   | ensemble.py     |
| onnx       | model.onnx + fmloop_onnx.json                   | onnx.py         |
| int8       | config.json with fmloop_quantization            | int8.py         |
| lora       | adapter_config.json (+ head.safetensors)        | lora.py         |
| mean-pool  | config.json with fmloop_pooling: mean           | pooled.py       |
| hf         | config.json + model.safetensors (text / image)  | hf.py           |

To add a format: write a module with `recognise(folder) -> bool` and
`load(folder, device) -> InferenceModel`, register it with a priority, and import it below.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from fmloop.core.catalog import Catalog
from fmloop.core.errors import ModelError


@dataclass(frozen=True)
class Format:
    name: str
    recognise: Callable[[Path], bool]
    load: Callable[..., object]  # (folder, device) -> InferenceModel
    priority: int  # asked in descending order: specific formats before generic ones
    fp32: bool = True  # False: a compressed artifact (cannot be fine-tuned further)


FORMATS: Catalog[Format] = Catalog("model format", ModelError)


def register(fmt: Format) -> Format:
    FORMATS.register(fmt.name)(fmt)
    return fmt


def detect(folder: Path) -> Format:
    """The format of a model folder; a clear error when it holds none fmloop can load."""
    if not folder.is_dir():
        raise ModelError(f"{folder} does not exist (or is not a folder).")
    for fmt in sorted((FORMATS.get(n) for n in FORMATS.names()), key=lambda f: -f.priority):
        if fmt.recognise(folder):
            return fmt
    pickles = sorted(p.name for p in folder.glob("*.bin")) + sorted(p.name for p in folder.glob("*.pt"))
    if pickles and (folder / "config.json").exists():
        raise ModelError(
            f"{folder / pickles[0]} holds pickled weights, which fmloop never loads (unpickling runs "
            f"code). Convert it once where you trust it: AutoModel.from_pretrained(folder)"
            f".save_pretrained(folder, safe_serialization=True) writes model.safetensors."
        )
    raise ModelError(
        f"{folder} holds no model fmloop can load: expected one of {', '.join(FORMATS.names())} "
        f"(config.json with model.safetensors, adapter_config.json, model.onnx or ensemble.json)."
    )


# The formats register themselves on import.
from fmloop.models.formats import ensemble, hf, int8, lora, onnx, pooled  # noqa: E402,F401
