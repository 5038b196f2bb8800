"""What a retrain's inputs are, for each modality: where the champion's own data comes from, how a
stored input becomes what the models read, and how the challenger's training folder is written.

Text inputs are stored as themselves. Image inputs are stored as their digest (`sha256:...`), their
files in the store's images table (kept when corrected or drawn for the audit): a retrain reads the
files back, and writes the challenger's data as one folder per class, the layout image fine-tuning
reads, beside a replay of the champion's own images. A token classifier's inputs are texts too;
its labels are tags per word, and its challenger's data tagged sentences (TaggedInputs).
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fmloop.core.errors import DataError
from fmloop.data.images import decode_images, load_images
from fmloop.data.labeled import load_labeled
from fmloop.data.sampling import stratified_holdout
from fmloop.data.tagged import read_tagged, tag_ids
from fmloop.feedback.store import Store
from fmloop.models.tokens import split_words
from fmloop.tasks import Task, get_task


@dataclass
class ChampionData:
    pool: list[tuple[object, str]]  # its training rows (input, stored label): the replay draws from them
    validation: object  # its validation inputs (texts, or uint8 images N x H x W x C)
    validation_y: np.ndarray  # their targets (class ids, 0/1 vectors or floats)


class TextInputs:
    """Text of a classifier, a multi-label classifier or a regressor (`task`)."""

    modality = "text"

    def __init__(self, task: Task):
        self.task = task

    def champion_data(
        self, data_path: str, labels: list[str] | None, seed: int, validation_fraction: float = 0.1
    ) -> ChampionData:
        data = load_labeled(
            data_path, task=self.task.name, labels=labels, seed=seed, validation_fraction=validation_fraction
        )
        train, validation = data.splits["train"], data.splits["validation"]
        pool = [(row["text"], self.task.stored(row["label"], labels)) for row in train]
        return ChampionData(pool, list(validation["text"]), np.asarray(validation["label"]))

    def read(self, keys: list[str]) -> list[str]:
        """What the models read for stored inputs `keys`."""
        return list(keys)

    def write_split(self, folder: Path, split: str, rows: list[tuple[object, str]]) -> None:
        """JSONL rows {"text", "label"}: a class name, a list of names (an empty one too) or a number."""
        path = folder / f"{split}.jsonl"
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "w", encoding="utf-8") as fh:
            for text, label in rows:
                fh.write(json.dumps({"text": text, "label": self.task.data_label(label)}, ensure_ascii=False) + "\n")


class TaggedInputs(TextInputs):
    """Sentences of a token classifier. Stored inputs are texts, their labels the tags of their words
    as split_words cuts them; the champion's own rows are lists of words (CoNLL or JSONL), replayed
    as they are. The challenger's data is JSONL {"tokens", "tags"}, which tagged reading takes."""

    def champion_data(
        self, data_path: str, labels: list[str], seed: int, validation_fraction: float = 0.1
    ) -> ChampionData:
        data = read_tagged(data_path, labels=labels, seed=seed, validation_fraction=validation_fraction)
        train, validation = data.splits["train"], data.splits["validation"]
        pool = [(tuple(words), json.dumps(tags)) for words, tags in zip(train.words, train.tags)]
        return ChampionData(pool, validation.words, tag_ids(validation.tags, labels))

    def write_split(self, folder: Path, split: str, rows: list[tuple[object, str]]) -> None:
        path = folder / f"{split}.jsonl"
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "w", encoding="utf-8") as fh:
            for sentence, label in rows:
                words = split_words(sentence)[0] if isinstance(sentence, str) else list(sentence)
                tags = self.task.data_label(label)
                if len(tags) != len(words):  # the words of a stored text are cut as when it was corrected
                    raise DataError(
                        f"the stored tags {label} do not fit the {len(words)} words of {sentence!r}; the text "
                        f"was cut into words differently when it was labeled. Correct it again."
                    )
                fh.write(json.dumps({"tokens": words, "tags": tags}, ensure_ascii=False) + "\n")


class ImageInputs:
    """Images of a classifier."""

    modality = "image"

    def __init__(self, store: Store, size: int, channels: int):
        self.store, self.size, self.channels = store, size, channels
        self.task = get_task("classification")

    def champion_data(
        self, data_path: str, labels: list[str], seed: int, validation_fraction: float = 0.1
    ) -> ChampionData:
        data = load_images(
            data_path, labels=labels, seed=seed, hold_out=False, size=(self.size, self.size), channels=self.channels
        )
        if data.labels != labels:
            raise DataError(
                f"{data_path}: its classes {data.labels} are not the champion's {labels}; "
                f"the champion's training data has changed since it was trained."
            )
        train = data.splits["train"]
        pool = [(train.pixels[i], labels[int(train.labels[i])]) for i in range(len(train))]
        if "validation" in data.splits:
            validation = data.splits["validation"]
        else:  # held out as fine-tuning did: the same seed, the same rows
            keep, held = stratified_holdout(train.labels, len(train), validation_fraction, seed)
            validation = train.subset(held)
            pool = [pool[i] for i in keep]
        return ChampionData(pool, validation.pixels, validation.labels)

    def read(self, keys: list[str]) -> np.ndarray:
        """uint8 images (N, H, W, C) at the model's size for stored digests `keys`."""
        if not keys:
            return np.zeros((0, self.size, self.size, self.channels), np.uint8)
        files = [(key, self.store.image(key)) for key in keys]
        pixels, kept, skipped = decode_images(files, (self.size, self.size), self.channels, progress=False)
        if skipped:
            raise DataError(f"the stored image {skipped[0][0]} cannot be read back: {skipped[0][1]}")
        return pixels

    def write_split(self, folder: Path, split: str, rows: list[tuple[object, str]]) -> None:
        """One sub-folder per class: kept files as they were sent, replayed images as PNG."""
        from PIL import Image

        root = folder / split
        for i, (value, label) in enumerate(rows):
            if "/" in label or label.startswith("."):
                raise DataError(f"the class {label!r} cannot name a folder; image retraining needs plain class names")
            target = root / label
            target.mkdir(parents=True, exist_ok=True)
            if isinstance(value, str):  # a stored digest
                data = self.store.image(value)
                if data is None:
                    raise DataError(f"the image {value} was erased while the retrain read it; run it again")
                image = Image.open(io.BytesIO(data))
                image.save(target / f"{value.removeprefix('sha256:')[:32]}.png")
            else:
                array = value[..., 0] if value.shape[-1] == 1 else value
                Image.fromarray(array).save(target / f"replay-{i:06d}.png")


def inputs_for(model, store: Store) -> TextInputs | TaggedInputs | ImageInputs:
    """The inputs of a retrain of `model` (the champion, loaded)."""
    if model.modality == "image":
        return ImageInputs(store, model.size, model.channels)
    if model.task == "tokens":
        return TaggedInputs(get_task("tokens"))
    return TextInputs(get_task(model.task))
