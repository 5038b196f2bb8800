"""Fine-tuning on labeled images: the image side of `fmloop finetune` (same runner as text).

The base is an image preset (random init), a pretraining run, or any local Hugging Face image
model folder; a fresh classification head is put on it. Training images are augmented on the fly
(`--train.augment_policy`, mixup/cutmix optional); normalisation statistics come from the
training images and are saved with the model (preprocessor_config.json).
"""

from __future__ import annotations

import logging

import numpy as np

from fmloop.core.errors import ConfigError, ModelError
from fmloop.core.runtime import Runtime
from fmloop.data.augment import ImageAugment, ImageBatches, channel_stats
from fmloop.data.images import limit_per_class, load_images
from fmloop.data.sampling import stratified_holdout
from fmloop.models.inference import image_logits
from fmloop.models.presets import model_dir_of
from fmloop.models.vision import (
    build_image_classifier,
    is_vision_preset,
    read_preprocessor,
    write_preprocessor,
)
from fmloop.tasks import get_task
from fmloop.train.supervised import TaskInputs, validation_budget

log = logging.getLogger(__name__)


def prepare_images(cfg, runtime: Runtime):
    t = cfg.train
    if not get_task(cfg.task).single_class:
        raise ConfigError(f"Image fine-tuning supports --task classification; got {cfg.task!r}.")
    shape = {}
    if cfg.model.name and not is_vision_preset(cfg.model.name):
        # A pretrained backbone fixes the input shape: decode the data to it.
        try:
            pre = read_preprocessor(model_dir_of(cfg.model.name))
            shape = {"size": (pre["size"], pre["size"]), "channels": pre["channels"]}
        except (ModelError, OSError, KeyError, ValueError):  # a foreign folder: keep the data's own shape
            shape = {}
    data = load_images(
        cfg.data.path,
        image_column=cfg.data.text_column,
        label_column=cfg.data.label_column,
        validation_fraction=cfg.data.validation_fraction,
        seed=t.seed,
        hold_out=False,
        **shape,
    )
    if t.limit_per_class:
        # The label budget covers validation too: a few-label run must not pick its checkpoint
        # with thousands of labeled validation images it pretends not to have.
        data.splits["train"] = limit_per_class(data.splits["train"], t.limit_per_class, t.seed)
        if "validation" in data.splits:
            share = validation_budget(t.limit_per_class, cfg.data.validation_fraction)
            data.splits["validation"] = limit_per_class(data.splits["validation"], share, t.seed)
    if "validation" not in data.splits:
        train = data.splits["train"]
        keep, held = stratified_holdout(train.labels, len(train), cfg.data.validation_fraction, t.seed)
        data.splits["train"], data.splits["validation"] = train.subset(keep), train.subset(held)
        data.description += f"; held out {len(held)} for validation (seeded, stratified)"
    train = data.splits["train"]
    h, w, channels = data.image_shape
    mean, std = channel_stats(train.pixels, seed=t.seed)
    counts = np.bincount(train.labels, minlength=len(data.labels))
    summary = {
        "rows": {name: len(s) for name, s in data.splits.items()},
        "image_shape": [h, w, channels],
        "class_balance": {data.labels[i]: int(c) for i, c in enumerate(counts)},
        "skipped_images": len(data.skipped),
        "skipped_examples": [f"{n} ({why})" for n, why in data.skipped[:10]],
        "image_mean": mean,
        "image_std": std,
    }
    log.info("data: %s", data.description)
    log.info(
        "images %dx%dx%d; rows %s; classes %s%s",
        h,
        w,
        channels,
        summary["rows"],
        summary["class_balance"],
        f"; skipped {len(data.skipped)} unreadable file(s)" if data.skipped else "",
    )
    model, parent = build_image_classifier(cfg.model.name, data.labels, h, channels, cfg.model.dropout)
    augment = ImageAugment(
        t.augment_policy, mean=tuple(mean), std=tuple(std), mixup=t.mixup, cutmix=t.cutmix, num_classes=len(data.labels)
    )

    def save_extra(folder):
        write_preprocessor(folder, h, channels, mean, std)

    def examples(split):
        s = data.splits[split]
        return {"images": s.pixels, "names": s.names}

    return TaskInputs(
        model=model,
        parents=[parent] if parent else [],
        labels=data.labels,
        y={name: s.labels for name, s in data.splits.items()},
        train_lengths=np.ones(len(train), np.int64),
        bucket=False,
        make_collate=lambda: ImageBatches(train, augment, t.seed, labeled=True),
        logits=lambda m, split: image_logits(m, data.splits[split].pixels, mean, std, runtime.device),
        save_extra=save_extra,
        summary=summary,
        description=data.description,
        fingerprint=data.fingerprint,
        examples=examples,
        resolved={"train": {"augment_policy": augment.policy}},
        # Small images are cheap per example: larger batches keep a CPU's cores busy.
        default_batch_size=lambda n: 128 if n >= 5000 else 64 if n >= 1000 else 32,
        # A preset starts from random weights and needs a from-scratch learning rate.
        default_lr=2e-3 if parent is None else None,
    )
