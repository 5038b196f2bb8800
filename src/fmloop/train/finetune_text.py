"""Text for the fine-tuning runner: labeled rows -> tokens, the task model to start from, the
collate function, and validation scoring through fmloop's one scoring path."""

from __future__ import annotations

import json
import logging

import numpy as np
import torch
from datasets import concatenate_datasets

from fmloop.core.errors import ConfigError
from fmloop.core.runtime import Runtime
from fmloop.data.labeled import LabeledCollator, encode_split, load_labeled, stratified_split
from fmloop.data.reading import Reading, choose_reading, record_reading
from fmloop.data.sampling import per_class_sample
from fmloop.data.text import default_pad_multiple
from fmloop.data.tokenizer import load_tokenizer
from fmloop.models.classifier import build_task_model, resolve_model_folder
from fmloop.models.inference import text_logits
from fmloop.models.presets import is_model_folder
from fmloop.tasks import Task, get_task
from fmloop.train.supervised import SMALL_VALIDATION, TaskInputs, validation_budget

log = logging.getLogger(__name__)


def _model_limit(folder_or_preset: str) -> int:
    """The most tokens the model reads well: a sentence encoder's published `max_seq_length` (the
    length its sentence training used: all-MiniLM-L6-v2 says 256 of its 512 positions), else its
    position table."""
    if not is_model_folder(folder_or_preset):
        return 512
    folder = resolve_model_folder(folder_or_preset)
    config = json.loads((folder / "config.json").read_text())
    positions = int(config.get("max_position_embeddings") or config.get("n_positions") or 512)
    sentence = folder / "sentence_bert_config.json"
    if sentence.is_file():
        published = json.loads(sentence.read_text()).get("max_seq_length")
        if isinstance(published, int) and published > 0:
            return min(positions, published)
    return positions


def _summary(data, encoded: dict, labels, task: Task, reading: Reading) -> dict:
    train_lengths = encoded["train"].full_lengths
    max_length = reading.max_length
    summary = {
        "rows": {name: len(ds) for name, ds in data.splits.items()},
        "max_length": max_length,
        "truncation": reading.truncation,
        "token_length_percentiles": {f"p{q}": int(np.percentile(train_lengths, q)) for q in (50, 90, 99)}
        | {"max": int(train_lengths.max())},
        "truncated": {name: int((e.full_lengths > max_length).sum()) for name, e in encoded.items()},
    }
    if task.single_class:
        counts = np.bincount(encoded["train"].labels, minlength=len(labels))
        summary["class_balance"] = {labels[i]: int(c) for i, c in enumerate(counts)}
    elif task.has_classes:
        summary["label_counts"] = {labels[i]: int(c) for i, c in enumerate(encoded["train"].labels.sum(0))}
    return summary


class _Augmented:
    """Collate wrapper: drop 10% of non-special tokens per training example (seeded by epoch, index)."""

    def __init__(self, collate: LabeledCollator, special_ids: set[int], seed: int):
        self.collate, self.special, self.seed = collate, np.array(sorted(special_ids)), seed

    def __call__(self, indices, epoch):
        batch = self.collate(indices, epoch)
        ids, mask = batch["input_ids"].numpy().copy(), batch["attention_mask"].numpy().copy()
        for row, index in enumerate(indices):
            n = int(mask[row].sum())
            keep = np.random.default_rng([self.seed, epoch, int(index), 7]).random(n) >= 0.1
            keep |= np.isin(ids[row, :n], self.special)
            kept = ids[row, :n][keep]
            ids[row, :] = self.collate.pad_id
            mask[row, :] = 0
            ids[row, : len(kept)], mask[row, : len(kept)] = kept, 1
        batch["input_ids"], batch["attention_mask"] = torch.from_numpy(ids), torch.from_numpy(mask)
        return batch


def budget_rows(cfg, labels: list[str] | None = None, keep_validation: bool = False):
    """The labeled rows a text fine-tuning run trains and is judged on (LabeledData): the label
    budget (`train.limit_per_class`) drawn per class from train and, at its share, from
    validation; a validation split smaller than SMALL_VALIDATION joins the training rows when a
    test split judges, unless `keep_validation` (pruning scores on it). The transfer ladder's
    floor reads the same rows."""
    t = cfg.train
    data = load_labeled(
        cfg.data.path,
        task=cfg.task,
        text_column=cfg.data.text_column,
        label_column=cfg.data.label_column,
        validation_fraction=cfg.data.validation_fraction,
        seed=t.seed,
        hold_out=not t.limit_per_class,
        labels=labels,
    )
    if t.limit_per_class:
        # The label budget covers validation too (see finetune_image): limit first, then hold out.
        data.splits["train"] = _limit_text(data.splits["train"], cfg.task, t.limit_per_class, t.seed)
        if "validation" in data.splits:
            share = validation_budget(t.limit_per_class, cfg.data.validation_fraction)
            data.splits["validation"] = _limit_text(data.splits["validation"], cfg.task, share, t.seed)
        else:
            data.splits["train"], data.splits["validation"] = stratified_split(
                data.splits["train"], cfg.task, cfg.data.validation_fraction, t.seed
            )
    if not keep_validation and "test" in data.splits and len(data.splits.get("validation", ())) < SMALL_VALIDATION:
        # Too few rows to choose a checkpoint on (the runner keeps the last weights): they train too.
        folded = concatenate_datasets([data.splits["train"], data.splits.pop("validation")])
        log.info("validation: %d rows train too (fewer than %d; the test split judges)",
                 len(folded) - len(data.splits["train"]), SMALL_VALIDATION)  # fmt: skip
        data.splits["train"] = folded
    return data


def prepare_text(
    cfg, runtime: Runtime, labels: list[str] | None = None, extra_train=None, keep_validation: bool = False
) -> TaskInputs:
    """Labeled text (budget_rows), tokenizer and task model for the fine-tuning runner. `labels`
    fixes the class order (a teacher's); `extra_train`, a function of the final training split
    returning a Dataset of text + label (or None), is appended to the training rows
    (teacher-labeled text); it runs after the validation rows were held out, so nothing derived
    from them can reach training."""
    t = cfg.train
    data = budget_rows(cfg, labels, keep_validation)
    extra = extra_train(data.splits["train"]) if extra_train is not None else None
    if extra is not None and len(extra):
        data.splits["train"] = concatenate_datasets([data.splits["train"], extra.cast(data.splits["train"].features)])
    if is_model_folder(cfg.model.name):
        tokenizer = load_tokenizer(cfg.model.tokenizer or resolve_model_folder(cfg.model.name))
    elif cfg.model.tokenizer:
        tokenizer = load_tokenizer(cfg.model.tokenizer)
    else:
        raise ConfigError(
            f"Preset {cfg.model.name!r} starts from random weights and needs a tokenizer: "
            f"pass --model.tokenizer=FOLDER (e.g. a pretraining run's RUN/tokenizer)."
        )
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token  # decoder-only models: pad with end-of-text

    full = encode_split(data.splits["train"], tokenizer, Reading(10**9))
    reading = choose_reading(full.full_lengths, min(512, _model_limit(cfg.model.name)), t.max_length, t.truncation)
    max_length = reading.max_length
    encoded = {name: encode_split(ds, tokenizer, reading) for name, ds in data.splits.items()}
    summary = _summary(data, encoded, data.labels, get_task(cfg.task), reading)
    log.info("data: %s", data.description)
    log.info(
        "rows %s; tokens p50/p90/p99/max %s; reading %s (%d training rows cut)%s",
        summary["rows"],
        "/".join(str(v) for v in summary["token_length_percentiles"].values()),
        reading.describe(),
        summary["truncated"]["train"],
        f"; classes {summary['class_balance']}" if "class_balance" in summary else "",
    )
    start = build_task_model(
        cfg.model.name, cfg.task, data.labels, tokenizer, cfg.model.dropout, max_length, cfg.model.pooling
    )
    record_reading(start.model.config, reading)  # predict, evaluate, export and serve read inputs the same way
    pad_id = tokenizer.pad_token_id
    texts = {name: list(ds["text"]) for name, ds in data.splits.items()}

    def make_collate():
        collate = LabeledCollator(encoded["train"], pad_id, default_pad_multiple(runtime.device.type))
        return _Augmented(collate, set(tokenizer.all_special_ids), t.seed) if t.augment else collate

    def logits(model, split: str) -> np.ndarray:
        # The scoring path of fmloop.load / evaluate / predict / serve: the same logits for the same weights.
        return text_logits(model, tokenizer, texts[split], reading, runtime.device)

    return TaskInputs(
        model=start.model,
        parents=start.parents,
        labels=data.labels,
        y={name: e.labels for name, e in encoded.items()},
        train_lengths=encoded["train"].store.lengths,
        bucket=True,
        make_collate=make_collate,
        logits=logits,
        save_extra=tokenizer.save_pretrained,
        summary=summary,
        description=data.description,
        fingerprint=data.fingerprint,
        examples=lambda split: {"texts": texts[split]},
        resolved={
            "train": {"max_length": max_length, "truncation": reading.truncation},
            "model": {"pooling": start.pooling},
        },
        pooling=start.pooling,
        continued=start.continued,
        tokens={name: e.store for name, e in encoded.items()},
        pad_id=pad_id,
    )


def _limit_text(train, task: str, limit: float, seed: int):
    """A seeded per-class subset of the training rows (classification), or `limit` rows in all."""
    if not get_task(task).single_class:
        n = int(limit) if limit >= 1 else max(1, int(round(len(train) * limit)))
        return train.select(np.sort(np.random.default_rng([seed, 17]).permutation(len(train))[:n]))
    return train.select(per_class_sample(np.asarray(train["label"]), limit, seed))
