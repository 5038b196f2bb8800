"""Attention heads removed from BERT-family models, and loading such models back.

A head-pruned block keeps only some of its heads: the query/key/value projections lose those
heads' output rows and the attention output projection loses their input columns, so the
attention really does less work. transformers' BERT reshapes by head size at run time, so the
smaller layers run unchanged; but its config has one head count for every layer and derives the
head size from it, so `from_pretrained` cannot rebuild them. The kept head indices are therefore
stored in config.json (`fmloop_attention_heads`, one list per layer) and fmloop's loaders build
the full architecture, shrink it to those heads, then load the saved tensors strictly.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from fmloop.core.errors import ModelError
from fmloop.models.anatomy import find_layers

HEADS_KEY = "fmloop_attention_heads"


def attention_blocks(model: nn.Module) -> list[nn.Module]:
    """The `attention` module (with .self.query/key/value and .output.dense) of every block."""
    _, layers = find_layers(model)
    blocks = []
    for layer in layers:
        attention = getattr(layer, "attention", None)
        if (
            attention is None
            or not all(hasattr(getattr(attention, "self", None), n) for n in ("query", "key", "value"))
            or not hasattr(getattr(attention, "output", None), "dense")
        ):
            raise ModelError(
                f"Head pruning knows BERT-style attention (attention.self.query/key/value and "
                f"attention.output.dense); {type(layer).__name__} is not one."
            )
        blocks.append(attention)
    return blocks


def _head_size(attention: nn.Module) -> int:
    return attention.self.attention_head_size


@torch.no_grad()
def head_importance(model: nn.Module) -> list[torch.Tensor]:
    """Per block, one score per head: |W_value,h| * |W_out[:, h]| (Frobenius norms), the size of
    the path by which the head writes into the residual stream."""
    scores = []
    for attention in attention_blocks(model):
        d = _head_size(attention)
        value, out = attention.self.value.weight, attention.output.dense.weight
        heads = value.shape[0] // d
        scores.append(
            torch.stack([value[h * d : (h + 1) * d].norm() * out[:, h * d : (h + 1) * d].norm() for h in range(heads)])
        )
    return scores


def _rows(layer: nn.Linear, index: torch.Tensor, dim: int) -> nn.Linear:
    from transformers.pytorch_utils import prune_linear_layer

    return prune_linear_layer(layer, index.to(layer.weight.device), dim=dim)


def keep_heads(model: nn.Module, kept: list[list[int]]) -> None:
    """Shrink every block to the heads in `kept` (indices of the block's current heads) and record
    them in the config so the saved model can be rebuilt."""
    blocks = attention_blocks(model)
    if len(kept) != len(blocks):
        raise ModelError(f"{HEADS_KEY} lists {len(kept)} layers; the model has {len(blocks)}.")
    for attention, heads in zip(blocks, kept):
        if not heads:
            raise ModelError("Every layer must keep at least one attention head.")
        d = _head_size(attention)
        index = torch.cat([torch.arange(h * d, (h + 1) * d) for h in sorted(heads)])
        for name in ("query", "key", "value"):
            setattr(attention.self, name, _rows(getattr(attention.self, name), index, dim=0))
        attention.output.dense = _rows(attention.output.dense, index, dim=1)
        attention.self.num_attention_heads = len(heads)
        attention.self.all_head_size = len(heads) * d
    previous = getattr(model.config, HEADS_KEY, None)
    if previous:  # pruned again: map indices back to the original heads
        kept = [[old[h] for h in sorted(heads)] for old, heads in zip(previous, kept)]
    setattr(model.config, HEADS_KEY, [sorted(h) for h in kept])


def prune_heads(model: nn.Module, fraction: float) -> list[int]:
    """Remove the `fraction` least important heads of every block (at least one stays); returns
    the heads left per block."""
    kept = []
    for scores in head_importance(model):
        n = max(1, int(round(len(scores) * (1 - fraction))))
        kept.append(sorted(torch.topk(scores, n).indices.tolist()))
    keep_heads(model, kept)
    return [len(k) for k in kept]


def _saved_tensors(folder: Path) -> dict[str, torch.Tensor]:
    import json

    from safetensors.torch import load_file

    index = folder / "model.safetensors.index.json"
    files = (
        sorted(set(json.loads(index.read_text())["weight_map"].values())) if index.exists() else ["model.safetensors"]
    )
    tensors: dict[str, torch.Tensor] = {}
    for name in files:
        tensors.update(load_file(str(folder / name)))
    return tensors


def from_pretrained(auto_class, folder: str | Path, config, **kwargs) -> nn.Module:
    """`auto_class.from_pretrained(folder, config=config)`, also for head-pruned folders."""
    kept = getattr(config, HEADS_KEY, None)
    if not kept:
        return auto_class.from_pretrained(str(folder), config=config, **kwargs)
    setattr(config, HEADS_KEY, None)  # the full architecture first (model.config may be `config`)
    model = auto_class.from_config(config, **kwargs)
    keep_heads(model, kept)  # indices of the full model's heads; records them again
    setattr(config, HEADS_KEY, kept)
    missing, unexpected = model.load_state_dict(_saved_tensors(Path(folder)), strict=False)
    missing = [k for k in missing if not k.endswith("position_ids")]
    if missing or unexpected:
        raise ModelError(
            f"{folder}: the saved tensors do not fit the head-pruned architecture "
            f"(missing {missing[:3]}, unexpected {unexpected[:3]})."
        )
    return model
