"""Dynamic batching: concurrent requests share one forward pass.

Inputs queue up; a worker thread takes the oldest one and scores up to `max_batch_size` queued
inputs at once. It waits (at most `max_wait_ms`) for more only while a request is on its way to
the queue (announced with `announce()`), so a lone request is never delayed for company that is
not coming, and a busy server fills its batches from what queued during the last forward pass. Text inputs are grouped by length (the oldest input
plus the queued ones closest to its length), so a short text does not pay for a long one's padding
and no input waits behind ever-newer ones. A full queue refuses new inputs at once (the server
answers 503 with Retry-After) instead of letting latency pile up. A batch that fails is scored
again input by input, so an error fails only the request whose input caused it.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Callable


class QueueFull(Exception):
    """More inputs are waiting than the server accepts."""


@dataclass
class _Item:
    value: Any
    length: int
    future: Future = field(default_factory=Future)
    enqueued: float = field(default_factory=time.monotonic)


class Batcher:
    def __init__(
        self,
        run: Callable[[list], list],
        max_batch_size: int = 32,
        max_wait_ms: float = 5.0,
        max_queue: int = 512,
        on_batch: Callable[[int], None] | None = None,
    ):
        self.run, self.max_batch_size, self.max_wait = run, max_batch_size, max_wait_ms / 1000
        self.max_queue, self.on_batch = max_queue, on_batch
        self._pending: list[_Item] = []
        self._arriving = 0  # requests being read and checked, about to submit
        self._cond = threading.Condition()
        self._running = False
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._running = True
        self._thread = threading.Thread(target=self._loop, name="fmloop-batcher", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Finish what is queued, then stop."""
        with self._cond:
            self._running = False
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)

    @property
    def depth(self) -> int:
        return len(self._pending)

    def announce(self) -> None:
        """A request will submit soon: a forming batch waits for it (up to max_wait)."""
        with self._cond:
            self._arriving += 1

    def withdraw(self) -> None:
        """An announced request that will not submit after all (rejected, or failed)."""
        with self._cond:
            self._arriving -= 1
            self._cond.notify_all()

    def submit(self, values: list, lengths: list[int] | None = None, announced: bool = False) -> list[Future]:
        """Queue `values`; one future per value, resolved with its result."""
        items = [_Item(v, n) for v, n in zip(values, lengths or [0] * len(values))]
        with self._cond:
            if not self._running:
                raise QueueFull("the server is shutting down")
            if len(self._pending) + len(items) > self.max_queue:
                raise QueueFull(f"{len(self._pending)} inputs are already waiting")
            if announced:
                self._arriving -= 1
            self._pending.extend(items)
            self._cond.notify_all()
        return [item.future for item in items]

    def _next_batch(self) -> list[_Item]:
        with self._cond:
            while not self._pending and self._running:
                self._cond.wait()
            if not self._pending:
                return []
            deadline = self._pending[0].enqueued + self.max_wait
            while len(self._pending) < self.max_batch_size and self._running and self._arriving > 0:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._cond.wait(remaining)
            if len(self._pending) <= self.max_batch_size:
                batch, self._pending = self._pending, []
                return batch
            oldest, rest = self._pending[0], self._pending[1:]
            nearest = sorted(range(len(rest)), key=lambda i: abs(rest[i].length - oldest.length))
            chosen = set(nearest[: self.max_batch_size - 1])
            batch = [oldest, *(rest[i] for i in sorted(chosen))]
            self._pending = [item for i, item in enumerate(rest) if i not in chosen]
            return batch

    def _loop(self) -> None:
        while True:
            batch = self._next_batch()
            if not batch:
                return  # stopped and drained
            if self.on_batch is not None:
                self.on_batch(len(batch))
            try:
                results = self.run([item.value for item in batch])
            except Exception:
                # One bad input must not fail its batch-mates: score each alone, so the error
                # reaches only the request whose input caused it.
                for item in batch:
                    self._run_alone(item)
                continue
            for item, result in zip(batch, results):
                item.future.set_result(result)

    def _run_alone(self, item: _Item) -> None:
        try:
            item.future.set_result(self.run([item.value])[0])
        except Exception as err:
            item.future.set_exception(err)
