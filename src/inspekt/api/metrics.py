"""Prometheus metrics: one registry per app (two apps in one process never share counts)."""

from __future__ import annotations

import time

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from inspekt.drift.types import DriftResult
from inspekt.results import Prediction

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)


class Metrics:
    """The service's counters, histograms and gauges (names listed in docs/api.md)."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "inspekt_requests",
            "HTTP requests by route template, method and status",
            ["route", "method", "status"],
            registry=r,
        )
        self.latency = Histogram(
            "inspekt_request_duration_seconds",
            "Request latency by route template",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.predictions = Counter(
            "inspekt_predictions", "Images predicted, by model and predicted label", ["model", "label"], registry=r
        )
        self.skipped = Counter(
            "inspekt_skipped_files", "Uploaded files that could not be read, by model", ["model"], registry=r
        )
        self.batch_size = Histogram(
            "inspekt_batch_size", "Images per model call (micro-batching)", ["model"], buckets=BATCH_BUCKETS, registry=r
        )
        self.drift_detected = Gauge(
            "inspekt_drift_detected", "Latest drift check: 1 = drift detected", ["model"], registry=r
        )
        self.drift_checks = Gauge(
            "inspekt_drift_drifted_checks", "Latest drift check: number of drifted checks", ["model"], registry=r
        )
        self.drift_p = Gauge(
            "inspekt_drift_min_p_adjusted", "Latest drift check: smallest adjusted p-value", ["model"], registry=r
        )
        self.drift_time = Gauge(
            "inspekt_drift_timestamp_seconds", "When the latest drift check ran (Unix time)", ["model"], registry=r
        )
        self.models = Gauge("inspekt_models_loaded", "Models loaded and warmed up", registry=r)

    def observe_request(self, route: str, method: str, status: int, seconds: float) -> None:
        """Count one finished request."""
        self.requests.labels(route, method, str(status)).inc()
        self.latency.labels(route).observe(seconds)

    def observe_predictions(self, model: str, predictions: list[Prediction]) -> None:
        """Count predicted labels."""
        for prediction in predictions:
            self.predictions.labels(model, str(prediction.label)).inc()

    def observe_drift(self, model: str, result: DriftResult) -> None:
        """Record the latest drift verdict of a model."""
        self.drift_detected.labels(model).set(int(result.drift))
        self.drift_checks.labels(model).set(len(result.drifted))
        self.drift_p.labels(model).set(min((c.p_adjusted for c in result.checks), default=1.0))
        self.drift_time.labels(model).set(time.time())

    def render(self) -> bytes:
        """The text exposition format."""
        return generate_latest(self.registry)


class MetricsMiddleware:
    """Times and counts every HTTP request by its route template (not its path: model names and
    typos in URLs would otherwise make unbounded label sets)."""

    def __init__(self, app, metrics: Metrics):
        self.app, self.metrics = app, metrics

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start, status = time.perf_counter(), [500]

        async def record_status(message):
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, record_status)
        finally:
            route = getattr(scope.get("route"), "path", None) or "unmatched"
            self.metrics.observe_request(route, scope["method"], status[0], time.perf_counter() - start)
