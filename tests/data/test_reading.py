"""Long texts: one reading (head or head+tail) chosen from the data, recorded in the model, and used
the same way by training, fmloop.load, ONNX export and serving."""

import json
import random

import numpy as np
import pytest

from fmloop.data.reading import Reading, choose_reading, reading_of
from fmloop.models.loading import load
from tests.conftest import _OBJECTS, _SUBJECTS, _VERBS, NEGATIVE, POSITIVE, finetune_tiny, write_csv


def test_head_keeps_the_end_token_and_head_tail_keeps_both_ends():
    ids = list(range(100, 120))  # 20 ids, the last one an end-of-sequence token
    assert Reading(8).cut(ids, ends_special=True) == [100, 101, 102, 103, 104, 105, 106, 119]
    assert Reading(8).cut(ids, ends_special=False) == ids[:8]
    assert Reading(8, "head+tail").cut(ids, ends_special=True) == [100, 101, 114, 115, 116, 117, 118, 119]
    assert Reading(32, "head+tail").cut(ids, ends_special=True) == ids  # short texts are read whole


def test_the_reading_follows_the_length_percentiles_unless_set():
    short = np.array([10, 20, 30, 40] * 25)
    assert choose_reading(short, 512, None, "auto") == Reading(40, "head")
    few_long = np.array([50] * 95 + [900] * 5)
    assert choose_reading(few_long, 512, None, "auto") == Reading(512, "head")  # 5% cut: the head suffices
    many_long = np.array([50] * 80 + [900] * 20)
    assert choose_reading(many_long, 512, None, "auto") == Reading(512, "head+tail")
    assert choose_reading(many_long, 512, 128, "head") == Reading(128, "head")


def test_a_model_without_a_recorded_reading_reads_its_head():
    class Config:
        pass

    config = Config()
    assert reading_of(config, 512) == Reading(512, "head")
    config.fmloop_max_length, config.fmloop_truncation = 64, "head+tail"
    assert reading_of(config, 512) == Reading(64, "head+tail")


def _long_review(rng: random.Random, label: str) -> str:
    """Filler first, the verdict in the last words: only a reading that keeps the tail can learn it."""
    filler = " ".join(f"{rng.choice(_SUBJECTS)} {rng.choice(_VERBS)} {rng.choice(_OBJECTS)}" for _ in range(12))
    return f"{filler} and in the end it was {rng.choice(POSITIVE if label == 'positive' else NEGATIVE)}"


@pytest.fixture(scope="module")
def long_reviews(tmp_path_factory):
    folder = tmp_path_factory.mktemp("long")
    rng = random.Random(0)
    for split, n in (("train", 160), ("validation", 100), ("test", 60)):
        labels = ["positive", "negative"] * (n // 2)
        write_csv(folder / f"{split}.csv", [{"text": _long_review(rng, y), "label": y} for y in labels])
    return folder


def test_head_tail_is_chosen_recorded_and_read_alike_everywhere(tiny_base, long_reviews, tmp_path):
    run = finetune_tiny(tiny_base, long_reviews, tmp_path / "run", max_length=32)
    config = json.loads((run.model_dir / "config.json").read_text())
    assert (config["fmloop_max_length"], config["fmloop_truncation"]) == (32, "head+tail")
    assert run.read_config()["train"]["truncation"] == "head+tail"
    assert run.read_manifest()["metrics"]["test_accuracy"] > 0.9  # the verdict at the end was read
    model = load(run.path)
    rng = random.Random(5)
    texts = [_long_review(rng, "positive"), _long_review(rng, "negative")]
    assert [p["label"] for p in model.predict(texts)] == ["positive", "negative"]

    from fmloop.compress import onnx_export
    from fmloop.compress.config import ExportConfig

    onnx_export.run(ExportConfig(model=str(run.path), data=str(long_reviews)), tmp_path / "onnx")
    meta = json.loads((tmp_path / "onnx" / "model" / "fmloop_onnx.json").read_text())
    assert (meta["max_length"], meta["truncation"]) == (32, "head+tail")
    assert np.abs(load(tmp_path / "onnx").logits(texts) - model.logits(texts)).max() < 1e-4


def test_head_reading_cannot_learn_a_verdict_at_the_end(tiny_base, long_reviews, tmp_path):
    run = finetune_tiny(tiny_base, long_reviews, tmp_path / "run", max_length=32, truncation="head")
    assert run.read_manifest()["metrics"]["test_accuracy"] < 0.75
