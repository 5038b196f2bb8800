"""A fine-tuned tiny model with the mean-pooling head, to compress (the text and image runs are in
tests/conftest.py, shared with the serving tests)."""

import shutil
from pathlib import Path

import pytest

from tests.conftest import finetune_tiny


@pytest.fixture(scope="session")
def pooled_run(tiny_base, sentiment_dir, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("st") / "model"
    shutil.copytree(tiny_base, folder)
    (folder / "modules.json").write_text(
        '[{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"}]'
    )
    return finetune_tiny(folder, sentiment_dir, tmp_path_factory.mktemp("pooled") / "run").path
