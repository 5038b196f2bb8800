"""Image pretraining (SimCLR, MAE) end to end: the saved backbone loads with transformers alone and
fine-tunes through `fmloop finetune`."""

import json

import pytest
import torch
from transformers import AutoModel

from fmloop.train.objectives.image import mae_encoder_as_vit, mae_model
from tests.conftest import make_image_folder, make_unlabeled_folder, run_cli

FAST = [
    "--max-steps",
    "6",
    "--train.batch_size=16",
    "--train.eval_every=3",
    "--train.eval_batches=1",
    "--train.checkpoint_every=3",
    "--train.tensorboard=false",
    "--train.threads=1",
]


@pytest.fixture
def unlabeled(tmp_path):
    return make_unlabeled_folder(tmp_path / "unlabeled", 48)


@pytest.mark.parametrize("objective", ["simclr", "mae"])
def test_pretrain_then_finetune(unlabeled, tmp_path, objective):
    env = {"FMLOOP_CACHE": str(tmp_path / "cache")}
    run = tmp_path / objective
    result = run_cli(
        "pretrain",
        "--modality",
        "image",
        "--objective",
        objective,
        "--data",
        str(unlabeled),
        "--out",
        str(run),
        *FAST,
        env=env,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["modality"] == "image" and manifest["metrics"]["steps"] == 6
    assert manifest["metrics"]["eval_loss"] == manifest["metrics"]["eval_loss"]  # finite
    backbone = AutoModel.from_pretrained(str(run / "model"))  # plain transformers, no fmloop code
    assert type(backbone).__name__ == "ViTModel"
    assert (run / "model" / "preprocessor_config.json").exists()

    labeled = make_image_folder(tmp_path / "labeled", n_per_class=12)
    ft = tmp_path / f"ft-{objective}"
    result = run_cli(
        "finetune",
        "--model",
        str(run / "model"),
        "--data",
        str(labeled),
        "--out",
        str(ft),
        "--train.limit-per-class",
        "8",
        "--train.max_steps=4",
        "--train.batch_size=8",
        "--train.tensorboard=false",
        "--train.threads=1",
        env=env,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    ft_manifest = json.loads((ft / "manifest.json").read_text())
    assert ft_manifest["parents"][0]["path"].endswith("model")
    # the label budget (8 per class) covers the validation split too: 1 per class held out of it
    assert ft_manifest["data_summary"]["class_balance"] == {"horizontal": 7, "vertical": 7}
    assert ft_manifest["data_summary"]["rows"] == {"train": 14, "validation": 2}


def test_objective_must_match_the_modality(unlabeled, tmp_path):
    result = run_cli("pretrain", "--data", str(unlabeled), "--objective", "mlm", "--out", str(tmp_path / "x"))
    assert result.returncode == 2 and "simclr, mae for image data" in result.stderr
    assert not (tmp_path / "x").exists()


def test_mae_encoder_maps_onto_vit_exactly():
    from transformers import ViTConfig

    vit = ViTConfig(
        image_size=16,
        patch_size=4,
        num_channels=1,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
    )
    mae = mae_model(vit, mask_ratio=0.0)
    encoder = mae_encoder_as_vit(mae).eval()
    mae.eval()
    x = torch.randn(2, 1, 16, 16)
    # With nothing masked, the MAE encoder sees every patch (in a shuffled order): the CLS output matches.
    expected = mae.vit(pixel_values=x).last_hidden_state[:, 0]
    torch.testing.assert_close(encoder(pixel_values=x).last_hidden_state[:, 0], expected, rtol=1e-4, atol=1e-4)
