"""``Loopml``: the one object a user (and every reference app) holds to reach all of loopml.

Services are built lazily so that, say, serving a model never imports the feature store.
"""

from __future__ import annotations

from functools import cached_property
from typing import TYPE_CHECKING, Any

from loopml.config import Settings
from loopml.context import Context

if TYPE_CHECKING:
    from loopml.alerts import Alerts
    from loopml.data import DatasetStore
    from loopml.features import FeatureStore
    from loopml.monitoring.loop import Loop
    from loopml.monitoring.monitors import Monitors
    from loopml.monitoring.rules import AlertRules
    from loopml.monitoring.slo import Slos
    from loopml.notify import Notifier
    from loopml.pipelines import Pipelines
    from loopml.registry import Registry
    from loopml.serving.asynchronous import AsyncRequests
    from loopml.serving.endpoints.service import Endpoints
    from loopml.serving.inference import InferenceLog
    from loopml.storage.queue import JobQueue
    from loopml.tracking import Tracker


class Loopml:
    """Entry point: ``lm = loopml.connect(); lm.datasets.ingest(...); lm.registry.load("m@champion")``."""

    def __init__(self, settings: Settings | None = None, **overrides: Any) -> None:
        self.ctx = Context.from_settings(settings, **overrides)

    @classmethod
    def from_context(cls, ctx: Context) -> Loopml:
        """A client over an existing context (shares its database engine and artifact store)."""
        client = cls.__new__(cls)
        client.ctx = ctx
        return client

    @property
    def settings(self) -> Settings:
        return self.ctx.settings

    @cached_property
    def datasets(self) -> DatasetStore:
        from loopml.data import DatasetStore

        return DatasetStore(self.ctx)

    @cached_property
    def jobs(self) -> JobQueue:
        from loopml.storage.queue import JobQueue

        return JobQueue(self.ctx)

    @cached_property
    def pipelines(self) -> Pipelines:
        from loopml.pipelines import Pipelines

        return Pipelines(self.ctx)

    @cached_property
    def tracking(self) -> Tracker:
        from loopml.tracking import Tracker

        return Tracker(self.ctx)

    @cached_property
    def registry(self) -> Registry:
        from loopml.registry import Registry

        return Registry(self.ctx)

    @cached_property
    def features(self) -> FeatureStore:
        from loopml.features import FeatureStore

        return FeatureStore(self.ctx)

    @cached_property
    def endpoints(self) -> Endpoints:
        from loopml.serving.endpoints.service import Endpoints

        return Endpoints(self.ctx)

    @cached_property
    def inference(self) -> InferenceLog:
        from loopml.serving.inference import InferenceLog

        return InferenceLog(self.ctx)

    @cached_property
    def alerts(self) -> Alerts:
        from loopml.alerts import Alerts

        return Alerts(self.ctx)

    @cached_property
    def notify(self) -> Notifier:
        from loopml.notify import Notifier

        return Notifier(self.ctx)

    @cached_property
    def async_requests(self) -> AsyncRequests:
        from loopml.serving.asynchronous import AsyncRequests

        return AsyncRequests(self.ctx)

    @cached_property
    def monitors(self) -> Monitors:
        from loopml.monitoring.monitors import Monitors

        return Monitors(self.ctx)

    @cached_property
    def slos(self) -> Slos:
        from loopml.monitoring.slo import Slos

        return Slos(self.ctx)

    @cached_property
    def alert_rules(self) -> AlertRules:
        from loopml.monitoring.rules import AlertRules

        return AlertRules(self.ctx)

    @cached_property
    def loop(self) -> Loop:
        from loopml.monitoring.loop import Loop

        return Loop(self.ctx)

    def close(self) -> None:
        inference = self.__dict__.get("inference")
        if inference is not None:
            inference.close()  # writes what the log writers still hold
        tracker = self.__dict__.get("tracking")
        if tracker is not None:
            tracker.close()  # flushes buffered metrics and stops the flush thread
        self.ctx.close()

    def __enter__(self) -> Loopml:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def connect(settings: Settings | None = None, **overrides: Any) -> Loopml:
    """Open loopml with settings from ``loopml.toml`` / ``LOOPML_*`` (overrides win)."""
    return Loopml(settings, **overrides)
