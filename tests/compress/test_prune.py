"""Pruning: global magnitude pruning keeps its zeros through recovery; structured pruning really
shrinks the feed-forward layers and still loads with transformers."""

import json

import pytest
import torch
from transformers import AutoConfig

from fmloop.compress.prune import PruneConfig, magnitude_masks, prune, sparsity_of
from fmloop.core.config import load_config
from fmloop.core.errors import ModelError
from fmloop.models.loading import load
from tests.compress.conftest import FAST
from tests.conftest import run_cli


def _prune(parent, out, **prune_settings):
    cfg = load_config(PruneConfig, overrides={"prune": prune_settings, "train": {"lr": 1e-3, **FAST}})
    return prune(cfg, str(parent), out)


def test_magnitude_masks_hit_the_target_and_spare_the_head(text_run):
    model = load(text_run).model
    head = model.classifier.weight.clone()
    magnitude_masks(model, 0.6)
    assert sparsity_of(model) == pytest.approx(0.6, abs=0.01)
    assert torch.equal(model.classifier.weight, head)


def test_magnitude_pruning_survives_recovery(text_run, tmp_path):
    run = _prune(text_run, tmp_path / "pruned", method="magnitude", sparsity=0.5)
    p = run.read_manifest()["pruning"]
    assert p["sparsity_saved"] >= 0.49          # the recovery fine-tune did not regrow pruned weights
    assert run.read_manifest()["metrics"]["validation_accuracy"] > 0.8


def test_structured_pruning_shrinks_and_reloads(pooled_run, sentiment_dir, tmp_path):
    result = run_cli("prune", str(pooled_run), "--method", "structured", "--sparsity", "0.5", "--out",
                     str(tmp_path / "pruned"), "--train.tensorboard=false", "--train.threads=1")
    assert result.returncode == 0, result.stderr
    manifest = json.loads((tmp_path / "pruned" / "manifest.json").read_text())
    parent_size = AutoConfig.from_pretrained(pooled_run / "model").intermediate_size
    assert AutoConfig.from_pretrained(tmp_path / "pruned" / "model").intermediate_size == parent_size // 2
    assert manifest["pruning"]["parameters_after"] < manifest["pruning"]["parameters_before"]
    result = run_cli("evaluate", str(tmp_path / "pruned"), str(sentiment_dir), "--out", str(tmp_path / "eval"))
    assert result.returncode == 0, result.stderr


def test_sparsity_outside_zero_one_is_refused(text_run, tmp_path):
    result = run_cli("prune", str(text_run), "--sparsity", "1.5", "--out", str(tmp_path / "p"))
    assert result.returncode == 2 and "sparsity" in result.stderr
    assert not (tmp_path / "p").exists()


def test_structured_pruning_of_an_unknown_block_is_refused(image_run, tmp_path):
    with pytest.raises(ModelError):
        _prune(image_run, tmp_path / "p", method="structured")
    assert not (tmp_path / "p").exists()
