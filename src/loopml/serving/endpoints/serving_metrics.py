"""Prometheus series of the endpoint runtime, registered on the app's registry.

Label children are cached per label tuple, so a request costs two dict lookups and two atomic
increments rather than ``labels()`` parsing on every call. Circuit states and cache hit counts are
read from the runtime at scrape time by a collector (nothing to keep in sync on the hot path).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from loopml.serving.endpoints.breaker import STATE_VALUES

log = logging.getLogger("loopml.serving.endpoints")

#: Seconds; dense between 0.5 ms and 50 ms where model latency budgets live.
PREDICT_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class EndpointMetrics:
    """Counters and histograms labelled endpoint / model version / arm / status."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "loopml_endpoint_predictions",
            "Prediction requests answered, by endpoint, model version, arm and status.",
            ["endpoint", "version", "arm", "status"],
            registry=self.registry,
        )
        self.rows = Counter(
            "loopml_endpoint_prediction_rows",
            "Rows predicted, by endpoint, model version and arm.",
            ["endpoint", "version", "arm"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "loopml_endpoint_predict_duration_seconds",
            "Server time of one predict call (routing, features, model, output), by endpoint, version, arm.",
            ["endpoint", "version", "arm"],
            buckets=PREDICT_BUCKETS,
            registry=self.registry,
        )
        self.errors = Counter(
            "loopml_endpoint_errors",
            "Failed model calls by kind: model_error, timeout, circuit_open, unavailable, invalid_input.",
            ["endpoint", "version", "arm", "kind"],
            registry=self.registry,
        )
        self.shadow_comparisons = Counter(
            "loopml_endpoint_shadow_comparisons",
            "Rows a shadow model scored next to the primary.",
            ["endpoint", "shadow"],
            registry=self.registry,
        )
        self.shadow_disagreements = Counter(
            "loopml_endpoint_shadow_disagreements",
            "Rows where the shadow's answer differed from the primary's (label, or value beyond 1e-6).",
            ["endpoint", "shadow"],
            registry=self.registry,
        )
        self.shadow_latency = Histogram(
            "loopml_endpoint_shadow_duration_seconds",
            "Model time of a shadow call, by endpoint and shadow version.",
            ["endpoint", "shadow"],
            buckets=PREDICT_BUCKETS,
            registry=self.registry,
        )
        self.rollbacks = Counter(
            "loopml_endpoint_canary_rollbacks",
            "Automatic canary rollbacks made by this process.",
            ["endpoint"],
            registry=self.registry,
        )
        self._children: dict[tuple[str, ...], tuple[Any, Any, Any]] = {}

    def observe(self, endpoint: str, version: str, arm: str, status: str, seconds: float, rows: int) -> None:
        key = (endpoint, version, arm, status)
        children = self._children.get(key)
        if children is None:
            children = (
                self.requests.labels(endpoint, version, arm, status),
                self.latency.labels(endpoint, version, arm),
                self.rows.labels(endpoint, version, arm),
            )
            self._children[key] = children
        children[0].inc()
        children[1].observe(seconds)
        children[2].inc(rows)

    def error(self, endpoint: str, version: str, arm: str, kind: str) -> None:
        self.errors.labels(endpoint, version, arm, kind).inc()

    def shadow(self, endpoint: str, shadow: str, compared: int, disagreed: int, seconds: float) -> None:
        self.shadow_comparisons.labels(endpoint, shadow).inc(compared)
        if disagreed:
            self.shadow_disagreements.labels(endpoint, shadow).inc(disagreed)
        self.shadow_latency.labels(endpoint, shadow).observe(seconds)

    def watch(self, snapshot: Callable[[], dict[str, Any]]) -> None:
        """Export circuit states and cache counters from ``snapshot()`` (the runtime's) at scrape time."""
        self.registry.register(_RuntimeCollector(snapshot))


class _RuntimeCollector(Collector):
    def __init__(self, snapshot: Callable[[], dict[str, Any]]) -> None:
        self._snapshot = snapshot

    def describe(self) -> Iterator[Any]:
        return iter(())

    def collect(self) -> Iterator[Any]:
        try:
            snap = self._snapshot()
        except Exception as exc:  # a scrape never fails because the runtime is mid-reload
            log.debug("endpoint runtime metrics unavailable: %s", exc)
            return
        circuit = GaugeMetricFamily(
            "loopml_endpoint_circuit_state",
            "Circuit breaker state per endpoint arm: 0 closed, 1 half-open, 2 open.",
            labels=["endpoint", "arm", "version"],
        )
        loaded = GaugeMetricFamily(
            "loopml_endpoint_model_loaded",
            "1 when the arm has a working model loaded, 0 when it has none (load or verify failed).",
            labels=["endpoint", "arm", "version"],
        )
        hits = CounterMetricFamily(
            "loopml_endpoint_cache_hits", "Prediction cache hits (rows).", labels=["endpoint"]
        )
        misses = CounterMetricFamily(
            "loopml_endpoint_cache_misses", "Prediction cache misses (rows).", labels=["endpoint"]
        )
        for name, ep in sorted(snap.items()):
            for arm, info in ep.get("arms", {}).items():
                version = str(info.get("version_ref") or "")
                circuit.add_metric([name, arm, version], STATE_VALUES.get(info.get("circuit", "closed"), 0.0))
                loaded.add_metric([name, arm, version], 1.0 if info.get("loaded") else 0.0)
            cache = ep.get("cache")
            if cache:
                hits.add_metric([name], float(cache.get("hits", 0)))
                misses.add_metric([name], float(cache.get("misses", 0)))
        yield circuit
        yield loaded
        yield hits
        yield misses
