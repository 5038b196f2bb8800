"""Pruning: global magnitude pruning keeps its zeros through recovery; structured pruning really
shrinks the feed-forward layers and still loads with transformers."""

import json

import pytest
import torch
from transformers import AutoConfig

from fmloop.compress.config import PruneConfig
from fmloop.compress.prune import magnitude_masks, sparsity_of
from fmloop.compress.prune import run as prune
from fmloop.core.config import load_config
from fmloop.core.errors import ModelError
from fmloop.models.loading import load
from tests.conftest import FAST, run_cli


def _prune(parent, out, **prune_settings):
    cfg = load_config(
        PruneConfig, overrides={"prune": prune_settings, "model": {"name": str(parent)}, "train": {"lr": 1e-3, **FAST}}
    )
    return prune(cfg, out)


def test_magnitude_masks_hit_the_target_and_spare_the_head(text_run):
    model = load(text_run).model
    head = model.classifier.weight.clone()
    magnitude_masks(model, 0.6)
    assert sparsity_of(model) == pytest.approx(0.6, abs=0.01)
    assert torch.equal(model.classifier.weight, head)


def test_magnitude_pruning_survives_recovery(text_run, tmp_path):
    run = _prune(text_run, tmp_path / "pruned", method="magnitude", sparsity=0.5)
    p = run.read_manifest()["pruning"]
    assert p["sparsity_saved"] >= 0.49  # the recovery fine-tune did not regrow pruned weights
    assert run.read_manifest()["metrics"]["validation_accuracy"] > 0.8


def test_structured_pruning_shrinks_and_reloads(pooled_run, sentiment_dir, tmp_path):
    result = run_cli(
        "prune",
        str(pooled_run),
        "--method",
        "structured",
        "--sparsity",
        "0.5",
        "--out",
        str(tmp_path / "pruned"),
        "--train.tensorboard=false",
        "--train.threads=1",
    )
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


@pytest.mark.parametrize("fixture", ["text_run", "pooled_run"])
def test_head_pruning_shrinks_attention_and_reloads_exactly(fixture, request, tmp_path):
    from fmloop.models.heads import HEADS_KEY, prune_heads

    fitted = load(request.getfixturevalue(fixture))
    model = fitted.model
    before = sum(p.numel() for p in model.parameters())
    assert prune_heads(model, 0.5) == [1, 1]  # 2 heads per layer -> 1
    assert sum(p.numel() for p in model.parameters()) < before
    model.save_pretrained(tmp_path / "m")
    fitted.tokenizer.save_pretrained(tmp_path / "m")
    assert len(json.loads((tmp_path / "m" / "config.json").read_text())[HEADS_KEY]) == 2
    texts = ["my friend sees the river and it was great today", "the cat likes a song and it was awful"]
    assert torch.allclose(
        torch.from_numpy(load(tmp_path / "m").raw_logits(texts)), torch.from_numpy(fitted.raw_logits(texts)), atol=1e-5
    )


def test_head_pruned_run_evaluates_and_exports(text_run, sentiment_dir, tmp_path):
    result = run_cli(
        "prune",
        str(text_run),
        "--method",
        "heads",
        "--sparsity",
        "0.5",
        "--out",
        str(tmp_path / "pruned"),
        "--train.tensorboard=false",
        "--train.threads=1",
    )
    assert result.returncode == 0, result.stderr
    assert json.loads((tmp_path / "pruned" / "manifest.json").read_text())["pruning"]["attention_heads"] == [1, 1]
    result = run_cli("evaluate", str(tmp_path / "pruned"), str(sentiment_dir), "--out", str(tmp_path / "eval"))
    assert result.returncode == 0, result.stderr
    result = run_cli("export", str(tmp_path / "pruned"), "--format", "onnx", "--out", str(tmp_path / "onnx"))
    assert result.returncode == 0, result.stderr  # the parity check passed


def test_head_pruning_of_an_unknown_block_is_refused(image_run, tmp_path):
    with pytest.raises(ModelError, match="attention"):
        _prune(image_run, tmp_path / "p", method="heads")
    assert not (tmp_path / "p").exists()
