"""int8 quantization: PyTorch dynamic (saved without pickles, reloaded bit-exactly) and ONNX Runtime
dynamic / static, each checked against the fp32 parent and scored by evaluate."""

import json

import numpy as np
import pytest
from safetensors import safe_open

from fmloop.compress import quantize
from fmloop.compress.config import QuantizeConfig
from fmloop.core.config import build_config
from fmloop.core.errors import ConfigError
from fmloop.models.formats.int8 import quantize_torch_dynamic
from fmloop.models.inference import TextModel
from fmloop.models.loading import load
from tests.conftest import run_cli

TEXTS = ["my friend sees the river and it was great today", "the cat likes a long song and it was awful again"]


@pytest.mark.parametrize("run_name", ["text_run", "pooled_run"])
def test_torch_int8_reloads_exactly_what_was_quantized(run_name, sentiment_dir, tmp_path, request):
    run = request.getfixturevalue(run_name)
    cfg = QuantizeConfig(model=str(run), data=str(sentiment_dir), backend="torch")
    manifest = quantize.run(cfg, tmp_path / "q").read_manifest()
    assert manifest["parity"]["agreement"] >= 0.97
    folder = tmp_path / "q" / "model"
    config = json.loads((folder / "config.json").read_text())
    assert config["fmloop_quantization"]["method"] == "dynamic-int8" and config["fmloop_quantization"]["modules"]
    with safe_open(str(folder / "model.safetensors"), "pt") as f:
        int8 = [k for k in f.keys() if k.endswith(".weight_int8")]
        assert int8 and all(str(f.get_tensor(k).dtype) == "torch.int8" for k in int8)
    reloaded = load(tmp_path / "q")
    parent = load(run)
    in_memory = TextModel(quantize_torch_dynamic(parent.model), parent.tokenizer, parent.folder)
    assert np.array_equal(reloaded.logits(TEXTS), in_memory.logits(TEXTS))


@pytest.mark.parametrize("mode", ["dynamic", "static"])
def test_onnx_int8_is_checked_and_evaluates(text_run, sentiment_dir, tmp_path, mode):
    result = run_cli("quantize", str(text_run), "--mode", mode, "--out", str(tmp_path / "q"), "--min-agreement", "0.9")
    assert result.returncode == 0, result.stderr
    manifest = json.loads((tmp_path / "q" / "manifest.json").read_text())
    assert manifest["kind"] == "quantize" and manifest["parity"]["agreement"] >= 0.9
    meta = json.loads((tmp_path / "q" / "model" / "fmloop_onnx.json").read_text())
    assert meta["quantization"] == f"{mode}-int8"
    import onnx

    graph = onnx.load(str(tmp_path / "q" / "model" / "model.onnx")).graph
    ops = {n.op_type for n in graph.node}
    assert ops & {"MatMulInteger", "DynamicQuantizeLinear", "QuantizeLinear", "DequantizeLinear"}
    result = run_cli("evaluate", str(tmp_path / "q"), str(sentiment_dir), "--out", str(tmp_path / "eval"))
    assert result.returncode == 0, result.stderr
    assert json.loads((tmp_path / "eval" / "metrics.json").read_text())["metrics"]["accuracy"] > 0.8


def test_image_model_quantizes_through_onnx(image_run, image_dir, tmp_path):
    manifest = quantize.run(QuantizeConfig(model=str(image_run), data=str(image_dir)), tmp_path / "q").read_manifest()
    parity = manifest["parity"]
    # the parent separates the classes (a constant predictor would agree with anything)
    assert parity["n"] >= 16 and parity["parent_accuracy"] >= 0.9
    assert parity["agreement"] >= 0.97 and load(tmp_path / "q").modality == "image"


def test_bad_settings_fail_before_any_work(text_run, tmp_path):
    with pytest.raises(ConfigError, match="Static int8"):
        build_config(QuantizeConfig, {"model": str(text_run), "backend": "torch", "mode": "static"})
    with pytest.raises(ConfigError, match="backend"):
        build_config(QuantizeConfig, {"model": str(text_run), "backend": "tensorrt"})
    result = run_cli("quantize", str(text_run), "--backend", "torch", "--mode", "static", "--out", str(tmp_path / "q"))
    assert result.returncode == 2 and "Static int8" in result.stderr
    assert not (tmp_path / "q").exists()
