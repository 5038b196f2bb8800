"""Where the parts of a transformer are: its block list, its task head, and the depth of every
parameter (0 = embeddings, i = block i, counted from 1, L + 1 = the head). Transfer strategies,
pruning and head surgery all read a model through these."""

from __future__ import annotations

from typing import Callable

from torch import nn

from fmloop.core.errors import ModelError

# Every dropout probability a transformers config may carry, across BERT, GPT-2, ViT and the rest.
DROPOUT_KEYS = (
    "hidden_dropout_prob",
    "attention_probs_dropout_prob",
    "resid_pdrop",
    "embd_pdrop",
    "attn_pdrop",
    "dropout",
    "attention_dropout",
    "classifier_dropout",
)


def set_dropout(config, p: float | None) -> None:
    """Set every dropout probability of a transformers config to `p` (None: leave them as they are)."""
    if p is None:
        return
    for key in DROPOUT_KEYS:
        if hasattr(config, key):
            setattr(config, key, p)


def find_layers(model: nn.Module) -> tuple[str, nn.ModuleList]:
    """The transformer block list: the longest ModuleList (BERT encoder.layer, GPT-2 h, ...)."""
    best: tuple[str, nn.ModuleList] | None = None
    for name, module in model.named_modules():
        if isinstance(module, nn.ModuleList) and len(module) > 0 and (best is None or len(module) > len(best[1])):
            best = (name, module)
    if best is None:
        raise ModelError(
            f"Cannot find the transformer layers of {type(model).__name__} to apply a layer-wise strategy."
        )
    return best


def head_prefixes(model: nn.Module) -> list[str]:
    """Top-level modules outside the base model (the task head), plus a pooler inside it."""
    base = getattr(model, "base_model_prefix", "")
    has_params = lambda module: any(True for _ in module.parameters())
    prefixes = [name for name, child in model.named_children() if name != base and has_params(child)]
    prefixes += [
        f"{base}.{name}"
        for name, child in getattr(model, base, nn.Module()).named_children()
        if "pool" in name and has_params(child)
    ]
    return prefixes


def depth_of(model: nn.Module) -> Callable[[str], int]:
    layers_name, layers = find_layers(model)
    n_layers = len(layers)
    heads = head_prefixes(model)
    final_norms = ("ln_f", "final_layer_norm", "norm")

    def depth(param_name: str) -> int:
        if any(param_name == h or param_name.startswith(h + ".") for h in heads):
            return n_layers + 1
        if param_name.startswith(layers_name + "."):
            return int(param_name[len(layers_name) + 1 :].split(".")[0]) + 1
        if any(f".{n}." in f".{param_name}" for n in final_norms):
            return n_layers  # a final norm belongs with the top layer
        return 0

    return depth
