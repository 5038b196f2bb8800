"""Task models: a sequence-classification / regression head on any Hugging Face base.

By default the head is transformers' own `AutoModelForSequenceClassification` (CLS pooler for
BERT-like encoders, last non-padding token for GPT-like decoders), so a fine-tuned folder loads
anywhere with plain transformers and carries its label names in config.json (`id2label` /
`label2id`). Sentence-embedding checkpoints get a mean-pooling head instead (models/pooled.py),
because that is how they were trained to be read.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from transformers import AutoModel, AutoModelForSequenceClassification

from fmloop.core.artifacts import RunDir
from fmloop.core.errors import ModelError
from fmloop.models.anatomy import head_prefixes, set_dropout
from fmloop.models.formats import detect
from fmloop.models.formats import hf as hf_format
from fmloop.models.formats import lora as lora_format
from fmloop.models.heads import from_pretrained
from fmloop.models.pooled import HEAD_FILE, MeanPoolClassifier, is_sentence_transformer
from fmloop.models.presets import PRESETS, is_model_folder, model_dir_of, read_config
from fmloop.tasks import get_task
from fmloop.tasks.catalog import task_of_config

log = logging.getLogger(__name__)


def resolve_model_folder(name: str) -> Path:
    """A model folder, or an fmloop run dir (its `model/` inside)."""
    path = model_dir_of(name)
    if (
        not (path / "config.json").exists()
        and not (path / "adapter_config.json").exists()
        and not any(path.glob("*.onnx"))
        and not (path / "ensemble.json").exists()
    ):
        raise ModelError(f"{name} is not a Hugging Face model folder (no config.json) nor an fmloop run dir.")
    return path


def task_config_fields(task: str, labels: list[str] | None) -> dict:
    task = get_task(task)
    fields = {"problem_type": task.problem_type, "num_labels": task.n_outputs(labels)}
    if task.has_classes:
        fields["id2label"] = dict(enumerate(labels))
        fields["label2id"] = {name: i for i, name in enumerate(labels)}
    return fields


def choose_pooling(name: str, pooling: str) -> str:
    """'auto' -> the pooling a fine-tuned fmloop model was trained with, 'mean' for
    sentence-embedding checkpoints, else the architecture's own ('native')."""
    if pooling != "auto":
        return pooling
    if is_model_folder(name):
        folder = resolve_model_folder(name)
        config = json.loads((folder / "config.json").read_text()) if (folder / "config.json").exists() else {}
        if config.get("fmloop_pooling") == "mean" or is_sentence_transformer(folder):
            return "mean"
    return "native"


@dataclass
class StartingModel:
    """The model a fine-tuning run starts from, and where it came from."""

    model: nn.Module
    parents: list[str]  # model folders it was built from (none for a preset)
    pooling: str  # native | mean
    continued: str | None = None  # continuing a fine-tuned model: "head kept" or "new head"


def build_task_model(
    name: str,
    task: str,
    labels: list[str] | None,
    tokenizer,
    dropout: float | None = None,
    seq_len: int = 512,
    pooling: str = "auto",
) -> StartingModel:
    """The task model to fine-tune: a pretrained body with a new head (a model folder or run dir),
    a fine-tuned model continued (its head kept when the labels match), or a preset (random init).

    pooling: 'native' (CLS pooler / last token, transformers' own head), 'mean' (masked mean of
    token states), or 'auto'."""
    if not is_model_folder(name):
        return _from_preset(name, task, labels, tokenizer, dropout, seq_len, choose_pooling(name, pooling))
    folder = resolve_model_folder(name)
    fmt = detect(folder)
    if not fmt.fp32:
        raise ModelError(
            f"{name} is a {fmt.name} artifact, which cannot be fine-tuned further{_ancestor_hint(folder)}."
        )
    if _is_task_model(folder):
        return _continue(folder, fmt.name, task, labels, dropout)
    return _from_base(folder, task, labels, tokenizer, dropout, choose_pooling(name, pooling))


def _ancestor_hint(folder: Path) -> str:
    """', fine-tune its fp32 ancestor X instead' from the run's manifest lineage, when known."""
    run = RunDir(folder.parent)
    if not run.manifest_path.exists():
        return "; fine-tune the fp32 model it was made from instead"
    for parent in run.read_manifest().parent_paths(run.path):
        parent = parent.resolve()
        try:
            if detect(parent).fp32:
                return f"; fine-tune its fp32 ancestor {parent} instead"
        except ModelError:
            continue
        return _ancestor_hint(parent)
    return "; fine-tune the fp32 model it was made from instead"


def _is_task_model(folder: Path) -> bool:
    """A folder fmloop (or transformers) saved with a trained task head."""
    config = json.loads((folder / "config.json").read_text()) if (folder / "config.json").exists() else {}
    return (
        (folder / "adapter_config.json").exists()
        or (folder / HEAD_FILE).exists()
        or (
            config.get("problem_type") is not None
            and config.get("architectures", [""])[0].endswith(("ForSequenceClassification", "ForImageClassification"))
        )
    )


def _continue(folder: Path, fmt: str, task: str, labels: list[str] | None, dropout: float | None) -> StartingModel:
    """A fine-tuned model as the start: LoRA adapters merged, pooling kept; its head kept when its
    task and labels are the data's (rows reordered to the data's label order), else a new head."""
    if fmt == "lora":
        model = lora_format.load_module(folder)
        parents = [str(lora_format.adapter_base(folder)), str(folder)]
    elif fmt == "mean-pool":
        model, parents = MeanPoolClassifier.load(folder), [str(folder)]
    else:
        model, parents = hf_format.load_module(folder), [str(folder)]
    model.train()
    for param in model.parameters():  # a merged adapter leaves its base frozen; the strategy decides
        param.requires_grad_(True)
    pooling = "mean" if isinstance(model, MeanPoolClassifier) else "native"
    old = task_of_config(model.config)
    old_labels = [model.config.id2label[i] for i in range(model.config.num_labels)] if old.has_classes else None
    set_dropout(model.config, dropout)
    if dropout is not None:
        for module in model.modules():
            if isinstance(module, nn.Dropout):
                module.p = dropout
    fields = task_config_fields(task, labels)
    same = old.name == get_task(task).name and (labels is None or sorted(labels) == sorted(old_labels or []))
    head = _head(model)
    if same and labels is not None and labels != old_labels:
        order = [old_labels.index(name) for name in labels]  # the data's order, from the model's rows
        with torch.no_grad():
            head.weight.copy_(head.weight[order].clone())
            if head.bias is not None:
                head.bias.copy_(head.bias[order].clone())
    elif not same:
        log.warning(
            "%s predicts %s %s; the data has %s %s: continuing its body with a new %d-output head",
            folder,
            old.name,
            old_labels or "",
            task,
            labels or "",
            fields["num_labels"],
        )
        new = nn.Linear(head.in_features, fields["num_labels"])
        _replace_head(model, new)
    for key, value in fields.items():
        setattr(model.config, key, value)
    return StartingModel(model, parents, pooling, "head kept" if same else "new head")


def _head(model: nn.Module) -> nn.Linear:
    """The final linear layer of a classifier head (BERT's classifier, GPT-2's score, ...)."""
    if isinstance(model, MeanPoolClassifier):
        return model.classifier
    prefixes = head_prefixes(model)
    linears = [
        m for p in prefixes if "pool" not in p for m in model.get_submodule(p).modules() if isinstance(m, nn.Linear)
    ]
    if not linears:
        raise ModelError(f"Cannot find the classifier layer of {type(model).__name__} to continue fine-tuning.")
    return linears[-1]


def _replace_head(model: nn.Module, new: nn.Linear) -> None:
    old = _head(model)
    for name, module in model.named_modules():
        for child_name, child in module.named_children():
            if child is old:
                setattr(module, child_name, new)
                return


def _from_base(folder: Path, task: str, labels, tokenizer, dropout, pooling: str) -> StartingModel:
    fields = task_config_fields(task, labels)
    config = read_config(folder, **fields)
    set_dropout(config, dropout)
    if config.pad_token_id is None:
        config.pad_token_id = tokenizer.pad_token_id
    if pooling == "mean":
        return StartingModel(MeanPoolClassifier.from_base(str(folder), config), [str(folder)], pooling)
    try:
        model = from_pretrained(AutoModelForSequenceClassification, folder, config)
    except ValueError as err:
        raise ModelError(
            f"{folder} ({config.model_type}) has no sequence-classification head in transformers: "
            f"{str(err).splitlines()[0]}"
        ) from None
    return StartingModel(model, [str(folder)], pooling)


def _from_preset(name: str, task: str, labels, tokenizer, dropout, seq_len: int, pooling: str) -> StartingModel:
    preset = PRESETS.get(name)
    body = preset.build(len(tokenizer), tokenizer, seq_len, dropout, {})
    config = body.config
    for key, value in task_config_fields(task, labels).items():
        setattr(config, key, value)
    config.pad_token_id = tokenizer.pad_token_id
    if pooling == "mean":
        return StartingModel(MeanPoolClassifier(AutoModel.from_config(config), config), [], pooling)
    return StartingModel(AutoModelForSequenceClassification.from_config(config), [], pooling)
