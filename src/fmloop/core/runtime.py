"""The one place that knows about devices, precision, threads, seeding and torch.distributed.

Stage code asks the `Runtime` (rank, world size, device, autocast context) and never reads
distributed environment variables itself. Under `torchrun` the process group is initialised
here: gloo on CPU, nccl on CUDA.
"""

from __future__ import annotations

import contextlib
import os
import random
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Iterator

import numpy as np
import torch
import torch.distributed as dist

from fmloop.core.errors import ConfigError


def cpu_supports_bf16() -> bool:
    """True when oneDNN has native bf16 kernels (AVX-512 BF16 / AMX). Without them bf16 matmuls
    fall back to slow emulation (measured >100x slower than fp32 on an AVX2-only EPYC), so
    'auto' precision must not pick bf16 there."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except Exception:  # older/newer builds without the private op
        return False


def physical_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


@dataclass
class Runtime:
    device: torch.device
    precision: str  # "bf16" or "fp32" (resolved, never "auto")
    rank: int = 0
    local_rank: int = 0
    world_size: int = 1
    threads: int = 1
    seed: int = 0
    deterministic: bool = False
    notes: list[str] = field(default_factory=list)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def autocast(self) -> contextlib.AbstractContextManager:
        """bf16 autocast for the forward pass; weights and optimizer state stay fp32."""
        if self.precision == "bf16":
            return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()

    def all_reduce_sum(self, value: float | int) -> float:
        if not self.distributed:
            return float(value)
        tensor = torch.tensor([float(value)], dtype=torch.float64, device=self._comm_device)
        dist.all_reduce(tensor)
        return float(tensor.item())

    @property
    def _comm_device(self) -> torch.device:
        return self.device if dist.get_backend() == "nccl" else torch.device("cpu")

    def describe(self) -> str:
        parts = [f"device={self.device}", f"precision={self.precision}", f"threads={self.threads}"]
        if self.distributed:
            parts.append(f"world_size={self.world_size}")
        return ", ".join(parts)

    def shutdown(self) -> None:
        if self.distributed and dist.is_initialized():
            dist.destroy_process_group()


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def resolve_device(
    device: str,
    *,
    cuda_available: bool,
    world_size: int = 1,
    local_rank: int = 0,
    current_cuda: int = 0,
    cuda_count: int = 1,
    parameter: str = "train.device",
) -> torch.device:
    """The torch.device for a device setting ('train.device', or `fmloop.load`'s 'device'). A CUDA
    device always gets an index: torch.cuda.set_device and DDP's device_ids refuse a bare "cuda"."""
    if device == "auto":
        device = "cuda" if cuda_available else "cpu"
    if device.startswith("cuda") and not cuda_available:
        raise ConfigError(
            f"The '{parameter}' parameter asks for {device} but no CUDA device is visible. "
            f"Use {'--train.device' if parameter == 'train.device' else parameter}=cpu."
        )
    if device == "cuda" and world_size > 1:
        if local_rank >= cuda_count:
            raise ConfigError(
                f"torchrun started process {local_rank} on this machine but only {cuda_count} GPU(s) "
                "are visible: start one process per GPU (--nproc-per-node), or train on the CPU "
                "with --train.device=cpu."
            )
        device = f"cuda:{local_rank}"
    elif device == "cuda":
        device = f"cuda:{current_cuda}"
    try:
        return torch.device(device)
    except RuntimeError as exc:
        raise ConfigError(
            f"The '{parameter}' parameter {device!r} is not a device torch knows (use auto, cpu, cuda or cuda:N)."
        ) from exc


def launched_as_main() -> bool:
    """True in the process that owns the run dir: the only one, or rank 0 under torchrun. Checked
    before torch.distributed starts, so that one process alone decides what the folder holds (others
    seeing rank 0's first files would take the run for someone else's)."""
    return int(os.environ.get("RANK", "0")) == 0


def setup_runtime(
    *,
    device: str = "auto",
    precision: str = "auto",
    threads: int | None = None,
    seed: int = 0,
    deterministic: bool = False,
) -> Runtime:
    """Resolve device and precision, start torch.distributed when launched by torchrun, seed."""
    notes: list[str] = []
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))

    cuda = torch.cuda.is_available()
    dev = resolve_device(
        device,
        cuda_available=cuda,
        world_size=world_size,
        local_rank=local_rank,
        current_cuda=torch.cuda.current_device() if cuda else 0,
        cuda_count=torch.cuda.device_count() if cuda else 0,
    )
    if dev.type == "cuda":
        torch.cuda.set_device(dev)

    if world_size > 1 and not dist.is_initialized():
        backend = "nccl" if dev.type == "cuda" else "gloo"
        # device_id binds NCCL to this rank's GPU up front instead of guessing it from the rank
        dist.init_process_group(
            backend=backend, timeout=timedelta(minutes=30), device_id=dev if dev.type == "cuda" else None
        )

    if precision == "auto":
        if dev.type == "cuda":
            precision = "bf16" if torch.cuda.is_bf16_supported() else "fp32"
        else:
            precision = "bf16" if cpu_supports_bf16() else "fp32"
            if precision == "fp32":
                notes.append("this CPU has no native bf16 kernels: training in fp32")
    elif precision == "bf16" and dev.type == "cpu" and not cpu_supports_bf16():
        notes.append("bf16 requested on a CPU without native bf16 kernels: expect it to be slow")

    if dev.type == "cpu":
        # Processes on one machine share its cores; oversubscribing them slows every rank.
        local_world = int(os.environ.get("LOCAL_WORLD_SIZE", str(world_size)))
        threads = threads or max(1, physical_cores() // max(1, local_world))
        torch.set_num_threads(threads)
    else:
        threads = threads or torch.get_num_threads()

    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        if dev.type == "cuda":
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
            torch.backends.cudnn.benchmark = False
    elif dev.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True

    seed_everything(seed + rank)
    return Runtime(
        device=dev,
        precision=precision,
        rank=rank,
        local_rank=local_rank,
        world_size=world_size,
        threads=threads,
        seed=seed,
        deterministic=deterministic,
        notes=notes,
    )


@contextlib.contextmanager
def running(settings) -> Iterator[Runtime]:
    """Set up the runtime from a stage's train section (device, precision, threads, seed,
    deterministic) for the duration of a stage, and shut torch.distributed down afterwards."""
    runtime = setup_runtime(
        device=settings.device,
        precision=settings.precision,
        threads=settings.threads,
        seed=settings.seed,
        deterministic=settings.deterministic,
    )
    try:
        yield runtime
    finally:
        runtime.shutdown()


@contextlib.contextmanager
def main_process_first(runtime: Runtime) -> Iterator[None]:
    """Rank 0 does the work (e.g. trains the tokenizer) before the others read its result."""
    if not runtime.is_main:
        runtime.barrier()
    yield
    if runtime.is_main:
        runtime.barrier()


def rng_state() -> dict:
    """All RNG states needed to continue a run bit-for-bit (tensors + plain values only)."""
    np_state = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": {
            "name": np_state[0],
            "keys": torch.from_numpy(np_state[1].astype(np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "cached": float(np_state[4]),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    random.setstate(_tuplify(state["python"]))
    np_state = state["numpy"]
    np.random.set_state(
        (
            np_state["name"],
            np_state["keys"].numpy().astype(np.uint32),
            np_state["pos"],
            np_state["has_gauss"],
            np_state["cached"],
        )
    )
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _tuplify(value):
    if isinstance(value, list):
        return tuple(_tuplify(v) for v in value)
    return value
