"""`fmloop distill --teacher T [T2 ...] --student PRESET|PATH --data D`: knowledge distillation
through the fine-tuning runner, with a soft-target objective.

The teacher (several teachers: the mean of their probabilities) scores every training example
once before training; each batch then carries the teacher's logits next to the labels, so a step
costs only the student's forward and backward pass. The loss is

    alpha * T^2 * KL(softmax(teacher / T) || softmax(student / T)) + (1 - alpha) * task loss

(Hinton et al. 2015; multi-label: binary cross-entropy against the teacher's sigmoid at T;
regression: squared error to the teacher's score). With `--distill.hidden_weight W > 0` (text),
W * (1 - cosine) between the student's and the teacher's mean-pooled hidden states is added, for
each student layer against the teacher layer at the same relative depth (student layer i of L_s
<-> teacher layer round(i * L_t / L_s)), through a learned linear projection when the widths
differ (DistilBERT's cosine loss, on pooled states so the teacher's side is computed once too).
`--distill.unlabeled FILE` adds text without labels, and `--distill.augment N` adds N
word-substitution variants of each labeled training text (compress/text_augment.py): the teacher
labels both, and those rows train on the soft targets and the teacher's top class.
The student is scored against the true labels of the validation split for early stopping, like
any fine-tuning run. A preset student is built with the teacher's tokenizer.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from fmloop.compress.config import DistillConfig
from fmloop.compress.ensemble import check_members
from fmloop.compress.text_augment import augment_texts
from fmloop.core.artifacts import RunDir, remove_output, require_new_folder
from fmloop.core.errors import ConfigError, DataError, ModelError
from fmloop.core.runtime import running
from fmloop.data.labeled import load_labeled
from fmloop.evaluate.evaluation import model_logits
from fmloop.models.classifier import resolve_model_folder
from fmloop.models.formats.ensemble import EnsembleModel
from fmloop.models.inference import batched_by_length
from fmloop.models.loading import load
from fmloop.models.pooled import mean_pool
from fmloop.models.presets import PRESETS, is_model_folder
from fmloop.tasks import get_task
from fmloop.train.finetune import check
from fmloop.train.finetune_image import prepare_images
from fmloop.train.finetune_text import prepare_text
from fmloop.train.objectives.supervised import model_inputs
from fmloop.train.supervised import TaskInputs, run_supervised

log = logging.getLogger(__name__)


def layer_map(student_layers: int, teacher_layers: int) -> list[int]:
    """Teacher hidden-state index (0 = embeddings) matched to each student layer 1..L_s."""
    return [round(i * teacher_layers / student_layers) for i in range(1, student_layers + 1)]


class Distillation(nn.Module):
    """Soft targets from `batch["teacher_logits"]` plus the task loss on `batch["labels"]`; with
    `hidden_weight`, cosine matching of pooled hidden states against `batch["teacher_hidden"]`
    (B, L_s, H_t), through learned projections (trained with the student, not saved) when the
    widths differ."""

    def __init__(
        self,
        model: nn.Module,
        task: str,
        temperature: float,
        alpha: float,
        class_weights: torch.Tensor | None = None,
        hidden_weight: float = 0.0,
        widths: tuple[int, int, int] | None = None,
    ):
        super().__init__()
        self.model, self.task, self.temperature, self.alpha = model, get_task(task), temperature, alpha
        self.register_buffer("class_weights", class_weights, persistent=False)
        self.hidden_weight = hidden_weight
        if hidden_weight and widths:
            layers, student_width, teacher_width = widths
            self.projections = nn.ModuleList(
                nn.Linear(student_width, teacher_width, bias=False) if student_width != teacher_width else nn.Identity()
                for _ in range(layers)
            )

    def hidden_loss(self, states: tuple[torch.Tensor, ...], mask: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
        """Summed over the batch, averaged over the matched layers."""
        total = 0.0
        for k, projection in enumerate(self.projections):
            pooled = projection(mean_pool(states[k + 1].float(), mask))
            total = total + (1 - F.cosine_similarity(pooled, teacher[:, k].float(), dim=-1)).sum()
        return total / len(self.projections)

    def soft_loss(self, student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
        """Summed over the batch, like the task loss."""
        return self.task.soft_loss(student, teacher, self.temperature)

    def forward(self, batch: dict) -> dict:
        matching = self.hidden_weight > 0 and "teacher_hidden" in batch
        out = self.model(**model_inputs(batch), **({"output_hidden_states": True} if matching else {}))
        logits = out.logits.float()
        hard = self.task.loss(logits, batch["labels"], self.class_weights)
        soft = self.soft_loss(logits, batch["teacher_logits"].float())
        loss = self.alpha * soft + (1 - self.alpha) * hard
        if matching:
            loss = loss + self.hidden_weight * self.hidden_loss(
                out.hidden_states, batch["attention_mask"], batch["teacher_hidden"]
            )
        return {"loss_sum": loss, "count": len(logits), "logits": logits.detach()}


def token_embeddings(model: nn.Module | None) -> nn.Module | None:
    """The input token-embedding layer of a Hugging Face model or of fmloop's mean-pooling head
    (which hands out its encoder's); None when there is none."""
    try:
        return model.get_input_embeddings()
    except (AttributeError, NotImplementedError):
        return None


@torch.no_grad()
def init_embeddings_from(student: nn.Module, teacher: nn.Module) -> bool:
    """Token embeddings of a randomly initialised student from the teacher's: the teacher's table
    (V, H_t) centred and projected onto its top H_s principal directions, scaled to the student's
    initial spread. Same tokenizer, so row i is token i in both. Returns False when not applicable."""
    s_emb, t_emb = token_embeddings(student), token_embeddings(teacher)
    if s_emb is None or t_emb is None or s_emb.weight.shape[0] > t_emb.weight.shape[0]:
        return False
    vocab, width = s_emb.weight.shape
    table = t_emb.weight[:vocab].detach().float().cpu()  # the teacher may sit on a GPU
    centred = table - table.mean(0, keepdim=True)
    if width > centred.shape[1]:
        return False
    _, _, v = torch.linalg.svd(centred, full_matrices=False)  # v: (H_t, H_t)
    projected = centred @ v[:width].T  # (V, H_s)
    projected *= s_emb.weight.std() / projected.std().clamp(min=1e-8)
    s_emb.weight.copy_(projected.to(s_emb.weight.dtype))
    return True


class _WithTeacher:
    """Collate wrapper: each batch also carries the teacher's logits (and pooled hidden states)
    for its examples."""

    def __init__(self, collate, teacher_logits: np.ndarray, teacher_hidden: np.ndarray | None = None):
        self.collate, self.teacher = collate, torch.from_numpy(teacher_logits)
        self.hidden = None if teacher_hidden is None else torch.from_numpy(teacher_hidden)

    def __call__(self, indices, epoch):
        batch = self.collate(indices, epoch)
        index = torch.as_tensor(np.asarray(indices), dtype=torch.long)
        batch["teacher_logits"] = self.teacher[index]
        if self.hidden is not None:
            batch["teacher_hidden"] = self.hidden[index].float()
        return batch


def score_teacher(teacher, texts, layers: list[int] | None, what: str, batch_size: int = 64):
    """(teacher logits, mean-pooled hidden states at `layers` as float16 (N, len(layers), H) or None)."""

    if not layers:
        return model_logits(teacher, texts, batch_size, what), None
    from rich.progress import Progress

    n_labels = teacher.model.config.num_labels

    @torch.no_grad()
    def run(batch: list[str]) -> np.ndarray:
        feeds = {k: torch.from_numpy(v).to(teacher.device) for k, v in teacher.encode(batch).items()}
        out = teacher.model(**feeds, output_hidden_states=True)
        pooled = torch.stack([mean_pool(out.hidden_states[i].float(), feeds["attention_mask"]) for i in layers], 1)
        return torch.cat([out.logits.float(), pooled.flatten(1)], 1).cpu().numpy()

    with Progress(transient=True) as progress:
        task = progress.add_task(what, total=len(texts))
        both = batched_by_length(list(texts), run, batch_size, lambda n: progress.advance(task, n))
    return both[:, :n_labels], both[:, n_labels:].reshape(len(texts), len(layers), -1).astype(np.float16)


def _depth_and_width(config) -> tuple[int, int]:
    depth = getattr(config, "num_hidden_layers", None) or getattr(config, "n_layer", None)
    width = getattr(config, "hidden_size", None) or getattr(config, "n_embd", None)
    if not depth or not width:
        raise ConfigError(
            f"Cannot tell the depth and width of a {config.model_type} model for hidden-state matching; "
            f"set --distill.hidden_weight=0."
        )
    return depth, width


def _hidden_plan(cfg: DistillConfig, teacher) -> tuple[list[int], tuple[int, int, int]] | None:
    """(teacher hidden-state index per student layer, (student layers, student width, teacher
    width)), or None when hidden-state matching is off. Checked before any scoring."""
    if not cfg.distill.hidden_weight:
        return None
    model = getattr(teacher, "model", None)
    if teacher.modality != "text" or model is None or not hasattr(teacher, "encode"):
        raise ConfigError(
            "--distill.hidden_weight needs one PyTorch text teacher (not an ensemble, ONNX or int8 "
            "artifact, nor images): set it to 0 or pass such a teacher."
        )
    if _is_folder(cfg.model.name):
        from transformers import AutoConfig

        student = AutoConfig.from_pretrained(str(resolve_model_folder(cfg.model.name)))
    else:
        student = PRESETS.get(cfg.model.name).build(8, teacher.tokenizer, 64, None, {}).config  # tiny: shape only
    s_depth, s_width = _depth_and_width(student)
    t_depth, t_width = _depth_and_width(model.config)
    return layer_map(s_depth, t_depth), (s_depth, s_width, t_width)


def load_teacher(paths: list[str]):

    if not paths:
        raise ConfigError("The 'teacher' parameter of distill is required. Pass --teacher PATH (repeat for several).")
    if len(paths) == 1:
        return load(paths[0])
    members = check_members(paths)
    return EnsembleModel(Path(paths[0]), members, "mean", [1.0 / len(members)] * len(members))


def _check_student_vocab(cfg: DistillConfig, teacher) -> None:
    """A student folder without its own tokenizer reads the teacher's token ids: its embedding
    table must hold them."""

    if teacher.modality != "text" or not is_model_folder(cfg.model.name):
        return
    folder = resolve_model_folder(cfg.model.name)
    if (folder / "tokenizer.json").exists() or (folder / "vocab.txt").exists():
        return
    import json

    vocab = json.loads((folder / "config.json").read_text()).get("vocab_size", 0)
    if vocab < len(teacher.tokenizer):
        raise ModelError(
            f"The student {cfg.model.name} has {vocab} token embeddings but the teacher's tokenizer "
            f"has {len(teacher.tokenizer)} tokens: choose a student preset (built for the teacher's "
            f"vocabulary) or a student folder with its own tokenizer."
        )


def _unlabeled_texts(cfg: DistillConfig, teacher) -> list[str]:
    """The texts of `--distill.unlabeled` (every split), at most `unlabeled_limit` of them (seeded)."""

    data = load_labeled(
        cfg.distill.unlabeled,
        task=teacher.task,
        labels=teacher.labels,
        need_labels=False,
        hold_out=False,
        text_column=cfg.data.text_column,
    )
    texts = [t for split in data.splits.values() for t in split["text"]]
    if cfg.distill.unlabeled_limit and len(texts) > cfg.distill.unlabeled_limit:
        pick = np.sort(
            np.random.default_rng([cfg.train.seed, 23]).permutation(len(texts))[: cfg.distill.unlabeled_limit]
        )
        texts = [texts[i] for i in pick]
    log.info("%d unlabeled rows from %s", len(texts), cfg.distill.unlabeled)
    return texts


def _augmented_texts(cfg: DistillConfig, teacher, train_texts: list[str]) -> list[str]:

    embeddings = token_embeddings(teacher.model)  # present: checked by distill() before any work
    d = cfg.distill
    texts = augment_texts(
        train_texts, teacher.tokenizer, embeddings.weight, d.augment, d.augment_p, d.augment_k, cfg.train.seed
    )
    log.info("%d word-substitution variants of the %d training texts", len(texts), len(train_texts))
    return texts


def _teacher_rows(teacher, texts: list[str], layers: list[int] | None = None, batch_size: int = 64):
    """(Dataset of `texts` labeled with the teacher's top class (or score), the teacher's logits for
    them, its pooled hidden states at `layers` or None)."""
    from datasets import Dataset

    logits, hidden = score_teacher(teacher, texts, layers, "teacher labelling extra text", batch_size)
    labels = get_task(teacher.task).targets_from(logits)
    return Dataset.from_dict({"text": texts, "label": labels}), logits, hidden


class TeacherLabelledText:
    """`extra_train` for prepare_text: the unlabeled and augmented text, labelled by the teacher.
    Keeps the teacher's logits (and pooled hidden states) for those rows, so they are scored once."""

    def __init__(self, cfg: DistillConfig, teacher, layers: list[int] | None):
        self.cfg, self.teacher, self.layers = cfg, teacher, layers
        self.logits = self.hidden = None

    def __call__(self, train):
        texts = _unlabeled_texts(self.cfg, self.teacher) if self.cfg.distill.unlabeled else []
        if self.cfg.distill.augment:
            texts += _augmented_texts(self.cfg, self.teacher, list(train["text"]))
        if not texts:
            return None
        rows, self.logits, self.hidden = _teacher_rows(self.teacher, texts, self.layers)
        return rows


def prepare_student(cfg: DistillConfig, runtime, teacher, layers: list[int] | None) -> TaskInputs:
    """The student's fine-tuning inputs, each training batch carrying the teacher's outputs."""
    extra = TeacherLabelledText(cfg, teacher, layers)
    if teacher.modality == "image":
        inputs = prepare_images(cfg, runtime)
    else:
        try:
            inputs = prepare_text(cfg, runtime, labels=teacher.labels, extra_train=extra)
        except DataError as err:
            raise DataError(
                f"{err} The teacher predicts {teacher.labels}: teacher and student share one label set."
            ) from None
    if inputs.labels != teacher.labels:
        raise ConfigError(
            f"The data's labels {inputs.labels} differ from the teacher's {teacher.labels}: "
            f"teacher and student must share one label set, in one order."
        )
    if (
        cfg.distill.init_embeddings
        and not inputs.parents
        and teacher.modality == "text"
        and hasattr(teacher, "model")
        and init_embeddings_from(inputs.model, teacher.model)
    ):
        inputs.summary["student_embeddings"] = "projected from the teacher's"
        log.info("student token embeddings initialised from the teacher's (principal directions)")
    examples = inputs.examples("train")
    train_inputs = examples.get("texts", examples.get("images"))
    # The unlabeled rows were appended after the labeled ones and already scored: score the rest.
    n_labeled = len(train_inputs) - (len(extra.logits) if extra.logits is not None else 0)
    teacher_logits, teacher_hidden = score_teacher(
        teacher, train_inputs[:n_labeled], layers, "teacher scoring the training set"
    )
    if n_labeled < len(train_inputs):
        teacher_logits = np.concatenate([teacher_logits, extra.logits])
        teacher_hidden = None if teacher_hidden is None else np.concatenate([teacher_hidden, extra.hidden])
    teacher_logits = teacher_logits.astype(np.float32)
    make_collate = inputs.make_collate
    inputs.make_collate = lambda: _WithTeacher(make_collate(), teacher_logits, teacher_hidden)
    if layers:
        inputs.summary["hidden_matching"] = {"teacher_layers": layers, "weight": cfg.distill.hidden_weight}
    inputs.summary["teacher_train_accuracy"] = (
        float((teacher_logits.argmax(-1) == inputs.y["train"]).mean()) if get_task(cfg.task).single_class else None
    )
    inputs.extra_manifest["teacher"] = [str(Path(t).resolve()) for t in cfg.teacher]
    return inputs


def run(cfg: DistillConfig, out: str | Path, *, overwrite: bool = False) -> RunDir:
    """Distill the teacher(s) `cfg.teacher` into the student `cfg.model.name` on `cfg.data.path`."""
    check(cfg, "distill")
    if overwrite:
        remove_output(out)
    require_new_folder(out)
    teacher = load_teacher(cfg.teacher)
    if teacher.task != cfg.task:
        raise ConfigError(f"The teacher predicts {teacher.task}; pass --task {teacher.task}.")
    _check_student_vocab(cfg, teacher)
    if teacher.modality == "text" and cfg.model.tokenizer is None and not _is_folder(cfg.model.name):
        cfg = cfg.model_copy(update={"model": cfg.model.model_copy(update={"tokenizer": str(teacher.folder)})})
    if teacher.modality == "image" and (cfg.distill.unlabeled or cfg.distill.augment):
        raise ConfigError(
            "--distill.unlabeled and --distill.augment take text; image distillation uses the labeled images only."
        )
    if cfg.distill.augment and (
        token_embeddings(getattr(teacher, "model", None)) is None or not hasattr(teacher, "tokenizer")
    ):
        raise ConfigError(
            "--distill.augment needs one PyTorch text teacher (its token embeddings choose the "
            "substitutes), not an ensemble, ONNX or int8 artifact: set it to 0 or pass such a teacher."
        )
    plan = _hidden_plan(cfg, teacher)
    layers, widths = plan if plan else (None, None)
    d = cfg.distill
    with running(cfg.train) as runtime:
        inputs = prepare_student(cfg, runtime, teacher, layers)
        return run_supervised(
            cfg,
            runtime,
            RunDir(out),
            inputs,
            kind="distill",
            parents=[str(teacher.folder)],
            objective=lambda model, weights: Distillation(
                model, cfg.task, d.temperature, d.alpha, weights, d.hidden_weight, widths
            ),
        )


def _is_folder(name: str) -> bool:

    return is_model_folder(name)
