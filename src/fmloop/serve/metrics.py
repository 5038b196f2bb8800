"""Prometheus metrics of one server process: requests by route and status, latency, batch sizes,
queue depth and the model version served."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

LATENCY_BUCKETS = (0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


class ServerMetrics:
    def __init__(self):
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "fmloop_requests_total", "HTTP requests by route and status", ["route", "status"], registry=self.registry
        )
        self.latency = Histogram(
            "fmloop_request_seconds",
            "request latency by route",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.batch_size = Histogram(
            "fmloop_batch_size", "inputs per forward pass", buckets=BATCH_BUCKETS, registry=self.registry
        )
        self.queue_depth = Gauge("fmloop_queue_depth", "inputs waiting for a forward pass", registry=self.registry)
        self.in_flight = Gauge(
            "fmloop_predict_requests_in_progress", "prediction requests being answered", registry=self.registry
        )
        self.model_version = Gauge(
            "fmloop_model_version",
            "model version served (0: a folder, not a registry version)",
            ["name"],
            registry=self.registry,
        )
        self.drift_p_value = Gauge(
            "fmloop_drift_p_value",
            "p-value of the newest fmloop drift check, by test",
            ["test"],
            registry=self.registry,
        )
        self.drift_detected = Gauge(
            "fmloop_drift_detected", "1 when the newest fmloop drift check flagged drift", registry=self.registry
        )
        self.predictions_not_stored = Counter(
            "fmloop_predictions_not_stored_total",
            "predictions the feedback store could not take",
            registry=self.registry,
        )
