"""What every loadable model answers, and the one way fmloop scores inputs with a model.

`InferenceModel` is the interface of whatever `fmloop.load` returns (PyTorch text or image
models, ONNX Runtime and int8 models, ensembles): `task`, `labels`, `modality`, `folder`,
`logits(inputs)` and `predict(inputs)`. `text_logits` and `image_logits` are the scoring loops;
validation during training, `fmloop evaluate`, `fmloop predict`, compression parity checks and
served predictions all go through them, so a metric recorded at training time is the metric users
get for the same weights and inputs.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from fmloop.core.errors import ModelError
from fmloop.core.runtime import resolve_device
from fmloop.data.augment import normalize, to_float
from fmloop.data.images import decode_images
from fmloop.data.reading import Reading, reading_of
from fmloop.models.calibration import read_temperature
from fmloop.tasks import get_task
from fmloop.tasks.catalog import task_of_config

DEFAULT_MAX_LENGTH = 512  # inference truncates at the model's position limit, at most this


def inference_device(device: str | torch.device = "auto") -> torch.device:
    """'auto': the first GPU when one is visible, else the CPU; or any device torch names."""
    return resolve_device(
        str(device),
        cuda_available=torch.cuda.is_available(),
        current_cuda=torch.cuda.current_device() if torch.cuda.is_available() else 0,
        parameter="device",
    )


def max_length_of(config, limit: int = DEFAULT_MAX_LENGTH) -> int:
    """The longest input a text model can read: its position limit, at most `limit`."""
    positions = getattr(config, "max_position_embeddings", None) or getattr(config, "n_positions", None) or limit
    return min(limit, positions)


def text_reading(config) -> Reading:
    """How a text model reads its inputs: as recorded at fine-tuning (data.reading), else its
    position limit (at most 512) from the head."""
    return reading_of(config, max_length_of(config))


def batched(
    n: int, run: Callable[[np.ndarray], np.ndarray], batch_size: int, progress=None, order: np.ndarray | None = None
) -> np.ndarray:
    """`run(indices) -> (b, K) array` over batches of `order` (default: 0..n-1), returned as one
    (n, K) float32 array in index order."""
    order = np.arange(n) if order is None else order
    out = None
    for start in range(0, n, batch_size):
        idx = order[start : start + batch_size]
        values = run(idx)
        if out is None:
            out = np.zeros((n, values.shape[-1]), dtype=np.float32)
        out[idx] = values
        if progress is not None:
            progress(len(idx))
    return out if out is not None else np.zeros((0, 1), dtype=np.float32)


def batched_by_length(
    texts: list[str], run: Callable[[list[str]], np.ndarray], batch_size: int, progress=None
) -> np.ndarray:
    """`run(list of texts) -> (b, K) array` over length-sorted batches (less padding), returned in
    input order."""
    order = np.argsort([len(t) for t in texts], kind="stable")
    return batched(len(texts), lambda idx: run([texts[i] for i in idx]), batch_size, progress, order)


def encode_texts(tokenizer, texts: list[str], reading: Reading) -> dict[str, np.ndarray]:
    """input_ids + attention_mask (int64, padded to the longest) as models and exported graphs take
    them, each text cut as `reading` says (as its training rows were)."""
    if reading.truncation == "head":
        enc = tokenizer(list(texts), truncation=True, max_length=reading.max_length, padding=True, return_tensors="np")
    else:
        special = set(tokenizer.all_special_ids)
        ids = tokenizer(list(texts), truncation=False)["input_ids"]
        cut = [reading.cut(row, bool(row) and row[-1] in special) for row in ids]
        enc = tokenizer.pad({"input_ids": cut}, padding=True, return_tensors="np")
    return {k: enc[k].astype(np.int64) for k in ("input_ids", "attention_mask")}


@torch.no_grad()
def text_logits(
    model: torch.nn.Module,
    tokenizer,
    texts: list[str],
    reading: Reading,
    device: torch.device,
    batch_size: int = 64,
    progress=None,
) -> np.ndarray:
    """(N, K) float32 logits of a PyTorch text model, in input order, in fp32 (as served)."""
    was_training = model.training
    model.eval()

    def run(batch: list[str]) -> np.ndarray:
        feeds = {k: torch.from_numpy(v).to(device) for k, v in encode_texts(tokenizer, batch, reading).items()}
        return model(**feeds).logits.float().cpu().numpy()

    try:
        return batched_by_length(list(texts), run, batch_size, progress)
    finally:
        model.train(was_training)


@torch.no_grad()
def image_logits(
    model: torch.nn.Module,
    pixels: np.ndarray,
    mean,
    std,
    device: torch.device | None = None,
    batch_size: int = 256,
    progress=None,
    autocast=contextlib.nullcontext,
) -> np.ndarray:
    """(N, K) logits for uint8 images (N, H, W, C), in order, normalised with the model's mean and std."""
    device = device or next(model.parameters()).device
    was_training = model.training
    model.eval()

    def run(idx: np.ndarray) -> np.ndarray:
        x = normalize(to_float(torch.from_numpy(pixels[idx])), mean, std).to(device)
        with autocast():
            return model(pixel_values=x).logits.float().cpu().numpy()

    try:
        return batched(len(pixels), run, batch_size, progress)
    finally:
        model.train(was_training)


class InferenceModel:
    """What every loadable artifact answers: `task`, `labels`, `modality`, `folder`,
    `logits(inputs)` and `predict(inputs)`."""

    modality = "text"
    task = "classification"
    labels: list[str] | None = None
    folder: Path

    @property
    def temperature(self) -> float:
        """The calibration temperature stored with the model (models.calibration); 1.0 without one."""
        if not hasattr(self, "_temperature"):
            self._temperature = read_temperature(self.folder) if self.task == "classification" else 1.0
        return self._temperature

    def logits(self, inputs, batch_size: int = 64, progress=None) -> np.ndarray:
        """(N, K) calibrated logits: the model's own divided by its temperature (same answers,
        confidences that mean what they say)."""
        raw = self.raw_logits(inputs, batch_size, progress)
        return raw if self.temperature == 1.0 else (raw / self.temperature).astype(np.float32)

    def raw_logits(self, inputs, batch_size: int = 64, progress=None) -> np.ndarray:
        """(N, K) logits as the network computes them, before calibration."""
        raise NotImplementedError

    def predict(self, inputs, batch_size: int = 64, progress=None) -> list[dict]:
        """One dict per input: {"label", "probabilities"} (classification), {"labels", "probabilities"}
        (multi-label, threshold 0.5), {"score"} (regression) or {"entities", "words", "tags"}
        (token classification)."""
        if self.task == "tokens":  # entities with their characters (models/tokens.py imports this module)
            from fmloop.models.tokens import predict_entities

            return predict_entities(self, inputs, batch_size, progress)
        raw = self.logits(inputs if self.modality == "image" else list(inputs), batch_size, progress)
        return get_task(self.task).decode(raw, self.labels)

    def to_pixels(self, images) -> np.ndarray:
        """uint8 (N, H, W, C) at the model's size and channel count from paths, PIL images or arrays."""
        if isinstance(images, np.ndarray) and images.ndim == 4:
            return images
        items = [(str(im), Path(im) if isinstance(im, str) else im) for im in images]
        pixels, kept, skipped = decode_images(items, (self.size, self.size), self.channels, progress=False)
        if skipped:
            raise ModelError(f"cannot read image {skipped[0][0]}: {skipped[0][1]}")
        return pixels


class TextModel(InferenceModel):
    """A fine-tuned PyTorch text classifier/regressor ready for inference on `device`."""

    def __init__(self, model: torch.nn.Module, tokenizer, folder: Path, device: str | torch.device = "cpu"):
        self.device = inference_device(device)
        self.model, self.tokenizer, self.folder = model.to(self.device), tokenizer, folder
        task = task_of_config(model.config)
        self.task = task.name
        self.labels = [model.config.id2label[i] for i in range(model.config.num_labels)] if task.has_classes else None
        self.reading = text_reading(model.config)

    def encode(self, texts: list[str]) -> dict[str, np.ndarray]:
        return encode_texts(self.tokenizer, texts, self.reading)

    def raw_logits(self, texts: list[str], batch_size: int = 64, progress=None) -> np.ndarray:
        return text_logits(self.model, self.tokenizer, texts, self.reading, self.device, batch_size, progress)


class ImageModel(InferenceModel):
    """A fine-tuned PyTorch image classifier: `predict(paths | PIL images | uint8 array)`."""

    modality = "image"

    def __init__(self, model: torch.nn.Module, folder: Path, preprocessor: dict, device: str | torch.device = "cpu"):
        self.device = inference_device(device)
        self.model, self.folder = model.to(self.device), folder
        self.size, self.channels = preprocessor["size"], preprocessor["channels"]
        self.mean, self.std = preprocessor["mean"], preprocessor["std"]
        self.task = "classification"
        self.labels = [model.config.id2label[i] for i in range(model.config.num_labels)]

    def raw_logits(self, images, batch_size: int = 256, progress=None) -> np.ndarray:
        return image_logits(self.model, self.to_pixels(images), self.mean, self.std, self.device, batch_size, progress)
