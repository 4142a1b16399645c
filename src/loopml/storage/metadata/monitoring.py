"""Monitoring tables: monitors and their per-window results, SLOs and their evaluations, alert rules.

Why these shapes:

- A monitor's or SLO's or rule's definition is one validated JSON ``spec`` (like ``endpoints.spec``):
  the shape of a drift check or an SLO target changes more often than the schema should, and the
  service validates it on write. ``revision`` bumps on every spec change, so a window computed
  under an old spec can be told apart.
- ``monitors.watermark`` is the end of the last closed window the monitor processed: a run resumes
  from it, so windows are computed once each even if the scheduler fires late or twice.
  ``reference_digest`` points at the reference data in the artifact store.
- ``monitor_windows`` has one row per ``(monitor_id, window_start)`` (unique): recomputing a window
  (labels arrive days later, so performance is filled in or corrected afterwards) is an upsert,
  not a duplicate. ``drift`` and ``performance`` are SQL NULL until computed (``NullableJSON``).
  The ``(monitor_id, window_end)`` index serves "the last N windows" for charts and rules.
- ``slo_evaluations`` is append-only history (index ``(slo_id, at)``): the error budget is computed
  over a time range of it.
- Children cascade with their monitor or SLO: their history means nothing without the definition.
- ``monitors.endpoint`` is a name, not a foreign key: a monitor outlives a re-created endpoint,
  like ``endpoint_revisions``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Boolean, Float, ForeignKey, Index, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from loopml.storage.metadata.base import Base, BigId, JSONType, UTCDateTime, utcnow
from loopml.storage.metadata.inference import NullableJSON

#: Column limits, shared with the service's input checks so both fail the same way.
NAME_MAX = 100
ENDPOINT_MAX = 64
DIGEST_MAX = 80


class MonitorRow(Base):
    __tablename__ = "monitors"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(NAME_MAX), nullable=False, unique=True)
    endpoint: Mapped[str] = mapped_column(String(ENDPOINT_MAX), nullable=False)
    spec: Mapped[dict[str, Any]] = mapped_column(JSONType, nullable=False)
    revision: Mapped[int] = mapped_column(Integer, nullable=False, default=1)
    reference_digest: Mapped[str | None] = mapped_column(String(DIGEST_MAX))
    watermark: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_run_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, default=utcnow)


class MonitorWindowRow(Base):
    __tablename__ = "monitor_windows"
    __table_args__ = (
        UniqueConstraint("monitor_id", "window_start"),
        Index("ix_monitor_windows_monitor_end", "monitor_id", "window_end"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    monitor_id: Mapped[int] = mapped_column(
        BigId, ForeignKey("monitors.id", ondelete="CASCADE"), nullable=False
    )
    window_start: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    window_end: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    rows: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    labelled: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    drift: Mapped[Any] = mapped_column(NullableJSON, nullable=True)
    performance: Mapped[Any] = mapped_column(NullableJSON, nullable=True)
    computed_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, default=utcnow)


class SloRow(Base):
    __tablename__ = "slos"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(NAME_MAX), nullable=False, unique=True)
    spec: Mapped[dict[str, Any]] = mapped_column(JSONType, nullable=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, default=utcnow)


class SloEvaluationRow(Base):
    __tablename__ = "slo_evaluations"
    __table_args__ = (Index("ix_slo_evaluations_slo_at", "slo_id", "at"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    slo_id: Mapped[int] = mapped_column(BigId, ForeignKey("slos.id", ondelete="CASCADE"), nullable=False)
    at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, default=utcnow)
    value: Mapped[float | None] = mapped_column(Float)
    ok: Mapped[bool] = mapped_column(Boolean, nullable=False)
    budget_remaining: Mapped[float | None] = mapped_column(Float)
    data: Mapped[dict[str, Any]] = mapped_column(JSONType, nullable=False, default=dict)


class AlertRuleRow(Base):
    __tablename__ = "alert_rules"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(NAME_MAX), nullable=False, unique=True)
    spec: Mapped[dict[str, Any]] = mapped_column(JSONType, nullable=False)
    enabled: Mapped[bool] = mapped_column(Boolean, nullable=False, default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, default=utcnow)
