"""Transfer strategies: which parameters train and at what learning rate.

  full           every parameter, one learning rate
  linear-probe   the base frozen; only the head (pooler + classifier / score) trains
  freeze:K       embeddings and the bottom K transformer layers frozen
  gradual        ULMFiT gradual unfreezing: the head first, then one more layer from the top at
                 regular intervals, every layer training by the middle of the run
  llrd           layer-wise learning-rate decay: lr x decay^(depth from the top); the head gets lr
  lora           low-rank adapters (peft) on every linear layer of the body (or only the attention
                 projections); head trained and saved with them

Each parameter gets a depth: 0 = embeddings, i = transformer layer i (1-based), L+1 = the head.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from torch import nn

from fmloop.adapt import LOOP_STRATEGY_NAMES, LOOP_STRATEGY_PATTERN
from fmloop.core.callbacks import Callback
from fmloop.core.errors import ConfigError
from fmloop.models.anatomy import depth_of, find_layers, head_prefixes
from fmloop.models.pooled import MeanPoolClassifier


@dataclass
class Plan:
    model: nn.Module
    lr_scale: Callable[[str], float] = lambda name: 1.0
    include_frozen: bool = False  # optimizer must hold params that unfreeze later
    callbacks: list[Callback] = field(default_factory=list)
    description: str = ""
    settings: dict = field(default_factory=dict)  # defaults the strategy chose, for the run's config


def default_lora_rank(width: int | None) -> int:
    """32 (measured on MiniLM, docs/benchmarks.md), but still low-rank on narrow models: at most width / 8."""
    return 32 if not width else max(1, min(32, width // 8))


def apply_strategy(
    model: nn.Module,
    strategy: str,
    *,
    total_steps: int,
    llrd_decay: float = 0.8,
    lora_r: int | None = None,
    lora_alpha: int | None = None,
    lora_dropout: float = 0.1,
    lora_targets: str = "all-linear",
    dora: bool = False,
) -> Plan:
    if not LOOP_STRATEGY_PATTERN.match(strategy):
        raise ConfigError(
            f"The 'strategy' parameter must be one of {LOOP_STRATEGY_NAMES} here. Got {strategy!r} instead."
        )
    if strategy == "lora":
        return _lora(model, lora_r, lora_alpha, lora_dropout, lora_targets, dora)
    depth = depth_of(model)
    n_layers = len(find_layers(model)[1])
    if strategy == "full":
        return Plan(model, description="all parameters train")
    if strategy == "linear-probe":
        _freeze(model, lambda name: depth(name) <= n_layers)
        return Plan(model, description="base frozen; head trains")
    if strategy.startswith("freeze:"):
        k = int(strategy.split(":")[1])
        if k > n_layers:
            raise ConfigError(
                f"The 'strategy' parameter of finetune freezes {k} layers but the model has {n_layers}. "
                f"Use freeze:0 to freeze:{n_layers}."
            )
        _freeze(model, lambda name: depth(name) <= k)
        return Plan(model, description=f"embeddings and bottom {k} of {n_layers} layers frozen")
    if strategy == "llrd":
        return Plan(
            model,
            lr_scale=lambda name: llrd_decay ** (n_layers + 1 - depth(name)),
            description=f"layer-wise lr decay {llrd_decay} per layer from the top",
        )
    # gradual
    _freeze(model, lambda name: depth(name) <= n_layers)
    interval = max(1, total_steps // (2 * (n_layers + 1)))
    return Plan(
        model,
        include_frozen=True,
        callbacks=[GradualUnfreezing(model, depth, n_layers, interval)],
        description=f"head first, then one layer from the top every {interval} steps",
    )


def scale_head_lr(plan: Plan, model: nn.Module, scale: float) -> None:
    """Train the task head (and a pooler) at `scale` times the rate of the rest: a new head starts
    from nothing while a pretrained body only needs nudging. Names are matched inside wrappers
    (peft's `base_model.model.classifier.modules_to_save...`)."""
    if scale == 1:
        return
    heads = head_prefixes(model)
    inner = plan.lr_scale
    in_head = lambda name: any(f".{h}." in f".{name}" for h in heads)  # noqa: E731
    plan.lr_scale = lambda name: inner(name) * (scale if in_head(name) else 1.0)
    plan.description += f"; head lr x{scale:g}"


def freeze_input_embeddings(model: nn.Module) -> None:
    """Stop training the token-embedding matrix (the vocabulary x hidden lookup table)."""
    model.get_input_embeddings().weight.requires_grad_(False)


def _freeze(model: nn.Module, frozen: Callable[[str], bool]) -> None:
    for name, param in model.named_parameters():
        param.requires_grad_(not frozen(name))


class GradualUnfreezing(Callback):
    def __init__(self, model: nn.Module, depth: Callable[[str], int], n_layers: int, interval: int):
        self.model, self.depth, self.n_layers, self.interval = model, depth, n_layers, interval

    def _apply(self, step: int) -> None:
        # After k intervals the top k depths below the head train (depth L, L-1, ...; 0 = embeddings last).
        lowest = self.n_layers + 1 - step // self.interval
        for name, param in self.model.named_parameters():
            param.requires_grad_(self.depth(name) >= lowest)

    def on_train_start(self, loop):
        self._apply(loop.state.step)  # also right after a resume

    def on_step_end(self, loop, logs):
        if loop.state.step % self.interval == 0:
            self._apply(loop.state.step)


def _lora(
    model: nn.Module, r: int | None, alpha: int | None, dropout: float, target_spec: str, dora: bool = False
) -> Plan:
    try:
        from peft import LoraConfig, TaskType, get_peft_model
        from peft.utils import TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING as TARGETS
    except ImportError:
        raise ConfigError("The lora strategy needs peft: pip install peft") from None
    kind = "DoRA" if dora else "LoRA"
    r = r or default_lora_rank(getattr(model.config, "hidden_size", None))
    alpha = alpha or 2 * r
    settings = {"lora_r": r, "lora_alpha": alpha}
    model_type = getattr(model.config, "model_type", "")
    if target_spec == "attention":
        targets = TARGETS.get(model_type) or "all-linear"
    elif target_spec == "all-linear":
        targets = "all-linear"  # every linear layer of the body (peft leaves the output head out)
    else:
        targets = [name.strip() for name in target_spec.split(",") if name.strip()]

    if isinstance(model, MeanPoolClassifier):
        # Adapters go on the body only; the head is an ordinary trainable module saved beside them.
        model.base = get_peft_model(
            model.base, LoraConfig(r=r, lora_alpha=alpha, lora_dropout=dropout, target_modules=targets, use_dora=dora)
        )
        return Plan(
            model,
            description=f"{kind} r={r} alpha={alpha} on {targets}; the mean-pooling head trains in full",
            settings=settings,
        )
    # The head (and a pooler, which BERT-style heads read) must be saved with the adapter:
    # otherwise it is re-initialised at load time and the reloaded model predicts differently.
    to_save = sorted({p.split(".")[-1] for p in head_prefixes(model)})
    if getattr(model, "main_input_name", "") == "pixel_values":
        task_type = None
    elif type(model).__name__.endswith("ForTokenClassification"):
        task_type = TaskType.TOKEN_CLS
    else:
        task_type = TaskType.SEQ_CLS
    config = LoraConfig(
        task_type=task_type,
        r=r,
        lora_alpha=alpha,
        lora_dropout=dropout,
        target_modules=targets,
        modules_to_save=to_save,
        use_dora=dora,
    )
    peft_model = get_peft_model(model, config)
    return Plan(
        peft_model,
        description=f"{kind} r={r} alpha={alpha} on {targets}; trained and saved: {', '.join(to_save)}",
        settings=settings,
    )
