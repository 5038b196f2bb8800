"""fmloop's own HTTP API, /v1: predictions, explanations, feedback, the audit queue, recent data,
the model's description; and health, metrics and the web page.

    POST /v1/predict   {"inputs": ["text", ...]}  (images: {"inputs": [{"image_base64": "..."}]})
    POST /v1/explain   {"input": "text"}
    POST /v1/feedback  {"prediction_id": "...", "label": "..."}  + Idempotency-Key header
                       (a token model's label: [{"label": "PER", "start": 7, "end": 16}, ...])
                       ("kind": "audit" labels a prediction sampled for the audit: labeller role)
    GET  /v1/audit     predictions sampled for the audit that await a label (labeller role)
    GET  /v1/recent    the newest predictions and feedback (labeller role)
    GET  /v1/images/{digest}  a kept image input's file (labeller role: the audit shows it)
    GET  /v1/model, /livez, /readyz, /metrics, /docs, /
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import datetime as dt
import hashlib
import json
import math
from pathlib import Path
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Header, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, ConfigDict, Field

from fmloop.feedback.drift import latest_path
from fmloop.feedback.schema import AUDIT, CORRECTION
from fmloop.feedback.store import (
    IdempotencyConflict,
    ImageMismatch,
    NotAudited,
    StoreUnavailable,
    UnknownPrediction,
)
from fmloop.models.tokens import split_words, stored_entities
from fmloop.serve.guards import ApiError, check_text
from fmloop.serve.identity import Identity
from fmloop.serve.inputs import ImageInput, decode_inputs
from fmloop.serve.metrics import ServerMetrics
from fmloop.serve.model import Served
from fmloop.serve.state import ServerState, caller, requires, server, store_down
from fmloop.tasks import get_task
from fmloop.trust.explain import explain_one

PAGE = Path(__file__).parent / "page.html"

router = APIRouter()
State = Annotated[ServerState, Depends(server)]


# Request and response bodies ------------------------------------------------------------------------


class PredictRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    inputs: list[str | ImageInput] = Field(min_length=1, description="texts, or images for an image model")


class ModelRef(BaseModel):
    name: str
    version: int


class EntityOut(BaseModel):
    label: str = Field(description="the entity type (the tag without its B-/I- prefix)")
    start: int = Field(description="offset of its first character in the input")
    end: int = Field(description="offset just past its last character")
    text: str
    score: float = Field(description="the mean probability of its words' tags")


class PredictionOut(BaseModel):
    prediction_id: str
    label: str | None = None
    labels: list[str] | None = None
    probabilities: dict[str, float] | None = None
    score: float | None = None
    entities: list[EntityOut] | None = None


class PredictResponse(BaseModel):
    model: ModelRef
    predictions: list[PredictionOut]


class ExplainRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    input: str | ImageInput = Field(description="one text, or one image for an image model")
    target: str | None = Field(None, description="the label to explain (default: the model's answer)")


class EntityIn(BaseModel):
    label: str = Field(description="the entity type (PER, LOC, ...: a tag without its B-/I- prefix)")
    start: int = Field(description="offset of its first character in the input")
    end: int = Field(description="offset just past its last character")


class FeedbackRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    prediction_id: str | None = Field(None, max_length=32, description="the id a prediction answered with")
    input: str | None = Field(
        None, description="a text that was never predicted (instead of prediction_id; labeller role)"
    )
    label: str | float | list[str] | list[EntityIn] = Field(
        description="the correct label: a class, a list of classes (multi-label), a score (regression), or for a "
        "token model every entity of the input as {label, start, end} character spans ([] for none)"
    )
    kind: Literal["correction", "audit"] = Field(
        CORRECTION,
        description="a user's correction, or an audit label of a prediction GET /v1/audit lists (labeller role)",
    )
    user: str | None = Field(
        None,
        max_length=200,
        description="ignored: the sender is the identity its API token names (accepted so older clients work)",
    )
    image_base64: str | None = Field(
        None,
        description="the predicted image's file again (base64), kept for retraining when the server no longer holds it",
    )


class FeedbackResponse(BaseModel):
    feedback_id: int
    prediction_id: str | None
    label: str
    stored: bool = Field(description="false when this replays an earlier request with the same key")


# Predictions --------------------------------------------------------------------------------------


@router.post("/v1/predict", response_model=PredictResponse, response_model_exclude_none=True)
async def predict(
    body: PredictRequest, request: Request, state: State, identity: Annotated[Identity | None, Depends(caller)]
) -> PredictResponse:
    """Predictions need no token; one that is sent names the identity the predictions are stored under."""
    served = state.current()
    values, lengths, stored, images = decode_inputs(body.inputs, served, state.config)
    user = identity.name if identity else None
    used, preds, ids = await state.predict(request, values, lengths, stored, user, images)
    return PredictResponse(
        model=ModelRef(name=used.name, version=used.version),
        predictions=[PredictionOut(prediction_id=i, **p) for i, p in zip(ids, preds)],
    )


@router.post("/v1/explain")
async def explain(body: ExplainRequest, state: State) -> dict:
    """Word (or pixel) attributions of one input's answer (fmloop.trust.explain); 503 while another
    explanation is being computed."""
    served = state.current()
    if served.task == "tokens":
        raise ApiError(422, "input: explanations are of one answer per input; a token model's are not explained yet")
    values, *_ = decode_inputs([body.input], served, state.config)
    if body.target is not None and body.target not in (served.labels or []):
        raise ApiError(422, f"target: {body.target!r} is not one of the model's labels {served.labels}")
    if state.explaining.locked():
        raise ApiError(503, "another explanation is being computed; retry shortly", {"Retry-After": "1"})
    async with state.explaining:
        loop = asyncio.get_running_loop()
        found = await loop.run_in_executor(None, lambda: explain_one(served.explainer(), values[0], body.target))
    return {"model": {"name": served.name, "version": served.version}, "explanation": found.as_dict()}


# Feedback -----------------------------------------------------------------------------------------


@router.post("/v1/feedback", response_model=FeedbackResponse)
async def feedback(
    body: FeedbackRequest,
    state: State,
    identity: Annotated[Identity, Depends(requires("user"))],
    idempotency_key: Annotated[
        str | None, Header(description="a client-chosen key; a retry with the same key stores nothing")
    ] = None,
) -> FeedbackResponse:
    """A correction (or an audit label) from the identity the token names: its rate limit, its vote."""
    served = state.current()
    config = state.config
    if not idempotency_key or not 1 <= len(idempotency_key) <= 200:
        raise ApiError(400, "send an Idempotency-Key header (1-200 characters, new for each correction)")
    if (body.prediction_id is None) == (body.input is None):
        raise ApiError(422, "send exactly one of prediction_id (a served prediction) or input (a new text)")
    if body.kind == AUDIT and not identity.may("labeller"):
        raise ApiError(403, f"audit labels need the labeller role; {identity.name!r} has the {identity.role} role")
    if body.input is not None and not identity.may("labeller"):
        raise ApiError(
            403, f"new inputs (input) need the labeller role; {identity.name!r} may correct served predictions"
        )
    if body.input is not None and len(body.input) > config.max_text_chars:
        raise ApiError(422, f"input: longer than {config.max_text_chars} characters")
    for where, text in (("input", body.input), ("prediction_id", body.prediction_id),
                        ("label", body.label if isinstance(body.label, str) else None),
                        ("Idempotency-Key", idempotency_key)):  # fmt: skip
        if text is not None:
            check_text(text, where)
    if isinstance(body.label, list):
        for i, item in enumerate(body.label):
            check_text(item.label if isinstance(item, EntityIn) else item, f"label.{i}")
    label = check_label(body.label, served)  # a token model's needs the input's words: read below
    sent_image = _sent_image(body)
    wait = state.limiter.wait_s(identity.rate_key)
    if wait:
        raise ApiError(
            429,
            f"too many corrections from {identity.name!r} (limit {config.feedback_per_minute} per minute); retry later",
            {"Retry-After": str(int(wait) + 1)},
        )
    store = state.store
    if store is None:
        raise ApiError(503, "the feedback store cannot be reached; retry later", {"Retry-After": "5"})
    # the key's body includes who sent it: the same key from another identity is a conflict
    canonical = json.dumps(
        {**body.model_dump(exclude={"user", "image_base64"}), "identity": identity.name}, sort_keys=True
    )
    digest = hashlib.sha256(canonical.encode()).hexdigest()
    kwargs = dict(
        key=idempotency_key,
        body_hash=digest,
        model_name=served.name,
        prediction_id=body.prediction_id,
        input=body.input,
        user=identity.name,
        kind=body.kind,
        # the image a correction is about: as sent again, else as this server answered it lately
        image=lambda digest: sent_image if sent_image is not None else state.recent_images.get(digest),
    )

    def stored_label() -> str:
        return label if label is not None else entity_label(body, served, store)

    def write():
        try:
            return store.add_feedback(**kwargs, label=stored_label())
        except UnknownPrediction:
            state.writer.flush()  # a prediction answered a moment ago may still be queued
            return store.add_feedback(**kwargs, label=stored_label())

    try:
        row, created = await asyncio.get_running_loop().run_in_executor(None, write)
    except UnknownPrediction as err:
        raise ApiError(404, f"{err} Send the prediction_id a /v1/predict answer gave, or input.") from None
    except IdempotencyConflict as err:
        raise ApiError(409, str(err)) from None
    except (NotAudited, ImageMismatch) as err:
        raise ApiError(422, str(err)) from None
    except StoreUnavailable as err:
        raise store_down(err) from None
    return FeedbackResponse(feedback_id=row.id, prediction_id=row.prediction_id, label=row.label, stored=created)


def _sent_image(body: FeedbackRequest) -> bytes | None:
    if body.image_base64 is None:
        return None
    if body.prediction_id is None:
        raise ApiError(422, "image_base64: send it with the prediction_id of the image's prediction")
    try:
        return base64.b64decode(body.image_base64, validate=True)
    except (binascii.Error, ValueError):
        raise ApiError(422, "image_base64: not valid base64") from None


def check_label(label, served: Served) -> str | None:
    """The stored form of a corrected label, or 422 when the model cannot have predicted it. A token
    model's entities become tags of the input's words (`entity_label`): None here."""
    if served.task == "tokens":
        if not isinstance(label, list) or not all(isinstance(e, EntityIn) for e in label):
            raise ApiError(
                422,
                "label: send a token model's entities as a list of {label, start, end} character spans, [] for none",
            )
        return None
    if isinstance(label, list) and any(isinstance(e, EntityIn) for e in label):
        raise ApiError(422, f"label: entity spans correct a token model; this one is a {served.task} model")
    task = get_task(served.task)
    if served.task == "regression":
        if isinstance(label, bool) or not isinstance(label, (int, float)) or not math.isfinite(label):
            raise ApiError(422, "label: this model predicts a score; send a finite number")
        return task.stored(float(label), None)
    names = served.labels or []
    given = label if isinstance(label, list) else [label]
    if served.task == "classification" and isinstance(label, list):
        raise ApiError(422, f"label: send one label, one of {names}")
    unknown = [x for x in given if not isinstance(x, str) or x not in names]
    if unknown:
        raise ApiError(422, f"label: {unknown[0]!r} is not one of the model's labels {names}")
    if served.task == "classification":
        return task.stored(names.index(given[0]), names)
    return task.stored([1.0 if n in given else 0.0 for n in names], names)  # the stored form retrain reads


def entity_label(body: FeedbackRequest, served: Served, store) -> str:
    """The stored form of a token model's corrected entities: the tags of the input's words (the
    input sent, or the one the prediction was made for), in the model's scheme."""
    text = body.input
    if text is None:
        predicted = store.prediction(body.prediction_id)
        if predicted is None:
            raise UnknownPrediction(f"No prediction has the id {body.prediction_id!r}.")
        text = predicted.input
    if not split_words(text)[0]:
        raise ApiError(422, "input: it holds no word to tag")
    try:
        return stored_entities([(e.label, e.start, e.end) for e in body.label], text, served.labels or [])
    except ValueError as err:
        raise ApiError(422, str(err)) from None


# The model and stored data ------------------------------------------------------------------------


@router.get("/v1/model")
async def model_info(state: State, identity: Annotated[Identity | None, Depends(caller)]) -> dict:
    """What is served; the model's local reference only for the admin role."""
    served = state.current()
    info = {
        "name": served.name,
        "version": served.version,
        "task": served.task,
        "modality": served.modality,
        "labels": served.labels,
        "backend": served.backend,
        "auth": state.credentials.required,
        "limits": {"max_inputs": state.config.max_inputs, "max_text_chars": state.config.max_text_chars},
    }
    if identity is not None:
        info["identity"] = {"name": identity.name, "role": identity.role}
        if identity.may("admin"):
            info["reference"] = state.holder.ref
    return info


@router.get("/v1/recent", dependencies=[Depends(requires("labeller"))])
async def recent(state: State, limit: int = 50) -> dict:
    """The newest predictions and feedback, with their inputs and senders: stored user data."""
    limit = max(1, min(limit, 500))
    rows, fb = await state.from_store(lambda store: (store.recent_predictions(limit), store.recent_feedback(limit)))
    return {
        "predictions": [
            {
                "prediction_id": p.id,
                "model": f"{p.model_name}/{p.model_version}",
                "input": p.input[:300],
                "label": p.label,
                "corrected": corrected,
                "time": utc(p.created_at),
            }
            for p, corrected in rows
        ],
        "feedback": [
            {
                "feedback_id": f.id,
                "prediction_id": f.prediction_id,
                "label": f.label,
                "user": f.user,
                "time": utc(f.created_at),
            }
            for f in fb
        ],
    }


@router.get("/v1/audit", dependencies=[Depends(requires("labeller"))])
async def audit(state: State, limit: int = 20) -> dict:
    """Predictions sampled for the audit that await a label (their predicted label is left out, so
    it cannot sway the labeller)."""
    served = state.current()
    limit = max(1, min(limit, 500))
    rows = await state.from_store(lambda store: store.audit_queue(served.name, limit))
    return {
        "labels": served.labels,
        "predictions": [
            {
                "prediction_id": p.id,
                "input": p.input,
                "model": f"{p.model_name}/{p.model_version}",
                "time": utc(p.created_at),
            }
            for p in rows
        ],
    }


IMAGE_TYPES = (  # magic bytes -> media type of the files image inputs arrive as
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF8", "image/gif"),
    (b"BM", "image/bmp"),
)


@router.get("/v1/images/{digest}", dependencies=[Depends(requires("labeller"))])
async def image(digest: str, state: State) -> Response:
    """The file of an image input the store kept (drawn for the audit, or corrected): what a
    labeller looks at to give an audit label. Stored user data: the labeller role only."""
    if not (digest.startswith("sha256:") and len(digest) == 71 and all(c in "0123456789abcdef" for c in digest[7:])):
        raise ApiError(422, "digest: send an image input's digest, sha256: and 64 hex digits")
    data = await state.from_store(lambda store: store.image(digest))
    if data is None:
        raise ApiError(404, f"no kept image {digest} (never kept, or erased)")
    riff_webp = data[:4] == b"RIFF" and data[8:12] == b"WEBP"
    media = "image/webp" if riff_webp else next((t for magic, t in IMAGE_TYPES if data.startswith(magic)), None)
    return Response(
        data,
        media_type=media or "application/octet-stream",
        headers={"X-Content-Type-Options": "nosniff", "Cache-Control": "private, max-age=300"},
    )


def utc(moment: dt.datetime) -> str:
    """ISO time in UTC (SQLite hands times back without their zone; they were written in UTC)."""
    return (moment if moment.tzinfo else moment.replace(tzinfo=dt.timezone.utc)).isoformat()


# Health, metrics, the page ------------------------------------------------------------------------


@router.get("/livez")
async def livez() -> dict:
    return {"status": "alive"}


@router.get("/readyz")
async def readyz(state: State) -> Response:
    if state.ready and state.holder.current is not None:
        return JSONResponse({"status": "ready", "version": state.holder.current.version})
    return JSONResponse({"status": "loading"}, status_code=503)


@router.get("/metrics")
async def prometheus(state: State) -> Response:
    state.metrics.queue_depth.set(state.batcher.depth)
    if state.holder.current is not None:
        drift_gauges(state.metrics, state.holder.current.name)
    return Response(generate_latest(state.metrics.registry), media_type=CONTENT_TYPE_LATEST)


def drift_gauges(metrics: ServerMetrics, name: str) -> None:
    """The newest `fmloop drift` result of the served model, if one was written."""
    try:
        result = json.loads(latest_path(name).read_text())
    except (OSError, ValueError):
        return
    metrics.drift_detected.set(1 if result.get("drifted") else 0)
    for test in result.get("tests", []):
        metrics.drift_p_value.labels(test["name"]).set(test["p_value"])


@router.get("/", response_class=HTMLResponse, include_in_schema=False)
async def page() -> HTMLResponse:
    return HTMLResponse(PAGE.read_text(encoding="utf-8"))
