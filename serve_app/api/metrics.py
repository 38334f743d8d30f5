"""Prometheus metrics of one REST app: requests, latency per route, faces indexed.

Each app gets its own `CollectorRegistry`, so building several apps in one process (tests,
several ingress replicas) never registers a metric twice.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, SummaryMetricFamily
from prometheus_client.exposition import generate_latest
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Match, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

UNMATCHED_ROUTE = "unmatched"
# Latency buckets in seconds: detection on CPU is tens to hundreds of ms per image.
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


class ApiMetrics:
    """The metrics one app exposes, in a registry of its own."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "faceserve_requests",
            "HTTP requests, by route template, method and status.",
            ("route", "method", "status"),
            registry=self.registry,
        )
        self.latency = Histogram(
            "faceserve_request_duration_seconds",
            "HTTP request latency, by route template and method.",
            ("route", "method"),
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.faces_indexed = Counter(
            "faceserve_faces_indexed",
            "Faces indexed, by collection.",
            ("collection",),
            registry=self.registry,
        )

        self.jobs = JobMetrics()
        self.registry.register(self.jobs)

    def exposition(self, request: Request, jobs: dict[str, Any] | None = None) -> Response:
        """The `GET /metrics` endpoint; `jobs`: the album jobs' numbers, read just now."""
        self.jobs.snapshot = jobs
        return Response(generate_latest(self.registry), media_type=CONTENT_TYPE_LATEST)


class JobMetrics:
    """Album jobs' metrics, from a snapshot of their records (PostgreSQL holds the truth, so
    every ingress replica reports the same numbers)."""

    def __init__(self) -> None:
        self.snapshot: dict[str, Any] | None = None

    def describe(self) -> list:
        return []  # the families depend on the snapshot

    def collect(self) -> Any:
        jobs = self.snapshot
        if not jobs:
            return
        yield GaugeMetricFamily(
            "faceserve_job_queue_depth",
            "Images waiting in running album jobs.",
            value=jobs["queue_depth"],
        )
        yield GaugeMetricFamily(
            "faceserve_job_workers", "Album index workers running.", value=jobs["workers"]
        )
        rate = GaugeMetricFamily(
            "faceserve_job_images_per_second",
            "Recent images/s of each running job.",
            labels=["job"],
        )
        for job_id, value in jobs["rates"].items():
            rate.add_metric([job_id], value)
        yield rate
        failures = CounterMetricFamily(
            "faceserve_job_image_failures",
            "Images album jobs could not index, by reason.",
            labels=["reason"],
        )
        for reason, count in sorted(jobs["failures"].items()):
            failures.add_metric([reason], count)
        yield failures
        durations = SummaryMetricFamily(
            "faceserve_job_duration_seconds",
            "Album jobs from submission to finish, by state.",
            labels=["state"],
        )
        by_state: dict[str, list[float]] = {}
        for state, seconds in jobs["durations"]:
            by_state.setdefault(state, []).append(seconds)
        for state, values in sorted(by_state.items()):
            durations.add_metric([state], len(values), sum(values))
        yield durations


def route_template(routes: Sequence[BaseRoute], scope: Scope) -> str:
    """The matching route's path template (`/v1/collections/{name}`), never the raw path,
    so a scan of random URLs cannot grow the label set."""
    for route in routes:
        match, _ = route.matches(scope)
        if match is not Match.NONE and isinstance(route, Route):
            return route.path
    return UNMATCHED_ROUTE


class RequestMetricsMiddleware:
    """Pure ASGI middleware: counts and times every HTTP request."""

    def __init__(self, app: ASGIApp, metrics: ApiMetrics, routes: Sequence[BaseRoute]) -> None:
        self.app = app
        self.metrics = metrics
        self.routes = routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # what the client gets if the app raises before answering

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            route = route_template(self.routes, scope)
            method = scope["method"] if scope["method"] in KNOWN_METHODS else "OTHER"
            self.metrics.requests.labels(route, method, str(status)).inc()
            self.metrics.latency.labels(route, method).observe(time.perf_counter() - started)
