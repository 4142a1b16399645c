"""What the pipelines service returns: frozen, JSON-ready records (never ORM rows)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


@dataclass(frozen=True)
class StepInfo:
    name: str
    upstream: tuple[str, ...]
    params: tuple[str, ...]
    retries: int
    cache: bool

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "upstream": list(self.upstream),
            "params": list(self.params),
            "retries": self.retries,
            "cache": self.cache,
        }


@dataclass(frozen=True)
class PipelineInfo:
    """A registered pipeline: its steps in execution order, default params and schedule."""

    name: str
    description: str
    steps: tuple[StepInfo, ...]
    params: dict[str, Any]
    schedule: str | None
    module: str | None
    last_run_id: str | None = None
    last_status: str | None = None
    last_run_at: datetime | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "description": self.description,
            "steps": [s.to_dict() for s in self.steps],
            "params": dict(self.params),
            "schedule": self.schedule,
            "module": self.module,
            "last_run_id": self.last_run_id,
            "last_status": self.last_status,
            "last_run_at": _iso(self.last_run_at),
        }


@dataclass(frozen=True)
class StepRun:
    """One step of one run: status as it changes, attempts, timings, digests, captured log."""

    step: str
    position: int
    status: str
    attempts: int
    started_at: datetime | None
    finished_at: datetime | None
    duration_seconds: float | None
    input_digests: dict[str, Any]
    output_digest: str | None
    output_format: str | None
    output_type: str | None
    cache_key: str | None
    cached_from: str | None
    log: str
    error: str | None

    @property
    def label(self) -> str:
        """Status for people: a cache hit reads ``skipped (cached)``."""
        return "skipped (cached)" if self.status == "skipped" else self.status

    def to_dict(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "position": self.position,
            "status": self.status,
            "label": self.label,
            "attempts": self.attempts,
            "started_at": _iso(self.started_at),
            "finished_at": _iso(self.finished_at),
            "duration_seconds": self.duration_seconds,
            "input_digests": dict(self.input_digests),
            "output_digest": self.output_digest,
            "output_format": self.output_format,
            "output_type": self.output_type,
            "cache_key": self.cache_key,
            "cached_from": self.cached_from,
            "log": self.log,
            "error": self.error,
        }


@dataclass(frozen=True)
class PipelineRun:
    """A pipeline run record with its step runs in execution order."""

    id: str
    pipeline: str
    params: dict[str, Any]
    status: str
    trigger: str
    job_id: int | None
    schedule_slot: datetime | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    error: str | None
    steps: tuple[StepRun, ...] = ()

    @property
    def duration_seconds(self) -> float | None:
        if self.started_at is None or self.finished_at is None:
            return None
        return (self.finished_at - self.started_at).total_seconds()

    @property
    def succeeded(self) -> bool:
        return self.status == "succeeded"

    def step(self, name: str) -> StepRun:
        """The step run named ``name`` (KeyError lists the steps)."""
        for item in self.steps:
            if item.step == name:
                return item
        raise KeyError(f"run {self.id} has no step {name!r}; steps: {', '.join(s.step for s in self.steps)}")

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "pipeline": self.pipeline,
            "params": dict(self.params),
            "status": self.status,
            "trigger": self.trigger,
            "job_id": self.job_id,
            "schedule_slot": _iso(self.schedule_slot),
            "created_at": _iso(self.created_at),
            "started_at": _iso(self.started_at),
            "finished_at": _iso(self.finished_at),
            "duration_seconds": self.duration_seconds,
            "error": self.error,
            "steps": [s.to_dict() for s in self.steps],
        }


@dataclass(frozen=True)
class Schedule:
    """A pipeline's cron schedule (UTC) and where it stands."""

    pipeline: str
    cron: str
    enabled: bool
    last_slot: datetime | None
    next_due: datetime
    updated_at: datetime

    def to_dict(self) -> dict[str, Any]:
        return {
            "pipeline": self.pipeline,
            "cron": self.cron,
            "enabled": self.enabled,
            "last_slot": _iso(self.last_slot),
            "next_due": _iso(self.next_due),
            "updated_at": _iso(self.updated_at),
        }


def step_run_from_row(row: Any) -> StepRun:
    return StepRun(
        step=row.step,
        position=row.position,
        status=row.status,
        attempts=row.attempts,
        started_at=row.started_at,
        finished_at=row.finished_at,
        duration_seconds=row.duration_seconds,
        input_digests=dict(row.input_digests or {}),
        output_digest=row.output_digest,
        output_format=row.output_format,
        output_type=row.output_type,
        cache_key=row.cache_key,
        cached_from=row.cached_from,
        log=row.log or "",
        error=row.error,
    )


def run_from_row(row: Any, steps: list[Any]) -> PipelineRun:
    return PipelineRun(
        id=row.id,
        pipeline=row.pipeline,
        params=dict(row.params or {}),
        status=row.status,
        trigger=row.trigger,
        job_id=row.job_id,
        schedule_slot=row.schedule_slot,
        created_at=row.created_at,
        started_at=row.started_at,
        finished_at=row.finished_at,
        error=row.error,
        steps=tuple(step_run_from_row(s) for s in steps),
    )


def schedule_from_row(row: Any) -> Schedule:
    return Schedule(
        pipeline=row.pipeline,
        cron=row.cron,
        enabled=bool(row.enabled),
        last_slot=row.last_slot,
        next_due=row.next_due,
        updated_at=row.updated_at,
    )
