"""An ONNX Runtime model folder written by `fmloop export` or `fmloop quantize --backend onnx`:
model.onnx + fmloop_onnx.json (task, labels, inputs, max length / image size) + tokenizer or
preprocessor. Runs on the CPU, or on a GPU with onnxruntime-gpu installed and device='cuda'."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from fmloop.core.errors import ModelError
from fmloop.data.reading import Reading
from fmloop.data.tokenizer import load_tokenizer
from fmloop.models.formats import Format, register
from fmloop.models.inference import InferenceModel, batched, batched_by_length, encode_texts, inference_device
from fmloop.models.tokens import as_words, outside_id, score_words

ONNX_FILE = "model.onnx"
META_FILE = "fmloop_onnx.json"
TEXT_INPUTS = ("input_ids", "attention_mask")


def require_onnxruntime():
    try:
        import onnxruntime
    except ImportError:
        raise ModelError("ONNX models need onnxruntime: pip install onnxruntime") from None
    return onnxruntime


class OnnxModel(InferenceModel):
    """An exported (or int8-quantized) ONNX model run by ONNX Runtime; same interface as fmloop.load()'s
    PyTorch models."""

    def __init__(self, folder: Path, session, meta: dict):
        self.folder, self.session, self.meta = folder, session, meta
        self.modality, self.task, self.labels = meta["modality"], meta["task"], meta["labels"]
        if self.modality == "image":
            self.size, self.channels, self.mean, self.std = meta["size"], meta["channels"], meta["mean"], meta["std"]
        else:
            self.tokenizer = load_tokenizer(folder)
            self.reading = Reading(meta["max_length"], meta.get("truncation", "head"))

    @classmethod
    def load(cls, folder: Path, device="cpu", threads: int | None = None) -> "OnnxModel":
        ort = require_onnxruntime()
        meta_file = folder / META_FILE
        if not meta_file.exists():
            raise ModelError(f"{folder} has {ONNX_FILE} but no {META_FILE}; it was not written by fmloop export.")
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        providers = ["CPUExecutionProvider"]
        if inference_device(device).type == "cuda" and "CUDAExecutionProvider" in ort.get_available_providers():
            providers.insert(0, "CUDAExecutionProvider")  # onnxruntime-gpu: the GPU, else the CPU
        session = ort.InferenceSession(str(folder / ONNX_FILE), options, providers=providers)
        return cls(folder, session, json.loads(meta_file.read_text()))

    def raw_logits(self, inputs, batch_size: int = 64, progress=None) -> np.ndarray:
        if self.modality == "image":
            pixels = self.to_pixels(inputs)

            def run_images(idx: np.ndarray) -> np.ndarray:
                x = pixels[idx].astype(np.float32).transpose(0, 3, 1, 2) / 255.0
                x = (x - np.reshape(self.mean, (1, -1, 1, 1))) / np.reshape(self.std, (1, -1, 1, 1))
                return self.session.run(None, {"pixel_values": x.astype(np.float32)})[0]

            return batched(len(pixels), run_images, batch_size, progress)

        if self.task == "tokens":
            return score_words(
                lambda feeds: self.session.run(None, feeds)[0], self.tokenizer, as_words(inputs)[0], self.reading,
                len(self.labels), batch_size, progress, outside_id(self.labels),
            )  # fmt: skip

        def run(texts: list[str]) -> np.ndarray:
            return self.session.run(None, encode_texts(self.tokenizer, texts, self.reading))[0]

        return batched_by_length(list(inputs), run, batch_size, progress)


def recognise(folder: Path) -> bool:
    return (folder / ONNX_FILE).exists()


FORMAT = register(
    Format("onnx", recognise, lambda folder, device="cpu": OnnxModel.load(folder, device), priority=30, fp32=False)
)
