"""The HTTP API: predictions with dynamic batching, idempotent feedback into the store, health,
Prometheus metrics, OpenAPI docs at /docs, and the web page at /.

    POST /v1/predict   {"inputs": ["text", ...]}  (images: {"inputs": [{"image_base64": "..."}]})
    POST /v1/feedback  {"prediction_id": "...", "label": "..."}  + Idempotency-Key header
                       ("kind": "audit" labels a prediction sampled for the audit)
    GET  /v1/audit     predictions sampled for the audit that await a label
    GET  /v1/model, /v1/recent, /livez, /readyz, /metrics, /docs, /

A fraction of the predictions (audit_fraction) is sampled at random for the audit: labelled on the
page's Audit tab or in Label Studio (`fmloop feedback audit-export`), they are the unbiased set the
promotion gate judges on, since users correct mostly what they see is wrong.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import datetime as dt
import hashlib
import io
import json
import logging
import os
import queue
import random
import secrets
import threading
import time
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
from fastapi import Depends, FastAPI, Header, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, ConfigDict, Field

from fmloop.feedback.drift import latest_path
from fmloop.feedback.schema import CORRECTION
from fmloop.feedback.store import (
    IdempotencyConflict,
    NewPrediction,
    NotAudited,
    Store,
    StoreUnavailable,
    UnknownPrediction,
)
from fmloop.serve.batching import Batcher, QueueFull
from fmloop.serve.config import ServeConfig
from fmloop.serve.guards import ApiError, BodyLimit, check_text, token_matches
from fmloop.serve.metrics import ServerMetrics
from fmloop.serve.model import ModelHolder, Served
from fmloop.serve.ratelimit import RateLimiter
from fmloop.trust.explain import explain_one

log = logging.getLogger(__name__)

PAGE = Path(__file__).parent / "page.html"


# Request and response bodies ------------------------------------------------------------------------


class ImageInput(BaseModel):
    model_config = ConfigDict(extra="forbid")
    image_base64: str = Field(description="the image file's bytes (PNG, JPEG, ...), base64-encoded")


class PredictRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    inputs: list[str | ImageInput] = Field(min_length=1, description="texts, or images for an image model")


class ModelRef(BaseModel):
    name: str
    version: int


class PredictionOut(BaseModel):
    prediction_id: str
    label: str | None = None
    labels: list[str] | None = None
    probabilities: dict[str, float] | None = None
    score: float | None = None


class PredictResponse(BaseModel):
    model: ModelRef
    predictions: list[PredictionOut]


class ExplainRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    input: str | ImageInput = Field(description="one text, or one image for an image model")
    target: str | None = Field(None, description="the label to explain (default: the model's answer)")


class FeedbackRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    prediction_id: str | None = Field(None, max_length=32, description="the id a prediction answered with")
    input: str | None = Field(None, description="a text that was never predicted (instead of prediction_id)")
    label: str | float | list[str] = Field(description="the correct label (a score for regression)")
    kind: Literal["correction", "audit"] = Field(
        CORRECTION, description="a user's correction, or an audit label of a prediction GET /v1/audit lists"
    )
    user: str | None = Field(None, max_length=200, description="who sends it (rate limits and trust weights)")


class FeedbackResponse(BaseModel):
    feedback_id: int
    prediction_id: str | None
    label: str
    stored: bool = Field(description="false when this replays an earlier request with the same key")


# Storing predictions off the request path --------------------------------------------------------------


class PredictionWriter:
    """Predictions go to the store from a background thread, one transaction per batch, so a slow or
    absent database never slows or fails a prediction. At most `max_rows` wait: beyond that (a store
    slower than the traffic) new predictions are answered but not stored, counted on /metrics, so
    memory stays bounded. `flush` waits until what was queued is written (feedback for a brand-new
    prediction calls it before giving up on an unknown id); `stop` writes what is queued first."""

    def __init__(self, store: Store | None, metrics: ServerMetrics, max_rows: int = 10_000):
        self.store, self.metrics, self.max_rows = store, metrics, max_rows
        self.queue: queue.Queue = queue.Queue()
        self.thread = threading.Thread(target=self._loop, name="fmloop-prediction-writer", daemon=True)
        self._last_warning = 0.0
        self._waiting = 0  # rows queued and not yet written
        self._lock = threading.Lock()

    def start(self) -> None:
        self.thread.start()

    def put(self, ids: list[str], rows: list[NewPrediction]) -> bool:
        """Queue rows for the store; False (and counted) when the queue is full."""
        with self._lock:
            if self._waiting + len(rows) > self.max_rows:
                self.metrics.predictions_not_stored.inc(len(rows))
                self._warn(f"{self._waiting} predictions are waiting for the store (max_write_queue)")
                return False
            self._waiting += len(rows)
        self.queue.put((ids, rows))
        return True

    def flush(self, timeout: float = 5.0) -> None:
        done = threading.Event()
        self.queue.put(done)
        done.wait(timeout)

    def _warn(self, why: str) -> None:
        if time.monotonic() - self._last_warning > 60:  # at most once a minute
            self._last_warning = time.monotonic()
            log.warning("predictions are not being stored: %s", why)

    def stop(self) -> None:
        self.queue.put(None)
        self.thread.join(10)

    def _loop(self) -> None:
        while True:
            item = self.queue.get()
            if item is None:
                return
            if isinstance(item, threading.Event):
                item.set()
                continue
            ids, rows = item
            try:
                if self.store is not None:
                    self.store.add_predictions(rows, ids)
            except Exception as err:  # predictions keep being served
                self.metrics.predictions_not_stored.inc(len(rows))
                self._warn(str(err).splitlines()[0])
            finally:
                with self._lock:
                    self._waiting -= len(rows)


# The app ---------------------------------------------------------------------------------------------


def create_app(config: ServeConfig, holder: ModelHolder | None = None, store: Store | None = None) -> FastAPI:
    """The server for `config`; tests pass a holder or store of their own."""
    metrics = ServerMetrics()
    holder = holder or ModelHolder(config.model, config.backend, config.threads)
    holder.on_swap = lambda served: metrics.model_version.labels(served.name).set(served.version)
    state: dict[str, Any] = {"ready": False, "store": store, "in_flight": 0}
    token = os.environ.get("FMLOOP_API_TOKEN") or None
    limiter = RateLimiter(config.feedback_per_minute)
    sampler = random.Random(secrets.randbits(64))  # which predictions join the audit sample

    def run_batch(values: list) -> list[dict]:
        served = holder.current
        return [(served, p) for p in served.predict(values)]

    batcher = Batcher(
        run_batch,
        config.max_batch_size,
        config.max_wait_ms,
        config.max_queue,
        on_batch=lambda n: metrics.batch_size.observe(n),
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        loop = asyncio.get_running_loop()
        if state["store"] is None:
            try:
                state["store"] = await loop.run_in_executor(None, lambda: Store.open(config.database))
            except StoreUnavailable as err:
                log.warning("%s; predictions are served, feedback answers 503 until it is back", err)
        writer = PredictionWriter(state["store"], metrics, config.max_write_queue)
        state["writer"] = writer
        writer.start()
        if holder.current is None:
            await loop.run_in_executor(None, holder.load)
        else:
            holder.on_swap(holder.current)
        batcher.start()
        holder.follow(config.follow_s)
        state["ready"] = True
        yield
        state["ready"] = False  # SIGTERM: uvicorn stops accepting, in-flight requests finish
        holder.stop()
        await loop.run_in_executor(None, batcher.stop)
        await loop.run_in_executor(None, writer.stop)

    app = FastAPI(
        title="fmloop",
        description="Predictions from an fmloop model, and the corrections its users send back.",
        version="1",
        lifespan=lifespan,
    )
    app.state.holder, app.state.batcher, app.state.metrics, app.state.server = holder, batcher, metrics, state

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
        if request.url.path != "/v1/predict":
            return await _observed(request, call_next)
        if state["in_flight"] >= config.max_in_flight:  # shed before reading the body
            metrics.requests.labels("/v1/predict", "503").inc()
            return JSONResponse(
                {"error": f"the server is busy ({state['in_flight']} requests in progress); retry shortly"},
                status_code=503,
                headers={"Retry-After": "1"},
            )
        state["in_flight"] += 1
        metrics.in_flight.set(state["in_flight"])
        batcher.announce()  # from now until the handler submits, a forming batch may wait for it
        request.state.submitted = False
        try:
            return await _observed(request, call_next)
        finally:
            state["in_flight"] -= 1
            metrics.in_flight.set(state["in_flight"])
            if not request.state.submitted:
                batcher.withdraw()

    async def _observed(request: Request, call_next):
        route = request.url.path if request.url.path in ROUTES else "other"
        start = time.perf_counter()
        try:
            response = await call_next(request)
        except Exception:  # a bug: logged with its traceback, answered as 500, the server keeps going
            log.exception("unexpected error on %s", request.url.path)
            response = JSONResponse({"error": "internal error (logged on the server)"}, status_code=500)
        metrics.requests.labels(route, str(response.status_code)).inc()
        metrics.latency.labels(route).observe(time.perf_counter() - start)
        return response

    def require_token(authorization: Annotated[str | None, Header()] = None) -> None:
        if token is None:
            return
        if not token_matches(authorization, token):
            raise ApiError(401, "this route needs the API token: send Authorization: Bearer <FMLOOP_API_TOKEN>")

    def current() -> Served:
        if not state["ready"] or holder.current is None:
            raise ApiError(503, "the model is still loading", {"Retry-After": "2"})
        return holder.current

    # Routes -----------------------------------------------------------------------------------------
    @app.post("/v1/predict", response_model=PredictResponse, response_model_exclude_none=True)
    async def predict(body: PredictRequest, request: Request) -> PredictResponse:
        served = current()
        values, lengths, stored_inputs = _decode_inputs(body.inputs, served, config)
        start = time.perf_counter()
        try:
            futures = batcher.submit(values, lengths, announced=True)
            request.state.submitted = True
        except QueueFull as err:
            raise ApiError(503, f"the server is busy ({err}); retry shortly", {"Retry-After": "1"}) from None
        metrics.queue_depth.set(batcher.depth)
        results = await asyncio.gather(*(asyncio.wrap_future(f) for f in futures))
        latency_ms = (time.perf_counter() - start) * 1000
        used = results[0][0]  # one request, one version (a swap lands between batches)
        preds = [p for _, p in results]
        ids = [secrets.token_hex(16) for _ in preds]
        state["writer"].put(
            ids,
            [
                NewPrediction(
                    model_name=used.name,
                    model_version=used.version,
                    input_kind=used.modality,
                    input=text,
                    label=p.get("label"),
                    probabilities=p.get("probabilities"),
                    score=p.get("score"),
                    latency_ms=latency_ms,
                    audit=sampler.random() < config.audit_fraction,
                )
                for text, p in zip(stored_inputs, preds)
            ],
        )
        return PredictResponse(
            model=ModelRef(name=used.name, version=used.version),
            predictions=[PredictionOut(prediction_id=i, **p) for i, p in zip(ids, preds)],
        )

    explaining = asyncio.Lock()  # one explanation at a time: each costs dozens of forward passes

    @app.post("/v1/explain")
    async def explain(body: ExplainRequest) -> dict:
        """Word (or pixel) attributions of one input's answer (fmloop.trust.explain); 503 while
        another explanation is being computed."""
        served = current()
        values, _, _ = _decode_inputs([body.input], served, config)
        if body.target is not None and body.target not in (served.labels or []):
            raise ApiError(422, f"target: {body.target!r} is not one of the model's labels {served.labels}")
        if explaining.locked():
            raise ApiError(503, "another explanation is being computed; retry shortly", {"Retry-After": "1"})
        async with explaining:
            loop = asyncio.get_running_loop()
            found = await loop.run_in_executor(None, lambda: explain_one(served.model, values[0], body.target))
        return {"model": {"name": served.name, "version": served.version}, "explanation": found.as_dict()}

    @app.post("/v1/feedback", response_model=FeedbackResponse, dependencies=[Depends(require_token)])
    async def feedback(
        body: FeedbackRequest,
        request: Request,
        idempotency_key: Annotated[
            str | None, Header(description="a client-chosen key; a retry with the same key stores nothing")
        ] = None,
    ) -> FeedbackResponse:
        served = current()
        if not idempotency_key or not 1 <= len(idempotency_key) <= 200:
            raise ApiError(400, "send an Idempotency-Key header (1-200 characters, new for each correction)")
        if (body.prediction_id is None) == (body.input is None):
            raise ApiError(422, "send exactly one of prediction_id (a served prediction) or input (a new text)")
        if body.input is not None and len(body.input) > config.max_text_chars:
            raise ApiError(422, f"input: longer than {config.max_text_chars} characters")
        for where, text in (("input", body.input), ("user", body.user), ("prediction_id", body.prediction_id),
                            ("label", body.label if isinstance(body.label, str) else None),
                            ("Idempotency-Key", idempotency_key)):  # fmt: skip
            if text is not None:
                check_text(text, where)
        if isinstance(body.label, list):
            for i, name in enumerate(body.label):
                check_text(name, f"label.{i}")
        label = _check_label(body.label, served)
        who = body.user or (request.client.host if request.client else "unknown")
        wait = limiter.wait_s(who)
        if wait:
            raise ApiError(
                429,
                f"too many corrections from {who!r} (limit {config.feedback_per_minute} per minute); retry later",
                {"Retry-After": str(int(wait) + 1)},
            )
        store = state["store"]
        if store is None:
            raise ApiError(503, "the feedback store cannot be reached; retry later", {"Retry-After": "5"})
        canonical = json.dumps(body.model_dump(), sort_keys=True, separators=(",", ":"))
        digest = hashlib.sha256(canonical.encode()).hexdigest()
        loop = asyncio.get_running_loop()

        def write():
            kwargs = dict(
                key=idempotency_key,
                body_hash=digest,
                model_name=served.name,
                label=label,
                prediction_id=body.prediction_id,
                input=body.input,
                user=body.user,
                kind=body.kind,
            )
            try:
                return store.add_feedback(**kwargs)
            except UnknownPrediction:
                state["writer"].flush()  # a prediction answered a moment ago may still be queued
                return store.add_feedback(**kwargs)

        try:
            row, created = await loop.run_in_executor(None, write)
        except UnknownPrediction as err:
            raise ApiError(404, f"{err} Send the prediction_id a /v1/predict answer gave, or input.") from None
        except IdempotencyConflict as err:
            raise ApiError(409, str(err)) from None
        except NotAudited as err:
            raise ApiError(422, str(err)) from None
        except StoreUnavailable as err:
            raise _store_down(err) from None
        return FeedbackResponse(feedback_id=row.id, prediction_id=row.prediction_id, label=row.label, stored=created)

    @app.get("/v1/model")
    async def model_info() -> dict:
        served = current()
        return {
            "name": served.name,
            "version": served.version,
            "task": served.task,
            "modality": served.modality,
            "labels": served.labels,
            "reference": holder.ref,
            "auth": token is not None,
            "limits": {"max_inputs": config.max_inputs, "max_text_chars": config.max_text_chars},
        }

    async def from_store(read):
        """`read(store)` off the event loop; 503 with Retry-After while the store cannot be reached."""
        store = state["store"]
        if store is None:
            raise ApiError(503, "the feedback store cannot be reached; retry later", {"Retry-After": "5"})
        try:
            return await asyncio.get_running_loop().run_in_executor(None, lambda: read(store))
        except StoreUnavailable as err:
            raise _store_down(err) from None

    # Stored user data (inputs, labels, user names): the token, when the server has one.
    @app.get("/v1/recent", dependencies=[Depends(require_token)])
    async def recent(limit: int = 50) -> dict:
        limit = max(1, min(limit, 500))
        rows, fb = await from_store(lambda store: (store.recent_predictions(limit), store.recent_feedback(limit)))
        return {
            "predictions": [
                {
                    "prediction_id": p.id,
                    "model": f"{p.model_name}/{p.model_version}",
                    "input": p.input[:300],
                    "label": p.label,
                    "corrected": corrected,
                    "time": _utc(p.created_at),
                }
                for p, corrected in rows
            ],
            "feedback": [
                {
                    "feedback_id": f.id,
                    "prediction_id": f.prediction_id,
                    "label": f.label,
                    "user": f.user,
                    "time": _utc(f.created_at),
                }
                for f in fb
            ],
        }

    @app.get("/v1/audit", dependencies=[Depends(require_token)])
    async def audit(limit: int = 20) -> dict:
        """Predictions sampled for the audit that await a label (their predicted label is left out,
        so it cannot sway the labeller)."""
        served = current()
        limit = max(1, min(limit, 500))
        rows = await from_store(lambda store: store.audit_queue(served.name, limit))
        return {
            "labels": served.labels,
            "predictions": [
                {
                    "prediction_id": p.id,
                    "input": p.input,
                    "model": f"{p.model_name}/{p.model_version}",
                    "time": _utc(p.created_at),
                }
                for p in rows
            ],
        }

    @app.get("/livez")
    async def livez() -> dict:
        return {"status": "alive"}

    @app.get("/readyz")
    async def readyz() -> Response:
        if state["ready"] and holder.current is not None:
            return JSONResponse({"status": "ready", "version": holder.current.version})
        return JSONResponse({"status": "loading"}, status_code=503)

    @app.get("/metrics")
    async def prometheus() -> Response:
        metrics.queue_depth.set(batcher.depth)
        if holder.current is not None:
            _drift_gauges(metrics, holder.current.name)
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def page() -> HTMLResponse:
        return HTMLResponse(PAGE.read_text(encoding="utf-8"))

    return app


ROUTES = {
    "/v1/predict",
    "/v1/explain",
    "/v1/feedback",
    "/v1/audit",
    "/v1/model",
    "/v1/recent",
    "/livez",
    "/readyz",
    "/metrics",
    "/",
}


def _decode_inputs(inputs: list, served: Served, config: ServeConfig) -> tuple[list, list[int], list[str]]:
    """(values for the model, lengths for batching, what the store keeps) with 413/422 for bad input."""
    if len(inputs) > config.max_inputs:
        raise ApiError(413, f"inputs: {len(inputs)} items, over the limit of {config.max_inputs} per request")
    if served.modality == "image":
        return _decode_images(inputs, served)
    values = []
    for i, item in enumerate(inputs):
        if not isinstance(item, str):
            raise ApiError(422, f"inputs.{i}: this model reads text; send a string")
        if not item.strip():
            raise ApiError(422, f"inputs.{i}: empty text")
        if len(item) > config.max_text_chars:
            raise ApiError(422, f"inputs.{i}: {len(item)} characters, over the limit of {config.max_text_chars}")
        values.append(check_text(item, f"inputs.{i}"))
    return values, [len(v) for v in values], values


def _decode_images(inputs: list, served: Served) -> tuple[list, list[int], list[str]]:
    from PIL import Image, UnidentifiedImageError

    values, kept = [], []
    for i, item in enumerate(inputs):
        if not isinstance(item, ImageInput):
            raise ApiError(422, f"inputs.{i}: this model reads images; send {{'image_base64': ...}}")
        try:
            raw = base64.b64decode(item.image_base64, validate=True)
            with Image.open(io.BytesIO(raw)) as image:
                image.load()
                mode = "L" if served.model.channels == 1 else "RGB"
                size = (served.model.size, served.model.size)
                pixels = np.asarray(image.convert(mode).resize(size), dtype=np.uint8)
        except (binascii.Error, ValueError):
            raise ApiError(422, f"inputs.{i}.image_base64: not valid base64") from None
        except (UnidentifiedImageError, OSError, Image.DecompressionBombError):
            raise ApiError(422, f"inputs.{i}.image_base64: not an image file PIL can read") from None
        values.append(pixels if pixels.ndim == 3 else pixels[..., None])
        kept.append("sha256:" + hashlib.sha256(raw).hexdigest())
    return values, [0] * len(values), kept


def _drift_gauges(metrics: ServerMetrics, name: str) -> None:
    """The newest `fmloop drift` result of the served model, if one was written."""
    try:
        result = json.loads(latest_path(name).read_text())
    except (OSError, ValueError):
        return
    metrics.drift_detected.set(1 if result.get("drifted") else 0)
    for test in result.get("tests", []):
        metrics.drift_p_value.labels(test["name"]).set(test["p_value"])


def _store_down(err: StoreUnavailable) -> ApiError:
    """503 for the client; the store's URL and the driver's message stay in the server's log."""
    log.warning("%s", err)
    return ApiError(503, "the feedback store cannot be reached; retry later", {"Retry-After": "5"})


def _utc(moment: dt.datetime) -> str:
    """ISO time in UTC (SQLite hands times back without their zone; they were written in UTC)."""
    return (moment if moment.tzinfo else moment.replace(tzinfo=dt.timezone.utc)).isoformat()


def _check_label(label, served: Served) -> str:
    """The stored form of a corrected label, or 422 when the model cannot have predicted it."""
    if served.task == "regression":
        if isinstance(label, bool) or not isinstance(label, (int, float)):
            raise ApiError(422, "label: this model predicts a score; send a number")
        return repr(float(label))
    names = served.labels or []
    given = label if isinstance(label, list) else [label]
    if served.task == "classification" and isinstance(label, list):
        raise ApiError(422, f"label: send one label, one of {names}")
    unknown = [x for x in given if not isinstance(x, str) or x not in names]
    if unknown:
        raise ApiError(422, f"label: {unknown[0]!r} is not one of the model's labels {names}")
    return given[0] if served.task == "classification" else json.dumps(sorted(given))
