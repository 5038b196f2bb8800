"""The server's settings: a pydantic model without torch, so `fmloop serve` checks its command line
at once. Credentials come from a tokens file of hashes (`tokens`) or FMLOOP_API_TOKEN, never from an
argument."""

from __future__ import annotations

import ipaddress
from typing import ClassVar, Literal

from pydantic import Field

from fmloop.core.config import StageConfig


class ServeConfig(StageConfig):
    stage: ClassVar[str] = "serve"
    model: str = Field(description="a model folder, run dir, or registry reference (models:/NAME@ALIAS)")
    backend: Literal["auto", "torch", "onnx"] = Field(
        "auto",
        description="auto: the fastest engine whose answers match the PyTorch model's (printed at start-up); torch; onnx",
    )
    model_process: bool = Field(
        True, description="run the model in a process of its own, so request handling never stalls the forward pass"
    )
    host: str = Field("127.0.0.1", description="bind address; anything but loopback needs tokens or FMLOOP_API_TOKEN")
    port: int = Field(8000, ge=0, le=65535)
    workers: int = Field(1, ge=1, le=64, description="server processes (each loads the model)")
    threads: int | None = Field(None, ge=1, description="torch / ONNX Runtime threads per worker (default: all cores)")
    max_batch_size: int = Field(32, ge=1, le=1024, description="inputs scored in one forward pass")
    max_wait_ms: float = Field(5.0, ge=0, le=1000, description="how long the first queued input waits for company")
    max_queue: int = Field(512, ge=1, description="inputs waiting beyond this are refused with 503 + Retry-After")
    max_in_flight: int = Field(
        256, ge=1, description="prediction requests in progress per worker; beyond it: 503 before reading the body"
    )
    max_inputs: int = Field(64, ge=1, le=4096, description="inputs per request")
    max_text_chars: int = Field(20_000, ge=1, description="characters per text input")
    max_body_bytes: int = Field(
        8_000_000, ge=1024, description="request body size, counted on the bytes read (chunked or not): 413 beyond"
    )
    max_write_queue: int = Field(
        10_000,
        ge=1,
        description="predictions waiting to be stored; beyond it they are answered but not stored (counted on /metrics)",
    )
    image_memory_mb: int = Field(
        64, ge=0, description="recently served image files held in memory, so corrections can keep them for retraining"
    )
    audit_fraction: float = Field(
        0.05, ge=0, le=1, description="share of predictions sampled for audit labels (the promotion gate's target set)"
    )
    feedback_per_minute: int = Field(
        60, ge=0, description="feedback requests per identity (or client address) per minute and worker; 0: no limit"
    )
    follow_s: float = Field(5.0, ge=0, description="seconds between checks of a followed alias (0: never)")
    database: str | None = Field(None, description="feedback store URL (default: FMLOOP_DB, else SQLite in the home)")
    tokens: str | None = Field(
        None, description="tokens file: identities and roles (`fmloop tokens add`); default FMLOOP_TOKENS_FILE"
    )
    log_json: bool = Field(False, description="one JSON line per request on stderr (id, route, status, latency, model)")


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
