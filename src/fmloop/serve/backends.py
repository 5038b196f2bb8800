"""Which engine runs a served model. `auto` (the default) builds every candidate the machine can
run well, keeps those whose answers match the PyTorch model's on probe inputs, times each on
batches shaped like a server's, and serves the fastest:

- torch: the PyTorch model itself (the reference; on a GPU when one is visible);
- torch-bf16: the same weights in bfloat16, where the device has native bf16 kernels (AVX-512 BF16
  or AMX on a CPU, a bf16-capable GPU); without them bf16 is emulated and far slower;
- onnx: an ONNX Runtime export of the weights (CPU; exported once per weights into the cache);
- onnx-int8: that export with int8 weights (dynamic quantization), where the CPU has int8 dot
  product instructions (VNNI or AMX); on older CPUs int8 matmuls saturate and are not offered.

fp32 candidates must agree with the reference to 1e-3 in every probability; reduced-precision
ones must give the same decision on at least 98% of the probes with probabilities within 0.02 on
average. The check and the timings are logged at start-up and shown on /v1/model.
"""

from __future__ import annotations

import csv
import gzip
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from fmloop.compress.onnx_export import example_inputs, write_onnx_folder
from fmloop.core.artifacts import building
from fmloop.core.home import cache_dir
from fmloop.core.manifest import weights_fingerprint
from fmloop.core.runtime import cpu_supports_bf16
from fmloop.data.locate import EMBEDDED
from fmloop.models.formats.onnx import ONNX_FILE, OnnxModel
from fmloop.models.inference import ImageModel, InferenceModel, TextModel
from fmloop.models.loading import load
from fmloop.tasks import get_task

log = logging.getLogger(__name__)

BACKENDS = ("auto", "torch", "onnx")
FP32_TOLERANCE = 1e-3  # largest probability difference an fp32 engine may show
REDUCED_AGREEMENT = 0.98  # share of same decisions a bf16 or int8 engine must give
REDUCED_MEAN_DIFF = 0.02  # and its mean probability difference
PROBE_TEXTS = 64  # 48 short sentences and 16 reviews: short and long inputs
PROBE_IMAGES = 16
TIMED_BATCH = 16  # a busy server's batch
TIMED_SINGLES = 4  # and a quiet one's


@dataclass
class Candidate:
    name: str
    model: InferenceModel
    agreement: float = 1.0
    max_diff: float = 0.0
    mean_diff: float = 0.0
    ms: float | None = None  # time for the timed batches
    passed: bool = True
    note: str = ""

    def summary(self) -> dict:
        out = {"agreement": round(self.agreement, 4), "max_prob_diff": round(self.max_diff, 6), "passed": self.passed}
        if self.ms is not None:
            out["ms"] = round(self.ms, 1)
        if self.note:
            out["note"] = self.note
        return out


@dataclass
class Choice:
    backend: str
    model: InferenceModel
    requested: str
    reason: str
    candidates: dict[str, dict] = field(default_factory=dict)

    def describe(self) -> dict:
        return {"name": self.backend, "requested": self.requested, "reason": self.reason, "candidates": self.candidates}


def cpu_has_int8_dot(cpuinfo: str | None = None) -> bool:
    """VNNI (AVX-512 or AVX) or AMX: int8 matmuls without the saturation of older CPUs."""
    try:
        text = Path("/proc/cpuinfo").read_text() if cpuinfo is None else cpuinfo
    except OSError:
        return False
    flags = set()
    for line in text.splitlines():
        if line.startswith("flags"):
            flags.update(line.split(":", 1)[1].split())
            break
    return bool(flags & {"avx512_vnni", "avx_vnni", "amx_int8"})


def bf16_native(device: torch.device) -> bool:
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return cpu_supports_bf16()


def choose(
    model: InferenceModel,
    folder: Path,
    requested: str,
    threads: int | None,
    *,
    offer: list[str] | None = None,
) -> Choice:
    """The engine to serve `model` (loaded from `folder`) with; `offer` overrides which candidates
    `auto` builds (tests use it to exercise paths this machine would not take)."""
    if model.task == "tokens" and not isinstance(model, OnnxModel):
        # The probe parity compares one answer per input; a tagger's ONNX and int8 engines are made
        # and checked on entity F1 by `fmloop export` / `fmloop quantize`, and served as folders.
        return Choice("torch", model, requested, "token classification is served by PyTorch (or from an export folder)")
    if isinstance(model, OnnxModel) or not isinstance(model, (TextModel, ImageModel)):
        kind = "onnx" if isinstance(model, OnnxModel) else type(model).__name__
        return Choice(kind, model, requested, "the model folder is already in this format; served as it is")
    if requested == "torch":
        return Choice("torch", model, requested, "asked for")
    if requested == "onnx":
        return Choice("onnx", as_onnx(model, folder, threads), requested, "asked for")
    names = offer if offer is not None else default_offer(model)
    probes = probe_inputs(model)
    reference = _probabilities(model, probes)
    kept: list[Candidate] = [Candidate("torch", model)]
    results: dict[str, dict] = {}
    for name in names:
        if name == "torch":
            continue
        try:
            candidate = Candidate(name, build(name, model, folder, threads))
        except Exception as err:  # an engine that cannot load this model is skipped, not fatal
            note = str(err).splitlines()[0] if str(err) else type(err).__name__
            log.warning("backend %s is not available for this model: %s", name, note)
            results[name] = {"passed": False, "note": note}
            continue
        _check(candidate, reference, _probabilities(candidate.model, probes), model.task)
        if candidate.passed:
            kept.append(candidate)
        else:
            results[name] = candidate.summary()
    for candidate in kept:
        candidate.ms = time_engine(candidate.model, probes)
        results[candidate.name] = candidate.summary()
    best = min(kept, key=lambda c: c.ms)
    reason = f"fastest of {', '.join(c.name for c in kept)} that passed the parity check"
    return Choice(best.name, best.model, requested, reason, results)


def default_offer(model: InferenceModel) -> list[str]:
    device = getattr(model, "device", torch.device("cpu"))
    offer = ["torch"]
    if model.modality == "text" and bf16_native(device):
        offer.append("torch-bf16")
    if device.type == "cpu":
        offer.append("onnx")
        if cpu_has_int8_dot():
            offer.append("onnx-int8")
    return offer


def build(name: str, model: InferenceModel, folder: Path, threads: int | None) -> InferenceModel:
    if name == "onnx":
        return as_onnx(model, folder, threads)
    if name == "onnx-int8":
        return as_onnx_int8(model, folder, threads)
    if name == "torch-bf16":
        if model.modality != "text":
            raise ValueError("bf16 serving is offered for text models only")
        twin = load(folder, device=model.device)
        twin.model.to(torch.bfloat16)
        return twin
    raise ValueError(f"unknown backend {name!r}")


def as_onnx(model: InferenceModel, folder: Path, threads: int | None) -> OnnxModel:
    """The ONNX Runtime twin of a PyTorch model, exported once per weights into the fmloop cache."""
    target = cache_dir("onnx", weights_fingerprint(folder) or folder.name)
    if not (target / ONNX_FILE).exists():
        with building(target, replace=True) as tmp:
            write_onnx_folder(model, tmp, example_inputs(model, _export_sample(model)))
    return OnnxModel.load(target, threads=threads)


def as_onnx_int8(model: InferenceModel, folder: Path, threads: int | None) -> OnnxModel:
    """The ONNX twin with int8 weights (dynamic quantization, as `fmloop quantize` makes), cached."""
    from fmloop.compress.quantize import write_int8_onnx_folder

    fp32 = as_onnx(model, folder, threads).folder
    target = cache_dir("onnx-int8", weights_fingerprint(folder) or folder.name)
    if not (target / ONNX_FILE).exists():
        with building(target, replace=True) as tmp:
            write_int8_onnx_folder(model, fp32 / ONNX_FILE, tmp, "dynamic")
    return OnnxModel.load(target, threads=threads)


def _export_sample(model: InferenceModel):
    if model.modality == "text":
        return ["a short sample", "a longer sample input that gives the export a second, padded row"]
    return np.zeros((2, model.size, model.size, model.channels), np.uint8)


def probe_inputs(model: InferenceModel):
    """Inputs both engines score: for text, sentences and reviews shipped with fmloop (real,
    varied lengths); for images, seeded noise at the model's size."""
    if model.modality == "image":
        rng = np.random.default_rng(0)
        return rng.integers(0, 256, (PROBE_IMAGES, model.size, model.size, model.channels), dtype=np.uint8)
    with gzip.open(EMBEDDED / "text" / "sst2" / "validation.csv.gz", "rt", encoding="utf-8") as f:
        sentences = [row["text"] for _, row in zip(range(PROBE_TEXTS * 3 // 4), csv.DictReader(f))]
    with gzip.open(EMBEDDED / "text" / "imdb" / "test.jsonl.gz", "rt", encoding="utf-8") as f:
        reviews = [json.loads(line)["text"] for _, line in zip(range(PROBE_TEXTS // 4), f)]
    return sentences + reviews


def _probabilities(model: InferenceModel, inputs) -> np.ndarray:
    return get_task(model.task).probabilities(model.raw_logits(inputs, batch_size=TIMED_BATCH))


def _decisions(probs: np.ndarray, task: str) -> np.ndarray:
    if task == "classification":
        return probs.argmax(-1)
    if task == "multilabel":
        return probs >= 0.5
    return np.round(probs, 2)  # regression: scores equal to two decimals


def _check(candidate: Candidate, reference: np.ndarray, probs: np.ndarray, task: str) -> None:
    diff = np.abs(probs - reference)
    candidate.max_diff, candidate.mean_diff = float(diff.max(initial=0)), float(diff.mean()) if diff.size else 0.0
    same = _decisions(probs, task) == _decisions(reference, task)
    candidate.agreement = float(same.reshape(len(same), -1).all(-1).mean()) if len(same) else 1.0
    if candidate.name == "onnx":
        candidate.passed = candidate.max_diff <= FP32_TOLERANCE
    else:
        candidate.passed = candidate.agreement >= REDUCED_AGREEMENT and candidate.mean_diff <= REDUCED_MEAN_DIFF
    if not candidate.passed:
        candidate.note = "answers differ from the PyTorch model's beyond the tolerance"


def time_engine(model: InferenceModel, probes, repeats: int = 2) -> float:
    """Milliseconds for one busy batch and a few single inputs, best of `repeats` after a warm-up."""
    batch = probes[:TIMED_BATCH]
    singles = [probes[i : i + 1] for i in range(TIMED_SINGLES)]

    def once() -> float:
        start = time.perf_counter()
        model.raw_logits(batch, batch_size=TIMED_BATCH)
        for one in singles:
            model.raw_logits(one, batch_size=1)
        return (time.perf_counter() - start) * 1000

    once()  # lazy initialisation and first-shape costs are not the engine's speed
    return min(once() for _ in range(repeats))
