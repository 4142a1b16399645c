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

from sqlalchemy import Boolean, ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

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
