"""The feedback store: every served prediction and every correction, in SQLite (WAL, fsync on
commit) by default or PostgreSQL by URL (FMLOOP_DB), through SQLAlchemy.

Feedback is idempotent: each correction carries a client-chosen key and the hash of its body. The
same key with the same body returns the first answer and stores nothing; the same key with another
body is a conflict. A correction is acknowledged only once its transaction has committed.

    store = Store.open()              # FMLOOP_DB, else sqlite in the fmloop home; migrated
    ids = store.add_predictions([...])
    row, created = store.add_feedback(key="...", body_hash="...", prediction_id=ids[0], label="pos")
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import logging
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import case, create_engine, delete, event, func, select, text, update
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import IntegrityError, OperationalError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from fmloop.core.errors import FmloopError, RegistryError
from fmloop.core.home import database_url
from fmloop.feedback.schema import (
    AUDIT,
    CORRECTION,
    ERASED,
    Erasure,
    Feedback,
    Prediction,
    StoredImage,
    image_digest,
    now,
)

log = logging.getLogger(__name__)

MIGRATIONS = Path(__file__).parent / "migrations"


class StoreUnavailable(RegistryError):
    """The database cannot be reached (the server answers 503 and keeps serving predictions)."""


class IdempotencyConflict(FmloopError):
    """The idempotency key was used before for a different body."""


class UnknownPrediction(FmloopError):
    """Feedback names a prediction id the store does not hold."""


class ImageMismatch(FmloopError):
    """The image sent with a correction is not the one the prediction was made for."""


class NotAudited(FmloopError):
    """An audit label names a prediction the server did not sample for the audit."""


@dataclass
class NewPrediction:
    model_name: str
    model_version: int
    input_kind: str
    input: str
    label: str | None
    probabilities: dict | None
    score: float | None
    latency_ms: float
    audit: bool = False
    user: str | None = None  # the identity whose token asked for it


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    # WAL lets readers and one writer work at once; synchronous=FULL fsyncs on every commit, so an
    # acknowledged correction survives a power cut; busy_timeout makes concurrent writers wait.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.close()


def create(url: str) -> Engine:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 10})
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    if parsed.get_backend_name() == "postgresql" and parsed.drivername == "postgresql":
        url = parsed.set(drivername="postgresql+psycopg").render_as_string(hide_password=False)
    return create_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=5)


def _safe(url: str) -> str:
    return make_url(url).render_as_string(hide_password=True)


class Store:
    def __init__(self, engine: Engine, url: str):
        self.engine, self.url = engine, url
        self.sessions = sessionmaker(engine, expire_on_commit=False)

    @classmethod
    def open(cls, url: str | None = None, migrate: bool = True) -> "Store":
        """The store at `url` (default: FMLOOP_DB, else SQLite in the fmloop home), with its schema
        brought up to date."""
        url = url or database_url()
        try:
            store = cls(create(url), url)
        except ImportError as err:
            hint = " (pip install 'fmloop[postgres]')" if "psycopg" in str(err) else ""
            raise StoreUnavailable(f"The feedback store URL {_safe(url)} needs a driver: {err}{hint}") from None
        except (SQLAlchemyError, ValueError) as err:
            raise StoreUnavailable(f"The feedback store URL {_safe(url)} is not usable: {err}") from None
        if migrate:
            store.migrate()
        return store

    # Schema ------------------------------------------------------------------------------------
    def _alembic(self) -> Config:
        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS))
        return config

    def migrate(self) -> None:
        """Bring the schema to the newest migration; several processes starting at once take turns."""
        config = self._alembic()
        try:
            with self._migration_lock(), self.engine.begin() as connection:
                if self.engine.dialect.name == "postgresql":
                    connection.execute(text("SELECT pg_advisory_xact_lock(4242424242)"))
                config.attributes["connection"] = connection
                command.upgrade(config, "head")
        except OperationalError as err:
            raise self._unavailable(err) from None

    @contextlib.contextmanager
    def _migration_lock(self) -> Iterator[None]:
        """SQLite has no advisory locks: a lock file beside the database orders the migrators."""
        database = make_url(self.url).database
        if self.engine.dialect.name != "sqlite" or not database or database == ":memory:":
            yield
            return
        with open(f"{database}.migrate.lock", "w") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def schema_version(self) -> str | None:
        with self.engine.connect() as connection:
            return MigrationContext.configure(connection).get_current_revision()

    def head_version(self) -> str:
        return ScriptDirectory.from_config(self._alembic()).get_current_head()

    # Writing -----------------------------------------------------------------------------------
    @contextlib.contextmanager
    def session(self) -> Iterator[Session]:
        """A transaction: committed when the block ends, rolled back when it raises."""
        try:
            with self.sessions.begin() as session:
                yield session
        except OperationalError as err:
            raise self._unavailable(err) from None

    def add_predictions(
        self, rows: list[NewPrediction], ids: list[str] | None = None, images: dict[str, bytes] | None = None
    ) -> list[str]:
        """Store a batch of predictions in one transaction, with the bytes of the image inputs in
        `images` (digest -> bytes; those drawn for the audit); returns their ids, in order."""
        ids = ids or [uuid.uuid4().hex for _ in rows]
        created = now()
        with self.session() as session:
            session.add_all(Prediction(id=i, created_at=created, **vars(r)) for i, r in zip(ids, rows))
            self._keep_images(session, images or {})
        return ids

    def _keep_images(self, session: Session, images: dict[str, bytes]) -> None:
        """Insert the images not stored yet; one another server stores meanwhile is left as it is."""
        if not images:
            return
        rows = [{"digest": d, "data": b, "created_at": now()} for d, b in images.items()]
        dialect = self.engine.dialect.name
        if dialect == "postgresql":
            from sqlalchemy.dialects.postgresql import insert
        else:
            from sqlalchemy.dialects.sqlite import insert
        session.execute(insert(StoredImage).on_conflict_do_nothing(index_elements=["digest"]), rows)

    def image(self, digest: str) -> bytes | None:
        """The stored bytes of the image input named `digest` (None: never kept, or erased)."""
        with self.session() as session:
            row = session.get(StoredImage, digest)
            return row.data if row is not None else None

    def stored_images(self, digests: set[str]) -> set[str]:
        """Which of `digests` have their bytes stored."""
        if not digests:
            return set()
        with self.session() as session:
            found = set()
            ordered = sorted(digests)
            for start in range(0, len(ordered), 500):
                chunk = ordered[start : start + 500]
                found.update(session.scalars(select(StoredImage.digest).where(StoredImage.digest.in_(chunk))))
            return found

    def add_feedback(
        self,
        *,
        key: str,
        body_hash: str,
        model_name: str,
        label: str,
        prediction_id: str | None = None,
        input: str | None = None,
        user: str | None = None,
        kind: str = CORRECTION,
        image: Callable[[str], bytes | None] | None = None,
    ) -> tuple[Feedback, bool]:
        """(row, created). A replay of `key` with the same body returns the first row and False.
        An audit label must name a prediction the server sampled for the audit. When the prediction
        was of an image, `image(digest)` gives its bytes (the server's recent images, or the ones
        the correction carried), kept in the same transaction so retrain can train on them."""
        first = self.feedback_by_key(key)
        if first is not None:
            return self._replay(first, body_hash, key), False
        try:
            with self.session() as session:
                predicted = session.get(Prediction, prediction_id) if prediction_id is not None else None
                if prediction_id is not None and predicted is None:
                    raise UnknownPrediction(f"No prediction has the id {prediction_id!r}.")
                if kind == AUDIT and (predicted is None or not predicted.audit):
                    raise NotAudited(
                        f"Prediction {prediction_id!r} was not sampled for the audit: send an audit label only for "
                        f"a prediction GET /v1/audit lists; a user's correction has kind 'correction'."
                    )
                if predicted is not None and predicted.input_kind == "image" and image is not None:
                    data = image(predicted.input)
                    if data is not None:
                        if image_digest(data) != predicted.input:
                            raise ImageMismatch(
                                f"image_base64 is not the image prediction {prediction_id!r} was made for; "
                                f"send that image's bytes, or no image."
                            )
                        self._keep_images(session, {predicted.input: data})
                row = Feedback(
                    prediction_id=prediction_id,
                    model_name=model_name,
                    input=input,
                    label=label,
                    kind=kind,
                    user=user,
                    idempotency_key=key,
                    body_hash=body_hash,
                    created_at=now(),
                )
                session.add(row)
            return row, True
        except IntegrityError:  # the same key committed by a concurrent request meanwhile
            first = self.feedback_by_key(key)
            if first is None:
                raise
            return self._replay(first, body_hash, key), False

    @staticmethod
    def _replay(first: Feedback, body_hash: str, key: str) -> Feedback:
        if first.body_hash != body_hash:
            raise IdempotencyConflict(
                f"Idempotency-Key {key!r} was already used for a different feedback body; "
                f"use a new key for a new correction."
            )
        return first

    # Reading -----------------------------------------------------------------------------------
    def feedback_by_key(self, key: str) -> Feedback | None:
        with self.session() as session:
            return session.scalars(select(Feedback).where(Feedback.idempotency_key == key)).first()

    def prediction(self, prediction_id: str) -> Prediction | None:
        with self.session() as session:
            return session.get(Prediction, prediction_id)

    def recent_predictions(self, limit: int = 50, model_name: str | None = None) -> list[tuple[Prediction, str | None]]:
        """The newest predictions with their latest correction (None when uncorrected)."""
        with self.session() as session:
            query = select(Prediction).order_by(Prediction.created_at.desc(), Prediction.id).limit(limit)
            if model_name:
                query = query.where(Prediction.model_name == model_name)
            predictions = list(session.scalars(query))
            ids = [p.id for p in predictions]
            corrected: dict[str, str] = {}
            if ids:
                rows = session.execute(
                    select(Feedback.prediction_id, Feedback.label)
                    .where(Feedback.prediction_id.in_(ids))
                    .order_by(Feedback.id)
                )
                corrected = {pid: label for pid, label in rows}
            return [(p, corrected.get(p.id)) for p in predictions]

    def audit_queue(self, model_name: str | None = None, limit: int = 50) -> list[Prediction]:
        """Predictions in the audit that have no audit label yet: the uniform sample oldest first,
        then those a challenger asked for, in their random order (so that whatever prefix gets
        labelled is a uniform sample of what was asked for)."""
        labelled = select(Feedback.prediction_id).where(Feedback.kind == AUDIT, Feedback.prediction_id.is_not(None))
        targeted = case((Prediction.audit_for.is_(None), 0), else_=1)
        query = (
            select(Prediction)
            .where(Prediction.audit.is_(True), Prediction.id.not_in(labelled), Prediction.input != ERASED)
            .order_by(targeted, Prediction.audit_rank, Prediction.created_at, Prediction.id)
            .limit(limit)
        )
        if model_name:
            query = query.where(Prediction.model_name == model_name)
        with self.session() as session:
            return list(session.scalars(query))

    def request_audit(self, prediction_ids: list[str], challenger: str) -> int:
        """Ask for audit labels of these predictions on behalf of `challenger`, in this order;
        predictions already in the audit keep their place. Returns how many joined it."""
        joined = 0
        with self.session() as session:
            for rank, prediction_id in enumerate(prediction_ids):
                joined += session.execute(
                    update(Prediction)
                    .where(Prediction.id == prediction_id, Prediction.audit.is_(False))
                    .values(audit=True, audit_for=challenger[:120], audit_rank=rank)
                ).rowcount
        return joined

    def served(self, model_name: str, version: int, limit: int, kind: str = "text") -> list[tuple[str, str, str]]:
        """(prediction id, input, label) of the `limit` newest distinct inputs of `kind` that `version`
        of `model_name` answered (an input sent many times counts once: its newest prediction);
        images only where their files were kept."""
        served = (
            Prediction.model_name == model_name,
            Prediction.model_version == version,
            Prediction.input_kind == kind,
            Prediction.label.is_not(None),
            Prediction.input != ERASED,
        )
        if kind == "image":
            served += (Prediction.input.in_(select(StoredImage.digest)),)
        newest = func.max(Prediction.created_at).label("newest")
        inputs = select(Prediction.input, newest).where(*served).group_by(Prediction.input)
        with self.session() as session:
            texts = [t for t, _ in session.execute(inputs.order_by(newest.desc(), Prediction.input).limit(limit))]
            found: dict[str, tuple[str, str, str]] = {}
            for start in range(0, len(texts), 500):
                rows = session.execute(
                    select(Prediction.id, Prediction.input, Prediction.label)
                    .where(*served, Prediction.input.in_(texts[start : start + 500]))
                    .order_by(Prediction.created_at.desc(), Prediction.id)
                )
                for pid, text, label in rows:
                    found.setdefault(text, (pid, text, label))
        return [found[t] for t in texts]

    def recent_feedback(self, limit: int = 50, model_name: str | None = None) -> list[Feedback]:
        with self.session() as session:
            query = select(Feedback).order_by(Feedback.id.desc()).limit(limit)
            if model_name:
                query = query.where(Feedback.model_name == model_name)
            return list(session.scalars(query))

    def high_water(self) -> int:
        """The newest feedback id (0 when there is none): a snapshot's upper bound."""
        with self.session() as session:
            return session.scalar(select(Feedback.id).order_by(Feedback.id.desc()).limit(1)) or 0

    def accepted(self, model_name: str, high_water: int, limit: int) -> list[tuple[str, str]]:
        """(input, label) of the newest served text predictions that no feedback up to `high_water`
        corrected or audited, and that were not sampled for the audit, made before that feedback
        row: the answers users saw and let stand."""
        if limit <= 0:
            return []
        with self.session() as session:
            cutoff = session.scalar(select(Feedback.created_at).where(Feedback.id == high_water))
            answered = select(Feedback.prediction_id).where(
                Feedback.id <= high_water, Feedback.prediction_id.is_not(None)
            )
            query = (
                select(Prediction.input, Prediction.label)
                .where(
                    Prediction.model_name == model_name,
                    Prediction.input_kind == "text",
                    Prediction.input != ERASED,
                    Prediction.audit.is_(False),
                    Prediction.label.is_not(None),
                    Prediction.id.not_in(answered),
                )
                .order_by(Prediction.created_at.desc(), Prediction.id)
                .limit(limit)
            )
            if cutoff is not None:
                query = query.where(Prediction.created_at <= cutoff)
            return [(text, label) for text, label in session.execute(query)]

    def count_feedback(self, model_name: str, since: int = 0, high_water: int | None = None) -> int:
        """Feedback rows of `model_name` (both kinds) with `since` < id <= `high_water`."""
        query = select(func.count()).where(Feedback.model_name == model_name, Feedback.id > since)
        if high_water is not None:
            query = query.where(Feedback.id <= high_water)
        with self.session() as session:
            return session.scalar(query) or 0

    # Deletion and retention ----------------------------------------------------------------------
    def erase_user(self, user: str, done_by: str | None = None) -> Erasure:
        """Delete everything `user` sent: their feedback rows go, the inputs of the predictions their
        token asked for are erased (the rows stay, so counts and other users' labels keep their
        place). Recorded in the erasures table, in the same transaction."""
        with self.session() as session:
            feedback = session.execute(delete(Feedback).where(Feedback.user == user)).rowcount
            predictions = session.execute(
                update(Prediction)
                .where(Prediction.user == user, Prediction.input != ERASED)
                .values(input=ERASED, probabilities=None)
            ).rowcount
            self._drop_orphan_images(session)
            record = Erasure(reason="user", subject=user[:200], predictions=predictions, feedback=feedback,
                             done_by=done_by, created_at=now())  # fmt: skip
            session.add(record)
        return record

    def expire_inputs(self, before: dt.datetime, done_by: str | None = None) -> Erasure:
        """Retention: erase every stored input (predictions, and feedback that carried its own) made
        before `before`; labels, versions and times stay for the metrics. Recorded like a deletion."""
        with self.session() as session:
            predictions = session.execute(
                update(Prediction)
                .where(Prediction.created_at < before, Prediction.input != ERASED)
                .values(input=ERASED, probabilities=None)
            ).rowcount
            feedback = session.execute(
                update(Feedback)
                .where(Feedback.created_at < before, Feedback.input.is_not(None), Feedback.input != ERASED)
                .values(input=ERASED)
            ).rowcount
            self._drop_orphan_images(session)
            record = Erasure(reason="retention", subject=before.isoformat(), predictions=predictions,
                             feedback=feedback, done_by=done_by, created_at=now())  # fmt: skip
            session.add(record)
        return record

    @staticmethod
    def _drop_orphan_images(session: Session) -> None:
        """Image bytes no prediction names any more go with the inputs that named them."""
        named = select(Prediction.input).where(Prediction.input_kind == "image", Prediction.input != ERASED)
        session.execute(delete(StoredImage).where(StoredImage.digest.not_in(named)))

    def erasures(self) -> list[Erasure]:
        with self.session() as session:
            return list(session.scalars(select(Erasure).order_by(Erasure.id)))

    def ping(self) -> None:
        """Raise StoreUnavailable unless the database answers."""
        with self.session() as session:
            session.execute(text("SELECT 1"))

    def _unavailable(self, err: Exception) -> StoreUnavailable:
        first = str(getattr(err, "orig", err)).strip().splitlines()[0]
        return StoreUnavailable(f"The feedback store at {_safe(self.url)} cannot be reached: {first}")

    def close(self) -> None:
        self.engine.dispose()
