"""The feedback store's tables. Changing them means a new Alembic migration in `migrations/versions`
(the store refuses to open a database whose schema is not the one this code expects)."""

from __future__ import annotations

import datetime as dt
import hashlib

from sqlalchemy import JSON, Boolean, DateTime, Float, ForeignKey, Integer, LargeBinary, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


def now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


class Base(DeclarativeBase):
    pass


class Prediction(Base):
    """One answer the server gave: which model version, for what input, with what confidence."""

    __tablename__ = "predictions"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)  # uuid4 hex, handed to the client
    model_name: Mapped[str] = mapped_column(String(100), index=True)
    model_version: Mapped[int] = mapped_column(Integer)
    input_kind: Mapped[str] = mapped_column(String(10))  # text | image
    input: Mapped[str] = mapped_column(Text)  # the text, or sha256:<digest> of an image's bytes (StoredImage)
    label: Mapped[str | None] = mapped_column(Text, nullable=True)  # the stored answer (tasks/catalog.py)
    probabilities: Mapped[dict | None] = mapped_column(JSON, nullable=True)
    score: Mapped[float | None] = mapped_column(Float, nullable=True)  # regression
    latency_ms: Mapped[float] = mapped_column(Float)
    audit: Mapped[bool] = mapped_column(Boolean, default=False, index=True)  # awaits or has an audit label
    # None: in the server's uniform sample (unbiased labelling); else the challenger whose
    # disagreement with the champion asked for this label, and its place in a random order
    audit_for: Mapped[str | None] = mapped_column(String(120), nullable=True)
    audit_rank: Mapped[int | None] = mapped_column(Integer, nullable=True)
    user: Mapped[str | None] = mapped_column(String(200), nullable=True, index=True)  # the caller's identity
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=now, index=True)


CORRECTION, AUDIT = "correction", "audit"
ERASED = "[erased]"  # what a deleted or expired input reads as: its row stays, its content is gone


class Feedback(Base):
    """A correct label for a prediction (or for an input that was never predicted): a user's
    correction, or an audit label of a prediction the server sampled at random. Users correct mostly
    what they see is wrong, so only audit labels measure a model without bias."""

    __tablename__ = "feedback"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)  # the high-water mark
    prediction_id: Mapped[str | None] = mapped_column(
        String(32), ForeignKey("predictions.id"), nullable=True, index=True
    )
    model_name: Mapped[str] = mapped_column(String(100), index=True)
    input: Mapped[str | None] = mapped_column(Text, nullable=True)  # only without a prediction
    label: Mapped[str] = mapped_column(Text)  # a class, a JSON list, a number, a tag per word
    kind: Mapped[str] = mapped_column(String(10), default=CORRECTION, index=True)  # correction | audit
    user: Mapped[str | None] = mapped_column(String(200), nullable=True, index=True)  # the sender's identity
    idempotency_key: Mapped[str] = mapped_column(String(200), unique=True)
    body_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=now, index=True)


class Erasure(Base):
    """One deletion of a user's data or one retention pass: what, when, by whom, how many rows."""

    __tablename__ = "erasures"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    reason: Mapped[str] = mapped_column(String(20))  # user | retention
    subject: Mapped[str] = mapped_column(String(200))  # the identity, or the cut-off time
    predictions: Mapped[int] = mapped_column(Integer)  # inputs erased
    feedback: Mapped[int] = mapped_column(Integer)  # feedback rows deleted or erased
    done_by: Mapped[str | None] = mapped_column(String(200), nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=now)


class StoredImage(Base):
    """The bytes of an image input that got feedback or was drawn for the audit, by the digest its
    predictions store as their `input`: one row however many predictions show the image. Rows no
    prediction refers to any more (erased, expired) are deleted with the erasure."""

    __tablename__ = "images"

    digest: Mapped[str] = mapped_column(String(71), primary_key=True)  # sha256:<64 hex>
    data: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=now)


def image_digest(data: bytes) -> str:
    """How an image input is named in the store: the SHA-256 of its file's bytes."""
    return "sha256:" + hashlib.sha256(data).hexdigest()
