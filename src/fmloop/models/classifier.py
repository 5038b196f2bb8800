"""Task models: a sequence-classification / regression head on any Hugging Face base.

By default the head is transformers' own `AutoModelForSequenceClassification` (CLS pooler for
BERT-like encoders, last non-padding token for GPT-like decoders), so a fine-tuned folder loads
anywhere with plain transformers and carries its label names in config.json (`id2label` /
`label2id`). Sentence-embedding checkpoints get a mean-pooling head instead (models/pooled.py),
because that is how they were trained to be read.
"""

from __future__ import annotations

from pathlib import Path

from transformers import AutoConfig, AutoModel, AutoModelForSequenceClassification, PreTrainedModel

from fmloop.core.errors import ModelError
from fmloop.models.heads import from_pretrained
from fmloop.models.pooled import MeanPoolClassifier, is_sentence_transformer
from fmloop.models.presets import PRESETS, is_model_folder, model_dir_of

PROBLEM_TYPES = {"classification": "single_label_classification", "multilabel": "multi_label_classification",
                 "regression": "regression"}
DROPOUT_KEYS = ("hidden_dropout_prob", "attention_probs_dropout_prob", "resid_pdrop", "embd_pdrop", "attn_pdrop",
                "dropout", "attention_dropout", "classifier_dropout")


def resolve_model_folder(name: str) -> Path:
    """A model folder, or an fmloop run dir (its `model/` inside)."""
    path = model_dir_of(name)
    if not (path / "config.json").exists():
        raise ModelError(f"{name} is not a Hugging Face model folder (no config.json) nor an fmloop run dir.")
    return path


def task_config_fields(task: str, labels: list[str] | None) -> dict:
    fields = {"problem_type": PROBLEM_TYPES[task], "num_labels": 1 if task == "regression" else len(labels)}
    if task != "regression":
        fields["id2label"] = dict(enumerate(labels))
        fields["label2id"] = {name: i for i, name in enumerate(labels)}
    return fields


def choose_pooling(name: str, pooling: str) -> str:
    """'auto' -> 'mean' for sentence-embedding checkpoints, else the architecture's own ('native')."""
    if pooling != "auto":
        return pooling
    if is_model_folder(name) and is_sentence_transformer(resolve_model_folder(name)):
        return "mean"
    return "native"


def build_task_model(name: str, task: str, labels: list[str] | None, tokenizer, dropout: float | None = None,
                     seq_len: int = 512, pooling: str = "auto") -> tuple[PreTrainedModel, str | None]:
    """(model, parent folder) for a folder/run dir (pretrained body, new head) or a preset (random init).

    pooling: 'native' (CLS pooler / last token, transformers' own head), 'mean' (masked mean of
    token states), or 'auto'."""
    fields = task_config_fields(task, labels)
    pooling = choose_pooling(name, pooling)
    if is_model_folder(name):
        folder = resolve_model_folder(name)
        try:
            config = AutoConfig.from_pretrained(str(folder), **fields)
        except Exception as err:
            raise ModelError(f"Could not read {folder}/config.json: {str(err).splitlines()[0]}") from None
        if getattr(config, "auto_map", None):
            raise ModelError(f"{folder} needs custom code (auto_map in config.json); fmloop never runs remote code.")
        _set_dropout(config, dropout)
        if config.pad_token_id is None:
            config.pad_token_id = tokenizer.pad_token_id
        if pooling == "mean":
            return MeanPoolClassifier.from_base(str(folder), config), str(folder.resolve())
        try:
            model = from_pretrained(AutoModelForSequenceClassification, folder, config)
        except ValueError as err:
            raise ModelError(f"{folder} ({config.model_type}) has no sequence-classification head in transformers: "
                             f"{str(err).splitlines()[0]}") from None
        return model, str(folder.resolve())
    preset = PRESETS.get(name)
    body = preset.build(len(tokenizer), tokenizer, seq_len, dropout, {})
    config = body.config
    for key, value in fields.items():
        setattr(config, key, value)
    config.pad_token_id = tokenizer.pad_token_id
    if pooling == "mean":
        return MeanPoolClassifier(AutoModel.from_config(config), config), None
    return AutoModelForSequenceClassification.from_config(config), None


def _set_dropout(config, dropout: float | None) -> None:
    if dropout is None:
        return
    for key in DROPOUT_KEYS:
        if hasattr(config, key):
            setattr(config, key, dropout)
