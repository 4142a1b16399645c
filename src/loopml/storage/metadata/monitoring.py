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


# -- queries: monitors and monitor_windows ----------------------------------------------------
# (slos / alert_rules queries live in ``monitoring_rules.py``.)
from sqlalchemy import delete, select, update  # noqa: E402
from sqlalchemy.exc import IntegrityError as _SAIntegrityError  # noqa: E402
from sqlalchemy.orm import Session  # noqa: E402

from loopml.errors import ConflictError  # noqa: E402

_M = MonitorRow.__table__
_W = MonitorWindowRow.__table__
MONITOR_COLUMNS = tuple(_M.c)
WINDOW_COLUMNS = tuple(_W.c)


def insert_monitor(session: Session, *, name: str, endpoint: str, spec: dict[str, Any], now: datetime) -> Any:
    """Add a monitor row (revision 1, no reference yet, no watermark); returns the row.

    ConflictError when the name is taken (also when a concurrent create won the race).
    """
    stmt = (
        _M.insert()
        .values(name=name, endpoint=endpoint, spec=spec, revision=1, created_at=now, updated_at=now)
        .returning(*MONITOR_COLUMNS)
    )
    try:
        with session.begin_nested():
            return session.execute(stmt).one()
    except _SAIntegrityError:
        raise ConflictError(
            f"monitor {name!r} already exists; change it with update() or delete it first", field="name"
        ) from None


def get_monitor(session: Session, name: str, *, lock: bool = False) -> Any:
    stmt = select(*MONITOR_COLUMNS).where(_M.c.name == name)
    if lock and session.get_bind().dialect.name == "postgresql":
        stmt = stmt.with_for_update()
    return session.execute(stmt).first()


def list_monitors(session: Session, *, endpoint: str | None = None) -> list[Any]:
    stmt = select(*MONITOR_COLUMNS).order_by(_M.c.name)
    if endpoint is not None:
        stmt = stmt.where(_M.c.endpoint == endpoint)
    return list(session.execute(stmt))


def update_monitor(session: Session, monitor_id: int, **values: Any) -> Any:
    """Set columns of one monitor (``spec``, ``revision``, ``reference_digest``, ...); returns the row."""
    stmt = update(_M).where(_M.c.id == monitor_id).values(**values).returning(*MONITOR_COLUMNS)
    return session.execute(stmt).one()


def delete_monitor(session: Session, monitor_id: int) -> None:
    """Delete a monitor and its windows (explicitly: SQLite enforces the cascade only with foreign_keys on)."""
    session.execute(delete(_W).where(_W.c.monitor_id == monitor_id))
    session.execute(delete(_M).where(_M.c.id == monitor_id))


def advance_watermark(
    session: Session, monitor_id: int, *, old: datetime | None, new: datetime, now: datetime
) -> bool:
    """Compare-and-set the watermark from ``old`` to ``new``; False when another run moved it first.

    Two runs of one monitor (a late scheduler and a manual run) may race: the loser's window row
    is rolled back with its transaction instead of being written twice.
    """
    condition = _M.c.watermark.is_(None) if old is None else _M.c.watermark == old
    stmt = update(_M).where(_M.c.id == monitor_id, condition).values(watermark=new, last_run_at=now)
    return (session.execute(stmt).rowcount or 0) == 1


def insert_window(
    session: Session,
    *,
    monitor_id: int,
    window_start: datetime,
    window_end: datetime,
    rows: int,
    labelled: int,
    drift: Any,
    performance: Any,
    computed_at: datetime,
) -> None:
    session.execute(
        _W.insert().values(
            monitor_id=monitor_id,
            window_start=window_start,
            window_end=window_end,
            rows=rows,
            labelled=labelled,
            drift=drift,
            performance=performance,
            computed_at=computed_at,
            updated_at=computed_at,
        )
    )


def update_window_performance(
    session: Session,
    monitor_id: int,
    window_start: datetime,
    *,
    labelled: int,
    performance: Any,
    at: datetime,
) -> None:
    """Replace one window's performance (labels arrived later); ``updated_at`` records when."""
    session.execute(
        update(_W)
        .where(_W.c.monitor_id == monitor_id, _W.c.window_start == window_start)
        .values(labelled=labelled, performance=performance, updated_at=at)
    )


def select_windows(
    session: Session,
    monitor_id: int,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int = 500,
    newest: bool = False,
) -> list[Any]:
    """Windows starting in [since, until): the newest ``limit`` of them, returned oldest first."""
    stmt = select(*WINDOW_COLUMNS).where(_W.c.monitor_id == monitor_id)
    if since is not None:
        stmt = stmt.where(_W.c.window_start >= since)
    if until is not None:
        stmt = stmt.where(_W.c.window_start < until)
    rows = list(session.execute(stmt.order_by(_W.c.window_start.desc()).limit(limit)))
    rows.reverse()
    return rows


def window_freshness(session: Session, monitor_id: int, *, since: datetime) -> dict[datetime, datetime]:
    """``window_start -> updated_at`` for windows ending after ``since`` (the label horizon)."""
    stmt = select(_W.c.window_start, _W.c.updated_at).where(
        _W.c.monitor_id == monitor_id, _W.c.window_end > since
    )
    return {start: updated for start, updated in session.execute(stmt)}
