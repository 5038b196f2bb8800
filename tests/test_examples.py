"""The example configs in examples/ stay valid as the config schema changes."""

from pathlib import Path

import pytest

from fmloop.core.config import load_config
from fmloop.train.pretrain import PretrainConfig

EXAMPLES = sorted((Path(__file__).resolve().parents[1] / "examples").glob("pretrain-*.yaml"))


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_config_is_valid(path):
    cfg = load_config(PretrainConfig, path)
    assert cfg.objective in path.name


def test_there_are_examples():
    assert len(EXAMPLES) >= 2
