"""A PyTorch dynamic-int8 model folder written by `fmloop quantize --backend torch`: int8 weights,
per-channel scales and zero points in model.safetensors (no pickles), and
`fmloop_quantization` in config.json naming the quantized modules."""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from safetensors.torch import load_file
from torch import nn
from transformers import AutoConfig, AutoModel, AutoModelForImageClassification

from fmloop.core.errors import ModelError
from fmloop.data.tokenizer import load_tokenizer
from fmloop.models.formats import Format, register
from fmloop.models.formats.hf import config_of, text_auto_class
from fmloop.models.inference import ImageModel, TextModel, inference_device
from fmloop.models.pooled import MeanPoolClassifier
from fmloop.models.tokens import TokenModel
from fmloop.models.vision import is_image_model_folder, read_preprocessor
from fmloop.tasks.catalog import task_of_config

log = logging.getLogger(__name__)

QUANT_KEY = "fmloop_quantization"


def quantize_torch_dynamic(model: nn.Module) -> nn.Module:
    """nn.Linear -> dynamically quantized int8 Linear, per-output-channel symmetric weight scales."""
    import warnings

    from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.ao's quantized tensors are deprecated in favour of torchao
        return quantize_dynamic(model, {nn.Linear: per_channel_dynamic_qconfig}, dtype=torch.qint8)


def _skeleton(folder: Path, config):
    """The fp32 architecture of a saved task model, without its weights."""
    if getattr(config, "fmloop_pooling", None) == "mean":
        base = (
            AutoModel.from_config(config, add_pooling_layer=False)
            if config.model_type == "bert"
            else AutoModel.from_config(config)
        )
        return MeanPoolClassifier(base, config)
    auto = AutoModelForImageClassification if is_image_model_folder(str(folder)) else text_auto_class(config)
    return auto.from_config(config)


def load(folder: Path, device="cpu"):
    """A PyTorch int8 model saved by `save_torch_int8`, as a TextModel / ImageModel (on the CPU:
    PyTorch's int8 kernels exist only there)."""
    if inference_device(device).type != "cpu":
        log.info("%s is a PyTorch int8 model; it runs on the CPU, where its kernels are", folder)
    config = AutoConfig.from_pretrained(str(folder))
    spec = getattr(config, QUANT_KEY)
    state = load_file(str(folder / "model.safetensors"))
    quantized = {
        name: {
            part: state.pop(f"{name}.{part}", None)
            for part in ("weight_int8", "weight_scale", "weight_zero_point", "bias")
        }
        for name in spec["modules"]
    }
    # Float weights first (into the fp32 skeleton), then swap the Linear layers for int8 ones.
    skeleton = _skeleton(folder, config).eval()
    missing, unexpected = skeleton.load_state_dict(state, strict=False)
    missing = [k for k in missing if k.rsplit(".", 1)[0] not in quantized]
    if missing or unexpected:
        raise ModelError(
            f"{folder}/model.safetensors does not match its config: missing {missing[:3]}, unexpected {unexpected[:3]}."
        )
    model = quantize_torch_dynamic(skeleton)
    modules = dict(model.named_modules())
    for name, parts in quantized.items():
        weight = torch._make_per_channel_quantized_tensor(
            parts["weight_int8"], parts["weight_scale"].double(), parts["weight_zero_point"].long(), 0
        )
        modules[name].set_weight_bias(weight, parts["bias"])
    model.eval()
    if is_image_model_folder(str(folder)):
        return ImageModel(model, folder, read_preprocessor(folder), "cpu")
    model_class = TokenModel if task_of_config(config).name == "tokens" else TextModel
    return model_class(model, load_tokenizer(folder), folder, "cpu")


def recognise(folder: Path) -> bool:
    return bool(config_of(folder).get(QUANT_KEY))


FORMAT = register(Format("int8", recognise, load, priority=40, fp32=False))
