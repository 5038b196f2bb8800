"""Config sections shared by every training stage (data, tokenizer, model, train)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import Field, field_validator

from fmloop.adapt import STRATEGY_NAMES, STRATEGY_PATTERN
from fmloop.core.artifacts import RunDir
from fmloop.core.config import Duration, StageConfig, deep_merge, load_config, parse_duration
from fmloop.core.errors import ResumeError

# Shared by every training section (pretraining, fine-tuning): see fmloop.train.cpu_dropout.
FAST_CPU_DROPOUT = Field(
    True,
    description="on the CPU, cut dropout masks from 16-bit random numbers (same keep "
    "rate, about 6% faster MiniLM fine-tuning steps); "
    "false: PyTorch's own dropout",
)


class DataSection(StageConfig):
    path: str | None = Field(None, description="file, folder or hub dataset id")
    column: str | None = Field(
        None, description="text column (default: 'text' or the only string column), or the image column of image data"
    )
    validation_path: str | None = Field(None, description="held-out data; carved out of train when absent")
    validation_fraction: float = Field(0.05, gt=0, lt=1)
    max_validation_docs: int = Field(2000, ge=1)
    max_docs: int | None = Field(None, ge=1, description="use at most this many training documents")


class TokenizerSection(StageConfig):
    path: str | None = Field(None, description="reuse this tokenizer folder instead of training one")
    vocab_size: int = Field(8192, ge=128, le=1_000_000)
    min_frequency: int = Field(2, ge=1)
    max_training_docs: int = Field(100_000, ge=1, description="documents sampled to train the tokenizer")


class ModelSection(StageConfig):
    name: str | None = Field(
        None,
        description="preset name or local Hugging Face model folder (default: bert-mini for text, vit-mini for images)",
    )
    dropout: float | None = Field(
        None, ge=0, lt=1, description="every dropout probability (presets: 0; folders: their own)"
    )
    overrides: dict[str, Any] = Field(default_factory=dict, description="extra config.json fields for a preset")


class CommonTrainSection(StageConfig):
    """How any training loop runs (pretraining and fine-tuning alike): hardware, numerics,
    reproducibility, limits and logging. Each stage's train section adds its own schedule."""

    max_time: Duration = Field(None, description="stop after this long, e.g. 90s, 30m, 1h30m")
    weight_decay: float = Field(0.01, ge=0)
    grad_accum: int = Field(1, ge=1)
    clip_grad_norm: float = Field(1.0, ge=0, description="0 disables clipping")
    precision: Literal["auto", "bf16", "fp32"] = "auto"
    device: str = "auto"
    seed: int = 42
    deterministic: bool = False
    threads: int | None = Field(None, ge=1)
    fast_cpu_dropout: bool = FAST_CPU_DROPOUT
    tensorboard: bool = True
    log_every: int = Field(10, ge=1)

    @property
    def max_time_s(self) -> float | None:
        return parse_duration(self.max_time)


class TrainSection(CommonTrainSection):
    seq_len: int = Field(128, ge=16, le=32768)
    batch_size: int = Field(32, ge=1, description="global batch per optimizer step, over processes and accumulation")
    lr: float = Field(5e-4, gt=0, le=1)
    beta1: float = Field(0.9, ge=0, lt=1)
    beta2: float = Field(0.98, ge=0, lt=1)
    warmup_steps: int | None = Field(None, ge=0, description="default: warmup_ratio of the total steps")
    warmup_ratio: float = Field(0.05, ge=0, le=1)
    schedule: Literal["cosine", "linear", "constant"] = "cosine"
    min_lr_ratio: float = Field(0.1, ge=0, le=1)
    max_steps: int | None = Field(None, ge=1)
    epochs: float = Field(1.0, gt=0)
    eval_every: int = Field(100, ge=0, description="steps between held-out evaluations (0: only at the end)")
    eval_batches: int = Field(20, ge=1)
    checkpoint_every: int = Field(200, ge=0)
    keep_checkpoints: int = Field(2, ge=1)
    early_stopping_patience: int | None = Field(None, ge=1)
    max_bad_steps: int = Field(5, ge=1, description="abort after this many non-finite steps in a row")


# Fine-tuning (and the stages built on its runner: distill, prune) ------------------------------------


class FinetuneData(StageConfig):
    path: str | None = Field(None, description="labeled data: file, folder with train/validation/test files, ...")
    text_column: str | None = Field(None, description="the text column (images: the image column)")
    label_column: str | None = None
    validation_fraction: float = Field(0.1, gt=0, lt=1)


class FinetuneModel(StageConfig):
    name: str | None = Field(None, description="base model folder, fmloop run dir, or a preset (random init)")
    tokenizer: str | None = Field(None, description="tokenizer folder (required with a preset)")
    dropout: float | None = Field(None, ge=0, lt=1)
    pooling: Literal["auto", "native", "mean"] = Field(
        "auto",
        description="native: the architecture's head (CLS pooler / last token); mean: masked mean of "
        "token states; auto: mean for sentence-embedding checkpoints, else native",
    )


class FinetuneTrain(CommonTrainSection):
    lr: float | None = Field(None, gt=0, le=1)
    epochs: float | None = Field(None, gt=0)
    batch_size: int | None = Field(None, ge=1)
    max_length: int | None = Field(
        None,
        ge=8,
        le=32768,
        description="tokens per text (default: the longest training text, within the model's window and 512)",
    )
    truncation: Literal["auto", "head", "head+tail"] = Field(
        "auto",
        description="how a text longer than max_length is read: its head, or its first quarter and last three "
        "quarters; auto: head+tail when more than 10% of the training texts are longer",
    )
    warmup_ratio: float = Field(0.06, ge=0, le=1)
    label_smoothing: float = Field(0.0, ge=0, lt=1)
    class_weights: Literal["none", "balanced"] = "none"
    augment: bool = Field(False, description="random token deletion (10%) on training examples")
    metric: str | None = Field(None, description="validation metric for best checkpoint / early stopping")
    early_stopping_patience: int | None = Field(3, ge=1)
    evals_per_epoch: int = Field(2, ge=1)
    max_steps: int | None = Field(
        None, ge=0, description="stop after this many optimizer steps (0: evaluate and save the starting model)"
    )
    checkpoint_every: int | None = Field(
        None, ge=0, description="steps between resumable checkpoints (default: at every evaluation; 0: never)"
    )
    limit_per_class: float | None = Field(
        None, gt=0, description="train on N examples per class (or that fraction of each class): a seeded label budget"
    )
    augment_policy: Literal["none", "light", "randaugment"] = Field(
        "light", description="images: batched augmentation of training images"
    )
    mixup: float = Field(0.0, ge=0, description="images: mixup Beta(a, a) strength (0 = off)")
    cutmix: float = Field(0.0, ge=0, description="images: cutmix Beta(a, a) strength (0 = off)")
    freeze_token_embeddings: bool = Field(
        False, description="keep the input token-embedding matrix fixed (full and llrd): about 4% faster CPU steps"
    )
    llrd_decay: float = Field(0.8, gt=0, le=1)
    head_lr_scale: float | None = Field(
        None,
        ge=1,
        le=1000,
        description="the task head's learning rate as a multiple of lr (default 1; 30 for a new tag head, "
        "which starts from nothing)",
    )
    pair_iterations: int = Field(
        20, ge=1, description="contrastive: sentence pairs per labeled example and class relation (same / different)"
    )
    lora_r: int | None = Field(
        None, ge=1, description="LoRA rank (default: 32, at most an eighth of the model's width)"
    )
    lora_alpha: int | None = Field(None, ge=1, description="LoRA scale: updates are scaled by alpha / r (default 2r)")
    lora_dora: bool = Field(False, description="DoRA: LoRA plus a trained magnitude per output channel (peft use_dora)")
    lora_targets: str = Field(
        "all-linear",
        description="all-linear, attention (the architecture's query/value "
        "projections), or comma-separated module names",
    )


class FinetuneConfig(StageConfig):
    stage: ClassVar[str] = "finetune"
    task: Literal["classification", "multilabel", "regression", "tokens"] = Field(
        "classification", description="tokens: a tag per word (named entities) from CoNLL or JSONL tagged data"
    )
    strategy: str = "auto"
    data: FinetuneData = Field(default_factory=FinetuneData)
    model: FinetuneModel = Field(default_factory=FinetuneModel)
    train: FinetuneTrain = Field(default_factory=FinetuneTrain)

    @field_validator("strategy")
    @classmethod
    def _strategy(cls, value):
        if not STRATEGY_PATTERN.match(value):
            raise ValueError(f"must be one of {STRATEGY_NAMES}")
        return value


class PretrainConfig(StageConfig):
    stage: ClassVar[str] = "pretrain"
    modality: Literal["text", "image"] | None = Field(None, description="default: image when the data holds images")
    objective: Literal["mlm", "clm", "mae", "simclr"] | None = Field(
        None, description="text: mlm (default) or clm; image: simclr (default) or mae"
    )
    mlm_probability: float = Field(0.15, gt=0, lt=1)
    data: DataSection = Field(default_factory=DataSection)
    tokenizer: TokenizerSection = Field(default_factory=TokenizerSection)
    model: ModelSection = Field(default_factory=ModelSection)
    train: TrainSection = Field(default_factory=TrainSection)


def resumable_config(path: str | Path, overrides: dict | None = None, config_class=FinetuneConfig, kind="finetune"):
    """The config a run dir was started with (command-line `overrides` on top), after checking
    that the run can be resumed: a run of this kind, unfinished, with a checkpoint."""
    run = RunDir(path)
    if not run.path.is_dir():
        raise ResumeError(f"{path} does not exist: --resume takes the run dir of an interrupted run.")
    if not run.config_path.exists() or not run.manifest_path.exists():
        raise ResumeError(f"{path} is not an fmloop run dir (no config.yaml / manifest.json): nothing to resume.")
    manifest = run.read_manifest()
    if manifest.kind != kind:
        raise ResumeError(
            f"{path} holds a {manifest.kind!r} run, not a {kind} run; resume it with fmloop {manifest.kind}."
        )
    if manifest.status == "finished":
        raise ResumeError(f"{path} already finished; its model is in {run.model_dir}. Start a new run with --out.")
    if not run.resumable():
        raise ResumeError(
            f"{path} has no checkpoint to resume from (it stopped before the first one was written): "
            f"start it again with --out {path} --overwrite."
        )
    return load_config(config_class, None, deep_merge(run.read_config(), overrides or {}))
