"""What one server process holds while it runs, and what every route asks of it: the model, the
batcher, the store and its writer, the credentials, the rate limiter and the metrics; the caller's
identity and role; predictions scored through the batcher and queued for the store."""

from __future__ import annotations

import asyncio
import logging
import random
import secrets
import time
from dataclasses import dataclass, field
from typing import Annotated

from fastapi import Depends, Header, Request

from fmloop.feedback.store import NewPrediction, Store, StoreUnavailable
from fmloop.serve.batching import Batcher, QueueFull
from fmloop.serve.config import ServeConfig
from fmloop.serve.guards import ApiError
from fmloop.serve.identity import Credentials, Identity
from fmloop.serve.metrics import ServerMetrics
from fmloop.serve.model import ModelHolder, Served
from fmloop.serve.process import ModelUnavailable
from fmloop.serve.ratelimit import RateLimiter
from fmloop.serve.recent import RecentImages
from fmloop.serve.writer import PredictionWriter
from fmloop.tasks import get_task

log = logging.getLogger(__name__)


@dataclass
class ServerState:
    config: ServeConfig
    holder: ModelHolder
    batcher: Batcher
    metrics: ServerMetrics
    credentials: Credentials
    limiter: RateLimiter
    recent_images: RecentImages
    store: Store | None = None
    writer: PredictionWriter | None = None
    ready: bool = False
    in_flight: int = 0  # prediction requests in progress
    sampler: random.Random = field(default_factory=lambda: random.Random(secrets.randbits(64)))  # audit sample
    # one explanation at a time: each costs dozens of forward passes
    explaining: asyncio.Lock = field(default_factory=asyncio.Lock)

    def current(self) -> Served:
        if not self.ready or self.holder.current is None:
            raise ApiError(503, "the model is still loading", {"Retry-After": "2"})
        return self.holder.current

    async def predict(
        self,
        request: Request,
        values: list,
        lengths: list[int],
        stored: list[str],
        user: str | None,
        images: dict[str, bytes] | None = None,
    ) -> tuple[Served, list[dict], list[str]]:
        """(the version that answered, its predictions, their ids), queued for the store; a random
        `audit_fraction` of them joins the audit sample. Image files (`images`, by digest) are kept
        in the store when drawn for the audit, and in memory for a while for corrections."""
        start = time.perf_counter()
        try:
            futures = self.batcher.submit(values, lengths, announced=True)
            request.state.submitted = True
        except QueueFull as err:
            raise ApiError(503, f"the server is busy ({err}); retry shortly", {"Retry-After": "1"}) from None
        self.metrics.queue_depth.set(self.batcher.depth)
        try:
            results = await asyncio.gather(*(asyncio.wrap_future(f) for f in futures))
        except ModelUnavailable as err:
            raise ApiError(503, f"{err}; retry shortly", {"Retry-After": "2"}) from None
        latency_ms = (time.perf_counter() - start) * 1000
        used = results[0][0]  # one request, one version (a swap lands between batches)
        preds = [p for _, p in results]
        ids = [secrets.token_hex(16) for _ in preds]
        audit = [self.sampler.random() < self.config.audit_fraction for _ in preds]
        images = images or {}
        for digest, data in images.items():
            self.recent_images.put(digest, data)
        answers = get_task(used.task)
        self.writer.put(
            ids,
            [
                NewPrediction(
                    model_name=used.name,
                    model_version=used.version,
                    input_kind=used.modality,
                    input=text,
                    label=answers.stored_answer(p),  # the form feedback labels take (tasks/catalog.py)
                    probabilities=p.get("probabilities"),
                    score=p.get("score"),
                    latency_ms=latency_ms,
                    audit=drawn,
                    user=user,
                )
                for text, p, drawn in zip(stored, preds, audit)
            ],
            {text: images[text] for text, drawn in zip(stored, audit) if drawn and text in images},
        )
        return used, preds, ids

    async def from_store(self, read):
        """`read(store)` off the event loop; 503 with Retry-After while the store cannot be reached."""
        if self.store is None:
            raise ApiError(503, "the feedback store cannot be reached; retry later", {"Retry-After": "5"})
        try:
            return await asyncio.get_running_loop().run_in_executor(None, lambda: read(self.store))
        except StoreUnavailable as err:
            raise store_down(err) from None


def store_down(err: StoreUnavailable) -> ApiError:
    """503 for the client; the store's URL and the driver's message stay in the server's log."""
    log.warning("%s", err)
    return ApiError(503, "the feedback store cannot be reached; retry later", {"Retry-After": "5"})


def server(request: Request) -> ServerState:
    return request.app.state.server


def caller(request: Request, authorization: Annotated[str | None, Header()] = None) -> Identity | None:
    """The identity the request's token names (None: no token, or one the server does not know)."""
    client = request.client.host if request.client else "unknown"
    identity = server(request).credentials.identify(authorization, client)
    request.state.identity = identity
    return identity


def requires(role: str):
    """A dependency: the caller's identity, 401 without a known token, 403 below `role`."""

    def check(identity: Annotated[Identity | None, Depends(caller)]) -> Identity:
        if identity is None:
            raise ApiError(401, "this route needs an API token: send Authorization: Bearer <token>")
        if not identity.may(role):
            raise ApiError(403, f"this needs the {role} role; {identity.name!r} has the {identity.role} role")
        return identity

    return check
