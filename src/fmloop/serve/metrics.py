"""Prometheus metrics of the server: requests by route and status, latency, batch sizes, queue depth
and the model version served.

With several worker processes (`fmloop serve --workers N`), PROMETHEUS_MULTIPROC_DIR names a folder
where every worker writes its values (prometheus_client's multiprocess mode, chosen when the library
is imported), and /metrics from any worker reads them all: counters and histograms summed over the
workers, in-progress gauges summed over the live ones, the model version per worker (pid label).
"""

from __future__ import annotations

import os

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

LATENCY_BUCKETS = (0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


def shared() -> bool:
    return bool(os.environ.get(MULTIPROC_ENV))


class ServerMetrics:
    def __init__(self):
        self.registry = CollectorRegistry()  # what /metrics reads
        if shared():
            MultiProcessCollector(self.registry)  # every worker's values, from their files
            own = CollectorRegistry()  # this worker's metric objects: written to files, not read here
        else:
            own = self.registry
        self.requests = Counter(
            "fmloop_requests_total", "HTTP requests by route and status", ["route", "status"], registry=own
        )
        self.latency = Histogram(
            "fmloop_request_seconds",
            "request latency by route",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=own,
        )
        self.batch_size = Histogram("fmloop_batch_size", "inputs per forward pass", buckets=BATCH_BUCKETS, registry=own)
        self.queue_depth = Gauge(
            "fmloop_queue_depth", "inputs waiting for a forward pass", registry=own, multiprocess_mode="livesum"
        )
        self.in_flight = Gauge(
            "fmloop_predict_requests_in_progress",
            "prediction requests being answered",
            registry=own,
            multiprocess_mode="livesum",
        )
        self.model_version = Gauge(
            "fmloop_model_version",
            "model version served (0: a folder, not a registry version)",
            ["name"],
            registry=own,
            multiprocess_mode="liveall",
        )
        self.drift_p_value = Gauge(
            "fmloop_drift_p_value",
            "p-value of the newest fmloop drift check, by test",
            ["test"],
            registry=own,
            multiprocess_mode="livemostrecent",
        )
        self.drift_detected = Gauge(
            "fmloop_drift_detected",
            "1 when the newest fmloop drift check flagged drift",
            registry=own,
            multiprocess_mode="livemostrecent",
        )
        self.predictions_not_stored = Counter(
            "fmloop_predictions_not_stored_total",
            "predictions the feedback store could not take",
            registry=own,
        )


def worker_exited() -> None:
    """Drop this worker's live gauges from the shared values (its counters stay counted)."""
    if shared():
        mark_process_dead(os.getpid())
