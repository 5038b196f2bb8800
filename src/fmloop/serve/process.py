"""The model in a process of its own. The server's process reads requests, checks them, writes JSON
and talks to the store; all of that is Python holding the interpreter lock. A forward pass also
needs the lock between its operators, so in one process each side stalls the other. Here the
batcher (still in the server's process: length-grouped batches, no waiting alone, shedding) hands
each batch to a model process over a pipe and waits on it without holding the lock.

What crosses the pipe is data only, never pickles: a JSON header per batch (texts, or the shape of
the images that follow as raw uint8 bytes) and JSON predictions back. A model process that dies
(out of memory on one input, killed) is started again for the next batch; the batcher's fallback
then scores the lost batch input by input, so only an input that kills it again fails.
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import threading
import time
from pathlib import Path

import numpy as np

from fmloop.core import errors
from fmloop.core.errors import ModelError

log = logging.getLogger(__name__)

START_TIMEOUT_S = 600  # loading, exporting and checking a large model on a slow machine


class ModelUnavailable(Exception):
    """The model process stopped while scoring (it is started again for the next batch)."""


class ModelClosed(ModelUnavailable):
    """This version was swapped out and let go; the batch belongs to the new one."""


class ModelProcess:
    """A served model version running in a child process: the same questions as `Served`
    (name, version, task, labels, modality, image_shape, backend) and `predict(batch)`."""

    def __init__(self, ref: str, backend: str, threads: int | None):
        self.ref, self.requested, self.threads = ref, backend, threads
        self._lock = threading.Lock()  # one batch on the pipe at a time
        self._explainer_lock = threading.Lock()
        self._explainer = None
        self._closed = False
        self._spawn()

    @classmethod
    def start(cls, ref: str, backend: str = "auto", threads: int | None = None) -> "ModelProcess":
        served = cls(ref, backend, threads)
        log.info(
            "serving %s version %d (%s) on %s in model process %d: %s",
            served.name, served.version, served.task, served.backend["name"], served._process.pid,
            served.backend.get("reason", ""),
        )  # fmt: skip
        return served

    # The child's life -------------------------------------------------------------------------

    def _spawn(self) -> None:
        context = multiprocessing.get_context("spawn")  # a fresh interpreter: no forked locks or threads
        self._conn, child_end = context.Pipe()
        self._process = context.Process(
            target=_child,
            args=(child_end, self.ref, self.requested, self.threads),
            name="fmloop-model",
            daemon=not multiprocessing.current_process().daemon,
        )
        self._process.start()
        child_end.close()
        if not self._conn.poll(START_TIMEOUT_S):
            self._process.kill()
            raise ModelError(f"the model process did not load {self.ref} within {START_TIMEOUT_S} s")
        try:
            info = json.loads(self._conn.recv_bytes())
        except EOFError:
            raise ModelError(
                f"the model process stopped while loading {self.ref} (exit code {self._process.exitcode})"
            ) from None
        if not info.get("ready"):
            self._process.join(10)
            error = getattr(errors, info.get("type", ""), None)
            error = error if isinstance(error, type) and issubclass(error, Exception) else ModelError
            raise error(info["error"])
        self.name, self.version = info["name"], info["version"]
        self.task, self.labels, self.modality = info["task"], info["labels"], info["modality"]
        self.image_shape = (info.get("size"), info.get("channels"))
        self.backend, self.folder = info["backend"], Path(info["folder"])
        self.ref = info["pinned"]  # a restart loads this version, not wherever an alias moved since
        self.loaded_at = time.time()

    def close(self) -> None:
        """Let the process go once the batch it is scoring is done."""
        with self._lock:
            self._closed = True
            try:
                self._conn.send_bytes(b'{"op": "stop"}')
            except OSError:
                pass
            self._conn.close()
        self._process.join(30)
        if self._process.is_alive():
            self._process.kill()

    # Scoring -------------------------------------------------------------------------------------

    def predict(self, inputs: list) -> list[dict]:
        with self._lock:
            if self._closed:
                raise ModelClosed(f"version {self.version} was swapped out")
            if not self._process.is_alive():
                log.warning("the model process stopped (exit code %s); starting it again", self._process.exitcode)
                self._spawn()
            try:
                if self.modality == "image":
                    pixels = np.ascontiguousarray(np.stack(inputs), dtype=np.uint8)
                    self._conn.send_bytes(json.dumps({"op": "predict", "shape": pixels.shape}).encode())
                    self._conn.send_bytes(pixels.tobytes())  # flat: a (N, H, W, C) view would frame N bytes
                else:
                    self._conn.send_bytes(json.dumps({"op": "predict", "texts": list(inputs)}).encode())
                answer = json.loads(self._conn.recv_bytes())
            except (EOFError, OSError):
                self._process.join(5)
                raise ModelUnavailable(
                    f"the model process stopped while scoring (exit code {self._process.exitcode})"
                ) from None
        if "error" in answer:
            raise ModelError(answer["error"])
        return answer["predictions"]

    def explainer(self):
        """The PyTorch model, loaded in this process the first time an explanation is asked for
        (explanations need gradients and many forward passes of their own)."""
        with self._explainer_lock:
            if self._explainer is None:
                from fmloop.models.loading import load

                self._explainer = load(self.folder, device="cpu")
            return self._explainer


def _child(conn, ref: str, backend: str, threads: int | None) -> None:
    """The model process: load, report, then score batches until told to stop or the pipe closes."""
    from fmloop.serve.model import load_served

    try:
        served = load_served(ref, backend, threads)
    except Exception as err:
        conn.send_bytes(json.dumps({"ready": False, "type": type(err).__name__, "error": str(err)}).encode())
        return
    pinned = f"models:/{served.name}/{served.version}" if ref.startswith("models:/") else str(served.folder)
    size, channels = served.image_shape if served.modality == "image" else (None, None)
    info = {
        "ready": True, "name": served.name, "version": served.version, "task": served.task,
        "labels": served.labels, "modality": served.modality, "size": size, "channels": channels,
        "backend": served.backend, "folder": str(served.folder), "pinned": pinned,
    }  # fmt: skip
    conn.send_bytes(json.dumps(info).encode())
    served.reference = None  # explanations run in the server's process; the engine alone stays here
    while True:
        try:
            header = json.loads(conn.recv_bytes())
        except (EOFError, OSError):
            return  # the server went away
        if header.get("op") != "predict":
            return
        try:
            if "shape" in header:
                raw = conn.recv_bytes()
                values = list(np.frombuffer(raw, np.uint8).reshape(header["shape"]))
            else:
                values = header["texts"]
            answer = {"predictions": served.predict(values)}
        except Exception as err:  # reported to the batch's requests; the process keeps serving
            answer = {"error": str(err).splitlines()[0] if str(err) else type(err).__name__}
        conn.send_bytes(json.dumps(answer, default=float).encode())
