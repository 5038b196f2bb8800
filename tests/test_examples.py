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


PIPELINES = sorted(p for p in (Path(__file__).resolve().parents[1] / "examples").glob("*.yaml") if p not in EXAMPLES)


@pytest.mark.parametrize("path", PIPELINES, ids=lambda p: p.name)
def test_example_pipeline_is_valid(path, tmp_path):
    from fmloop.pipeline import spec

    pipeline = spec.load(path, out=tmp_path)
    assert pipeline.name == path.stem and pipeline.stages


def test_there_are_example_pipelines_for_the_four_datasets():
    assert {p.stem for p in PIPELINES} >= {"sst2", "imdb", "fashion-mnist", "cifar10"}


def test_the_demo_pipeline_is_valid(tmp_path):
    from fmloop.pipeline import spec
    from fmloop.pipeline.demo import DEMO_FILE

    stages = spec.load(DEMO_FILE, out=tmp_path).stages
    assert list(stages) == [
        "clean",
        "pretrain",
        "finetune",
        "base",
        "evaluate",
        "quantize",
        "users",
        "retrain",
        "labellers",
        "judge",
    ]
    assert all(s.config.train.max_time for s in stages.values() if s.kind.name in ("pretrain", "finetune"))
