"""Per-user rate limits on feedback: a token bucket per user (or client address), so one user, or
a script gone wrong, cannot flood the training set. Per worker process, like the metrics."""

from __future__ import annotations

import threading
import time


class RateLimiter:
    """`per_minute` requests per key, in bursts of up to `per_minute`; 0 means no limit."""

    MAX_KEYS = 100_000  # beyond this, keys whose bucket has refilled are forgotten

    def __init__(self, per_minute: int, clock=time.monotonic):
        self.per_minute, self.clock = per_minute, clock
        self.buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, when)
        self.lock = threading.Lock()

    def wait_s(self, key: str) -> float:
        """0 when `key` may go ahead now (and takes a token), else the seconds until it may."""
        if self.per_minute <= 0:
            return 0.0
        rate, now = self.per_minute / 60.0, self.clock()
        with self.lock:
            tokens, when = self.buckets.get(key, (float(self.per_minute), now))
            tokens = min(float(self.per_minute), tokens + (now - when) * rate)
            if tokens < 1:
                self.buckets[key] = (tokens, now)
                return (1 - tokens) / rate
            self.buckets[key] = (tokens - 1, now)
            if len(self.buckets) > self.MAX_KEYS:
                self._forget_full(now, rate)
            return 0.0

    def _forget_full(self, now: float, rate: float) -> None:
        full = [k for k, (t, w) in self.buckets.items() if t + (now - w) * rate >= self.per_minute]
        for key in full:
            del self.buckets[key]
