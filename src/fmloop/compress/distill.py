"""`fmloop distill --teacher T [T2 ...] --student PRESET|PATH --data D`: knowledge distillation
through the fine-tuning runner, with a soft-target objective.

The teacher (several teachers: the mean of their probabilities) scores every training example
once before training; each batch then carries the teacher's logits next to the labels, so a step
costs only the student's forward and backward pass. The loss is

    alpha * T^2 * KL(softmax(teacher / T) || softmax(student / T)) + (1 - alpha) * task loss

(Hinton et al. 2015; multi-label: binary cross-entropy against the teacher's sigmoid at T;
regression: squared error to the teacher's score). `--distill.unlabeled FILE` adds text without
labels: the teacher labels it, and those rows train on the soft targets and the teacher's top class.
The student is scored against the true labels of the validation split for early stopping, like
any fine-tuning run. A preset student is built with the teacher's tokenizer.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from fmloop.core.artifacts import RunDir
from fmloop.core.config import StageConfig
from fmloop.core.errors import ConfigError, DataError, ModelError
from fmloop.core.runtime import running
from fmloop.train.finetune import FinetuneConfig, StageHooks, TaskInputs, _finetune, _prepare_text
from fmloop.train.objectives.supervised import model_inputs, task_loss

log = logging.getLogger(__name__)


class DistillSettings(StageConfig):
    temperature: float = Field(2.0, gt=0, description="softens both distributions; the loss is scaled by T^2")
    alpha: float = Field(0.7, ge=0, le=1, description="weight of the soft-target loss (1 - alpha: the labels)")
    unlabeled: str | None = Field(None, description="extra text without labels for the teacher to label")
    unlabeled_limit: int | None = Field(None, ge=1, description="use at most this many unlabeled rows (seeded)")
    init_embeddings: bool = Field(True, description="start a preset student's token embeddings from the "
                                                    "teacher's, projected onto their top principal directions")


class DistillConfig(FinetuneConfig):
    stage: ClassVar[str] = "distill"
    teacher: list[str] = Field(default_factory=list, description="teacher model(s): folders, run dirs, ensembles")
    distill: DistillSettings = Field(default_factory=DistillSettings)


class Distillation(nn.Module):
    """Soft targets from `batch["teacher_logits"]` plus the task loss on `batch["labels"]`."""

    def __init__(self, model: nn.Module, task: str, temperature: float, alpha: float,
                 class_weights: torch.Tensor | None = None):
        super().__init__()
        self.model, self.task, self.temperature, self.alpha = model, task, temperature, alpha
        self.register_buffer("class_weights", class_weights, persistent=False)

    def soft_loss(self, student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
        """Summed over the batch, like the task loss."""
        T = self.temperature
        if self.task == "classification":
            return F.kl_div(F.log_softmax(student / T, -1), F.log_softmax(teacher / T, -1), log_target=True,
                            reduction="sum") * T * T
        if self.task == "multilabel":
            targets = torch.sigmoid(teacher / T)
            return F.binary_cross_entropy_with_logits(student / T, targets, reduction="none").mean(-1).sum() * T * T
        return F.mse_loss(student, teacher, reduction="sum")

    def forward(self, batch: dict) -> dict:
        logits = self.model(**model_inputs(batch)).logits.float()
        hard = task_loss(self.task, logits, batch["labels"], self.class_weights)
        soft = self.soft_loss(logits, batch["teacher_logits"].float())
        return {"loss_sum": self.alpha * soft + (1 - self.alpha) * hard, "count": len(logits),
                "logits": logits.detach()}


@torch.no_grad()
def init_embeddings_from(student: nn.Module, teacher: nn.Module) -> bool:
    """Token embeddings of a randomly initialised student from the teacher's: the teacher's table
    (V, H_t) centred and projected onto its top H_s principal directions, scaled to the student's
    initial spread. Same tokenizer, so row i is token i in both. Returns False when not applicable."""
    get = lambda m: (m.base if hasattr(m, "base") else m).get_input_embeddings()
    try:
        s_emb, t_emb = get(student), get(teacher)
    except (AttributeError, NotImplementedError):
        return False
    if s_emb is None or t_emb is None or s_emb.weight.shape[0] > t_emb.weight.shape[0]:
        return False
    vocab, width = s_emb.weight.shape
    table = t_emb.weight[:vocab].float()
    centred = table - table.mean(0, keepdim=True)
    if width > centred.shape[1]:
        return False
    _, _, v = torch.linalg.svd(centred, full_matrices=False)                 # v: (H_t, H_t)
    projected = centred @ v[:width].T                                         # (V, H_s)
    projected *= s_emb.weight.std() / projected.std().clamp(min=1e-8)
    s_emb.weight.copy_(projected.to(s_emb.weight.dtype))
    return True


class _WithTeacher:
    """Collate wrapper: each batch also carries the teacher's logits for its examples."""

    def __init__(self, collate, teacher_logits: np.ndarray):
        self.collate, self.teacher = collate, torch.from_numpy(teacher_logits)

    def __call__(self, indices, epoch):
        batch = self.collate(indices, epoch)
        batch["teacher_logits"] = self.teacher[torch.as_tensor(np.asarray(indices), dtype=torch.long)]
        return batch


def load_teacher(paths: list[str]):
    from fmloop.compress.ensemble import EnsembleModel, check_members
    from fmloop.models.loading import load

    if not paths:
        raise ConfigError("The 'teacher' parameter of distill is required. Pass --teacher PATH (repeat for several).")
    if len(paths) == 1:
        return load(paths[0])
    members = check_members(paths)
    return EnsembleModel(Path(paths[0]), members, "mean", [1.0 / len(members)] * len(members))


def _check_student_vocab(cfg: DistillConfig, teacher) -> None:
    """A student folder without its own tokenizer reads the teacher's token ids: its embedding
    table must hold them."""
    from fmloop.models.classifier import resolve_model_folder
    from fmloop.models.presets import is_model_folder

    if teacher.modality != "text" or not is_model_folder(cfg.model.name):
        return
    folder = resolve_model_folder(cfg.model.name)
    if (folder / "tokenizer.json").exists() or (folder / "vocab.txt").exists():
        return
    import json

    vocab = json.loads((folder / "config.json").read_text()).get("vocab_size", 0)
    if vocab < len(teacher.tokenizer):
        raise ModelError(f"The student {cfg.model.name} has {vocab} token embeddings but the teacher's tokenizer "
                         f"has {len(teacher.tokenizer)} tokens: choose a student preset (built for the teacher's "
                         f"vocabulary) or a student folder with its own tokenizer.")


def _unlabeled_rows(cfg: DistillConfig, teacher, batch_size: int = 64):
    """(Dataset of the unlabeled texts labeled with the teacher's top class (or score), the
    teacher's logits for them)."""
    from datasets import Dataset

    from fmloop.data.labeled import load_labeled

    data = load_labeled(cfg.distill.unlabeled, task=teacher.task, labels=teacher.labels, need_labels=False,
                        hold_out=False, text_column=cfg.data.text_column)
    texts = [t for split in data.splits.values() for t in split["text"]]
    if cfg.distill.unlabeled_limit and len(texts) > cfg.distill.unlabeled_limit:
        pick = np.sort(np.random.default_rng([cfg.train.seed, 23]).permutation(len(texts))[:cfg.distill.unlabeled_limit])
        texts = [texts[i] for i in pick]
    from fmloop.evaluate.evaluation import model_logits

    logits = model_logits(teacher, texts, batch_size, "teacher labelling unlabeled text")
    if teacher.task == "classification":
        labels = logits.argmax(-1).tolist()
    elif teacher.task == "multilabel":
        labels = (logits >= 0).astype(np.float32).tolist()
    else:
        labels = logits[:, 0].tolist()
    log.info("the teacher labelled %d unlabeled rows from %s", len(texts), cfg.distill.unlabeled)
    return Dataset.from_dict({"text": texts, "label": labels}), logits


def distill(cfg: DistillConfig, out: str | Path) -> RunDir:
    from fmloop.evaluate.evaluation import model_logits

    if cfg.data.path is None:
        raise ConfigError("The 'data.path' parameter of distill is required. Pass --data PATH.")
    if cfg.model.name is None:
        raise ConfigError("The 'model.name' parameter of distill is required. Pass --student PRESET|PATH.")
    teacher = load_teacher(cfg.teacher)
    if teacher.task != cfg.task:
        raise ConfigError(f"The teacher predicts {teacher.task}; pass --task {teacher.task}.")
    _check_student_vocab(cfg, teacher)
    if teacher.modality == "text" and cfg.model.tokenizer is None and not _is_folder(cfg.model.name):
        cfg.model.tokenizer = str(teacher.folder)
    if teacher.modality == "image" and cfg.distill.unlabeled:
        raise ConfigError("--distill.unlabeled takes text; image distillation uses the labeled images only.")
    run = RunDir(out)
    if run.path.exists() and any(run.path.iterdir()):
        run.create()  # raises: never overwrite a run

    def prepare(cfg: DistillConfig, runtime) -> TaskInputs:
        extra_logits = None
        if teacher.modality == "image":
            from fmloop.train.finetune_image import prepare_images
            inputs = prepare_images(cfg, runtime)
        else:
            extra, extra_logits = _unlabeled_rows(cfg, teacher) if cfg.distill.unlabeled else (None, None)
            try:
                inputs = _prepare_text(cfg, runtime, labels=teacher.labels, extra_train=extra)
            except DataError as err:
                raise DataError(f"{err} The teacher predicts {teacher.labels}: teacher and student share one "
                                f"label set.") from None
        if inputs.labels != teacher.labels:
            raise ConfigError(f"The data's labels {inputs.labels} differ from the teacher's {teacher.labels}: "
                              f"teacher and student must share one label set, in one order.")
        if (cfg.distill.init_embeddings and inputs.parent is None and teacher.modality == "text"
                and hasattr(teacher, "model") and init_embeddings_from(inputs.model, teacher.model)):
            inputs.summary["student_embeddings"] = "projected from the teacher's"
            log.info("student token embeddings initialised from the teacher's (principal directions)")
        examples = inputs.examples("train")
        train_inputs = examples.get("texts", examples.get("images"))
        # The unlabeled rows were appended after the labeled ones and already scored: score the rest.
        n_labeled = len(train_inputs) - (len(extra_logits) if teacher.modality == "text" and extra_logits is not None else 0)
        teacher_logits = model_logits(teacher, train_inputs[:n_labeled], 64, "teacher scoring the training set")
        if n_labeled < len(train_inputs):
            teacher_logits = np.concatenate([teacher_logits, extra_logits])
        teacher_logits = teacher_logits.astype(np.float32)
        make_collate = inputs.make_collate
        inputs.make_collate = lambda: _WithTeacher(make_collate(), teacher_logits)
        agreement = float((teacher_logits.argmax(-1) == inputs.y["train"]).mean()) if cfg.task == "classification" else None
        inputs.summary["teacher_train_accuracy"] = agreement
        return inputs

    hooks = StageHooks(kind="distill", prepare=prepare,
                       objective=lambda model, weights: Distillation(model, cfg.task, cfg.distill.temperature,
                                                                     cfg.distill.alpha, weights),
                       manifest={"teacher": [str(Path(t).resolve()) for t in cfg.teacher]},
                       parent=str(teacher.folder))
    with running(cfg.train) as runtime:
        return _finetune(cfg, runtime, run, hooks)


def _is_folder(name: str) -> bool:
    from fmloop.models.presets import is_model_folder

    return is_model_folder(name)
