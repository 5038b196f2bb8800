"""`fmloop serve`: a model behind HTTP."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from typing import Optional

import typer

from fmloop.cli.common import build_stage_config, err_console, setup_logging, user_errors

SETTINGS_ENV = "FMLOOP_SERVE_CONFIG"


@user_errors
def serve_command(
    model: str = typer.Argument(..., help="A model folder, run dir, or registry reference (models:/NAME@ALIAS)."),
    backend: str = typer.Option(
        "auto",
        "--backend",
        help="auto (the fastest engine whose answers match the PyTorch model's), torch, or onnx (exported once).",
    ),
    model_process: bool = typer.Option(
        True, "--model-process/--in-process", help="Run the model in a process of its own (default) or in the server's."
    ),
    host: str = typer.Option(
        "127.0.0.1", "--host", help="Bind address; beyond loopback needs --tokens or FMLOOP_API_TOKEN."
    ),
    port: int = typer.Option(8000, "--port"),
    workers: int = typer.Option(1, "--workers", help="Server processes sharing the feedback store."),
    threads: Optional[int] = typer.Option(None, "--threads", help="Compute threads per worker."),
    max_batch_size: int = typer.Option(32, "--max-batch-size", help="Inputs scored in one forward pass."),
    max_wait_ms: float = typer.Option(5.0, "--max-wait-ms", help="How long a queued input waits for company."),
    max_queue: int = typer.Option(512, "--max-queue", help="Waiting inputs beyond this get 503 + Retry-After."),
    max_in_flight: int = typer.Option(
        256, "--max-in-flight", help="Prediction requests in progress per worker; beyond it: 503 at once."
    ),
    image_memory_mb: int = typer.Option(
        64, "--image-memory-mb", help="Recently served image files held in memory, for the corrections that follow."
    ),
    audit_fraction: float = typer.Option(
        0.05, "--audit-fraction", help="Share of predictions sampled for audit labels (the gate's target set)."
    ),
    feedback_per_minute: int = typer.Option(
        60, "--feedback-per-minute", help="Feedback requests per user (or address) per minute; 0: no limit."
    ),
    follow: float = typer.Option(5.0, "--follow-s", help="Seconds between checks of a followed alias (0: off)."),
    database: Optional[str] = typer.Option(None, "--db", help="Feedback store URL (default: FMLOOP_DB or SQLite)."),
    tokens: Optional[str] = typer.Option(
        None, "--tokens", help="Tokens file of identities and roles (fmloop tokens add); default FMLOOP_TOKENS_FILE."
    ),
    log_json: bool = typer.Option(False, "--log-json", help="One JSON line per request on stderr."),
):
    """Serve a model: POST /v1/predict, POST /v1/feedback, a web page at /, /metrics, /docs.
    Given models:/NAME@ALIAS, the server switches to the alias's new version by itself."""
    from fmloop.cli.common import check_model_name
    from fmloop.core.errors import ConfigError
    from fmloop.serve.config import ServeConfig, is_loopback

    cfg = build_stage_config(
        ServeConfig,
        model=model,
        backend=backend,
        model_process=model_process,
        host=host,
        port=port,
        workers=workers,
        threads=threads,
        max_batch_size=max_batch_size,
        max_wait_ms=max_wait_ms,
        max_queue=max_queue,
        max_in_flight=max_in_flight,
        image_memory_mb=image_memory_mb,
        audit_fraction=audit_fraction,
        feedback_per_minute=feedback_per_minute,
        follow_s=follow,
        database=database,
        tokens=tokens or os.environ.get("FMLOOP_TOKENS_FILE"),
        log_json=log_json,
    )
    check_model_name(model)
    if not is_loopback(cfg.host) and not (cfg.tokens or os.environ.get("FMLOOP_API_TOKEN")):
        raise ConfigError(
            f"--host {cfg.host} opens the server beyond this machine: give it identities first (--tokens FILE, "
            f"written by `fmloop tokens add`) or set FMLOOP_API_TOKEN, or bind 127.0.0.1."
        )
    if cfg.tokens:
        from fmloop.serve.identity import Credentials

        Credentials(cfg.tokens)  # a missing or broken tokens file fails here, not in every worker
    setup_logging()
    import uvicorn

    os.environ[SETTINGS_ENV] = json.dumps(cfg.resolved())
    err_console.print(f"serving {model} on http://{cfg.host}:{cfg.port} (web page /, API docs /docs)")
    with _shared_metrics(cfg.workers):
        uvicorn.run(
            "fmloop.serve.main:app_from_environment",
            factory=True,
            host=cfg.host,
            port=cfg.port,
            workers=cfg.workers,
            log_level="warning",
            timeout_graceful_shutdown=30,
        )


@contextlib.contextmanager
def _shared_metrics(workers: int):
    """Several workers write their Prometheus values to one fresh folder that /metrics reads
    (removed at exit); a folder the caller named in PROMETHEUS_MULTIPROC_DIR is used as it is."""
    from fmloop.serve.metrics import MULTIPROC_ENV

    if workers == 1 or os.environ.get(MULTIPROC_ENV):
        yield
        return
    with tempfile.TemporaryDirectory(prefix="fmloop-metrics-") as folder:
        os.environ[MULTIPROC_ENV] = folder
        try:
            yield
        finally:
            del os.environ[MULTIPROC_ENV]
