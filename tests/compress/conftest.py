"""Fine-tuned tiny models to compress: a text classifier with transformers' own head, one with
the mean-pooling head, and a small CNN image classifier."""

import shutil
from pathlib import Path

import pytest

from tests.conftest import finetune_tiny, make_image_folder


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
