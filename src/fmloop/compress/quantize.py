"""`fmloop quantize`: int8 weights for the linear layers, checked against the fp32 parent.

Backends:
  onnx  (default) export to ONNX, then ONNX Runtime's quantizer. `dynamic`: int8 weights (one
        scale per output channel: per-tensor scales cost MiniLM about two points on SST-2),
        activations quantized on the fly. `static`: activations too, with ranges calibrated on a
        sample of real training inputs (QDQ format).
  torch dynamic only: `torch.ao` dynamically quantized nn.Linear. Saved as int8 weights + per-channel
        scales in safetensors (no pickles), and rebuilt into the same quantized modules on load.
"""

from __future__ import annotations

import json
import logging
import tempfile
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file
from torch import nn

from fmloop.compress.artifact import default_data, new_run, write_run
from fmloop.compress.config import QuantizeConfig
from fmloop.compress.onnx_export import (
    OnnxModel,
    example_inputs,
    load_parent,
    parity_inputs,
    torch_to_onnx,
    write_onnx_folder,
)
from fmloop.compress.parity import gate
from fmloop.core.artifacts import RunDir
from fmloop.evaluate.evaluation import labeled_inputs, model_logits
from fmloop.models.calibration import copy_calibration
from fmloop.models.formats.int8 import QUANT_KEY, quantize_torch_dynamic
from fmloop.models.loading import load
from fmloop.models.vision import write_preprocessor

log = logging.getLogger(__name__)


# PyTorch dynamic int8 -------------------------------------------------------------------------------


def _quantizable(model: nn.Module) -> list[str]:
    return [name for name, m in model.named_modules() if type(m) is nn.Linear]


def _int8_state(qmodel: nn.Module, names: list[str]) -> dict[str, torch.Tensor]:
    """Plain tensors for safetensors: every float tensor of the model, and for each quantized
    Linear its int8 weight, per-channel scales and zero points and fp32 bias."""
    state = {}
    quantized = set(names)
    for key, value in qmodel.state_dict().items():
        module = key.rsplit(".", 1)[0] if "." in key else ""
        if module in quantized or module.endswith("._packed_params") and module.rsplit(".", 1)[0] in quantized:
            continue
        if isinstance(value, torch.Tensor) and not value.is_quantized:
            state[key] = value.detach().contiguous()
    modules = dict(qmodel.named_modules())
    for name in names:
        weight, bias = modules[name].weight(), modules[name].bias()
        state[f"{name}.weight_int8"] = weight.int_repr().contiguous()
        state[f"{name}.weight_scale"] = weight.q_per_channel_scales().float().contiguous()
        state[f"{name}.weight_zero_point"] = weight.q_per_channel_zero_points().to(torch.int32).contiguous()
        if bias is not None:
            state[f"{name}.bias"] = bias.detach().contiguous()
    return state


def save_torch_int8(parent, folder: Path) -> None:
    names = _quantizable(parent.model)
    qmodel = quantize_torch_dynamic(parent.model)
    save_file(_int8_state(qmodel, names), str(folder / "model.safetensors"), metadata={"format": "pt"})
    config = parent.model.config
    setattr(config, QUANT_KEY, {"method": "dynamic-int8", "backend": "torch", "modules": names})
    config.save_pretrained(folder)
    delattr(config, QUANT_KEY)
    copy_calibration(parent.folder, folder)
    if parent.modality == "image":
        write_preprocessor(folder, parent.size, parent.channels, list(parent.mean), list(parent.std))
    else:
        parent.tokenizer.save_pretrained(folder)


# ONNX Runtime int8 ----------------------------------------------------------------------------------


class _Calibration:
    """onnxruntime CalibrationDataReader over batches of real inputs."""

    def __init__(self, feeds: list[dict[str, np.ndarray]]):
        self.feeds = iter(feeds)

    def get_next(self):
        return next(self.feeds, None)


def calibration_feeds(parent, inputs, n: int, batch_size: int = 16) -> list[dict[str, np.ndarray]]:
    pick = np.random.default_rng(0).permutation(len(inputs))[:n]
    feeds = []
    for start in range(0, len(pick), batch_size):
        idx = pick[start : start + batch_size]
        if parent.modality == "image":
            (x,) = example_inputs(
                parent, parent.to_pixels(inputs[idx]) if isinstance(inputs, np.ndarray) else [inputs[i] for i in idx]
            )
            feeds.append({"pixel_values": x.numpy()})
        else:
            feeds.append(parent.encode([inputs[i] for i in idx]))
    return feeds


def quantize_onnx_file(fp32: Path, out: Path, mode: str, feeds: list[dict] | None = None) -> None:
    import onnx
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_dynamic, quantize_static

    # Some exported ops (e.g. custom-domain fusions) defeat shape inference; the tensors they feed are fp32.
    extra = {"DefaultTensorType": onnx.TensorProto.FLOAT}
    # Only the weight-bearing ops: static ranges for the attention-mask arithmetic are constant (a
    # zero scale). Dynamic mode also stores the embedding tables (Gather) in int8: a quarter of the size.
    ops = ["MatMul", "Gemm", "Conv"] + (["Gather"] if mode == "dynamic" else [])
    root = logging.getLogger()
    level, root.level = root.level, logging.ERROR  # the quantizer logs every tensor to the root logger
    try:
        if mode == "dynamic":
            quantize_dynamic(
                str(fp32),
                str(out),
                weight_type=QuantType.QInt8,
                per_channel=True,
                extra_options=extra,
                op_types_to_quantize=ops,
            )
        else:
            quantize_static(
                str(fp32),
                str(out),
                _Calibration(feeds),
                quant_format=QuantFormat.QDQ,
                per_channel=True,
                activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8,
                extra_options=extra,
                op_types_to_quantize=ops,
            )
    finally:
        root.level = level


def write_int8_onnx_folder(parent, fp32: Path, folder: Path, mode: str, feeds: list[dict] | None = None) -> None:
    """An ONNX model folder (as `fmloop export` writes) holding `fp32` quantized to int8 in `mode`."""
    with tempfile.TemporaryDirectory() as tmp:
        int8 = Path(tmp) / "int8.onnx"
        quantize_onnx_file(fp32, int8, mode, feeds)
        write_onnx_folder(parent, folder, None, onnx_file=int8)
    meta = json.loads((folder / "fmloop_onnx.json").read_text())
    meta["quantization"] = f"{mode}-int8"
    (folder / "fmloop_onnx.json").write_text(json.dumps(meta, indent=2) + "\n")


# The command -----------------------------------------------------------------------------------------


def run(cfg: QuantizeConfig, out: str | Path, *, overwrite: bool = False) -> RunDir:
    """int8-quantize `cfg.model` into OUT/model and check it against the fp32 parent."""

    run = new_run(out, overwrite)
    parent = load_parent(cfg.model)
    inputs, y, where = parity_inputs(parent, cfg.model, cfg.data, cfg.limit, cfg.text_column, cfg.label_column)
    reference = model_logits(parent, inputs, cfg.batch_size, "scoring the fp32 model")
    feeds = None
    if cfg.mode == "static":
        train_inputs, _, _, _ = labeled_inputs(
            parent, default_data(cfg.model, cfg.data), ("train",), cfg.text_column, cfg.label_column
        )
        feeds = calibration_feeds(parent, train_inputs, cfg.calibration_size)

    def write(folder: Path) -> dict:
        if cfg.backend == "torch":
            save_torch_int8(parent, folder)
            child = load(folder)
        else:
            with tempfile.TemporaryDirectory() as tmp:
                fp32 = Path(tmp) / "fp32.onnx"
                torch_to_onnx(parent, fp32, example_inputs(parent, inputs))
                write_int8_onnx_folder(parent, fp32, folder, cfg.mode, feeds)
            child = OnnxModel.load(folder)
        return gate(
            child,
            reference,
            inputs,
            y,
            where,
            folder,
            task=parent.task,
            labels=parent.labels,
            min_agreement=cfg.min_agreement,
            max_abs_diff=None,
            what=f"the {cfg.backend} {cfg.mode} int8 model",
            batch_size=cfg.batch_size,
        )

    return write_run(
        run,
        cfg,
        write,
        parents=[parent.folder],
        backend=cfg.backend,
        mode=cfg.mode,
        task=parent.task,
        labels=parent.labels,
    )
