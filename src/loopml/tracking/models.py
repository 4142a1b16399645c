"""What the tracker returns: frozen, JSON-serialisable records (never ORM objects)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any


def _json_float(value: float | None) -> float | str | None:
    """JSON has no NaN/inf: encode them as strings so ``to_dict()`` output is always valid JSON."""
    if value is None or math.isfinite(value):
        return value
    return str(value)


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


@dataclass(frozen=True)
class Experiment:
    """A named group of runs (one model/problem), created on the first ``start_run`` that names it."""

    id: int
    name: str
    created_at: datetime
    run_count: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "created_at": _iso(self.created_at)}


@dataclass(frozen=True)
class MetricSummary:
    """One metric of one run: the latest value (highest step) and the range it covered."""

    key: str
    last: float
    last_step: int
    min: float
    max: float
    count: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "last": _json_float(self.last),
            "last_step": self.last_step,
            "min": _json_float(self.min),
            "max": _json_float(self.max),
            "count": self.count,
        }


@dataclass(frozen=True)
class MetricPoint:
    step: int
    value: float
    ts: datetime

    def to_dict(self) -> dict[str, Any]:
        return {"step": self.step, "value": _json_float(self.value), "ts": _iso(self.ts)}


@dataclass(frozen=True)
class ArtifactRef:
    name: str
    digest: str
    size: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Run:
    """Everything a run recorded. ``metrics`` holds summaries; full histories come from ``metric_history``."""

    id: str
    experiment: str
    name: str | None
    status: str
    start_time: datetime
    end_time: datetime | None
    git_sha: str | None
    pipeline_run_id: str | None
    error: str | None = None
    params: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, MetricSummary] = field(default_factory=dict)
    artifacts: tuple[ArtifactRef, ...] = ()
    inputs: tuple[int, ...] = ()

    @property
    def duration_seconds(self) -> float | None:
        if self.end_time is None:
            return None
        return (self.end_time - self.start_time).total_seconds()

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "experiment": self.experiment,
            "name": self.name,
            "status": self.status,
            "start_time": _iso(self.start_time),
            "end_time": _iso(self.end_time),
            "duration_seconds": self.duration_seconds,
            "git_sha": self.git_sha,
            "pipeline_run_id": self.pipeline_run_id,
            "error": self.error,
            "params": dict(self.params),
            "tags": dict(self.tags),
            "metrics": {k: m.to_dict() for k, m in self.metrics.items()},
            "artifacts": [a.to_dict() for a in self.artifacts],
            "inputs": list(self.inputs),
        }


@dataclass(frozen=True)
class MetricComparison:
    """One metric across the compared runs, in the order of ``RunComparison.run_ids``.

    ``goal`` is ``min`` or ``max``; ``best`` is each run's best value under that goal, and
    ``best_run`` the run whose best value wins (None when no run has a finite value).
    """

    key: str
    goal: str
    final: tuple[float | None, ...]
    best: tuple[float | None, ...]
    best_run: str | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "goal": self.goal,
            "final": [_json_float(v) for v in self.final],
            "best": [_json_float(v) for v in self.best],
            "best_run": self.best_run,
        }


@dataclass(frozen=True)
class RunComparison:
    """Side by side: the params that differ (and those shared), and final/best metric values."""

    run_ids: tuple[str, ...]
    names: tuple[str | None, ...]
    params_differ: dict[str, tuple[str | None, ...]]
    params_same: dict[str, str]
    metrics: tuple[MetricComparison, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_ids": list(self.run_ids),
            "names": list(self.names),
            "params_differ": {k: list(v) for k, v in self.params_differ.items()},
            "params_same": dict(self.params_same),
            "metrics": [m.to_dict() for m in self.metrics],
        }
