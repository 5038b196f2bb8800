"""`fmloop.load(ref)`: any model fmloop wrote (or any Hugging Face task-model folder), ready for
inference: `fmloop.load("runs/sst2").predict(["what a film", "a waste of time"])`.

`ref` is resolved to a folder by the resolver chain (a path today: a run dir means its model/;
a registry reference such as models:/NAME@ALIAS is added by the registry through
`add_resolver`), and the folder's format (fmloop.models.formats) loads it.
"""

from __future__ import annotations

from pathlib import Path

import torch

from fmloop.core.errors import ModelError
from fmloop.core.references import add_resolver
from fmloop.models.formats import FORMATS, Format, detect
from fmloop.models.inference import InferenceModel
from fmloop.models.presets import model_dir_of


# Each resolver takes a reference and returns a folder, or None when the reference is not its kind.
def resolve(ref: str | Path) -> Path:
    """The model folder a reference names: a folder, a run dir, or a registry reference."""
    folder = model_dir_of(ref)
    if not folder.exists():
        raise ModelError(f"{ref} does not exist: pass a model folder, an fmloop run dir or a registry reference.")
    return folder


def format_of(ref: str | Path) -> tuple[Path, Format]:
    folder = resolve(ref)
    return folder, detect(folder)


def load(ref: str | Path, device: str | torch.device = "auto") -> InferenceModel:
    """A model for inference, whatever the folder holds: a fine-tuned text or image model (full,
    mean-pooled or LoRA), an int8 or ONNX export, or an ensemble. All answer `logits` and
    `predict`. PyTorch fp32 models run on `device` ('auto': a GPU when one is visible); int8
    PyTorch models run on the CPU, ONNX models on the CPU or, with onnxruntime-gpu, the GPU."""
    folder, fmt = format_of(ref)
    return fmt.load(folder, device)


__all__ = ["FORMATS", "add_resolver", "format_of", "load", "resolve"]
