"""The model a server answers with, and how it changes: loaded from a folder or a registry
reference, optionally exported to ONNX Runtime, warmed up before it serves, and swapped for a new
version when a followed alias moves (loaded and warmed beside the old one, then swapped in one
assignment, so no request fails and none waits for the load)."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from fmloop.compress.onnx_export import example_inputs, write_onnx_folder
from fmloop.core.artifacts import building
from fmloop.core.home import cache_dir
from fmloop.core.manifest import weights_fingerprint
from fmloop.models.formats.onnx import OnnxModel
from fmloop.models.inference import InferenceModel
from fmloop.models.loading import load, resolve
from fmloop.registry import models as registry
from fmloop.registry.names import parse_reference
from fmloop.tasks import get_task

log = logging.getLogger(__name__)

WARMUP_TEXTS = ["a short warm-up input", "a longer warm-up input that makes the first padded batch take its real shape"]


@dataclass
class Served:
    """One loaded, warmed-up model version."""

    name: str
    version: int  # 0: a folder, not a registry version
    model: InferenceModel
    loaded_at: float = field(default_factory=time.time)

    @property
    def labels(self) -> list[str] | None:
        return self.model.labels

    @property
    def task(self) -> str:
        return self.model.task

    @property
    def modality(self) -> str:
        return self.model.modality

    def predict(self, inputs: list) -> list[dict]:
        """Decoded predictions for a batch: texts, or uint8 image arrays (H, W, C)."""
        batch = np.stack(inputs) if self.modality == "image" else list(inputs)
        logits = self.model.logits(batch, batch_size=max(len(inputs), 1))
        return get_task(self.task).decode(logits, self.labels)


def load_served(ref: str, backend: str = "torch", threads: int | None = None) -> Served:
    """Load, convert (ONNX) and warm up the model `ref` names."""
    if threads:
        torch.set_num_threads(threads)
    if ref.startswith("models:/"):
        version = registry.get(ref)  # the alias read now: a followed alias is read again at each check
        folder = resolve(version.reference)  # a pinned version: the one resolver every command uses
        name, number = version.name, version.version
    else:
        folder = resolve(ref)
        name, number = (folder.parent.name if folder.name == "model" else folder.name), 0
    model = load(folder, device="cpu")
    if backend == "onnx" and not isinstance(model, OnnxModel):
        model = as_onnx(model, folder, threads)
    served = Served(name, number, model)
    warm_up(served)
    log.info("serving %s version %d (%s, %s backend) from %s", name, number, served.task, backend, folder)
    return served


def as_onnx(model: InferenceModel, folder: Path, threads: int | None) -> OnnxModel:
    """The ONNX Runtime twin of a PyTorch model, exported once per weights into the fmloop cache."""
    target = cache_dir("onnx", weights_fingerprint(folder) or folder.name)
    if not (target / "model.onnx").exists():
        sample = (
            WARMUP_TEXTS
            if model.modality == "text"
            else np.zeros((2, model.size, model.size, model.channels), np.uint8)
        )
        with building(target, replace=True) as tmp:
            write_onnx_folder(model, tmp, example_inputs(model, sample))
    return OnnxModel.load(target, threads=threads)


def warm_up(served: Served) -> None:
    """Run a few batches so the first user request does not pay for lazy initialisation."""
    if served.modality == "image":
        sample = [np.zeros((served.model.size, served.model.size, served.model.channels), np.uint8)] * 2
    else:
        sample = WARMUP_TEXTS
    for _ in range(2):
        served.predict(sample)


class ModelHolder:
    """The current model; `follow` keeps it on the version an alias points at."""

    def __init__(self, ref: str, backend: str, threads: int | None):
        self.ref, self.backend, self.threads = ref, backend, threads
        self.current: Served | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.on_swap = None  # callback(Served) for metrics

    def load(self) -> Served:
        self.current = load_served(self.ref, self.backend, self.threads)
        if self.on_swap:
            self.on_swap(self.current)
        return self.current

    @property
    def follows_alias(self) -> bool:
        return self.ref.startswith("models:/") and parse_reference(self.ref)[1] is not None

    def check_alias(self) -> bool:
        """Load the alias's version if it moved; True when the served model changed."""
        version = registry.get(self.ref)
        if self.current is not None and version.version == self.current.version:
            return False
        log.info("%s moved to version %d: loading it beside the current one", self.ref, version.version)
        new = load_served(version.reference, self.backend, self.threads)
        new.name = version.name
        self.current = new  # one assignment: the next batch uses the new version
        if self.on_swap:
            self.on_swap(new)
        log.info("now serving %s version %d", new.name, new.version)
        return True

    def follow(self, every_s: float) -> None:
        if not self.follows_alias or every_s <= 0:
            return

        def loop():
            while not self._stop.wait(every_s):
                try:
                    self.check_alias()
                except Exception as err:  # the current version keeps serving
                    log.warning("could not check %s: %s", self.ref, str(err).splitlines()[0] if str(err) else err)

        self._thread = threading.Thread(target=loop, name="fmloop-alias-follower", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
