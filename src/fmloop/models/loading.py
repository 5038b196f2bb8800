"""Load a fine-tuned artifact for inference: `fmloop.load(path).predict(["text", ...])`.

Accepts a run dir, a full model folder (config.json + safetensors) or a LoRA adapter folder
(adapter_config.json naming its base). Adapters are merged into the base after loading, so
inference costs the same as for a full model.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from transformers import AutoConfig, AutoModelForSequenceClassification

from fmloop.core.errors import ModelError
from fmloop.data.tokenizer import load_tokenizer
from fmloop.evaluate.metrics import sigmoid, softmax
from fmloop.models.heads import from_pretrained
from fmloop.models.presets import model_dir_of

ONNX_FILE = "model.onnx"          # compress/onnx_export.py: an ONNX Runtime artifact
ENSEMBLE_FILE = "ensemble.json"   # compress/ensemble.py: members + how to combine them
TASK_OF_PROBLEM = {"single_label_classification": "classification", "multi_label_classification": "multilabel",
                   "regression": "regression"}


def _folder(path: str | Path) -> Path:
    folder = model_dir_of(path)
    if not folder.is_dir():
        raise ModelError(f"{path} does not exist.")
    if not any((folder / name).exists() for name in ("config.json", "adapter_config.json", ENSEMBLE_FILE, ONNX_FILE)):
        raise ModelError(f"{folder} holds no model: no config.json, adapter_config.json, {ENSEMBLE_FILE} or {ONNX_FILE}.")
    return folder


def load_task_model(path: str | Path, auto_class=AutoModelForSequenceClassification) -> tuple[torch.nn.Module, Path]:
    """(model in eval mode, folder). LoRA adapters are merged into their base."""
    folder = _folder(path)
    if (folder / "config.json").exists() and json.loads((folder / "config.json").read_text()).get("fmloop_pooling") == "mean":
        _check_adapter_base(folder)
        from fmloop.models.pooled import MeanPoolClassifier
        return MeanPoolClassifier.load(folder), folder
    adapter = folder / "adapter_config.json"
    if not adapter.exists():
        return from_pretrained(auto_class, folder, AutoConfig.from_pretrained(str(folder))).eval(), folder
    base = _check_adapter_base(folder)
    from peft import PeftModel

    config = AutoConfig.from_pretrained(str(folder))  # the task config saved with the adapter (labels, head size)
    base_model = auto_class.from_pretrained(base, config=config)
    model = PeftModel.from_pretrained(base_model, str(folder))
    return model.merge_and_unload().eval(), folder


def _check_adapter_base(folder: Path) -> str | None:
    adapter = folder / "adapter_config.json"
    if not adapter.exists():
        return None
    base = json.loads(adapter.read_text()).get("base_model_name_or_path")
    if not base or not (Path(base) / "config.json").exists():
        raise ModelError(f"{folder} is a LoRA adapter whose base model {base!r} is missing. "
                         f"Put the base folder back at that path (or edit base_model_name_or_path in {adapter}).")
    return base


class InferenceModel:
    """What every loadable artifact answers: `task`, `labels`, `modality`, `folder`,
    `logits(inputs)` and `predict(inputs)`."""

    modality = "text"
    task = "classification"
    labels: list[str] | None = None
    folder: Path

    def logits(self, inputs, batch_size: int = 64, progress=None) -> np.ndarray:
        raise NotImplementedError

    def predict(self, inputs, batch_size: int = 64, progress=None) -> list[dict]:
        """One dict per input: {"label", "probabilities"} (classification), {"labels", "probabilities"}
        (multi-label, threshold 0.5) or {"score"} (regression)."""
        raw = self.logits(inputs if self.modality == "image" else list(inputs), batch_size, progress)
        if self.task == "regression":
            return [{"score": float(v[0])} for v in raw]
        if self.task == "multilabel":
            probs = sigmoid(raw)
            return [{"labels": [self.labels[j] for j in np.flatnonzero(p >= 0.5)],
                     "probabilities": {self.labels[j]: round(float(p[j]), 6) for j in range(len(p))}} for p in probs]
        probs = softmax(raw)
        return [{"label": self.labels[int(p.argmax())],
                 "probabilities": {self.labels[j]: round(float(p[j]), 6) for j in range(len(p))}} for p in probs]

    def to_pixels(self, images) -> np.ndarray:
        """uint8 (N, H, W, C) at the model's size and channel count from paths, PIL images or arrays."""
        if isinstance(images, np.ndarray) and images.ndim == 4:
            return images
        from fmloop.data.images import decode_images

        items = [(str(im), Path(im) if isinstance(im, str) else im) for im in images]
        pixels, kept, skipped = decode_images(items, (self.size, self.size), self.channels, progress=False)
        if skipped:
            raise ModelError(f"cannot read image {skipped[0][0]}: {skipped[0][1]}")
        return pixels


def inference_device(device: str | torch.device = "auto") -> torch.device:
    """'auto': the first GPU when one is visible, else the CPU; or any device torch names."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        chosen = torch.device(device)
    except RuntimeError as exc:
        raise ModelError(f"The 'device' parameter {device!r} is not a device torch knows (auto, cpu, cuda, cuda:N).") from exc
    if chosen.type == "cuda" and not torch.cuda.is_available():
        raise ModelError(f"The 'device' parameter asks for {device} but no CUDA device is visible: use device='cpu'.")
    return chosen


class TextModel(InferenceModel):
    """A fine-tuned text classifier/regressor ready for inference, on `device` (a GPU when
    `load` finds one: distillation's teacher scoring and evaluation run there too)."""

    def __init__(self, model: torch.nn.Module, tokenizer, folder: Path, max_length: int = 512,
                 device: str | torch.device = "cpu"):
        self.device = inference_device(device)
        self.model, self.tokenizer, self.folder = model.to(self.device), tokenizer, folder
        config = model.config
        self.task = TASK_OF_PROBLEM.get(config.problem_type or "", "classification")
        self.labels = [config.id2label[i] for i in range(config.num_labels)] if self.task != "regression" else None
        limit = getattr(config, "max_position_embeddings", None) or getattr(config, "n_positions", None) or 512
        self.max_length = min(max_length, limit)

    @classmethod
    def load(cls, path: str | Path, device: str | torch.device = "auto") -> "TextModel":
        model, folder = load_task_model(path)
        return cls(model, load_tokenizer(folder), folder, device=device)

    def encode(self, texts: list[str]) -> dict[str, np.ndarray]:
        """input_ids + attention_mask (int64, padded to the longest) as the exported graphs take them."""
        enc = self.tokenizer(list(texts), truncation=True, max_length=self.max_length, padding=True,
                             return_tensors="np")
        return {k: enc[k].astype(np.int64) for k in ("input_ids", "attention_mask")}

    @torch.no_grad()
    def logits(self, texts: list[str], batch_size: int = 64, progress=None) -> np.ndarray:
        def run(batch: list[str]) -> np.ndarray:
            feeds = {k: torch.from_numpy(v).to(self.device) for k, v in self.encode(batch).items()}
            return self.model(**feeds).logits.float().cpu().numpy()

        return batched_by_length(texts, run, batch_size, progress)


def batched_by_length(texts: list[str], run, batch_size: int, progress=None) -> np.ndarray:
    """`run(list of texts) -> (b, K) array` over length-sorted batches (less padding), returned in
    input order."""
    order = np.argsort([len(t) for t in texts], kind="stable")
    out = None
    for start in range(0, len(texts), batch_size):
        idx = order[start:start + batch_size]
        values = run([texts[i] for i in idx])
        if out is None:
            out = np.zeros((len(texts), values.shape[-1]), dtype=np.float32)
        out[idx] = values
        if progress is not None:
            progress(len(idx))
    return out if out is not None else np.zeros((0, 1), dtype=np.float32)


class ImageModel(InferenceModel):
    """A fine-tuned image classifier ready for inference: `predict(paths | PIL images | uint8 array)`."""

    modality = "image"

    def __init__(self, model: torch.nn.Module, folder: Path):
        from fmloop.models.vision import read_preprocessor

        self.model, self.folder = model, folder
        pre = read_preprocessor(folder)
        self.size, self.channels, self.mean, self.std = pre["size"], pre["channels"], pre["mean"], pre["std"]
        config = model.config
        self.task = "classification"
        self.labels = [config.id2label[i] for i in range(config.num_labels)]

    @classmethod
    def load(cls, path: str | Path, device: str | torch.device = "auto") -> "ImageModel":
        import fmloop.models.vision  # noqa: F401  (registers fmloop's convolutional model type)
        from transformers import AutoModelForImageClassification

        model, folder = load_task_model(path, AutoModelForImageClassification)
        return cls(model.to(inference_device(device)), folder)   # image_logits follows the weights

    def logits(self, images, batch_size: int = 256, progress=None) -> np.ndarray:
        from fmloop.models.vision import image_logits

        return image_logits(self.model, self.to_pixels(images), self.mean, self.std, batch_size=batch_size,
                            progress=progress)


def load(path: str | Path, device: str | torch.device = "auto"):
    """A model for inference, whatever the folder holds: a fine-tuned text or image model, an
    int8-quantized one, an ONNX export or an ensemble. All answer `logits` and `predict`.
    PyTorch fp32 models run on `device` ('auto': a GPU when one is visible); int8 PyTorch and
    ONNX models run on the CPU, where their kernels are."""
    from fmloop.models.vision import is_image_model_folder

    folder = _folder(path)
    if (folder / ENSEMBLE_FILE).exists():
        from fmloop.compress.ensemble import EnsembleModel
        return EnsembleModel.load(folder)
    if (folder / ONNX_FILE).exists():
        from fmloop.compress.onnx_export import OnnxModel
        return OnnxModel.load(folder)
    if json.loads((folder / "config.json").read_text()).get("fmloop_quantization") if (folder / "config.json").exists() else None:
        from fmloop.compress.quantize import load_quantized
        return load_quantized(folder)
    if is_image_model_folder(str(folder)):
        return ImageModel.load(path, device)
    return TextModel.load(path, device)
