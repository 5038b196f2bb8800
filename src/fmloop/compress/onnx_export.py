"""`fmloop export --format onnx`: a model folder that ONNX Runtime runs on its own.

    OUT/model/model.onnx           dynamic batch (and sequence) axes; inputs input_ids +
                                   attention_mask (int64), or pixel_values (float, normalised)
    OUT/model/fmloop_onnx.json     task, labels, input names, max length / image size
    OUT/model/config.json          the parent's config (id2label / label2id)
    OUT/model/tokenizer.json ...   or preprocessor_config.json for images
    OUT/model/parity.json          the check against the parent on real examples

The export is traced with a padded batch of real inputs of different lengths, so the
attention-mask path is part of the graph, and it is then run on the whole validation split next
to the PyTorch model: the command fails, leaving nothing behind, when predictions agree on fewer
than `min_agreement` of the examples.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import numpy as np
import torch

from fmloop.compress.artifact import default_data, new_run, write_run
from fmloop.compress.config import ExportConfig
from fmloop.compress.parity import gate
from fmloop.core.artifacts import RunDir
from fmloop.core.errors import ConfigError, ModelError
from fmloop.data.augment import normalize, to_float
from fmloop.evaluate.evaluation import labeled_inputs, model_logits
from fmloop.models.calibration import copy_calibration
from fmloop.models.formats.onnx import META_FILE, ONNX_FILE, TEXT_INPUTS, OnnxModel
from fmloop.models.inference import ImageModel, InferenceModel, TextModel
from fmloop.models.loading import load
from fmloop.models.tokens import TokenModel
from fmloop.models.vision import write_preprocessor

log = logging.getLogger(__name__)


class _Logits(torch.nn.Module):
    """The graph ONNX sees: plain tensors in, logits out (no ModelOutput, no keyword arguments)."""

    def __init__(self, model: torch.nn.Module, modality: str):
        super().__init__()
        self.model, self.modality = model, modality

    def forward(self, *inputs):
        if self.modality == "image":
            return self.model(pixel_values=inputs[0]).logits
        return self.model(input_ids=inputs[0], attention_mask=inputs[1]).logits


def example_inputs(parent: InferenceModel, inputs) -> tuple[torch.Tensor, ...]:
    """Two real examples of different sizes, padded: the trace then covers the attention mask."""
    if parent.modality == "image":
        return (normalize(to_float(torch.from_numpy(parent.to_pixels(inputs[:2]))), parent.mean, parent.std),)
    texts = list(inputs)
    lengths = [len(t) for t in texts]
    pair = [texts[int(np.argmin(lengths))], texts[int(np.argmax(lengths))]]
    return tuple(torch.from_numpy(v) for v in parent.encode(pair).values())


def torch_to_onnx(parent: InferenceModel, path: Path, sample: tuple[torch.Tensor, ...], opset: int = 17) -> None:
    """Trace `parent.model` into an ONNX file with dynamic batch (and sequence) axes."""
    import warnings

    if getattr(parent.model.config, "fmloop_quantization", None):
        raise ConfigError(
            "This model is int8-quantized for PyTorch; export its fp32 parent instead and use "
            "`fmloop quantize --backend onnx` for an int8 ONNX model."
        )
    names = ["pixel_values"] if parent.modality == "image" else list(TEXT_INPUTS)
    axes = {name: {0: "batch"} if parent.modality == "image" else {0: "batch", 1: "sequence"} for name in names}
    axes["logits"] = {0: "batch", 1: "sequence"} if parent.task == "tokens" else {0: "batch"}
    module = _Logits(parent.model, parent.modality).eval()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer warnings about Python-side shape checks
        try:
            torch.onnx.export(
                module,
                sample,
                str(path),
                input_names=names,
                output_names=["logits"],
                dynamic_axes=axes,
                opset_version=opset,
                dynamo=False,
            )
        except Exception as err:
            raise ModelError(
                f"ONNX cannot express this model ({type(parent.model).__name__}): "
                f"{str(err).strip().splitlines()[0][:300]}"
            ) from None


def write_onnx_folder(
    parent: InferenceModel, folder: Path, sample, opset: int = 17, onnx_file: Path | None = None
) -> None:
    """model.onnx (traced here, or `onnx_file` moved in) + metadata + tokenizer / preprocessor."""
    folder.mkdir(parents=True, exist_ok=True)
    if onnx_file is None:
        torch_to_onnx(parent, folder / ONNX_FILE, sample, opset)
    else:
        shutil.move(str(onnx_file), folder / ONNX_FILE)
    meta = {"format": "onnx", "modality": parent.modality, "task": parent.task, "labels": parent.labels, "opset": opset}
    if parent.modality == "image":
        meta.update(size=parent.size, channels=parent.channels, mean=list(parent.mean), std=list(parent.std))
        meta["inputs"] = ["pixel_values"]
        write_preprocessor(folder, parent.size, parent.channels, list(parent.mean), list(parent.std))
    else:
        meta.update(
            inputs=list(TEXT_INPUTS), max_length=parent.reading.max_length, truncation=parent.reading.truncation
        )
        parent.tokenizer.save_pretrained(folder)
    parent.model.config.save_pretrained(folder)
    copy_calibration(parent.folder, folder)
    (folder / META_FILE).write_text(json.dumps(meta, indent=2) + "\n")


def load_parent(model_path: str) -> InferenceModel:

    parent = load(model_path, device="cpu")  # exported and quantized from the CPU, where they will run
    if not isinstance(parent, (TextModel, ImageModel, TokenModel)):
        raise ConfigError(
            f"{model_path} is a {type(parent).__name__}, not a PyTorch model fmloop can export; "
            f"export or quantize the model it was made from."
        )
    return parent


def parity_inputs(
    parent: InferenceModel,
    model_path: str,
    data: str | None,
    limit: int | None = None,
    text_column: str | None = None,
    label_column: str | None = None,
):
    """(inputs, y_true, where): the validation split (else test, else train) of the data."""

    data = default_data(model_path, data)
    inputs, _, y, where = labeled_inputs(parent, data, ("validation", "test"), text_column, label_column)
    if limit and len(y) > limit:
        pick = np.sort(np.random.default_rng(0).permutation(len(y))[:limit])
        inputs = inputs[pick] if isinstance(inputs, np.ndarray) else [inputs[i] for i in pick]
        y = y[pick]
    return inputs, y, where


def run(cfg: ExportConfig, out: str | Path, *, overwrite: bool = False) -> RunDir:
    """Export `cfg.model` to OUT/model (ONNX) and check it against the PyTorch model."""

    run = new_run(out, overwrite)
    parent = load_parent(cfg.model)
    inputs, y, where = parity_inputs(parent, cfg.model, cfg.data, cfg.limit, cfg.text_column, cfg.label_column)
    reference = model_logits(parent, inputs, cfg.batch_size, "scoring the PyTorch model")

    def write(folder: Path) -> dict:
        write_onnx_folder(parent, folder, example_inputs(parent, inputs), cfg.opset)
        return gate(
            OnnxModel.load(folder),
            reference,
            inputs,
            y,
            where,
            folder,
            task=parent.task,
            labels=parent.labels,
            min_agreement=cfg.min_agreement,
            max_abs_diff=cfg.max_abs_diff,
            what="the ONNX export",
            batch_size=cfg.batch_size,
        )

    return write_run(run, cfg, write, parents=[parent.folder], format="onnx", task=parent.task, labels=parent.labels)
