"""Fine-tuned tiny models to compress: a text classifier with transformers' own head, one with
the mean-pooling head, and a small CNN image classifier."""

import shutil
from pathlib import Path

import pytest

from fmloop.core.config import load_config
from fmloop.train.finetune import FinetuneConfig
from fmloop.train.finetune import run as finetune
from tests.conftest import make_image_folder

FAST = {"tensorboard": False, "seed": 0, "threads": 1, "log_every": 5, "early_stopping_patience": None}


def finetune_tiny(base, data, out, **train):
    tree = {
        "model": {"name": str(base)},
        "data": {"path": str(data)},
        "train": {"lr": 3e-3, "epochs": 8, **FAST, **train},
    }
    return finetune(load_config(FinetuneConfig, overrides=tree), out)


@pytest.fixture(scope="session")
def text_run(tiny_base, sentiment_dir, tmp_path_factory) -> Path:
    return finetune_tiny(tiny_base, sentiment_dir, tmp_path_factory.mktemp("text") / "run").path


@pytest.fixture(scope="session")
def pooled_run(tiny_base, sentiment_dir, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("st") / "model"
    shutil.copytree(tiny_base, folder)
    (folder / "modules.json").write_text(
        '[{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"}]'
    )
    return finetune_tiny(folder, sentiment_dir, tmp_path_factory.mktemp("pooled") / "run").path


@pytest.fixture(scope="session")
def image_dir(tmp_path_factory) -> Path:
    return make_image_folder(tmp_path_factory.mktemp("images") / "tree", n_per_class=16)


@pytest.fixture(scope="session")
def image_run(image_dir, tmp_path_factory) -> Path:
    return finetune_tiny("cnn-small", image_dir, tmp_path_factory.mktemp("image") / "run", epochs=2, batch_size=8).path
