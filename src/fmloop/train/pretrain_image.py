"""Image pretraining: unlabeled images -> a backbone, through the same runner as text.

    fmloop pretrain --modality image --objective simclr|mae --data IMAGES --out RUN

The final RUN/model is the backbone alone (a ViTModel / ConvNeXt / fmloop ConvNet folder with
preprocessor_config.json): the MAE decoder and the SimCLR projection head are training devices
and stay in the checkpoints.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from transformers import AutoConfig, AutoModel

from fmloop.core.artifacts import RunDir
from fmloop.core.runtime import Runtime
from fmloop.data.augment import ImageAugment, ImageBatches, channel_stats
from fmloop.data.images import load_images
from fmloop.models.presets import model_dir_of
from fmloop.models.vision import (
    check_input_shape,
    is_vision_preset,
    preset_config,
    write_preprocessor,
)
from fmloop.train.loop import BatchPlan
from fmloop.train.objectives.image import MaskedAutoencoder, SimCLR, mae_model

log = logging.getLogger(__name__)


def _backbone(name: str, size: int, channels: int):
    """(backbone model, parent folder or None)."""

    def no_pooler(config) -> dict:
        # ViT's pooler is a dense layer on the CLS token that the classification head never reads.
        return {"add_pooling_layer": False} if config.model_type == "vit" else {}

    if is_vision_preset(name):
        config = preset_config(name, size, channels)
        return AutoModel.from_config(config, **no_pooler(config)), None
    folder = model_dir_of(name)
    config = AutoConfig.from_pretrained(str(folder))
    check_input_shape(config, size, channels, str(folder))
    return AutoModel.from_pretrained(str(folder), **no_pooler(config)), str(folder.resolve())


def prepare_images(cfg, runtime: Runtime, run: RunDir, resuming: bool, manifest: dict | None, start_run):
    from fmloop.train.pretrain import Prepared

    t = cfg.train
    data = load_images(
        cfg.data.path,
        need_labels=False,
        image_column=cfg.data.column,
        validation_fraction=cfg.data.validation_fraction,
        seed=t.seed,
        hold_out=True,
    )
    start_run(run, runtime, resuming, manifest, data.fingerprint, cfg.data.path)
    train = data.splits["train"]
    held = data.splits.get("validation", data.splits.get("test", train))
    if cfg.data.max_docs:
        train = train.subset(np.arange(min(len(train), cfg.data.max_docs)))
    h, w, channels = data.image_shape
    if h != w:
        log.info(
            "images are %dx%d; models are built for square inputs of %d px (resize the data for other shapes)", h, w, h
        )
    mean, std = channel_stats(train.pixels, seed=t.seed)
    log.info("data: %s; channel mean %s std %s", data.description, mean, std)

    backbone, parent = _backbone(cfg.model.name, h, channels)
    if cfg.objective == "mae":
        mae = mae_model(backbone.config)
        if parent is not None:  # continue from a ViT folder: its encoder weights go into the MAE
            mae.vit.load_state_dict(backbone.state_dict(), strict=False)
        objective, model, two_views = MaskedAutoencoder(mae), mae, False
        policy = "light"
    else:
        objective = SimCLR(backbone)
        model, two_views, policy = objective, True, "simclr"
    augment = ImageAugment(policy, mean=tuple(mean), std=tuple(std), flip=True)
    eval_rows = held.subset(np.arange(min(len(held), t.eval_batches * t.batch_size)))
    eval_collate = ImageBatches(eval_rows, augment, t.seed, two_views=two_views)
    eval_bs = max(2, t.batch_size // t.grad_accum)
    eval_batches = [
        eval_collate(np.arange(i, min(i + eval_bs, len(eval_rows))), -1)
        for i in range(0, len(eval_rows), eval_bs)
        if min(i + eval_bs, len(eval_rows)) - i >= 2
    ]

    def save_model(tmp: Path) -> None:
        export = objective.export_backbone()
        export.save_pretrained(tmp, safe_serialization=True)
        write_preprocessor(tmp, h, channels, mean, std)

    return Prepared(
        model=model,
        objective=objective,
        train=BatchPlan(
            np.ones(len(train), np.int64),
            t.batch_size,
            ImageBatches(train, augment, t.seed, two_views=two_views),
            t.seed,
            bucket=False,
        ),
        eval_batches=eval_batches,
        parent=parent,
        save_model=save_model,
        unit="img",
        manifest=dict(
            data=data.description,
            data_fingerprint=data.fingerprint,
            skipped_images=len(data.skipped),
            image_shape=[h, w, channels],
            image_mean=mean,
            image_std=std,
        ),
        summary=f"{h}x{w}x{channels} images, {len(train)} for training, "
        f"{'two views each' if two_views else f'{mae.config.mask_ratio:.0%} of patches masked'}",
    )
