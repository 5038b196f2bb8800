"""The model a server answers with, and how it changes: loaded from a folder or a registry
reference, run on the engine `serve.backends` picks, warmed up before it serves, and swapped for a
new version when a followed alias moves (loaded and warmed beside the old one, then swapped in one
assignment, so no request fails and none waits for the load).

Two ways to hold it: in the server's own process (`Served`), or in a model process of its own
(`serve.process.ModelProcess`, the default for `fmloop serve`), where the HTTP side's Python work
cannot hold up the forward pass. Both answer the same questions (name, version, task, labels,
modality, image shape, backend) and `predict(batch)`."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from fmloop.models.inference import InferenceModel
from fmloop.models.loading import load, resolve
from fmloop.registry import models as registry
from fmloop.registry.names import parse_reference
from fmloop.serve.backends import choose
from fmloop.tasks import get_task

log = logging.getLogger(__name__)

# Inputs per forward pass within a served batch of texts on a CPU. Measured on SST-2 sentences
# (MiniLM, 2 threads, Zen 3; docs/benchmarks.md): ONNX 12.7 ms an input in passes of 32, 10.8 in
# passes of 8; PyTorch 18.0 and 15.1.
CPU_TEXT_PASS = 8

WARMUP_TEXTS = ["a short warm-up input", "a longer warm-up input that makes the first padded batch take its real shape"]


@dataclass
class Served:
    """One loaded, warmed-up model version, in this process."""

    name: str
    version: int  # 0: a folder, not a registry version
    model: InferenceModel  # the engine that answers
    reference: InferenceModel | None = None  # the PyTorch model, for explanations
    backend: dict = field(default_factory=lambda: {"name": "torch"})
    folder: Path | None = None  # where it was loaded from
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

    @property
    def image_shape(self) -> tuple[int, int]:
        """(size, channels) an image input is decoded to."""
        return self.model.size, self.model.channels

    def predict(self, inputs: list) -> list[dict]:
        """Decoded predictions for a batch: texts, or uint8 image arrays (H, W, C). On a CPU a batch
        of texts runs as length-sorted passes of CPU_TEXT_PASS: every row of a pass is padded to
        its longest, and on a CPU the padding costs more than the extra passes."""
        batch = np.stack(inputs) if self.modality == "image" else list(inputs)
        on_cpu = getattr(self.model, "device", torch.device("cpu")).type == "cpu"
        size = CPU_TEXT_PASS if self.modality == "text" and on_cpu else len(inputs)
        if self.task == "tokens":  # entities with their characters (models/tokens.py)
            return self.model.predict(batch, batch_size=max(min(size, len(inputs)), 1))
        logits = self.model.logits(batch, batch_size=max(min(size, len(inputs)), 1))
        return get_task(self.task).decode(logits, self.labels)

    def explainer(self) -> InferenceModel:
        """The model explanations run on: the PyTorch one when the engine is another."""
        return self.reference or self.model

    def close(self) -> None:
        """Nothing to let go: the model is this process's memory."""


def locate(ref: str) -> tuple[Path, str, int]:
    """(folder, name, version) of a model reference; version 0 for a folder."""
    if ref.startswith("models:/"):
        version = registry.get(ref)  # the alias read now: a followed alias is read again at each check
        return resolve(version.reference), version.name, version.version  # the one resolver of every command
    folder = resolve(ref)
    return folder, (folder.parent.name if folder.name == "model" else folder.name), 0


def load_served(ref: str, backend: str = "auto", threads: int | None = None) -> Served:
    """Load the model `ref` names, put it on the engine `backend` chooses, and warm it up."""
    if threads:
        torch.set_num_threads(threads)
    folder, name, number = locate(ref)
    model = load(folder, device="auto" if backend == "auto" else "cpu")
    choice = choose(model, folder, backend, threads)
    reference = model if choice.model is not model else None
    served = Served(name, number, choice.model, reference, choice.describe(), folder)
    warm_up(served)
    log.info(
        "serving %s version %d (%s) on %s: %s; from %s",
        name,
        number,
        served.task,
        choice.backend,
        choice.reason,
        folder,
    )
    return served


def warm_up(served) -> None:
    """Run a few batches so the first user request does not pay for lazy initialisation."""
    if served.modality == "image":
        size, channels = served.image_shape
        sample = [np.zeros((size, size, channels), np.uint8)] * 2
    else:
        sample = WARMUP_TEXTS
    for _ in range(2):
        served.predict(sample)


class ModelHolder:
    """The current model; `follow` keeps it on the version an alias points at. With `process`,
    each version runs in a model process of its own (serve.process)."""

    def __init__(self, ref: str, backend: str, threads: int | None, process: bool = False):
        self.ref, self.backend, self.threads, self.process = ref, backend, threads, process
        self.current = None  # Served, or a ModelProcess answering the same questions
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.on_swap = None  # callback(served) for metrics

    def _open(self, ref: str):
        if self.process:
            from fmloop.serve.process import ModelProcess

            return ModelProcess.start(ref, self.backend, self.threads)
        return load_served(ref, self.backend, self.threads)

    def load(self):
        self.current = self._open(self.ref)
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
        new = self._open(version.reference)
        new.name = version.name
        old, self.current = self.current, new  # one assignment: the next batch uses the new version
        if self.on_swap:
            self.on_swap(new)
        log.info("now serving %s version %d", new.name, new.version)
        if old is not None:
            old.close()  # waits for a batch it is scoring, then lets it go
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
        """Stop following the alias (the model keeps answering what is queued)."""
        self._stop.set()

    def close(self) -> None:
        """Let the model go (after the batcher has drained)."""
        if self.current is not None:
            self.current.close()
