"""Prometheus metrics for the HTTP app: request count and latency by route template, queue depth.

Each app gets its own ``CollectorRegistry`` so several apps in one process (tests, embedded use)
never collide. Requests are labelled by the *route template* (``/v1/models/{name}``), not the raw
path, so a scraper sees a bounded number of series however many models or runs exist.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger("loopml.serving")

#: Latency buckets in seconds, dense below 100 ms where the online-serving budget lives.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
UNMATCHED = "<unmatched>"


class Metrics:
    """The registry and instruments one app exports on ``/metrics``."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self, mounts: tuple[str, ...] = ()) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.mounts = mounts
        self.requests = Counter(
            "loopml_http_requests",
            "HTTP requests handled, by method, route template and status code.",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "loopml_http_request_duration_seconds",
            "Time from request start to the end of the response body, by route template.",
            ["method", "route"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )

    def add_collector(self, collector: Collector) -> None:
        self.registry.register(collector)

    def render(self) -> bytes:
        return generate_latest(self.registry)

    def route_label(self, scope: Scope) -> str:
        """The matched route's template, a mount prefix, or ``<unmatched>`` (never the raw path)."""
        route = scope.get("route")
        template = getattr(route, "path_format", None) or getattr(route, "path", None)
        if template:
            return str(template)
        path = str(scope.get("path", ""))
        for prefix in self.mounts:
            if path == prefix or path.startswith(prefix + "/"):
                return prefix + "/{path}"
        return UNMATCHED


class PrometheusMiddleware:
    """Pure ASGI middleware (no per-request task or body buffering, so streaming stays cheap).

    ``skip(path)`` names routes that export their own, richer series (the endpoints' predict route
    counts and times every call per endpoint, version and arm): measuring them twice would cost
    ~100 us per request on the hottest path for a duplicate series.
    """

    def __init__(self, app: ASGIApp, metrics: Metrics, skip: Callable[[str], bool] | None = None) -> None:
        self.app = app
        self.metrics = metrics
        self.skip = skip
        self._children: dict[tuple[str, str, str], tuple[Any, Any]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or (self.skip is not None and self.skip(scope["path"])):
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route = self.metrics.route_label(scope)
            method = str(scope.get("method", "GET"))
            key = (method, route, str(status))
            children = self._children.get(key)
            if children is None:  # label tuples are bounded (route templates), so this cache is too
                children = (
                    self.metrics.requests.labels(method, route, key[2]),
                    self.metrics.latency.labels(method, route),
                )
                self._children[key] = children
            children[0].inc()
            children[1].observe(time.perf_counter() - start)


class JobQueueCollector(Collector):
    """``loopml_jobs{status}`` and the oldest queued job's age, read from the queue at scrape time.

    Scrapes are rare (every 15-60 s), so one ``stats()`` query per scrape is cheaper and simpler
    than keeping counters in sync with other processes' writes.
    """

    def __init__(self, jobs: Callable[[], Any]) -> None:
        self._jobs = jobs

    def describe(self) -> Iterator[Any]:
        return iter(())

    def collect(self) -> Iterator[Any]:
        try:
            queue = self._jobs()
            stats = queue.stats()
            oldest = queue.oldest_age_seconds()
        except Exception as exc:  # a scrape must never fail because one source is down
            log.debug("job metrics unavailable: %s", exc)
            return
        jobs = GaugeMetricFamily("loopml_jobs", "Jobs in the durable queue, by status.", labels=["status"])
        for status, count in sorted(stats.items()):
            jobs.add_metric([str(status)], float(count))
        yield jobs
        age = GaugeMetricFamily(
            "loopml_jobs_oldest_queued_age_seconds", "Age of the oldest queued job (0 when none)."
        )
        age.add_metric([], float(oldest or 0.0))
        yield age
