"""Mean-pooling classification head: for encoders trained to be read by averaging their token
states (sentence-transformers checkpoints such as all-MiniLM-L6-v2), whose CLS token and pooler
were never trained.

Saved as the base model's own folder (config.json + model.safetensors, loadable with AutoModel)
plus `head.safetensors`; config.json carries `fmloop_pooling: "mean"` and the label mapping, and
`fmloop.load` rebuilds the classifier. With LoRA, the base is saved as a peft adapter instead.
`fmloop_normalize: true` (the `embedding` strategy) scales each pooled vector to unit length
before the head, as sentence-embedding models are compared (cosine).
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import AutoConfig, AutoModel
from transformers.modeling_outputs import SequenceClassifierOutput

from fmloop.models.heads import from_pretrained

HEAD_FILE = "head.safetensors"


def mean_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Masked mean of token states (B, T, H) over the positions where `mask` (B, T) is 1: (B, H)."""
    m = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * m).sum(1) / m.sum(1).clamp(min=1.0)


class MeanPoolClassifier(nn.Module):
    base_model_prefix = "base"  # what the transfer strategies treat as the body

    def __init__(self, base: nn.Module, config):
        super().__init__()
        self.base, self.config = base, config
        hidden = config.hidden_size
        p = getattr(config, "classifier_dropout", None)
        self.dropout = nn.Dropout(p if p is not None else getattr(config, "hidden_dropout_prob", 0.1))
        self.classifier = nn.Linear(hidden, config.num_labels)

    @property
    def normalize(self) -> bool:
        return bool(getattr(self.config, "fmloop_normalize", False))

    def embed(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, **kwargs):
        """(pooled (B, H), the base's output): what the head reads."""
        out = self.base(input_ids=input_ids, attention_mask=attention_mask, **kwargs)
        pooled = mean_pool(out.last_hidden_state, attention_mask)  # (B, H)
        if self.normalize:
            pooled = nn.functional.normalize(pooled, dim=-1)
        return pooled, out

    def get_input_embeddings(self) -> nn.Module:
        return self.base.get_input_embeddings()

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, output_hidden_states: bool = False, **_
    ) -> SequenceClassifierOutput:
        pooled, out = self.embed(input_ids, attention_mask, output_hidden_states=output_hidden_states)
        return SequenceClassifierOutput(
            logits=self.classifier(self.dropout(pooled)),
            hidden_states=out.hidden_states if output_hidden_states else None,
        )

    def save_pretrained(self, folder, safe_serialization: bool = True) -> None:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        self.base.save_pretrained(folder)  # full base, or a peft adapter
        self.config.fmloop_pooling = "mean"
        self.config.save_pretrained(folder)
        save_file(
            {k: v.detach().contiguous() for k, v in self.classifier.state_dict().items()}, str(folder / HEAD_FILE)
        )

    @classmethod
    def from_base(cls, folder: str, config) -> "MeanPoolClassifier":
        extra = {"add_pooling_layer": False} if config.model_type == "bert" else {}
        return cls(from_pretrained(AutoModel, folder, config, **extra), config)

    @classmethod
    def load(cls, folder: Path, base: Path | None = None) -> "MeanPoolClassifier":
        """A saved classifier in eval mode: a full base in `folder`, or a LoRA adapter in `folder`
        over the base model folder `base`."""
        config = AutoConfig.from_pretrained(str(folder))
        if base is not None:
            from peft import PeftModel

            model = cls.from_base(str(base), config)
            model.base = PeftModel.from_pretrained(model.base, str(folder)).merge_and_unload()
        else:
            model = cls.from_base(str(folder), config)
        model.classifier.load_state_dict(load_file(str(folder / HEAD_FILE)))
        return model.eval()


class Embeddings(nn.Module):
    """A classifier's pooled (and normalised) inputs to its head, answered as `.logits`, so that
    fmloop's one text scoring path (models.inference.text_logits) computes features too."""

    def __init__(self, classifier: MeanPoolClassifier):
        super().__init__()
        self.classifier = classifier

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, **_) -> SequenceClassifierOutput:
        return SequenceClassifierOutput(logits=self.classifier.embed(input_ids, attention_mask)[0])


def is_sentence_transformer(folder: Path) -> bool:
    return (folder / "modules.json").exists() or (folder / "1_Pooling").is_dir()


SENTENCE_TRANSFORMER_FILES = ("modules.json", "sentence_bert_config.json", "config_sentence_transformers.json")


def keep_sentence_transformer_files(base: Path, folder: Path) -> bool:
    """Copy a sentence-embedding base's pooling description (modules.json, 1_Pooling/, ...) into
    `folder`, a model continued from it (masked-LM pretraining on new text): the encoder is still
    read by mean pooling, and fine-tuning's `auto` pooling and strategy see it so. False when the
    base is not one."""
    import shutil

    base, folder = Path(base), Path(folder)
    if not is_sentence_transformer(base):
        return False
    for name in SENTENCE_TRANSFORMER_FILES:
        if (base / name).exists():
            shutil.copy2(base / name, folder / name)
    for module in base.glob("[0-9]_*"):
        if module.is_dir():
            shutil.copytree(module, folder / module.name, dirs_exist_ok=True)
    return True
