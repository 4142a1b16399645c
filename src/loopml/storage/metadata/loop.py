"""Closed-loop tables: action policies, one run per loop (alert -> retrain -> gates -> shadow ->
canary -> promote / rollback) and its append-only step log.

Why these shapes:

- ``action_policies.spec`` is one validated JSON document (which alerts trigger it, which pipeline
  retrains, the gates, shadow and canary settings, whether a human must approve), like
  ``endpoints.spec``: the policy language grows faster than the schema should.
- ``loop_runs`` holds the current ``status`` and ``stage`` of each run (a small state machine the
  service advances), so "what is running now" is one indexed query on ``(status, updated_at)``.
  ``policy`` is the policy *name*, not a foreign key: the history of a run must outlive an edited
  or deleted policy. ``alert_id`` and ``pipeline_run_id`` are foreign keys ``ON DELETE SET NULL``
  for the same reason; ``alert_key`` keeps the alert's key as a value after that. ``baseline`` and
  ``candidate`` are model refs (``fraud/4``) as values, resolved when used.
- ``loop_steps`` is append-only (index ``(loop_run_id, at)``): every transition, with who/why in
  ``detail`` and ``data``, so an operator can read exactly why a run promoted or rolled back.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Boolean, ForeignKey, Index, String, Text, delete, func, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from loopml.storage.metadata.base import Base, BigId, JSONType, UTCDateTime, utcnow

WAITING_APPROVAL = "waiting_approval"
RUNNING = "running"
PROMOTED = "promoted"
ROLLED_BACK = "rolled_back"
BLOCKED = "blocked"
FAILED = "failed"
REJECTED = "rejected"
LOOP_STATUSES = (WAITING_APPROVAL, RUNNING, PROMOTED, ROLLED_BACK, BLOCKED, FAILED, REJECTED)
#: Statuses of a run that is still in progress (the others are final).
ACTIVE_STATUSES = (WAITING_APPROVAL, RUNNING)

LOOP_STAGES = ("triggered", "approval", "retrain", "gates", "shadow", "canary", "promote", "rollback", "done")

STEP_OK = "ok"
STEP_FAILED = "failed"
STEP_SKIPPED = "skipped"
STEP_WAITING = "waiting"
STEP_STATUSES = (STEP_OK, STEP_FAILED, STEP_SKIPPED, STEP_WAITING)

#: Column limits, shared with the service's input checks so both fail the same way.
POLICY_MAX = 100
ALERT_KEY_MAX = 200
ENDPOINT_MAX = 64
MODEL_MAX = 100
REF_MAX = 120
ACTOR_MAX = 200


class ActionPolicyRow(Base):
    __tablename__ = "action_policies"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(POLICY_MAX), nullable=False, unique=True)
    spec: Mapped[dict[str, Any]] = mapped_column(JSONType, nullable=False)
    enabled: Mapped[bool] = mapped_column(Boolean, nullable=False, default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, default=utcnow)


class LoopRunRow(Base):
    __tablename__ = "loop_runs"
    __table_args__ = (
        Index("ix_loop_runs_status_updated", "status", "updated_at"),
        Index("ix_loop_runs_policy_created", "policy", "created_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    policy: Mapped[str] = mapped_column(String(POLICY_MAX), nullable=False)
    alert_id: Mapped[int | None] = mapped_column(BigId, ForeignKey("alerts.id", ondelete="SET NULL"))
    alert_key: Mapped[str | None] = mapped_column(String(ALERT_KEY_MAX))
    endpoint: Mapped[str | None] = mapped_column(String(ENDPOINT_MAX))
    model: Mapped[str | None] = mapped_column(String(MODEL_MAX))
    status: Mapped[str] = mapped_column(String(32), nullable=False)
    stage: Mapped[str] = mapped_column(String(32), nullable=False)
    baseline: Mapped[str | None] = mapped_column(String(REF_MAX))
    candidate: Mapped[str | None] = mapped_column(String(REF_MAX))
    pipeline_run_id: Mapped[str | None] = mapped_column(
        String(32), ForeignKey("pipeline_runs.id", ondelete="SET NULL")
    )
    outcome: Mapped[str | None] = mapped_column(Text)
    data: Mapped[dict[str, Any]] = mapped_column(JSONType, nullable=False, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    decided_by: Mapped[str | None] = mapped_column(String(ACTOR_MAX))


class LoopStepRow(Base):
    __tablename__ = "loop_steps"
    __table_args__ = (Index("ix_loop_steps_run_at", "loop_run_id", "at"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    loop_run_id: Mapped[int] = mapped_column(
        BigId, ForeignKey("loop_runs.id", ondelete="CASCADE"), nullable=False
    )
    step: Mapped[str] = mapped_column(String(32), nullable=False)
    status: Mapped[str] = mapped_column(String(16), nullable=False)
    detail: Mapped[str] = mapped_column(Text, nullable=False, default="")
    data: Mapped[dict[str, Any]] = mapped_column(JSONType, nullable=False, default=dict)
    at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, default=utcnow)


# ---------------------------------------------------------------------------------------------
# Queries (used by loopml.monitoring.loop). Every function takes the caller's session, so a state
# change, its step row and its audit event commit together.
# ---------------------------------------------------------------------------------------------

EVENT_POLICY_CREATED = "loop.policy_created"
EVENT_POLICY_UPDATED = "loop.policy_updated"
EVENT_POLICY_DELETED = "loop.policy_deleted"
#: ``loop.<stage>`` / ``loop.<status>`` events use the run id as subject.
EVENT_PREFIX = "loop."


def get_policy(session: Session, name: str, *, for_update: bool = False) -> ActionPolicyRow | None:
    """One policy; ``for_update`` serialises run creation for it (PostgreSQL row lock)."""
    stmt = select(ActionPolicyRow).where(ActionPolicyRow.name == name)
    if for_update:
        stmt = stmt.with_for_update()
    return session.scalars(stmt).first()


def list_policies(session: Session) -> list[ActionPolicyRow]:
    return list(session.scalars(select(ActionPolicyRow).order_by(ActionPolicyRow.name)))


def policy_names(session: Session) -> list[str]:
    return list(session.scalars(select(ActionPolicyRow.name).order_by(ActionPolicyRow.name)))


def add_policy(
    session: Session, *, name: str, spec: dict[str, Any], enabled: bool, at: datetime
) -> ActionPolicyRow:
    row = ActionPolicyRow(name=name, spec=spec, enabled=enabled, created_at=at, updated_at=at)
    session.add(row)
    session.flush()
    return row


def update_policy(
    session: Session, row: ActionPolicyRow, *, spec: dict[str, Any], enabled: bool, at: datetime
) -> None:
    row.spec = spec
    row.enabled = enabled
    row.updated_at = at
    session.flush()


def delete_policy(session: Session, row: ActionPolicyRow) -> None:
    session.execute(delete(ActionPolicyRow).where(ActionPolicyRow.id == row.id))


def add_run(session: Session, **values: Any) -> LoopRunRow:
    row = LoopRunRow(**values)
    session.add(row)
    session.flush()
    return row


def get_run(session: Session, run_id: int, *, for_update: bool = False) -> LoopRunRow | None:
    stmt = select(LoopRunRow).where(LoopRunRow.id == run_id)
    if for_update:
        stmt = stmt.with_for_update()
    return session.scalars(stmt).first()


def list_runs(
    session: Session, *, status: str | None = None, policy: str | None = None, limit: int = 50
) -> list[LoopRunRow]:
    """Newest first."""
    stmt = select(LoopRunRow).order_by(LoopRunRow.created_at.desc(), LoopRunRow.id.desc()).limit(limit)
    if status is not None:
        stmt = stmt.where(LoopRunRow.status == status)
    if policy is not None:
        stmt = stmt.where(LoopRunRow.policy == policy)
    return list(session.scalars(stmt))


def active_run(session: Session, policy: str) -> LoopRunRow | None:
    """The run of ``policy`` still in progress (at most one is created per policy)."""
    stmt = (
        select(LoopRunRow)
        .where(LoopRunRow.policy == policy, LoopRunRow.status.in_(ACTIVE_STATUSES))
        .order_by(LoopRunRow.id.desc())
        .limit(1)
    )
    return session.scalars(stmt).first()


def active_run_ids(session: Session, *, limit: int = 1000) -> list[int]:
    """Runs a worker should advance (running, oldest change first); waiting_approval runs wait for a person."""
    stmt = (
        select(LoopRunRow.id)
        .where(LoopRunRow.status == RUNNING)
        .order_by(LoopRunRow.updated_at, LoopRunRow.id)
        .limit(limit)
    )
    return list(session.scalars(stmt))


def last_finished_at(session: Session, policy: str) -> datetime | None:
    """When the newest finished run of ``policy`` ended (the start of its cooldown)."""
    return session.scalar(select(func.max(LoopRunRow.finished_at)).where(LoopRunRow.policy == policy))


def latest_run_for_alert(session: Session, policy: str, alert_id: int) -> LoopRunRow | None:
    stmt = (
        select(LoopRunRow)
        .where(LoopRunRow.policy == policy, LoopRunRow.alert_id == alert_id)
        .order_by(LoopRunRow.id.desc())
        .limit(1)
    )
    return session.scalars(stmt).first()


def add_step(
    session: Session, *, run_id: int, step: str, status: str, detail: str, data: dict[str, Any], at: datetime
) -> LoopStepRow:
    row = LoopStepRow(loop_run_id=run_id, step=step, status=status, detail=detail, data=data, at=at)
    session.add(row)
    session.flush()
    return row


def list_steps(session: Session, run_ids: list[int]) -> list[LoopStepRow]:
    """Steps of the given runs in the order they were written (the loop clock may be simulated)."""
    if not run_ids:
        return []
    stmt = (
        select(LoopStepRow)
        .where(LoopStepRow.loop_run_id.in_(run_ids))
        .order_by(LoopStepRow.loop_run_id, LoopStepRow.id)
    )
    return list(session.scalars(stmt))


def versions_of_pipeline_run(session: Session, model: str, pipeline_run_id: str) -> list[int]:
    """Version numbers of ``model`` registered by a tracking run of ``pipeline_run_id``, newest first.

    This is the lineage join model_versions.run_id -> runs.pipeline_run_id: how the loop finds the
    candidate a retrain pipeline produced without the pipeline having to report it.
    """
    from loopml.storage.metadata.registry import ModelRow, ModelVersionRow
    from loopml.storage.metadata.tracking import Run

    stmt = (
        select(ModelVersionRow.number)
        .join(ModelRow, ModelRow.id == ModelVersionRow.model_id)
        .join(Run, Run.id == ModelVersionRow.run_id)
        .where(ModelRow.name == model, Run.pipeline_run_id == pipeline_run_id)
        .order_by(ModelVersionRow.number.desc())
    )
    return list(session.scalars(stmt))
