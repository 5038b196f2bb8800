"""Named small language-model presets over transformers classes, or any local model folder.

Presets are sized to the tokenizer the run trained (vocab_size = len(tokenizer)), so a 8k-token
WordPiece vocabulary does not drag a 30k-row embedding along.

| preset      | family | layers | hidden | heads | ffn  | for          |
|-------------|--------|--------|--------|-------|------|--------------|
| bert-tiny   | BERT   | 2      | 128    | 2     | 512  | masked LM    |
| bert-mini   | BERT   | 4      | 256    | 4     | 1024 | masked LM    |
| bert-small  | BERT   | 4      | 512    | 8     | 2048 | masked LM    |
| gpt2-nano   | GPT-2  | 4      | 128    | 4     | 512  | causal LM    |
| gpt2-mini   | GPT-2  | 6      | 256    | 8     | 1024 | causal LM    |

The BERT sizes follow Turc et al. 2019 ("Well-Read Students Learn Better").

Dropout defaults to 0 for pretraining from scratch: single-pass pretraining does not overfit,
dropout then only slows learning (Geiping & Goldstein 2022, "Cramming"), and on a CPU its random
masks cost about 12% of the step time. `--model.dropout=0.1` restores the classic setting; the
fine-tuning stage sets its own.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    AutoModelForMaskedLM,
    BertConfig,
    BertForMaskedLM,
    GPT2Config,
    GPT2LMHeadModel,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from fmloop.core.catalog import Catalog
from fmloop.core.errors import ModelError
from fmloop.core.references import is_reference, resolve_reference
from fmloop.models.anatomy import set_dropout

log = logging.getLogger(__name__)


PRETRAIN_DROPOUT = 0.0


@dataclass(frozen=True)
class Preset:
    name: str
    objective: str  # the objective this architecture is built for
    tokenizer_kind: str  # tokenizer to train for it: wordpiece | bpe
    build: Callable[..., PreTrainedModel]  # (vocab_size, tokenizer, seq_len, dropout, overrides) -> model


PRESETS: Catalog[Preset] = Catalog("model preset")


def _bert(layers: int, hidden: int, heads: int):
    def build(
        vocab_size: int,
        tokenizer: PreTrainedTokenizerBase,
        seq_len: int,
        dropout: float | None,
        overrides: dict[str, Any],
    ) -> PreTrainedModel:
        kwargs = dict(
            vocab_size=vocab_size,
            hidden_size=hidden,
            num_hidden_layers=layers,
            num_attention_heads=heads,
            intermediate_size=4 * hidden,
            max_position_embeddings=max(512, seq_len),
            pad_token_id=tokenizer.pad_token_id or 0,
        )
        dropout = PRETRAIN_DROPOUT if dropout is None else dropout
        kwargs.update(hidden_dropout_prob=dropout, attention_probs_dropout_prob=dropout)
        kwargs.update(overrides)
        return BertForMaskedLM(BertConfig(**kwargs))

    return build


def _gpt2(layers: int, hidden: int, heads: int):
    def build(
        vocab_size: int,
        tokenizer: PreTrainedTokenizerBase,
        seq_len: int,
        dropout: float | None,
        overrides: dict[str, Any],
    ) -> PreTrainedModel:
        eos = tokenizer.eos_token_id
        kwargs = dict(
            vocab_size=vocab_size,
            n_embd=hidden,
            n_layer=layers,
            n_head=heads,
            n_positions=max(1024, seq_len),
            bos_token_id=eos,
            eos_token_id=eos,
            pad_token_id=eos,
        )
        dropout = PRETRAIN_DROPOUT if dropout is None else dropout
        kwargs.update(resid_pdrop=dropout, embd_pdrop=dropout, attn_pdrop=dropout)
        kwargs.update(overrides)
        return GPT2LMHeadModel(GPT2Config(**kwargs))

    return build


for _name, _layers, _hidden, _heads in [("bert-tiny", 2, 128, 2), ("bert-mini", 4, 256, 4), ("bert-small", 4, 512, 8)]:
    PRESETS.register(_name, help=f"BERT encoder, {_layers} layers x {_hidden} hidden, for masked LM")(
        Preset(_name, "mlm", "wordpiece", _bert(_layers, _hidden, _heads))
    )
for _name, _layers, _hidden, _heads in [("gpt2-nano", 4, 128, 4), ("gpt2-mini", 6, 256, 8)]:
    PRESETS.register(_name, help=f"GPT-2 decoder, {_layers} layers x {_hidden} hidden, for causal LM")(
        Preset(_name, "clm", "bpe", _gpt2(_layers, _hidden, _heads))
    )


def is_model_folder(name: str) -> bool:
    return is_reference(name) or Path(name).expanduser().is_dir()


def model_dir_of(name: str | Path) -> Path:
    """The model folder a name points at: an fmloop run dir means its `model/` inside, a registry
    reference the local copy of the version it names."""
    if is_reference(name):
        return resolve_reference(str(name))
    path = Path(name).expanduser()
    if (path / "manifest.json").exists() and (path / "model").is_dir():
        return path / "model"
    return path


def resolve_preset(name: str, objective: str) -> Preset:
    preset = PRESETS.get(name)
    if preset.objective != objective:
        fitting = [n for n in PRESETS.names() if PRESETS.get(n).objective == objective]
        raise ModelError(
            f"Preset {name!r} is built for --objective {preset.objective}, not {objective}. "
            f"Presets for {objective}: {', '.join(fitting)}."
        )
    return preset


def read_config(folder: Path, **fields):
    """The config of a local model folder (with `fields` set), refusing one that needs remote code."""
    try:
        config = AutoConfig.from_pretrained(str(folder), **fields)
    except Exception as err:
        raise ModelError(f"Could not read {folder}/config.json: {str(err).splitlines()[0]}") from None
    if getattr(config, "auto_map", None):
        raise ModelError(f"{folder} needs custom code (auto_map in config.json); fmloop never runs remote code.")
    return config


def load_pretrained(path: str, objective: str, dropout: float | None = None) -> PreTrainedModel:
    """A local Hugging Face model folder with the LM head the objective needs (a missing head is
    initialised fresh, e.g. for sentence-embedding checkpoints that ship only the encoder)."""
    folder = Path(path).expanduser()
    if not (folder / "config.json").exists():
        raise ModelError(f"{folder} is not a Hugging Face model folder: it has no config.json.")
    config = read_config(folder)
    set_dropout(config, dropout)
    auto = AutoModelForMaskedLM if objective == "mlm" else AutoModelForCausalLM
    if objective == "clm" and hasattr(config, "is_decoder") and config.model_type in ("bert", "roberta"):
        raise ModelError(f"{folder} holds a {config.model_type} encoder; use --objective mlm for it.")
    try:
        return auto.from_pretrained(str(folder), config=config)
    except ValueError as err:
        raise ModelError(
            f"{folder} ({config.model_type}) cannot be loaded for --objective {objective}: {str(err).splitlines()[0]}"
        ) from None
