"""Image backbones: named presets sized for 28-64 px inputs, and any local Hugging Face image model.

  vit-mini       ViT, 4 layers x 128, patch 4 (patch 2 below 20 px)            ~0.8M parameters
  vit-tiny       ViT, 6 layers x 192, patch 4                                   ~2.7M
  convnext-nano  ConvNeXt, 3 stages (48/96/192), stem patch 2                   ~0.9M
  resnet-mini    residual CNN, 3 stages (64/128/256), BatchNorm (CIFAR-style)   ~2.0M
  resnet-micro   the same at half the width (32/64/128): 4x fewer FLOPs         ~0.5M
  cnn-small      two conv stages (32/64) + linear: the classic small baseline   ~30k

ViT and ConvNeXt are transformers classes, so their folders load with transformers alone. The two
convolutional nets are transformers `PreTrainedModel`s registered under the model type
`fmloop-convnet`: their folders load with `AutoModel*.from_pretrained` once `fmloop` is imported.
Every saved image model carries `preprocessor_config.json` (size, mean, std) beside its weights.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForImageClassification,
    ConvNextConfig,
    PretrainedConfig,
    PreTrainedModel,
    ViTConfig,
)
from transformers.modeling_outputs import (
    BaseModelOutputWithPooling,
    ImageClassifierOutput,
)

from fmloop.core.catalog import Catalog
from fmloop.core.errors import ConfigError, ModelError
from fmloop.models.anatomy import set_dropout
from fmloop.models.presets import model_dir_of

VISION_PRESETS: Catalog = Catalog("image model preset", error=ConfigError)
PREPROCESSOR_FILE = "preprocessor_config.json"


# The convolutional family --------------------------------------------------------------------------


class ConvNetConfig(PretrainedConfig):
    model_type = "fmloop-convnet"

    def __init__(
        self,
        num_channels: int = 3,
        widths=(64, 128, 256),
        blocks=(1, 1, 1),
        image_size: int = 32,
        classifier_dropout: float = 0.0,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.num_channels, self.widths, self.blocks = num_channels, list(widths), list(blocks)
        self.image_size, self.classifier_dropout = image_size, classifier_dropout
        self.hidden_size = self.widths[-1]


def _conv_bn(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.GELU())


class _Residual(nn.Module):
    def __init__(self, width: int):
        super().__init__()
        self.body = nn.Sequential(_conv_bn(width, width), _conv_bn(width, width))

    def forward(self, x):
        return x + self.body(x)


class _Stage(nn.Module):
    """conv -> 2x2 max-pool -> BN -> GELU, then residual blocks at the lower resolution."""

    def __init__(self, c_in: int, c_out: int, n_blocks: int):
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, 3, padding=1, bias=False)
        self.norm = nn.BatchNorm2d(c_out)
        self.blocks = nn.Sequential(*[_Residual(c_out) for _ in range(n_blocks)])

    def forward(self, x):
        return self.blocks(F.gelu(self.norm(F.max_pool2d(self.conv(x), 2))))


class ConvNetPreTrainedModel(PreTrainedModel):
    config_class = ConvNetConfig
    base_model_prefix = "convnet"
    main_input_name = "pixel_values"

    def _init_weights(self, module):
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, std=0.02)
            nn.init.zeros_(module.bias)
        elif isinstance(module, nn.BatchNorm2d):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)


class ConvNetModel(ConvNetPreTrainedModel):
    def __init__(self, config: ConvNetConfig):
        super().__init__(config)
        widths = config.widths
        self.stem = _conv_bn(config.num_channels, widths[0])
        self.stages = nn.ModuleList(
            _Stage(c_in, c_out, n) for c_in, c_out, n in zip([widths[0], *widths[:-1]], widths, config.blocks)
        )
        self.post_init()

    def forward(self, pixel_values: torch.Tensor, **_) -> BaseModelOutputWithPooling:
        x = self.stem(pixel_values)
        for stage in self.stages:
            x = stage(x)
        return BaseModelOutputWithPooling(last_hidden_state=x, pooler_output=x.amax(dim=(2, 3)))


class ConvNetForImageClassification(ConvNetPreTrainedModel):
    def __init__(self, config: ConvNetConfig):
        super().__init__(config)
        self.convnet = ConvNetModel(config)
        self.dropout = nn.Dropout(config.classifier_dropout or 0.0)
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)
        self.post_init()

    def forward(self, pixel_values: torch.Tensor, labels=None, **_) -> ImageClassifierOutput:
        pooled = self.convnet(pixel_values).pooler_output
        return ImageClassifierOutput(logits=self.classifier(self.dropout(pooled)))


AutoConfig.register(ConvNetConfig.model_type, ConvNetConfig, exist_ok=True)
AutoModel.register(ConvNetConfig, ConvNetModel, exist_ok=True)
AutoModelForImageClassification.register(ConvNetConfig, ConvNetForImageClassification, exist_ok=True)


# Presets -----------------------------------------------------------------------------------------------


def _vit(layers: int, hidden: int, heads: int):
    def build(size: int, channels: int) -> PretrainedConfig:
        patch = 2 if size < 20 else 4
        if size % patch:
            raise ConfigError(
                f"ViT presets need an image size divisible by the patch size {patch}; the images are "
                f"{size} px. Resize them (or pick resnet-mini / cnn-small)."
            )
        return ViTConfig(
            image_size=size,
            patch_size=patch,
            num_channels=channels,
            hidden_size=hidden,
            num_hidden_layers=layers,
            num_attention_heads=heads,
            intermediate_size=4 * hidden,
            hidden_dropout_prob=0.0,
            attention_probs_dropout_prob=0.0,
            layer_norm_eps=1e-6,
        )

    return build


def _convnext(size: int, channels: int) -> PretrainedConfig:
    return ConvNextConfig(
        num_channels=channels,
        patch_size=2,
        num_stages=3,
        hidden_sizes=[48, 96, 192],
        depths=[2, 2, 2],
        image_size=size,
        drop_path_rate=0.0,
    )


def _convnet(widths, blocks):
    def build(size: int, channels: int) -> PretrainedConfig:
        return ConvNetConfig(num_channels=channels, widths=widths, blocks=blocks, image_size=size)

    return build


VISION_PRESETS.register("vit-mini", help="ViT 4x128, patch 4")(_vit(4, 128, 4))
VISION_PRESETS.register("vit-tiny", help="ViT 6x192, patch 4")(_vit(6, 192, 3))
VISION_PRESETS.register("convnext-nano", help="ConvNeXt 3 stages 48/96/192")(_convnext)
VISION_PRESETS.register("resnet-mini", help="residual CNN 64/128/256")(_convnet((64, 128, 256), (1, 1, 1)))
VISION_PRESETS.register("resnet-micro", help="residual CNN 32/64/128")(_convnet((32, 64, 128), (1, 1, 1)))
VISION_PRESETS.register("cnn-small", help="two conv stages, ~30k parameters")(_convnet((32, 64), (0, 0)))

MIN_SIZE = {"vit-mini": 8, "vit-tiny": 8, "convnext-nano": 16, "resnet-mini": 8, "resnet-micro": 8, "cnn-small": 4}


def is_vision_preset(name: str | None) -> bool:
    return bool(name) and name in VISION_PRESETS


def preset_config(name: str, size: int, channels: int) -> PretrainedConfig:
    build = VISION_PRESETS.get(name)
    if size < MIN_SIZE.get(name, 8):
        raise ConfigError(
            f"Images of {size} px are too small for the preset {name!r} (at least "
            f"{MIN_SIZE.get(name, 8)} px). Use larger images or cnn-small."
        )
    return build(size, channels)


def is_image_model_folder(path: str | None) -> bool:
    if not path:
        return False
    folder = model_dir_of(path)
    config = folder / "config.json"
    if not config.exists():
        adapter = folder / "adapter_config.json"
        if adapter.exists():
            base = json.loads(adapter.read_text()).get("base_model_name_or_path")
            return bool(base) and is_image_model_folder(base)
        return False
    data = json.loads(config.read_text())
    return "num_channels" in data or (folder / PREPROCESSOR_FILE).exists()


def _image_size(config) -> int:
    size = getattr(config, "image_size", None)
    return int(size[0] if isinstance(size, (list, tuple)) else size) if size else 0


def build_image_classifier(name: str, labels: list[str], size: int, channels: int, dropout: float | None = None):
    """(model with a fresh head for `labels`, parent folder or None). `name` is a preset or a folder."""
    id2label = {i: n for i, n in enumerate(labels)}
    label2id = {n: i for i, n in id2label.items()}
    if is_vision_preset(name):
        config = preset_config(name, size, channels)
        config.num_labels, config.id2label, config.label2id = len(labels), id2label, label2id
        set_dropout(config, dropout)
        return AutoModelForImageClassification.from_config(config), None
    folder = model_dir_of(name)
    if not (folder / "config.json").exists():
        raise ModelError(
            f"{name} is neither an image preset ({', '.join(VISION_PRESETS.names())}) nor a model "
            f"folder with a config.json."
        )
    config = AutoConfig.from_pretrained(str(folder))
    check_input_shape(config, size, channels, str(folder))
    config.num_labels, config.id2label, config.label2id = len(labels), id2label, label2id
    set_dropout(config, dropout)
    try:
        model = AutoModelForImageClassification.from_pretrained(
            str(folder), config=config, ignore_mismatched_sizes=True
        )
    except ValueError as err:
        raise ModelError(
            f"{folder}: transformers has no image-classification head for model type {config.model_type!r} ({err})."
        ) from None
    return model, str(folder.resolve())


def check_input_shape(config, size: int, channels: int, where: str) -> None:
    want_c = getattr(config, "num_channels", channels)
    if want_c != channels:
        raise ModelError(
            f"{where} expects {want_c}-channel images but the data has {channels} channel(s). "
            f"Use data of the same kind, or a preset."
        )
    want = _image_size(config)
    if config.model_type in ("vit", "vit_mae", "deit") and want and want != size:
        raise ModelError(
            f"{where} was built for {want} px images; the data has {size} px. Resize the data to {want} px."
        )


def write_preprocessor(folder: Path, size: int, channels: int, mean: list[float], std: list[float]) -> None:
    """The image processor config transformers' `AutoImageProcessor` reads, plus fmloop's channel count."""
    (Path(folder) / PREPROCESSOR_FILE).write_text(
        json.dumps(
            {
                "image_processor_type": "ViTImageProcessor",
                "do_resize": True,
                "size": {"height": size, "width": size},
                "resample": 2,
                "do_rescale": True,
                "rescale_factor": 1 / 255,
                "do_normalize": True,
                "image_mean": mean,
                "image_std": std,
                "num_channels": channels,
            },
            indent=2,
        )
        + "\n"
    )


def read_preprocessor(folder: Path) -> dict:
    file = Path(folder) / PREPROCESSOR_FILE
    if not file.exists():
        raise ModelError(
            f"{folder} has no {PREPROCESSOR_FILE} (image size and normalisation); it was not saved "
            f"by fmloop. Add one with image_mean, image_std and size."
        )
    data = json.loads(file.read_text())
    size = data.get("size", {})
    return {
        "size": int(size.get("height", size.get("shortest_edge", 0)) if isinstance(size, dict) else size),
        "mean": list(data["image_mean"]),
        "std": list(data["image_std"]),
        "channels": int(data.get("num_channels", len(data["image_mean"]))),
    }
