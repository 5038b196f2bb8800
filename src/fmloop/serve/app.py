"""The server: the state one process holds (state.py), fmloop's /v1 API (routes.py) and the Open
Inference Protocol's /v2 (oip.py), put together with what every request passes through: shedding
when too many predictions are in progress, the body limit, errors as one JSON message, Prometheus
counts and, on demand, one JSON log line per request.

A fraction of the predictions (audit_fraction) is sampled at random for the audit: labelled on the
page's Audit tab or in Label Studio (`fmloop feedback audit-export`), they are the unbiased set the
promotion gate judges on, since users correct mostly what they see is wrong.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import secrets
import sys
import time
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from fmloop.feedback.store import Store, StoreUnavailable
from fmloop.serve import oip, routes
from fmloop.serve.batching import Batcher
from fmloop.serve.config import ServeConfig
from fmloop.serve.guards import ApiError, BodyLimit
from fmloop.serve.identity import Credentials
from fmloop.serve.metrics import ServerMetrics, worker_exited
from fmloop.serve.model import ModelHolder
from fmloop.serve.process import ModelClosed
from fmloop.serve.ratelimit import RateLimiter
from fmloop.serve.recent import RecentImages
from fmloop.serve.state import ServerState
from fmloop.serve.writer import PredictionWriter

log = logging.getLogger(__name__)
access_log = logging.getLogger("fmloop.access")

# Paths counted under their own name on /metrics; the rest are "other", so a scan of random paths
# cannot grow the metrics without bound. /v2 model routes are counted by their template.
ROUTES = {"/v1/predict", "/v1/explain", "/v1/feedback", "/v1/audit", "/v1/model", "/v1/recent",
          "/v2/health/live", "/v2/health/ready", "/livez", "/readyz", "/metrics", "/"}  # fmt: skip


def create_app(config: ServeConfig, holder: ModelHolder | None = None, store: Store | None = None) -> FastAPI:
    """The server for `config`; tests pass a holder or store of their own."""
    metrics = ServerMetrics()
    holder = holder or ModelHolder(config.model, config.backend, config.threads, config.model_process)
    holder.on_swap = lambda served: metrics.model_version.labels(served.name).set(served.version)

    def score(values: list) -> list:
        served = holder.current
        return [(served, p) for p in served.predict(values)]

    def run_batch(values: list) -> list:
        try:
            return score(values)
        except ModelClosed:  # swapped out between taking the batch and scoring it: the new version scores it
            return score(values)

    batcher = Batcher(
        run_batch,
        config.max_batch_size,
        config.max_wait_ms,
        config.max_queue,
        on_batch=lambda n: metrics.batch_size.observe(n),
    )
    state = ServerState(
        config=config,
        holder=holder,
        batcher=batcher,
        metrics=metrics,
        credentials=Credentials(
            config.tokens or os.environ.get("FMLOOP_TOKENS_FILE"), os.environ.get("FMLOOP_API_TOKEN")
        ),
        limiter=RateLimiter(config.feedback_per_minute),
        recent_images=RecentImages(config.image_memory_mb * 1_000_000),
        store=store,
    )
    if config.log_json:
        _json_lines(access_log)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        loop = asyncio.get_running_loop()
        if state.store is None:
            try:
                state.store = await loop.run_in_executor(None, lambda: Store.open(config.database))
            except StoreUnavailable as err:
                log.warning("%s; predictions are served, feedback answers 503 until it is back", err)
        state.writer = PredictionWriter(state.store, metrics, config.max_write_queue)
        state.writer.start()
        if holder.current is None:
            await loop.run_in_executor(None, holder.load)
        else:
            holder.on_swap(holder.current)
        batcher.start()
        holder.follow(config.follow_s)
        state.ready = True
        yield
        state.ready = False  # SIGTERM: uvicorn stops accepting, in-flight requests finish
        holder.stop()
        await loop.run_in_executor(None, batcher.stop)
        await loop.run_in_executor(None, holder.close)
        await loop.run_in_executor(None, state.writer.stop)
        worker_exited()

    app = FastAPI(
        title="fmloop",
        description="Predictions from an fmloop model, and the corrections its users send back.",
        version="1",
        lifespan=lifespan,
    )
    app.state.server = state
    app.include_router(routes.router)
    app.include_router(oip.router)

    # Middleware added first runs innermost: the body limit reads the body after the in-flight check.
    app.add_middleware(BodyLimit, limit=config.max_body_bytes)

    # Errors: one message naming the field and the fix, never a 500 for bad input -----------------
    @app.exception_handler(ApiError)
    async def api_error(request: Request, err: ApiError):
        return JSONResponse({"error": err.message}, status_code=err.status, headers=err.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, err: RequestValidationError):
        problems = []
        for e in err.errors()[:5]:
            if e["type"] == "json_invalid":
                problems.append(f"the body is not valid JSON (at character {e['loc'][-1]}): {e['ctx']['error']}")
                continue
            where = ".".join(str(p) for p in e["loc"] if p != "body") or "body"
            problems.append(f"{where}: {e['msg']}")
        return JSONResponse({"error": "; ".join(problems)}, status_code=422)

    @app.middleware("http")
    async def observe(request: Request, call_next):
        if not _is_prediction(request):
            return await _observed(request, call_next)
        route = _route(request.url.path)
        if state.in_flight >= config.max_in_flight:  # shed before reading the body
            metrics.requests.labels(route, "503").inc()
            return JSONResponse(
                {"error": f"the server is busy ({state.in_flight} requests in progress); retry shortly"},
                status_code=503,
                headers={"Retry-After": "1"},
            )
        state.in_flight += 1
        metrics.in_flight.set(state.in_flight)
        batcher.announce()  # from now until the handler submits, a forming batch may wait for it
        request.state.submitted = False
        try:
            return await _observed(request, call_next)
        finally:
            state.in_flight -= 1
            metrics.in_flight.set(state.in_flight)
            if not request.state.submitted:
                batcher.withdraw()

    async def _observed(request: Request, call_next):
        route = _route(request.url.path)
        request_id = request.headers.get("x-request-id", "")[:100] or secrets.token_hex(8)
        start = time.perf_counter()
        try:
            response = await call_next(request)
        except Exception:  # a bug: logged with its traceback, answered as 500, the server keeps going
            log.exception("unexpected error on %s", request.url.path)
            response = JSONResponse({"error": "internal error (logged on the server)"}, status_code=500)
        seconds = time.perf_counter() - start
        metrics.requests.labels(route, str(response.status_code)).inc()
        metrics.latency.labels(route).observe(seconds)
        response.headers["X-Request-ID"] = request_id
        if config.log_json:
            served = holder.current
            identity = getattr(request.state, "identity", None)
            access_log.info(
                json.dumps(
                    {
                        "time": round(time.time(), 3),
                        "request_id": request_id,
                        "method": request.method,
                        "route": route,
                        "status": response.status_code,
                        "latency_ms": round(seconds * 1000, 2),
                        "model": served.name if served else None,
                        "model_version": served.version if served else None,
                        "identity": identity.name if identity else None,
                    }
                )
            )
        return response

    return app


def _is_prediction(request: Request) -> bool:
    path = request.url.path
    return request.method == "POST" and (path == "/v1/predict" or (path.startswith("/v2/") and path.endswith("/infer")))


def _route(path: str) -> str:
    if path in ROUTES:
        return path
    if path.startswith("/v2/models/"):
        tail = path.rsplit("/", 1)[-1]
        return f"/v2/models/{{name}}/{tail}" if tail in ("infer", "ready") else "/v2/models/{name}"
    return "other"


def _json_lines(logger: logging.Logger) -> None:
    """Request lines as bare JSON on stderr, whatever the rest of the logging prints."""
    if not any(getattr(h, "fmloop_json", False) for h in logger.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(message)s"))
        handler.fmloop_json = True
        logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
