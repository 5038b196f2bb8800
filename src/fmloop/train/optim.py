"""AdamW with no decay on biases and norms; linear warmup then cosine, linear or constant."""

from __future__ import annotations

import math
from typing import Callable

import torch
from torch import nn


def param_groups(
    model: nn.Module,
    weight_decay: float,
    lr: float | None = None,
    lr_scale: Callable[[str], float] | None = None,
    include_frozen: bool = False,
) -> list[dict]:
    """Parameter groups: matrices decay, biases/norm weights/1-D params do not (decaying a
    LayerNorm gain toward 0 only hurts). With `lr_scale`, parameters are further grouped by their
    learning-rate multiplier (layer-wise decay). Frozen parameters are left out unless
    `include_frozen` (for strategies that unfreeze them later; AdamW skips params without grads)."""
    groups: dict[tuple[bool, float], list] = {}
    for name, param in model.named_parameters():
        if not (param.requires_grad or include_frozen):
            continue
        decays = not (param.ndim < 2 or name.endswith(".bias") or "norm" in name.lower())
        scale = lr_scale(name) if lr_scale else 1.0
        groups.setdefault((decays, scale), []).append(param)
    out = []
    for (decays, scale), params in sorted(groups.items(), key=lambda kv: (not kv[0][0], kv[0][1])):
        group = {"params": params, "weight_decay": weight_decay if decays else 0.0}
        if lr is not None:
            group["lr"] = lr * scale
        out.append(group)
    return out


def build_optimizer(
    model: nn.Module,
    lr: float,
    weight_decay: float,
    betas: tuple[float, float],
    eps: float = 1e-8,
    lr_scale: Callable[[str], float] | None = None,
    include_frozen: bool = False,
) -> torch.optim.Optimizer:
    groups = param_groups(model, weight_decay, lr, lr_scale, include_frozen)
    # Fused AdamW: one kernel over all parameters; measured 4.8x faster than the foreach kernels
    # on a 2-core CPU for a 22M-parameter model (15 vs 74 ms a step), and the fast path on CUDA.
    return torch.optim.AdamW(groups, lr=lr, betas=betas, eps=eps, fused=True)


def lr_multiplier(step: int, warmup: int, total: int, schedule: str, min_ratio: float = 0.0) -> float:
    """Learning-rate multiplier at optimizer step `step` (0-based)."""
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    if schedule == "constant" or total <= warmup:
        return 1.0
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    if schedule == "linear":
        return min_ratio + (1 - min_ratio) * (1 - progress)
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def build_scheduler(
    optimizer: torch.optim.Optimizer, warmup: int, total: int, schedule: str, min_ratio: float = 0.0
) -> torch.optim.lr_scheduler.LambdaLR:
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_multiplier(step, warmup, total, schedule, min_ratio)
    )
