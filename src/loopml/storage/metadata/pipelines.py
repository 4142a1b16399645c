"""Pipeline tables (runs, step runs, schedules) and the queries the pipeline runner and scheduler use.

Every status change is its own short statement, committed by the caller right away, so a dashboard
(or ``loopml pipelines show``) sees a run progress step by step, and a worker that dies mid-run
leaves behind exactly what had finished: the resumed run reuses it.

The step cache is a query, not a separate table: a step whose ``cache_key`` matches an earlier
succeeded (or itself cached) step run reuses that run's output artifact.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    Boolean,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError as SAIntegrityError
from sqlalchemy.orm import Mapped, Session, mapped_column

from loopml.storage.metadata.base import Base, BigId, JSONType, UTCDateTime, utcnow

# Pipeline run statuses.
RUN_QUEUED = "queued"
RUN_RUNNING = "running"
RUN_SUCCEEDED = "succeeded"
RUN_FAILED = "failed"
RUN_STATUSES = (RUN_QUEUED, RUN_RUNNING, RUN_SUCCEEDED, RUN_FAILED)
RUN_FINISHED = (RUN_SUCCEEDED, RUN_FAILED)

# Step run statuses. ``skipped`` means "not executed: the output was reused from the cache".
STEP_PENDING = "pending"
STEP_RUNNING = "running"
STEP_RETRYING = "retrying"
STEP_SUCCEEDED = "succeeded"
STEP_SKIPPED = "skipped"
STEP_FAILED = "failed"
STEP_UPSTREAM_FAILED = "upstream_failed"
STEP_STATUSES = (
    STEP_PENDING,
    STEP_RUNNING,
    STEP_RETRYING,
    STEP_SUCCEEDED,
    STEP_SKIPPED,
    STEP_FAILED,
    STEP_UPSTREAM_FAILED,
)
#: Step statuses whose output artifact can be used by downstream steps and by a resumed run.
STEP_DONE = (STEP_SUCCEEDED, STEP_SKIPPED)

TRIGGERS = ("manual", "schedule", "api")


class PipelineRunRow(Base):
    __tablename__ = "pipeline_runs"
    __table_args__ = (Index("ix_pipeline_runs_pipeline_created", "pipeline", "created_at"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    pipeline: Mapped[str] = mapped_column(String(255), nullable=False)
    params: Mapped[dict[str, Any]] = mapped_column(JSONType, nullable=False)
    status: Mapped[str] = mapped_column(String(16), nullable=False)
    trigger: Mapped[str] = mapped_column(String(16), nullable=False)
    job_id: Mapped[int | None] = mapped_column(BigId, ForeignKey("jobs.id", ondelete="SET NULL"))
    schedule_slot: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    error: Mapped[str | None] = mapped_column(Text)


class StepRunRow(Base):
    __tablename__ = "step_runs"
    __table_args__ = (
        UniqueConstraint("run_id", "step"),
        Index("ix_step_runs_cache_key", "cache_key"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("pipeline_runs.id", ondelete="CASCADE"), nullable=False
    )
    step: Mapped[str] = mapped_column(String(255), nullable=False)
    position: Mapped[int] = mapped_column(Integer, nullable=False)
    status: Mapped[str] = mapped_column(String(24), nullable=False)
    attempts: Mapped[int] = mapped_column(Integer, nullable=False)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    duration_seconds: Mapped[float | None] = mapped_column(Float)
    input_digests: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    output_digest: Mapped[str | None] = mapped_column(String(80))
    output_format: Mapped[str | None] = mapped_column(String(16))
    output_type: Mapped[str | None] = mapped_column(String(255))
    cache_key: Mapped[str | None] = mapped_column(String(64))
    cached_from: Mapped[str | None] = mapped_column(String(32))
    log: Mapped[str | None] = mapped_column(Text)
    error: Mapped[str | None] = mapped_column(Text)


class ScheduleRow(Base):
    __tablename__ = "schedules"

    pipeline: Mapped[str] = mapped_column(String(255), primary_key=True)
    cron: Mapped[str] = mapped_column(String(128), nullable=False)
    enabled: Mapped[bool] = mapped_column(Boolean, nullable=False)
    last_slot: Mapped[datetime | None] = mapped_column(UTCDateTime)
    next_due: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)


# -- runs -------------------------------------------------------------------------------------
def insert_run(
    session: Session,
    *,
    run_id: str,
    pipeline: str,
    params: dict[str, Any],
    trigger: str,
    steps: list[str],
    job_id: int | None = None,
    schedule_slot: datetime | None = None,
) -> PipelineRunRow:
    """Create a queued run and one ``pending`` step row per step, so the plan is visible at once."""
    run = PipelineRunRow(
        id=run_id,
        pipeline=pipeline,
        params=params,
        status=RUN_QUEUED,
        trigger=trigger,
        job_id=job_id,
        schedule_slot=schedule_slot,
        created_at=utcnow(),
    )
    session.add(run)
    session.flush()
    for position, step in enumerate(steps):
        session.add(StepRunRow(run_id=run_id, step=step, position=position, status=STEP_PENDING, attempts=0))
    session.flush()
    return run


def insert_run_if_missing(session: Session, **values: Any) -> bool:
    """``insert_run`` unless the id exists (a submitter and a fast worker may both try); True if inserted."""
    if session.get(PipelineRunRow, values["run_id"]) is not None:
        return False
    try:
        with session.begin_nested():
            insert_run(session, **values)
    except SAIntegrityError:
        if session.get(PipelineRunRow, values["run_id"]) is None:
            raise  # not a duplicate id but another constraint (e.g. an unknown job_id)
        return False
    return True


def set_run_job(session: Session, run_id: str, job_id: int) -> None:
    session.execute(
        update(PipelineRunRow)
        .where(PipelineRunRow.id == run_id, PipelineRunRow.job_id.is_(None))
        .values(job_id=job_id)
    )


def get_run(session: Session, run_id: str) -> PipelineRunRow | None:
    return session.get(PipelineRunRow, run_id)


def list_runs(
    session: Session, *, pipeline: str | None = None, status: str | None = None, limit: int = 50
) -> list[PipelineRunRow]:
    stmt = select(PipelineRunRow).order_by(PipelineRunRow.created_at.desc(), PipelineRunRow.id).limit(limit)
    if pipeline:
        stmt = stmt.where(PipelineRunRow.pipeline == pipeline)
    if status:
        stmt = stmt.where(PipelineRunRow.status == status)
    return list(session.scalars(stmt))


def last_runs_by_pipeline(session: Session, pipelines: list[str]) -> dict[str, PipelineRunRow]:
    """The newest run of each named pipeline (for ``pipelines list``)."""
    out: dict[str, PipelineRunRow] = {}
    for name in pipelines:
        row = session.scalars(
            select(PipelineRunRow)
            .where(PipelineRunRow.pipeline == name)
            .order_by(PipelineRunRow.created_at.desc())
            .limit(1)
        ).first()
        if row is not None:
            out[name] = row
    return out


def update_run(session: Session, run_id: str, **values: Any) -> None:
    session.execute(update(PipelineRunRow).where(PipelineRunRow.id == run_id).values(**values))


def start_run(session: Session, run_id: str, now: datetime) -> bool:
    """Mark a queued (or crashed-while-running) run as running; False when it already finished."""
    result = session.execute(
        update(PipelineRunRow)
        .where(PipelineRunRow.id == run_id, PipelineRunRow.status.in_([RUN_QUEUED, RUN_RUNNING]))
        .values(status=RUN_RUNNING, error=None)
    )
    if result.rowcount == 1:
        session.execute(
            update(PipelineRunRow)
            .where(PipelineRunRow.id == run_id, PipelineRunRow.started_at.is_(None))
            .values(started_at=now)
        )
    return result.rowcount == 1


# -- step runs --------------------------------------------------------------------------------
def step_runs(session: Session, run_id: str) -> list[StepRunRow]:
    return list(
        session.scalars(select(StepRunRow).where(StepRunRow.run_id == run_id).order_by(StepRunRow.position))
    )


def step_runs_for(session: Session, run_ids: list[str]) -> dict[str, list[StepRunRow]]:
    out: dict[str, list[StepRunRow]] = {run_id: [] for run_id in run_ids}
    if not run_ids:
        return out
    stmt = select(StepRunRow).where(StepRunRow.run_id.in_(run_ids)).order_by(StepRunRow.position)
    for row in session.scalars(stmt):
        out[row.run_id].append(row)
    return out


def update_step(session: Session, run_id: str, step: str, **values: Any) -> None:
    session.execute(
        update(StepRunRow).where(StepRunRow.run_id == run_id, StepRunRow.step == step).values(**values)
    )


def find_cached_output(session: Session, cache_key: str) -> StepRunRow | None:
    """The newest finished step run with this cache key and a stored output (None: a cache miss)."""
    stmt = (
        select(StepRunRow)
        .where(
            StepRunRow.cache_key == cache_key,
            StepRunRow.status.in_(STEP_DONE),
            StepRunRow.output_digest.is_not(None),
        )
        .order_by(StepRunRow.id.desc())
        .limit(1)
    )
    return session.scalars(stmt).first()


# -- schedules --------------------------------------------------------------------------------
def list_schedules(session: Session) -> list[ScheduleRow]:
    return list(session.scalars(select(ScheduleRow).order_by(ScheduleRow.pipeline)))


def get_schedule(session: Session, pipeline: str) -> ScheduleRow | None:
    return session.get(ScheduleRow, pipeline)


def add_schedule(
    session: Session, pipeline: str, cron: str, next_due: datetime, now: datetime
) -> ScheduleRow:
    row = ScheduleRow(
        pipeline=pipeline, cron=cron, enabled=True, last_slot=None, next_due=next_due, updated_at=now
    )
    session.add(row)
    session.flush()
    return row


def update_schedule(session: Session, pipeline: str, **values: Any) -> None:
    session.execute(update(ScheduleRow).where(ScheduleRow.pipeline == pipeline).values(**values))


def advance_schedule(
    session: Session, pipeline: str, *, expected_next_due: datetime, last_slot: datetime, next_due: datetime
) -> bool:
    """Move a schedule past a fired slot, only if no other scheduler moved it first (compare-and-set)."""
    result = session.execute(
        update(ScheduleRow)
        .where(ScheduleRow.pipeline == pipeline, ScheduleRow.next_due == expected_next_due)
        .values(last_slot=last_slot, next_due=next_due, updated_at=utcnow())
    )
    return result.rowcount == 1
