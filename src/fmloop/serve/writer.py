"""Predictions reach the feedback store from one background thread, in batches, off the request's
path: a slow or absent database never slows or fails a prediction."""

from __future__ import annotations

import logging
import queue
import threading
import time

from fmloop.feedback.store import NewPrediction, Store
from fmloop.serve.metrics import ServerMetrics

log = logging.getLogger(__name__)


class PredictionWriter:
    """Predictions go to the store from a background thread, so a slow or absent database never
    slows or fails a prediction. Whatever requests queued while the last transaction committed is
    written in the next one (up to GROUP requests): under load, one commit (an fsync on SQLite)
    serves many requests instead of one each. At most `max_rows` wait: beyond that (a store
    slower than the traffic) new predictions are answered but not stored, counted on /metrics, so
    memory stays bounded. `flush` waits until what was queued is written (feedback for a brand-new
    prediction calls it before giving up on an unknown id); `stop` writes what is queued first."""

    GROUP = 256  # requests' predictions written in one transaction at most

    def __init__(self, store: Store | None, metrics: ServerMetrics, max_rows: int = 10_000):
        self.store, self.metrics, self.max_rows = store, metrics, max_rows
        self.queue: queue.Queue = queue.Queue()
        self.thread = threading.Thread(target=self._loop, name="fmloop-prediction-writer", daemon=True)
        self._last_warning = 0.0
        self._waiting = 0  # rows queued and not yet written
        self._lock = threading.Lock()

    def start(self) -> None:
        self.thread.start()

    def put(self, ids: list[str], rows: list[NewPrediction], images: dict[str, bytes] | None = None) -> bool:
        """Queue rows (and image files to keep, by digest) for the store; False (and counted) when
        the queue is full."""
        with self._lock:
            if self._waiting + len(rows) > self.max_rows:
                self.metrics.predictions_not_stored.inc(len(rows))
                self._warn(f"{self._waiting} predictions are waiting for the store (max_write_queue)")
                return False
            self._waiting += len(rows)
        self.queue.put((ids, rows, images or {}))
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
            items = [self.queue.get()]
            while len(items) < self.GROUP:  # what waits meanwhile joins the same transaction
                try:
                    items.append(self.queue.get_nowait())
                except queue.Empty:
                    break
            ids, rows, images, flushed, stopping = [], [], {}, [], False
            for item in items:
                if item is None:
                    stopping = True
                elif isinstance(item, threading.Event):
                    flushed.append(item)
                else:
                    ids += item[0]
                    rows += item[1]
                    images.update(item[2])
            if rows:
                self._write(ids, rows, images)
            for event in flushed:  # everything queued before it is written
                event.set()
            if stopping:
                return

    def _write(self, ids: list[str], rows: list[NewPrediction], images: dict[str, bytes]) -> None:
        try:
            if self.store is not None:
                self.store.add_predictions(rows, ids, images)
        except Exception as err:  # predictions keep being served
            self.metrics.predictions_not_stored.inc(len(rows))
            self._warn(str(err).splitlines()[0])
        finally:
            with self._lock:
                self._waiting -= len(rows)
