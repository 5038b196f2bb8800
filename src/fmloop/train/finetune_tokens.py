"""Token classification data and model for the fine-tuning runner (`--task tokens`).

Tagged sentences (fmloop.data.tagged) are cut into word pieces; a word's tag is the target of its
first piece, the other pieces have none (models/tokens.py). The model is the base with a linear
tag head on every piece (transformers' *ForTokenClassification); a token model fmloop fine-tuned
before keeps its head when its tag set is the data's. Validation scores through the scoring path
of predict and serve (`models.tokens.score_words`), so checkpoints are chosen by the entity F1 users get.

`train.limit_per_class` is a budget of training sentences here (tags are not one per row).
"""

from __future__ import annotations

import logging

import numpy as np
import torch
from transformers import AutoModelForTokenClassification

from fmloop.core.errors import ConfigError, ModelError
from fmloop.core.runtime import Runtime
from fmloop.data.reading import Reading, record_reading
from fmloop.data.tagged import read_tagged, tag_ids
from fmloop.data.text import default_pad_multiple
from fmloop.data.tokenizer import load_tokenizer
from fmloop.models.anatomy import set_dropout
from fmloop.models.classifier import resolve_model_folder
from fmloop.models.presets import is_model_folder, read_config
from fmloop.models.tokens import encode_words, outside_id, pad_pieces, word_logits
from fmloop.tasks.catalog import task_of_config
from fmloop.tasks.tokens import IGNORE
from fmloop.train.supervised import SMALL_VALIDATION, TaskInputs

log = logging.getLogger(__name__)
MAX_PIECES = 512  # the reading: sentences are short; the few longer ones are cut (their tail tagged O)


class TaggedCollator:
    """Dynamic padding of word pieces and their targets to the batch's longest sentence."""

    def __init__(self, rows: list, pad_id: int, pad_multiple: int = 1):
        self.rows, self.pad_id, self.pad_multiple = rows, pad_id, pad_multiple

    def __call__(self, indices: np.ndarray, epoch: int = 0) -> dict:
        picked = [self.rows[i] for i in indices]
        feeds = pad_pieces(picked, self.pad_id, self.pad_multiple)
        targets = np.full_like(feeds["input_ids"], IGNORE)
        for row, (_, _, piece_targets) in enumerate(picked):
            targets[row, : len(piece_targets)] = piece_targets
        return {
            **{name: torch.from_numpy(value) for name, value in feeds.items()},
            "labels": torch.from_numpy(targets),
            "n_targets": int((targets != IGNORE).sum()),
            "n_tokens": int(feeds["attention_mask"].sum()),
        }


def _start_model(name: str, labels: list[str], tokenizer, dropout: float | None):
    """(model, parents, continued): the base with a new tag head, or a token model continued."""
    folder = resolve_model_folder(name)
    fields = {
        "num_labels": len(labels),
        "id2label": dict(enumerate(labels)),
        "label2id": {t: i for i, t in enumerate(labels)},
    }
    config = read_config(folder)
    was_tokens = task_of_config(config).name == "tokens"
    same_tags = was_tokens and [config.id2label[i] for i in range(config.num_labels)] == labels
    for key, value in fields.items():
        setattr(config, key, value)
    set_dropout(config, dropout)
    if config.pad_token_id is None:
        config.pad_token_id = tokenizer.pad_token_id
    try:
        model = AutoModelForTokenClassification.from_pretrained(
            str(folder), config=config, ignore_mismatched_sizes=not same_tags
        )
    except ValueError as err:
        raise ModelError(
            f"{folder} ({config.model_type}) has no token-classification head in transformers: "
            f"{str(err).splitlines()[0]}"
        ) from None
    continued = ("head kept" if same_tags else "new head") if was_tokens else None
    return model, [str(folder)], continued


def prepare_tokens(cfg, runtime: Runtime) -> TaskInputs:
    """Tagged sentences, tokenizer and token model for the fine-tuning runner."""
    t = cfg.train
    if not is_model_folder(cfg.model.name):
        raise ConfigError(
            f"Token classification starts from a model folder (a pretrained base or a pretraining run's "
            f"model), not the preset {cfg.model.name!r}."
        )
    data = read_tagged(cfg.data.path, validation_fraction=cfg.data.validation_fraction, seed=t.seed)
    if t.limit_per_class:
        train = data.splits["train"]
        n = int(t.limit_per_class) if t.limit_per_class >= 1 else max(1, round(len(train) * t.limit_per_class))
        data.splits["train"] = train.select(np.sort(np.random.default_rng([t.seed, 17]).permutation(len(train))[:n]))
        data.description += f"; {len(data.splits['train'])} training sentences (train.limit_per_class)"
    if "test" in data.splits and len(data.splits.get("validation", ())) < SMALL_VALIDATION:
        small = data.splits.pop("validation")
        data.splits["train"].words += small.words
        data.splits["train"].tags += small.tags
        log.info(
            "validation: %d sentences train too (fewer than %d; the test split judges)", len(small), SMALL_VALIDATION
        )
    tokenizer = load_tokenizer(cfg.model.tokenizer or resolve_model_folder(cfg.model.name))
    labels = data.labels
    index = {tag: i for i, tag in enumerate(labels)}
    limit = min(MAX_PIECES, int(t.max_length or MAX_PIECES))
    reading = Reading(limit, "head")
    train = data.splits["train"]
    rows = encode_words(tokenizer, train.words, reading, [[index[x] for x in s] for s in train.tags])
    words_cut = sum(int((first < 0).sum()) for _, first, _ in rows)
    model, parents, continued = _start_model(cfg.model.name, labels, tokenizer, cfg.model.dropout)
    record_reading(model.config, reading)
    model.config.fmloop_task = "tokens"  # transformers' problem_type has no value for it
    y = {name: tag_ids(split.tags, labels) for name, split in data.splits.items()}
    lengths = np.asarray([len(r[0]) for r in rows])
    entity_counts = {}
    for sent in train.tags:
        for tag in sent:
            if tag[:2] in ("B-", "S-"):
                entity_counts[tag[2:]] = entity_counts.get(tag[2:], 0) + 1
    summary = {
        "rows": {name: len(split) for name, split in data.splits.items()},
        "max_length": limit,
        "truncation": "head",
        "token_length_percentiles": {f"p{q}": int(np.percentile(lengths, q)) for q in (50, 90, 99)}
        | {"max": int(lengths.max())},
        "words_past_reading": {"train": words_cut},
        "entity_counts": dict(sorted(entity_counts.items())),
    }
    log.info("data: %s", data.description)
    log.info(
        "sentences %s; word pieces p50/p90/p99/max %s; reading %d pieces (%d training words past it, tagged O); "
        "entities %s",
        summary["rows"], "/".join(str(v) for v in summary["token_length_percentiles"].values()), limit, words_cut,
        summary["entity_counts"],
    )  # fmt: skip
    outside = outside_id(labels)

    def logits(model, split: str) -> np.ndarray:
        return word_logits(model, tokenizer, data.splits[split].words, reading, runtime.device, outside=outside)

    return TaskInputs(
        model=model,
        parents=parents,
        labels=labels,
        y=y,
        train_lengths=lengths,
        bucket=True,
        make_collate=lambda: TaggedCollator(
            rows, tokenizer.pad_token_id or 0, default_pad_multiple(runtime.device.type)
        ),
        logits=logits,
        save_extra=tokenizer.save_pretrained,
        summary=summary,
        description=data.description,
        fingerprint=data.fingerprint,
        examples=lambda split: {"texts": [" ".join(s) for s in data.splits[split].words]},
        resolved={"train": {"max_length": limit, "truncation": "head"}, "model": {"pooling": "native"}},
        continued=continued,
        pad_id=tokenizer.pad_token_id,
        # A new tag head at the body's rate tags every word O for its first hundred or so steps:
        # entity F1 stays at 0 while the loss falls (a patience of three evaluations would stop it
        # there), and at 30x the rate it learns in step with the body (WNUT-17, MiniLM: entity F1
        # 0.411 -> 0.442 in two epochs).
        early_stop_by_default=False,
        new_head_lr_scale=30.0,
    )
