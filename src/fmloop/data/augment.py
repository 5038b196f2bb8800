"""Image augmentation on batched tensors (plain torch: one affine warp per batch, no per-image loops).

Policies:
  none         normalisation only (evaluation, prediction)
  light        random resized crop (scale 0.6-1) + horizontal flip: the usual fine-tuning recipe
  randaugment  light + two random operations per image at a fixed magnitude (RandAugment-style:
               rotate, shear, translate, brightness, contrast, solarize, posterize, autocontrast)
  simclr       the SimCLR view recipe: crop (scale 0.2-1), flip, strong colour jitter, random grey

Optional mixup / cutmix mix pairs of images and return soft targets (one probability row per
image), which the supervised loss accepts in place of class ids.

Inputs are uint8 (B, H, W, C) as stored by `fmloop.data.images`; outputs float (B, C, H, W)
normalised with the training set's per-channel mean and std, which are stored with the model.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F

if TYPE_CHECKING:
    from fmloop.data.images import ImageSplit

POLICIES = ("none", "light", "randaugment", "simclr")


def batch_generator(seed: int, epoch: int, indices: np.ndarray) -> torch.Generator:
    """The augmentation RNG of one batch: a function of (seed, epoch, batch), so a resumed or
    distributed run draws exactly what an uninterrupted one does."""
    state = np.random.SeedSequence([seed, epoch + 1, int(indices[0]), len(indices)]).generate_state(1)[0]
    return torch.Generator().manual_seed(int(state))


def channel_stats(pixels: np.ndarray, max_images: int = 20000, seed: int = 0) -> tuple[list[float], list[float]]:
    """Per-channel mean and std in [0, 1] units over (a sample of) the training images."""
    if len(pixels) > max_images:
        pixels = pixels[np.random.default_rng(seed).choice(len(pixels), max_images, replace=False)]
    x = pixels.reshape(-1, pixels.shape[-1]).astype(np.float64) / 255.0
    return [round(float(v), 6) for v in x.mean(0)], [round(float(max(v, 1e-3)), 6) for v in x.std(0)]


def to_float(pixels: torch.Tensor) -> torch.Tensor:
    """uint8 (B, H, W, C) -> float (B, C, H, W) in [0, 1]."""
    return pixels.permute(0, 3, 1, 2).float().div_(255.0)


def normalize(x: torch.Tensor, mean: list[float], std: list[float]) -> torch.Tensor:
    m = torch.tensor(mean, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    s = torch.tensor(std, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    return (x - m) / s


def _grey(x: torch.Tensor) -> torch.Tensor:
    if x.shape[1] == 1:
        return x
    return 0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3]


def _affine(x: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)


def _crop_flip_theta(
    b: int, g: torch.Generator, scale: tuple[float, float], flip: bool, ratio: tuple[float, float] = (3 / 4, 4 / 3)
) -> torch.Tensor:
    """Affine matrices (B, 2, 3) for random-resized-crop + optional flip, in normalised coordinates."""
    area = torch.empty(b).uniform_(*scale, generator=g)
    log_r = torch.empty(b).uniform_(math.log(ratio[0]), math.log(ratio[1]), generator=g)
    r = torch.exp(log_r)
    w = torch.sqrt(area * r).clamp(max=1.0)
    h = torch.sqrt(area / r).clamp(max=1.0)
    cx = (torch.rand(b, generator=g) * 2 - 1) * (1 - w)
    cy = (torch.rand(b, generator=g) * 2 - 1) * (1 - h)
    sx = w * (torch.where(torch.rand(b, generator=g) < 0.5, -1.0, 1.0) if flip else 1.0)
    theta = torch.zeros(b, 2, 3)
    theta[:, 0, 0], theta[:, 0, 2], theta[:, 1, 1], theta[:, 1, 2] = sx, cx, h, cy
    return theta


def _jitter(x: torch.Tensor, g: torch.Generator, strength: float, p_grey: float = 0.0) -> torch.Tensor:
    b = x.shape[0]

    def factor():
        return (1 + (torch.rand(b, 1, 1, 1, generator=g) * 2 - 1) * strength).to(x)

    x = x * factor()  # brightness
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    x = (x - mean) * factor() + mean  # contrast
    if x.shape[1] == 3:
        grey = _grey(x)
        x = (x - grey) * factor() + grey  # saturation
        if p_grey:
            pick = (torch.rand(b, 1, 1, 1, generator=g) < p_grey).to(x)
            x = pick * _grey(x).expand_as(x) + (1 - pick) * x
    return x.clamp_(0, 1)


def _rand_augment(x: torch.Tensor, g: torch.Generator, n_ops: int = 2, magnitude: float = 0.3) -> torch.Tensor:
    """Two of eight operations per image, each at `magnitude` (fraction of its range) with a random sign."""
    b = x.shape[0]
    ops = torch.stack([torch.randperm(8, generator=g)[:n_ops] for _ in range(b)])  # (B, n_ops)
    chosen = lambda k: (ops == k).any(1).to(x)  # (B,)
    sign = torch.where(torch.rand(b, generator=g) < 0.5, -1.0, 1.0).to(x)
    # Geometric operations, folded into one affine warp.
    angle = chosen(0) * sign * magnitude * math.radians(30)
    shear = chosen(1) * sign * magnitude * 0.3
    shift = chosen(2) * sign * magnitude * 0.45
    cos, sin = torch.cos(angle), torch.sin(angle)
    theta = torch.zeros(b, 2, 3, dtype=x.dtype)
    theta[:, 0, 0], theta[:, 0, 1], theta[:, 0, 2] = cos, -sin + shear, shift
    theta[:, 1, 0], theta[:, 1, 1] = sin, cos
    if bool((ops < 3).any()):
        x = _affine(x, theta)
    v = lambda k: chosen(k).view(b, 1, 1, 1)
    x = x * (1 + v(3) * sign.view(b, 1, 1, 1) * magnitude * 0.9)  # brightness
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    x = mean + (x - mean) * (1 + v(4) * sign.view(b, 1, 1, 1) * magnitude * 0.9)  # contrast
    x = x.clamp(0, 1)
    threshold = 1 - magnitude * 0.8
    x = torch.where((v(5) > 0) & (x > threshold), 1 - x, x)  # solarize
    bits = 8 - round(magnitude * 4)
    levels = 2**bits
    x = torch.where(v(6) > 0, torch.floor(x * (levels - 1) + 0.5) / (levels - 1), x)  # posterize
    lo = x.amin(dim=(1, 2, 3), keepdim=True)
    hi = x.amax(dim=(1, 2, 3), keepdim=True)
    x = torch.where(v(7) > 0, (x - lo) / (hi - lo).clamp(min=1e-3), x)  # autocontrast
    return x


@dataclass
class ImageAugment:
    policy: str = "light"
    mean: tuple[float, ...] = (0.5,)
    std: tuple[float, ...] = (0.25,)
    flip: bool = True
    mixup: float = 0.0  # Beta(alpha, alpha) mixing of image pairs; 0 = off
    cutmix: float = 0.0  # Beta(alpha, alpha) box pasting; 0 = off (with both set, half the batches each)
    num_classes: int = 0

    def __post_init__(self):
        if self.policy not in POLICIES:
            raise ValueError(f"augmentation policy must be one of {', '.join(POLICIES)}; got {self.policy!r}")

    def views(self, pixels: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        """One augmented, normalised view of each uint8 image (B, H, W, C) -> (B, C, H, W)."""
        x = to_float(pixels)
        b = x.shape[0]
        if self.policy in ("light", "randaugment"):
            x = _affine(x, _crop_flip_theta(b, g, (0.6, 1.0), self.flip).to(x))
            if self.policy == "randaugment":
                x = _rand_augment(x, g)
        elif self.policy == "simclr":
            x = _affine(x, _crop_flip_theta(b, g, (0.2, 1.0), self.flip).to(x))
            x = _jitter(x, g, 0.4, p_grey=0.2)
        return normalize(x, list(self.mean), list(self.std))

    def __call__(self, pixels: torch.Tensor, labels: torch.Tensor | None, g: torch.Generator):
        """(normalised images, targets): targets are class ids, or soft rows after mixup/cutmix."""
        x = self.views(pixels, g)
        if labels is None or not (self.mixup or self.cutmix) or self.num_classes < 2:
            return x, labels
        use_cutmix = self.cutmix and (not self.mixup or torch.rand(1, generator=g).item() < 0.5)
        alpha = self.cutmix if use_cutmix else self.mixup
        lam = float(np.random.default_rng(int(torch.randint(0, 2**31, (1,), generator=g))).beta(alpha, alpha))
        perm = torch.randperm(x.shape[0], generator=g)
        if use_cutmix:
            h, w = x.shape[2:]
            ch, cw = int(h * math.sqrt(1 - lam)), int(w * math.sqrt(1 - lam))
            cy, cx = int(torch.randint(0, h, (1,), generator=g)), int(torch.randint(0, w, (1,), generator=g))
            y0, y1, x0, x1 = max(cy - ch // 2, 0), min(cy + ch // 2, h), max(cx - cw // 2, 0), min(cx + cw // 2, w)
            x = x.clone()
            x[:, :, y0:y1, x0:x1] = x[perm, :, y0:y1, x0:x1]
            lam = 1 - (y1 - y0) * (x1 - x0) / (h * w)
        else:
            x = lam * x + (1 - lam) * x[perm]
        one_hot = F.one_hot(labels, self.num_classes).float()
        return x, lam * one_hot + (1 - lam) * one_hot[perm]


@dataclass
class ImageBatches:
    """Collate for the loop: (indices, epoch) -> an augmented batch of a split's uint8 images.

    Supervised (`labeled`): {"pixel_values", "labels"} (labels soft after mixup/cutmix); MAE:
    {"pixel_values"}; SimCLR (`two_views`): {"view1", "view2"}, two draws of the augmentation."""

    split: "ImageSplit"
    augment: ImageAugment
    seed: int
    labeled: bool = False
    two_views: bool = False

    def __call__(self, indices: np.ndarray, epoch: int) -> dict:
        g = batch_generator(self.seed, epoch, indices)
        pixels = torch.from_numpy(self.split.pixels[indices])
        batch = {"n_targets": len(indices), "n_tokens": len(indices)}
        if self.labeled:
            batch["pixel_values"], batch["labels"] = self.augment(
                pixels, torch.from_numpy(self.split.labels[indices]), g
            )
        elif self.two_views:
            batch["view1"], batch["view2"] = self.augment.views(pixels, g), self.augment.views(pixels, g)
        else:
            batch["pixel_values"] = self.augment.views(pixels, g)
        return batch
