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
from typing import ClassVar, Literal

import torch
from pydantic import Field
from torch import nn

from fmloop.core.artifacts import RunDir
from fmloop.core.config import StageConfig
from fmloop.core.errors import ModelError
from fmloop.core.runtime import running
from fmloop.models.heads import attention_blocks, prune_heads
from fmloop.train.callbacks import Callback
from fmloop.train.finetune import FinetuneConfig, StageHooks, TaskInputs, _finetune, _prepare_text

log = logging.getLogger(__name__)


class PruneSettings(StageConfig):
    method: Literal["magnitude", "structured", "heads"] = "magnitude"
    sparsity: float = Field(0.5, gt=0, lt=1, description="fraction of body linear weights (or FFN channels, or "
                                                         "attention heads per layer) removed")


class PruneConfig(FinetuneConfig):
    stage: ClassVar[str] = "prune"
    prune: PruneSettings = Field(default_factory=PruneSettings)


def body_linears(model: nn.Module) -> dict[str, nn.Linear]:
    """Linear layers of the body: everything but the task head (classifier, pooler)."""
    from fmloop.adapt.strategies import head_prefixes

    heads = tuple(head_prefixes(model))
    return {name: m for name, m in model.named_modules()
            if isinstance(m, nn.Linear) and not (heads and name.startswith(heads))}


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
    from fmloop.adapt.strategies import find_layers

    _, layers = find_layers(model)
    pairs = []
    for layer in layers:
        names = dict(layer.named_modules())
        if "intermediate.dense" in names and "output.dense" in names:      # BERT family
            pairs.append((layer, "intermediate.dense", "output.dense"))
        else:
            raise ModelError(f"Structured pruning knows BERT-style blocks (intermediate.dense / output.dense); "
                             f"{type(layer).__name__} is not one. Use --method magnitude.")
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
        score = up.weight.norm(dim=1) * down.weight.norm(dim=0)                  # (I,)
        kept = torch.sort(torch.topk(score, keep).indices).values
        new_up = nn.Linear(up.in_features, keep, bias=up.bias is not None).to(up.weight.device, up.weight.dtype)
        new_up.weight.copy_(up.weight[kept])
        if up.bias is not None:
            new_up.bias.copy_(up.bias[kept])
        new_down = nn.Linear(keep, down.out_features, bias=down.bias is not None).to(down.weight.device, down.weight.dtype)
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


def prune(cfg: PruneConfig, parent_path: str, out: str | Path) -> RunDir:
    from fmloop.compress.artifact import default_data
    from fmloop.compress.onnx_export import load_parent
    from fmloop.evaluate.metrics import HEADLINE, task_metrics

    parent = load_parent(parent_path)
    cfg.data.path = default_data(parent_path, cfg.data.path)
    cfg.model.name = str(parent.folder)
    cfg.task = parent.task
    if cfg.prune.method == "structured":
        _ffn_pairs(parent.model)      # fail before any work on architectures it does not know
    elif cfg.prune.method == "heads":
        attention_blocks(parent.model)
    if cfg.train.epochs is None and cfg.train.max_steps is None:
        cfg.train.epochs = 1
    run = RunDir(out)
    if run.path.exists() and any(run.path.iterdir()):
        run.create()  # raises: never overwrite a run
    report: dict = {"method": cfg.prune.method, "target_sparsity": cfg.prune.sparsity}
    masks: dict = {}
    n_before = sum(p.numel() for p in parent.model.parameters())

    def prepare(cfg: PruneConfig, runtime) -> TaskInputs:
        if parent.modality == "image":
            from fmloop.train.finetune_image import prepare_images
            inputs = prepare_images(cfg, runtime)
        else:
            inputs = _prepare_text(cfg, runtime, labels=parent.labels)
        model = parent.model.to(runtime.device).train()
        metric = HEADLINE[cfg.task][0]
        y = inputs.y["validation"]
        report["parent_validation"] = task_metrics(cfg.task, y, inputs.logits(model, "validation"), inputs.labels)[metric]
        if cfg.prune.method == "magnitude":
            masks.update(magnitude_masks(model, cfg.prune.sparsity))
            report["sparsity"] = sparsity_of(model)
        elif cfg.prune.method == "heads":
            report["attention_heads"] = prune_heads(model, cfg.prune.sparsity)
        else:
            report["intermediate_size"] = prune_ffn_channels(model, cfg.prune.sparsity)
        report["parameters_before"], report["parameters_after"] = n_before, sum(p.numel() for p in model.parameters())
        report["pruned_validation_before_recovery"] = task_metrics(cfg.task, y, inputs.logits(model, "validation"),
                                                                   inputs.labels)[metric]
        log.info("pruned (%s): %s %.4f -> %.4f before recovery", cfg.prune.method, metric,
                 report["parent_validation"], report["pruned_validation_before_recovery"])
        inputs.model = model
        from fmloop.models.pooled import MeanPoolClassifier
        if isinstance(model, MeanPoolClassifier):
            inputs.pooling = "mean"
            inputs.resolved.setdefault("model", {})["pooling"] = "mean"
        return inputs

    class _Masks(Callback):   # masks exist only once prepare() ran, after the hooks were built
        def on_train_start(self, loop):
            self.keep = KeepPruned(loop.model, masks) if masks else None

        def on_step_end(self, loop, logs):
            if self.keep:
                self.keep.on_step_end(loop, logs)

    hooks = StageHooks(kind="prune", prepare=prepare, callbacks=[_Masks()], parent=str(parent.folder),
                       manifest={"prune": cfg.prune.model_dump()})
    with running(cfg.train) as runtime:
        result = _finetune(cfg, runtime, run, hooks)
    if masks:
        from fmloop.models.loading import load
        report["sparsity_saved"] = sparsity_of(load(run.path).model)
    run.write_manifest(pruning=report)
    return result
