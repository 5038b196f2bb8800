"""Fine-tuning a model fmloop already fine-tuned continues it: same pooling, same head when the
labels match (0 steps reproduce its predictions exactly), a new head when they do not, and
compressed artifacts are refused with their fp32 ancestor named."""

import json

import numpy as np
import pytest

from fmloop.core.config import load_config
from fmloop.core.errors import ModelError
from fmloop.models.loading import load
from fmloop.train.finetune import FinetuneConfig
from fmloop.train.finetune import run as finetune
from tests.conftest import write_csv

pytestmark = pytest.mark.slow
TEXTS = [
    "my friend sees the river and it was great today",
    "the cat likes a long song and it was awful again",
    "a fine day",
    "an awful song",
]
FAST = {"lr": 3e-3, "epochs": 4, "tensorboard": False, "seed": 0, "threads": 1, "early_stopping_patience": None}


def _finetune(model, data, out, **train):
    tree = {"model": {"name": str(model)}, "data": {"path": str(data)}, "train": {**FAST, **train}}
    return finetune(load_config(FinetuneConfig, overrides=tree), out)


@pytest.fixture(scope="module")
def sentence_base(tiny_base, tmp_path_factory):
    import shutil

    folder = tmp_path_factory.mktemp("st") / "model"
    shutil.copytree(tiny_base, folder)
    (folder / "modules.json").write_text('[{"idx": 0, "name": "0", "path": "", "type": "x"}]')
    return folder


@pytest.mark.parametrize("kind", ["full", "mean", "lora"])
def test_zero_steps_from_a_finetuned_run_reproduce_its_predictions(
    kind, tiny_base, sentence_base, sentiment_dir, tmp_path
):
    base = sentence_base if kind == "mean" else tiny_base
    first = _finetune(base, sentiment_dir, tmp_path / "first", **({} if kind != "lora" else {"lr": 1e-2}))
    if kind == "lora":
        first = finetune(
            load_config(
                FinetuneConfig,
                overrides={
                    "model": {"name": str(base)},
                    "data": {"path": str(sentiment_dir)},
                    "strategy": "lora",
                    "train": FAST,
                },
            ),
            tmp_path / "lora",
        )
    again = _finetune(first.path, sentiment_dir, tmp_path / "again", max_steps=0)
    manifest = again.read_manifest()
    assert manifest["continued"] == "head kept"
    assert json.loads((again.model_dir / "config.json").read_text()).get("fmloop_pooling") == (
        "mean" if kind == "mean" else None
    )
    before, after = load(first.path, device="cpu"), load(again.path, device="cpu")
    np.testing.assert_array_equal(before.logits(TEXTS), after.logits(TEXTS))


def test_other_labels_get_a_new_head_and_say_so(tiny_base, sentiment_dir, tmp_path):
    first = _finetune(tiny_base, sentiment_dir, tmp_path / "first", max_steps=2)
    rows = [{"text": t, "label": c} for t, c in zip(TEXTS * 10, ["red", "green", "blue", "red"] * 10)]
    write_csv(tmp_path / "colours.csv", rows)
    again = _finetune(first.path, tmp_path / "colours.csv", tmp_path / "again", max_steps=2)
    assert again.read_manifest()["continued"] == "new head"
    assert load(again.path, device="cpu").labels == ["blue", "green", "red"]


def test_a_compressed_model_is_refused_naming_its_fp32_ancestor(tiny_base, tmp_path, sentiment_dir):
    from fmloop.compress import quantize
    from fmloop.compress.config import QuantizeConfig

    first = _finetune(tiny_base, sentiment_dir, tmp_path / "first", max_steps=2)
    quantize.run(QuantizeConfig(model=str(first.path), backend="torch", min_agreement=0.01), tmp_path / "int8")
    with pytest.raises(ModelError, match=f"int8 artifact.*fp32 ancestor {first.model_dir.resolve()}"):
        _finetune(tmp_path / "int8", sentiment_dir, tmp_path / "again", max_steps=1)
