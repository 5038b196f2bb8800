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
from safetensors.torch import load_file, save_file
from torch import nn

from fmloop.compress.artifact import check_new_out, default_data, write_run
from fmloop.compress.onnx_export import (OnnxModel, example_inputs, load_parent, parity_inputs, torch_to_onnx,
                                         write_onnx_folder)
from fmloop.compress.parity import check_min_agreement, gate
from fmloop.core.errors import ConfigError, ModelError
from fmloop.models.loading import ImageModel, TextModel

log = logging.getLogger(__name__)

QUANT_KEY = "fmloop_quantization"


# PyTorch dynamic int8 -------------------------------------------------------------------------------

def _quantizable(model: nn.Module) -> list[str]:
    return [name for name, m in model.named_modules() if type(m) is nn.Linear]


def quantize_torch_dynamic(model: nn.Module) -> nn.Module:
    """nn.Linear -> dynamically quantized int8 Linear, per-output-channel symmetric weight scales."""
    import warnings

    from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")   # torch.ao's quantized tensors are deprecated in favour of torchao
        return quantize_dynamic(model, {nn.Linear: per_channel_dynamic_qconfig}, dtype=torch.qint8)


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


def _skeleton(folder: Path, config):
    """The fp32 architecture of a saved task model, without its weights."""
    from transformers import AutoModel, AutoModelForImageClassification, AutoModelForSequenceClassification

    if getattr(config, "fmloop_pooling", None) == "mean":
        from fmloop.models.pooled import MeanPoolClassifier

        base = (AutoModel.from_config(config, add_pooling_layer=False) if config.model_type == "bert"
                else AutoModel.from_config(config))
        return MeanPoolClassifier(base, config)
    from fmloop.models.vision import is_image_model_folder

    auto = AutoModelForImageClassification if is_image_model_folder(str(folder)) else AutoModelForSequenceClassification
    return auto.from_config(config)


def save_torch_int8(parent, folder: Path) -> None:
    names = _quantizable(parent.model)
    qmodel = quantize_torch_dynamic(parent.model)
    save_file(_int8_state(qmodel, names), str(folder / "model.safetensors"), metadata={"format": "pt"})
    config = parent.model.config
    setattr(config, QUANT_KEY, {"method": "dynamic-int8", "backend": "torch", "modules": names})
    config.save_pretrained(folder)
    delattr(config, QUANT_KEY)
    if parent.modality == "image":
        from fmloop.models.vision import write_preprocessor

        write_preprocessor(folder, parent.size, parent.channels, list(parent.mean), list(parent.std))
    else:
        parent.tokenizer.save_pretrained(folder)


def load_quantized(folder: Path):
    """A PyTorch int8 model saved by `save_torch_int8`, as a TextModel / ImageModel."""
    import fmloop.models.vision  # noqa: F401  (registers fmloop's convolutional model type)
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(str(folder))
    spec = getattr(config, QUANT_KEY)
    state = load_file(str(folder / "model.safetensors"))
    quantized = {name: {part: state.pop(f"{name}.{part}", None)
                        for part in ("weight_int8", "weight_scale", "weight_zero_point", "bias")}
                 for name in spec["modules"]}
    # Float weights first (into the fp32 skeleton), then swap the Linear layers for int8 ones.
    skeleton = _skeleton(folder, config).eval()
    missing, unexpected = skeleton.load_state_dict(state, strict=False)
    missing = [k for k in missing if k.rsplit(".", 1)[0] not in quantized]
    if missing or unexpected:
        raise ModelError(f"{folder}/model.safetensors does not match its config: missing {missing[:3]}, "
                         f"unexpected {unexpected[:3]}.")
    model = quantize_torch_dynamic(skeleton)
    modules = dict(model.named_modules())
    for name, parts in quantized.items():
        weight = torch._make_per_channel_quantized_tensor(parts["weight_int8"], parts["weight_scale"].double(),
                                                          parts["weight_zero_point"].long(), 0)
        modules[name].set_weight_bias(weight, parts["bias"])
    model.eval()
    from fmloop.models.vision import is_image_model_folder

    if is_image_model_folder(str(folder)):
        return ImageModel(model, folder)
    from fmloop.data.tokenizer import load_tokenizer

    return TextModel(model, load_tokenizer(folder), folder)


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
        idx = pick[start:start + batch_size]
        if parent.modality == "image":
            (x,) = example_inputs(parent, parent.to_pixels(inputs[idx]) if isinstance(inputs, np.ndarray)
                                  else [inputs[i] for i in idx])
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
    level, root.level = root.level, logging.ERROR   # the quantizer logs every tensor to the root logger
    try:
        if mode == "dynamic":
            quantize_dynamic(str(fp32), str(out), weight_type=QuantType.QInt8, per_channel=True, extra_options=extra,
                             op_types_to_quantize=ops)
        else:
            quantize_static(str(fp32), str(out), _Calibration(feeds), quant_format=QuantFormat.QDQ, per_channel=True,
                            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, extra_options=extra,
                            op_types_to_quantize=ops)
    finally:
        root.level = level


# The command -----------------------------------------------------------------------------------------

def quantize(model_path: str, out: str | Path, data: str | None = None, *, backend: str = "onnx",
             mode: str = "dynamic", calibration_size: int = 256, min_agreement: float = 0.97,
             limit: int | None = None, batch_size: int = 64, text_column: str | None = None,
             label_column: str | None = None) -> dict:
    """int8-quantize a fine-tuned model into OUT/model and check it against the fp32 parent."""
    from fmloop.evaluate.evaluation import labeled_inputs, model_logits

    if backend not in ("onnx", "torch"):
        raise ConfigError(f"The 'backend' parameter of quantize must be onnx or torch. Got {backend!r} instead.")
    if mode not in ("dynamic", "static"):
        raise ConfigError(f"The 'mode' parameter of quantize must be dynamic or static. Got {mode!r} instead.")
    if backend == "torch" and mode == "static":
        raise ConfigError("Static int8 is available through ONNX Runtime: pass --backend onnx (or --mode dynamic).")
    check_min_agreement(min_agreement, "quantize")
    run = check_new_out(out)
    parent = load_parent(model_path)
    inputs, y, where = parity_inputs(parent, model_path, data, limit, text_column, label_column)
    reference = model_logits(parent, inputs, batch_size, "scoring the fp32 model")
    feeds = None
    if mode == "static":
        train_inputs, _, _, _ = labeled_inputs(parent, default_data(model_path, data), ("train",), text_column,
                                               label_column)
        feeds = calibration_feeds(parent, train_inputs, calibration_size)

    def write(folder: Path) -> dict:
        if backend == "torch":
            save_torch_int8(parent, folder)
            from fmloop.models.loading import load
            child = load(folder)
        else:
            with tempfile.TemporaryDirectory() as tmp:
                fp32, int8 = Path(tmp) / "fp32.onnx", Path(tmp) / "int8.onnx"
                torch_to_onnx(parent, fp32, example_inputs(parent, inputs))
                quantize_onnx_file(fp32, int8, mode, feeds)
                write_onnx_folder(parent, folder, None, onnx_file=int8)
            meta = json.loads((folder / "fmloop_onnx.json").read_text())
            meta["quantization"] = f"{mode}-int8"
            (folder / "fmloop_onnx.json").write_text(json.dumps(meta, indent=2) + "\n")
            child = OnnxModel.load(folder)
        return gate(child, reference, inputs, y, where, folder, task=parent.task, min_agreement=min_agreement,
                    max_abs_diff=None, what=f"the {backend} {mode} int8 model", batch_size=batch_size)

    return write_run(run, write, kind="quantize", backend=backend, mode=mode, parent=str(parent.folder),
                     task=parent.task, labels=parent.labels)
