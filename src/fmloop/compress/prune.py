"""`fmloop prune MODEL --sparsity S --method magnitude|structured`: remove weights, then recover.

magnitude   global magnitude pruning: the smallest |w| across every linear layer of the body
            (the task head is kept) are set to zero until a fraction S of them is zero; a short
            recovery fine-tune follows with the pruned weights held at zero after every step.
            The tensors keep their shape: dense CPU kernels do the same work on zeros, so this
            makes the model compressible (and a sparse-kernel target), not faster.
structured  feed-forward channels: in every transformer layer, the fraction S of intermediate
            channels with the smallest weight norms (in and out) is removed and both linear layers
            shrink, so `intermediate_size` in config.json drops and the model really runs faster
            (and still loads with plain transformers).
heads       attention heads: in every layer, the fraction S of heads with the smallest
            value-to-output weight norms is removed (query/key/value and the output projection
            shrink; models/heads.py). The kept heads are listed in config.json; fmloop's loaders
            rebuild the model from them (plain transformers cannot: its BERT config has one head
            count for all layers). Run `prune` twice for both heads and channels.

The recovery fine-tune is the fine-tuning runner on the model's labeled data (default: one
epoch), with the usual best-checkpoint selection on the validation split.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from torch import nn

from fmloop.compress.artifact import default_data
from fmloop.compress.config import PruneConfig
from fmloop.compress.onnx_export import load_parent
from fmloop.core.artifacts import RunDir, remove_output, require_new_folder
from fmloop.core.callbacks import Callback
from fmloop.core.errors import ConfigError, ModelError
from fmloop.core.runtime import running
from fmloop.models.anatomy import find_layers, head_prefixes
from fmloop.models.heads import attention_blocks, prune_heads
from fmloop.models.loading import load
from fmloop.models.pooled import MeanPoolClassifier
from fmloop.tasks import get_task
from fmloop.train.finetune_image import prepare_images
from fmloop.train.finetune_text import prepare_text
from fmloop.train.supervised import TaskInputs, run_supervised

log = logging.getLogger(__name__)


def body_linears(model: nn.Module) -> dict[str, nn.Linear]:
    """Linear layers of the body: everything but the task head (classifier, pooler)."""
    heads = tuple(head_prefixes(model))
    return {
        name: m
        for name, m in model.named_modules()
        if isinstance(m, nn.Linear) and not (heads and name.startswith(heads))
    }


@torch.no_grad()
def magnitude_masks(model: nn.Module, sparsity: float) -> dict[str, torch.Tensor]:
    """One global threshold over every body linear weight; returns the keep-masks (and applies them)."""
    layers = body_linears(model)
    if not layers:
        raise ModelError(f"{type(model).__name__} has no linear layers outside its head to prune.")
    magnitudes = torch.cat([m.weight.abs().flatten() for m in layers.values()])
    k = int(sparsity * magnitudes.numel())
    threshold = torch.kthvalue(magnitudes, max(k, 1)).values if k else magnitudes.min() - 1
    masks = {}
    for name, m in layers.items():
        masks[name] = (m.weight.abs() > threshold).to(m.weight.dtype)
        m.weight.mul_(masks[name])
    return masks


class KeepPruned(Callback):
    """Re-apply the masks after every optimizer step: the recovery fine-tune cannot regrow weights."""

    def __init__(self, model: nn.Module, masks: dict[str, torch.Tensor]):
        modules = dict(model.named_modules())
        self.pairs = [(modules[name], mask) for name, mask in masks.items()]

    @torch.no_grad()
    def on_step_end(self, loop, logs):
        for module, mask in self.pairs:
            module.weight.mul_(mask.to(module.weight.device))


def _ffn_pairs(model: nn.Module) -> list[tuple[nn.Module, str, str]]:
    """(layer, name of the up projection, name of the down projection) per transformer block."""
    _, layers = find_layers(model)
    pairs = []
    for layer in layers:
        names = dict(layer.named_modules())
        if "intermediate.dense" in names and "output.dense" in names:  # BERT family
            pairs.append((layer, "intermediate.dense", "output.dense"))
        else:
            raise ModelError(
                f"Structured pruning knows BERT-style blocks (intermediate.dense / output.dense); "
                f"{type(layer).__name__} is not one. Use --method magnitude."
            )
    return pairs


def _set(module: nn.Module, dotted: str, value: nn.Module) -> None:
    parent, _, name = dotted.rpartition(".")
    setattr(module.get_submodule(parent) if parent else module, name, value)


@torch.no_grad()
def prune_ffn_channels(model: nn.Module, sparsity: float) -> int:
    """Drop the weakest feed-forward channels in every block; returns the new intermediate size."""
    pairs = _ffn_pairs(model)
    size = pairs[0][0].get_submodule(pairs[0][1]).out_features
    keep = max(1, int(round(size * (1 - sparsity))))
    for layer, up_name, down_name in pairs:
        up, down = layer.get_submodule(up_name), layer.get_submodule(down_name)
        score = up.weight.norm(dim=1) * down.weight.norm(dim=0)  # (I,)
        kept = torch.sort(torch.topk(score, keep).indices).values
        new_up = nn.Linear(up.in_features, keep, bias=up.bias is not None).to(up.weight.device, up.weight.dtype)
        new_up.weight.copy_(up.weight[kept])
        if up.bias is not None:
            new_up.bias.copy_(up.bias[kept])
        new_down = nn.Linear(keep, down.out_features, bias=down.bias is not None).to(
            down.weight.device, down.weight.dtype
        )
        new_down.weight.copy_(down.weight[:, kept])
        if down.bias is not None:
            new_down.bias.copy_(down.bias)
        _set(layer, up_name, new_up)
        _set(layer, down_name, new_down)
    model.config.intermediate_size = keep
    return keep


def sparsity_of(model: nn.Module) -> float:
    weights = [m.weight for m in body_linears(model).values()]
    return float(sum(int((w == 0).sum()) for w in weights) / max(1, sum(w.numel() for w in weights)))


def prepare_pruned(cfg: PruneConfig, runtime, parent, report: dict) -> tuple[TaskInputs, dict]:
    """The parent pruned, as the recovery fine-tune's starting model; (inputs, magnitude masks)."""
    inputs = (
        prepare_images(cfg, runtime)
        if parent.modality == "image"
        else prepare_text(cfg, runtime, labels=parent.labels, keep_validation=True)
    )
    model = parent.model.to(runtime.device).train()
    task = get_task(cfg.task)
    metric = task.headline[0]
    y = inputs.y["validation"]
    n_before = sum(p.numel() for p in model.parameters())
    report["parent_validation"] = task.metrics(y, inputs.logits(model, "validation"), inputs.labels)[metric]
    masks: dict = {}
    if cfg.prune.method == "magnitude":
        masks = magnitude_masks(model, cfg.prune.sparsity)
        report["sparsity"] = sparsity_of(model)
    elif cfg.prune.method == "heads":
        report["attention_heads"] = prune_heads(model, cfg.prune.sparsity)
    else:
        report["intermediate_size"] = prune_ffn_channels(model, cfg.prune.sparsity)
    report["parameters_before"], report["parameters_after"] = n_before, sum(p.numel() for p in model.parameters())
    report["pruned_validation_before_recovery"] = task.metrics(y, inputs.logits(model, "validation"), inputs.labels)[
        metric
    ]
    log.info(
        "pruned (%s): %s %.4f -> %.4f before recovery",
        cfg.prune.method,
        metric,
        report["parent_validation"],
        report["pruned_validation_before_recovery"],
    )
    inputs.model = model
    if isinstance(model, MeanPoolClassifier):
        inputs.pooling = "mean"
        inputs.resolved.setdefault("model", {})["pooling"] = "mean"
    inputs.extra_manifest["prune"] = cfg.prune.model_dump()
    return inputs, masks


def run(cfg: PruneConfig, out: str | Path, *, overwrite: bool = False) -> RunDir:
    """Prune the fine-tuned model `cfg.model.name`, then fine-tune it briefly to recover."""
    if cfg.model.name is None:
        raise ConfigError("The 'model.name' parameter of prune is required: pass the fine-tuned model to prune.")
    if overwrite:
        remove_output(out)
    require_new_folder(out)
    parent = load_parent(cfg.model.name)
    train = cfg.train
    if train.epochs is None and train.max_steps is None:
        train = train.model_copy(update={"epochs": 1})
    cfg = cfg.model_copy(
        update={
            "task": parent.task,
            "train": train,
            "data": cfg.data.model_copy(update={"path": default_data(cfg.model.name, cfg.data.path)}),
            "model": cfg.model.model_copy(update={"name": str(parent.folder)}),
        }
    )
    if cfg.prune.method == "structured":
        _ffn_pairs(parent.model)  # fail before any work on architectures it does not know
    elif cfg.prune.method == "heads":
        attention_blocks(parent.model)
    report: dict = {"method": cfg.prune.method, "target_sparsity": cfg.prune.sparsity}
    with running(cfg.train) as runtime:
        inputs, masks = prepare_pruned(cfg, runtime, parent, report)
        keep = [KeepPruned(inputs.model, masks)] if masks else []
        run_dir = run_supervised(
            cfg, runtime, RunDir(out), inputs, kind="prune", callbacks=keep, parents=[str(parent.folder)]
        )
    if masks and run_dir.model_dir.exists():
        report["sparsity_saved"] = sparsity_of(load(run_dir.path).model)
    run_dir.write_manifest(pruning=report)
    return run_dir
