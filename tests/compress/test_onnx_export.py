"""ONNX export: parity with PyTorch, runs in onnxruntime alone, and refuses a model that disagrees."""

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

from fmloop.compress import onnx_export
from fmloop.compress.config import ExportConfig
from fmloop.core.config import build_config
from fmloop.core.errors import ConfigError, ParityError
from fmloop.models.calibration import read_temperature
from fmloop.models.loading import load
from tests.conftest import parent_paths, run_cli


def test_export_matches_pytorch_and_evaluates(text_run, sentiment_dir, tmp_path):
    out = tmp_path / "onnx"
    result = run_cli("export", str(text_run), "--format", "onnx", "--out", str(out))  # data: from the run's config
    assert result.returncode == 0, result.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["kind"] == "export" and parent_paths(tmp_path / "onnx") == [str((text_run / "model").resolve())]
    assert manifest["parity"]["agreement"] == 1.0 and manifest["parity"]["max_abs_diff"] < 1e-4
    result = run_cli("evaluate", str(out), str(sentiment_dir), "--out", str(tmp_path / "eval"))
    assert result.returncode == 0, result.stderr
    onnx_acc = json.loads((tmp_path / "eval" / "metrics.json").read_text())["metrics"]["accuracy"]
    torch_acc = json.loads((text_run / "metrics.json").read_text())["metrics"]["accuracy"]
    assert onnx_acc == torch_acc


def test_mean_pooled_model_exports_with_dynamic_batch_and_length(pooled_run, sentiment_dir, tmp_path):
    onnx_export.run(ExportConfig(model=str(pooled_run), data=str(sentiment_dir)), tmp_path / "onnx")
    texts = ["it was great", "the cat likes a long song about the river and it was awful again today and then some"]
    exported, parent = load(tmp_path / "onnx"), load(pooled_run)
    for batch in (texts[:1], texts, texts * 5):  # shapes other than the traced one
        assert np.abs(exported.logits(batch) - parent.logits(batch)).max() < 1e-4


PLAIN_ORT = textwrap.dedent("""
    import json, sys
    import numpy as np
    import onnxruntime
    from tokenizers import Tokenizer
    folder = sys.argv[1]
    meta = json.load(open(folder + "/fmloop_onnx.json"))
    tok = Tokenizer.from_file(folder + "/tokenizer.json")
    tok.enable_padding(pad_id=tok.token_to_id("[PAD]"))
    tok.enable_truncation(meta["max_length"])
    enc = tok.encode_batch(json.loads(sys.argv[2]))
    feeds = {"input_ids": np.array([e.ids for e in enc], dtype=np.int64),
             "attention_mask": np.array([e.attention_mask for e in enc], dtype=np.int64)}
    logits = onnxruntime.InferenceSession(folder + "/model.onnx").run(None, feeds)[0]
    assert "torch" not in sys.modules and "transformers" not in sys.modules
    print(json.dumps({"logits": logits.tolist(), "labels": meta["labels"]}))
""")


def test_onnx_runs_in_plain_onnxruntime_without_torch(text_run, sentiment_dir, tmp_path):
    onnx_export.run(ExportConfig(model=str(text_run), data=str(sentiment_dir)), tmp_path / "onnx")
    texts = ["my friend sees the river and it was great today", "a dull song and it was awful"]
    proc = subprocess.run(
        [sys.executable, "-c", PLAIN_ORT, str(tmp_path / "onnx" / "model"), json.dumps(texts)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout)
    assert got["labels"] == ["negative", "positive"]
    parent = load(text_run)
    assert np.abs(np.array(got["logits"]) - parent.raw_logits(texts)).max() < 1e-4
    # the graph computes the raw logits; the temperature travels beside it, and fmloop applies it
    assert read_temperature(tmp_path / "onnx" / "model") == parent.temperature != 1.0


def test_a_mismatching_export_fails_and_leaves_nothing(text_run, sentiment_dir, tmp_path, monkeypatch):
    real = onnx_export.torch_to_onnx

    def tampered(parent, path, sample, opset=17):
        with torch.no_grad():  # export a model whose head disagrees with the parent's
            head = parent.model.classifier
            saved = head.weight.clone()
            head.weight.mul_(-1)
            try:
                real(parent, path, sample, opset)
            finally:
                head.weight.copy_(saved)

    monkeypatch.setattr(onnx_export, "torch_to_onnx", tampered)
    with pytest.raises(ParityError, match="agrees with its parent"):
        onnx_export.run(ExportConfig(model=str(text_run), data=str(sentiment_dir)), tmp_path / "onnx")
    assert not (tmp_path / "onnx").exists() and not list(tmp_path.glob(".onnx*"))


def test_the_cli_exits_with_the_parity_code(text_run, sentiment_dir, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    import fmloop.compress.parity as parity
    from fmloop.cli.main import app
    from fmloop.core.errors import ExitCode

    real = parity.compare_outputs
    monkeypatch.setattr(
        "fmloop.compress.parity.compare_outputs",
        lambda task, a, b, y=None, labels=None: real(task, a, b[:, ::-1].copy(), y, labels),
    )  # swapped classes
    result = CliRunner().invoke(
        app, ["export", str(text_run), "--out", str(tmp_path / "onnx"), "--data", str(sentiment_dir)]
    )
    assert result.exit_code == ExitCode.PARITY
    assert not (tmp_path / "onnx").exists()


def test_image_model_exports(image_run, image_dir, tmp_path):
    manifest = onnx_export.run(
        ExportConfig(model=str(image_run), data=str(image_dir)), tmp_path / "onnx"
    ).read_manifest()
    assert manifest["parity"]["agreement"] == 1.0
    exported = load(tmp_path / "onnx")
    assert exported.modality == "image" and exported.labels == ["horizontal", "vertical"]
    files = sorted(image_dir.rglob("*.png"))[:3]
    assert [p["label"] for p in exported.predict([str(f) for f in files])] == [
        p["label"] for p in load(image_run).predict([str(f) for f in files])
    ]


def test_bad_threshold_is_refused_before_work(text_run, tmp_path):
    with pytest.raises(ConfigError, match="min_agreement"):
        build_config(ExportConfig, {"model": str(text_run), "min_agreement": 1.5})
