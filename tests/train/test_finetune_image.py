"""Image fine-tuning, evaluation and prediction end to end through the CLI, on a tiny ImageFolder."""

import json

import numpy as np
import pytest
from PIL import Image

from tests.conftest import make_image_folder, run_cli

FAST = [
    "--train.max_steps=30",
    "--train.batch_size=8",
    "--train.lr=3e-3",
    "--train.tensorboard=false",
    "--train.threads=1",
    "--train.evals_per_epoch=1",
]


@pytest.fixture
def image_tree(tmp_path, monkeypatch):
    monkeypatch.setenv("FMLOOP_CACHE", str(tmp_path / "cache"))
    root = make_image_folder(tmp_path / "imgs", n_per_class=20)
    (root / "vertical" / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\ntruncated")
    Image.new("RGBA", (16, 16), (10, 200, 10, 128)).save(root / "horizontal" / "rgba.png")
    return root


def test_imagefolder_finetune_evaluate_predict(image_tree, tmp_path):
    env = {"FMLOOP_CACHE": str(tmp_path / "cache")}
    run = tmp_path / "run"
    result = run_cli("finetune", "--model", "cnn-small", "--data", str(image_tree), "--out", str(run), *FAST, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "corrupt.png" in result.stderr  # the skipped file is reported
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["data_summary"]["skipped_images"] == 1
    assert manifest["metrics"]["validation_accuracy"] >= 0.75  # stripes are easy
    assert (run / "model" / "preprocessor_config.json").exists()

    out = tmp_path / "eval"
    result = run_cli("evaluate", str(run / "model"), str(image_tree), "--out", str(out), env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["n"] == 41 and "accuracy" in metrics["metrics"]
    assert "confusion matrix" in (out / "report.html").read_text()

    preds = tmp_path / "preds.jsonl"
    result = run_cli("predict", str(run / "model"), str(image_tree / "vertical"), "--out", str(preds), env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = [json.loads(line) for line in preds.read_text().splitlines()]
    assert len(lines) == 20 and {"image", "label", "probabilities"} <= set(lines[0])
    assert np.mean([line["label"] == "vertical" for line in lines]) >= 0.75


def test_report_shows_confidently_wrong_images(tmp_path):
    from fmloop.evaluate.evaluation import write_evaluation

    images = np.random.default_rng(0).integers(0, 256, (6, 8, 8, 1), dtype=np.uint8)
    logits = np.array([[3.0, 0], [0, 3], [3, 0], [0, 3], [2, 0], [0, 1]])
    y = np.array([0, 1, 1, 0, 0, 1])
    write_evaluation(
        out=tmp_path,
        model="m",
        data="d",
        task="classification",
        labels=["a", "b"],
        y_true=y,
        logits=logits,
        images=images,
        names=[f"img{i}" for i in range(6)],
    )
    html = (tmp_path / "report.html").read_text()
    assert 'alt="most confidently wrong images"' in html and "img2" in html and "img3" in html


@pytest.mark.parametrize("strategy", ["linear-probe", "lora", "llrd"])
def test_strategies_on_a_vit(image_tree, tmp_path, strategy):
    run = tmp_path / strategy
    result = run_cli(
        "finetune",
        "--model",
        "vit-mini",
        "--data",
        str(image_tree),
        "--strategy",
        strategy,
        "--out",
        str(run),
        *FAST,
        "--train.max_steps=4",
        env={"FMLOOP_CACHE": str(tmp_path / "cache")},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    import fmloop

    model = fmloop.load(run / "model")
    preds = model.predict([str(p) for p in sorted((image_tree / "vertical").glob("0*.png"))[:3]])
    assert len(preds) == 3 and set(preds[0]["probabilities"]) == {"horizontal", "vertical"}


def test_images_too_small_for_the_preset_fail_before_anything_is_written(tmp_path):
    root = make_image_folder(tmp_path / "tiny", n_per_class=6, size=6)
    run = tmp_path / "run"
    result = run_cli(
        "finetune",
        "--model",
        "convnext-nano",
        "--data",
        str(root),
        "--out",
        str(run),
        *FAST,
        env={"FMLOOP_CACHE": str(tmp_path / "cache")},
    )
    assert result.returncode == 2, result.stderr[-2000:]
    assert "Images of 6 px are too small for the preset 'convnext-nano'" in result.stderr
    assert not run.exists()
