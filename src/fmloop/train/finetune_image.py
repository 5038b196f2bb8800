"""Fine-tuning on labeled images: the image side of `fmloop finetune` (same runner as text).

The base is an image preset (random init), a pretraining run, or any local Hugging Face image
model folder; a fresh classification head is put on it. Training images are augmented on the fly
(`--train.augment_policy`, mixup/cutmix optional); normalisation statistics come from the
training images and are saved with the model (preprocessor_config.json).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import torch

from fmloop.core.errors import ConfigError, ModelError
from fmloop.core.runtime import Runtime
from fmloop.data.augment import ImageAugment, batch_generator, channel_stats, normalize, to_float
from fmloop.data.images import ImageSplit, limit_per_class, load_images, stratified_split
from fmloop.models.vision import (
    build_image_classifier,
    read_preprocessor,
    write_preprocessor,
)
from fmloop.train.loop import to_device

log = logging.getLogger(__name__)


@dataclass
class ImageCollator:
    split: ImageSplit
    augment: ImageAugment
    seed: int

    def __call__(self, indices: np.ndarray, epoch: int) -> dict:
        g = batch_generator(self.seed, epoch, indices)
        labels = torch.from_numpy(self.split.labels[indices])
        pixels, targets = self.augment(torch.from_numpy(self.split.pixels[indices]), labels, g)
        return {"pixel_values": pixels, "labels": targets, "n_targets": len(indices), "n_tokens": len(indices)}


def image_logits(model, pixels: np.ndarray, mean, std, runtime: Runtime | None = None, batch_size: int = 256,
                 progress=None) -> np.ndarray:
    """Logits for uint8 images (N, H, W, C), in order."""
    device = runtime.device if runtime else next(model.parameters()).device
    model.eval()
    out = None
    with torch.no_grad():
        for start in range(0, len(pixels), batch_size):
            x = normalize(to_float(torch.from_numpy(pixels[start:start + batch_size])), mean, std)
            batch = to_device({"pixel_values": x}, device)
            if runtime is not None:
                with runtime.autocast():
                    logits = model(**batch).logits.float()
            else:
                logits = model(**batch).logits.float()
            if out is None:
                out = np.zeros((len(pixels), logits.shape[-1]), np.float32)
            out[start:start + len(x)] = logits.cpu().numpy()
            if progress is not None:
                progress(len(x))
    return out


def prepare_images(cfg, runtime: Runtime):
    from fmloop.train.finetune import TaskInputs, validation_budget

    t = cfg.train
    if cfg.task != "classification":
        raise ConfigError(f"Image fine-tuning supports --task classification; got {cfg.task!r}.")
    shape = {}
    if cfg.model.name and not _is_preset(cfg.model.name):
        # A pretrained backbone fixes the input shape: decode the data to it.
        try:
            pre = read_preprocessor(_model_folder(cfg.model.name))
            shape = {"size": (pre["size"], pre["size"]), "channels": pre["channels"]}
        except (ModelError, OSError, KeyError, ValueError):  # a foreign folder: keep the data's own shape
            shape = {}
    data = load_images(cfg.data.path, image_column=cfg.data.text_column, label_column=cfg.data.label_column,
                       validation_fraction=cfg.data.validation_fraction, seed=t.seed, hold_out=False, **shape)
    if t.limit_per_class:
        # The label budget covers validation too: a few-label run must not pick its checkpoint
        # with thousands of labeled validation images it pretends not to have.
        data.splits["train"] = limit_per_class(data.splits["train"], t.limit_per_class, t.seed)
        if "validation" in data.splits:
            share = validation_budget(t.limit_per_class, cfg.data.validation_fraction)
            data.splits["validation"] = limit_per_class(data.splits["validation"], share, t.seed)
    if "validation" not in data.splits:
        train = data.splits["train"]
        keep, held = stratified_split(train.labels, len(train), cfg.data.validation_fraction, t.seed)
        data.splits["train"], data.splits["validation"] = train.subset(keep), train.subset(held)
        data.description += f"; held out {len(held)} for validation (seeded, stratified)"
    train = data.splits["train"]
    h, w, channels = data.image_shape
    mean, std = channel_stats(train.pixels, seed=t.seed)
    counts = np.bincount(train.labels, minlength=len(data.labels))
    summary = {"rows": {name: len(s) for name, s in data.splits.items()}, "image_shape": [h, w, channels],
               "class_balance": {data.labels[i]: int(c) for i, c in enumerate(counts)},
               "skipped_images": len(data.skipped), "skipped_examples": [f"{n} ({why})" for n, why in data.skipped[:10]],
               "image_mean": mean, "image_std": std}
    log.info("data: %s", data.description)
    log.info("images %dx%dx%d; rows %s; classes %s%s", h, w, channels, summary["rows"], summary["class_balance"],
             f"; skipped {len(data.skipped)} unreadable file(s)" if data.skipped else "")
    model, parent = build_image_classifier(cfg.model.name, data.labels, h, channels, cfg.model.dropout)
    augment = ImageAugment(t.augment_policy, mean=tuple(mean),
                           std=tuple(std), mixup=t.mixup, cutmix=t.cutmix, num_classes=len(data.labels))

    def save_extra(folder):
        write_preprocessor(folder, h, channels, mean, std)

    def examples(split):
        s = data.splits[split]
        return {"images": s.pixels, "names": s.names}

    return TaskInputs(model=model, parent=parent, labels=data.labels,
                      y={name: s.labels for name, s in data.splits.items()},
                      train_lengths=np.ones(len(train), np.int64), bucket=False,
                      make_collate=lambda: ImageCollator(train, augment, t.seed),
                      logits=lambda m, split: image_logits(m, data.splits[split].pixels, mean, std, runtime),
                      save_extra=save_extra, summary=summary, description=data.description,
                      fingerprint=data.fingerprint, examples=examples,
                      resolved={"train": {"augment_policy": augment.policy}},
                      # Small images are cheap per example: larger batches keep a CPU's cores busy.
                      default_batch_size=lambda n: 128 if n >= 5000 else 64 if n >= 1000 else 32,
                      # A preset starts from random weights and needs a from-scratch learning rate.
                      default_lr=2e-3 if parent is None else None)


def _is_preset(name: str) -> bool:
    from fmloop.models.vision import is_vision_preset
    return is_vision_preset(name)


def _model_folder(name: str):
    from pathlib import Path
    folder = Path(name).expanduser()
    if (folder / "manifest.json").exists() and (folder / "model").is_dir():
        folder = folder / "model"
    return folder
