"""The ``alerts`` table and its queries: one row per incident, deduplicated by key while open.

Why a partial unique index on ``key WHERE status = 'open'``: a check that runs every few minutes
fires the same alert over and over, and two processes (a worker and the scheduler) may fire it at
the same instant. ``fire`` is one ``INSERT ... ON CONFLICT (key) WHERE status = 'open' DO UPDATE``,
so the database, not a read-then-write in Python, guarantees at most one open alert per key on
both SQLite and PostgreSQL. Resolved rows fall out of the index, so a key that fires again after it
was resolved opens a new incident and the old one keeps its history.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Index, Integer, Row, String, Text, select, text, update
from sqlalchemy.orm import Mapped, Session, mapped_column

from loopml.storage.metadata.base import Base, BigId, JSONType, UTCDateTime

OPEN = "open"
RESOLVED = "resolved"
STATUSES = (OPEN, RESOLVED)
SEVERITIES = ("info", "warning", "critical")

#: Column limits, shared with the service's input checks so both fail the same way.
KEY_MAX = 200
TITLE_MAX = 500
SOURCE_MAX = 100

EVENT_FIRED = "alert.fired"
EVENT_RESOLVED = "alert.resolved"


class AlertRow(Base):
    __tablename__ = "alerts"
    __table_args__ = (
        Index("ix_alerts_key_status", "key", "status"),
        Index(
            "uq_alerts_open_key",
            "key",
            unique=True,
            sqlite_where=text("status = 'open'"),
            postgresql_where=text("status = 'open'"),
        ),
        Index("ix_alerts_status_last_fired", "status", "last_fired_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    key: Mapped[str] = mapped_column(String(KEY_MAX), nullable=False)
    severity: Mapped[str] = mapped_column(String(16), nullable=False)
    title: Mapped[str] = mapped_column(String(TITLE_MAX), nullable=False)
    detail: Mapped[str] = mapped_column(Text, nullable=False)
    source: Mapped[str] = mapped_column(String(SOURCE_MAX), nullable=False)
    status: Mapped[str] = mapped_column(String(16), nullable=False)
    data: Mapped[dict[str, Any]] = mapped_column(JSONType, nullable=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    fire_count: Mapped[int] = mapped_column(Integer, nullable=False)
    last_fired_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)


_T = AlertRow.__table__
_OPEN_PREDICATE = text(f"status = '{OPEN}'")
#: Columns returned by every query, in a fixed order (the service maps them to ``Alert``).
COLUMNS = tuple(_T.c)


def _insert(session: Session) -> Any:
    if session.get_bind().dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    return insert(_T)


def upsert_open(
    session: Session,
    *,
    key: str,
    severity: str,
    title: str,
    detail: str,
    source: str,
    data: dict[str, Any] | None,
    now: datetime,
) -> Row[Any]:
    """Open an alert for ``key``, or bump the open one (count, time, latest text); returns the row.

    A repeat takes the newest severity and title: the latest firing describes the current state
    best (a warning that became critical must show as critical). An empty ``detail`` or ``source``
    and ``data=None`` keep what the alert has, so a terse repeat does not erase the evidence.
    """
    stmt = _insert(session).values(
        key=key,
        severity=severity,
        title=title,
        detail=detail,
        source=source,
        status=OPEN,
        data={} if data is None else data,
        created_at=now,
        updated_at=now,
        resolved_at=None,
        fire_count=1,
        last_fired_at=now,
    )
    excluded = stmt.excluded
    changes: dict[str, Any] = {
        "severity": excluded.severity,
        "title": excluded.title,
        "updated_at": excluded.updated_at,
        "last_fired_at": excluded.last_fired_at,
        "fire_count": _T.c.fire_count + 1,
    }
    if detail:
        changes["detail"] = excluded.detail
    if source:
        changes["source"] = excluded.source
    if data is not None:
        changes["data"] = excluded.data
    # The predicate is SQL text, not a bound parameter: PostgreSQL infers the partial unique index
    # only from a literal predicate, and once psycopg prepares the statement (after 5 runs on one
    # connection) ``status = $1`` no longer matches it ("no unique or exclusion constraint").
    stmt = stmt.on_conflict_do_update(
        index_elements=[_T.c.key], index_where=_OPEN_PREDICATE, set_=changes
    ).returning(*COLUMNS)
    return session.execute(stmt).one()


def resolve_open(
    session: Session, *, now: datetime, key: str | None = None, alert_id: int | None = None
) -> Row[Any] | None:
    """Resolve the open alert with ``key`` (or ``alert_id``); None when there is no such open alert."""
    stmt = update(_T).where(_T.c.status == OPEN)
    if key is not None:
        stmt = stmt.where(_T.c.key == key)
    if alert_id is not None:
        stmt = stmt.where(_T.c.id == alert_id)
    stmt = stmt.values(status=RESOLVED, resolved_at=now, updated_at=now).returning(*COLUMNS)
    return session.execute(stmt).first()


def get_alert(session: Session, alert_id: int) -> Row[Any] | None:
    return session.execute(select(*COLUMNS).where(_T.c.id == alert_id)).first()


def list_alerts(
    session: Session,
    *,
    status: str | None = None,
    severity: str | None = None,
    source: str | None = None,
    key: str | None = None,
    limit: int = 100,
) -> list[Row[Any]]:
    """Alerts, most recently fired first (what an operator looks at is what is happening now)."""
    stmt = select(*COLUMNS).order_by(_T.c.last_fired_at.desc(), _T.c.id.desc()).limit(limit)
    if status:
        stmt = stmt.where(_T.c.status == status)
    if severity:
        stmt = stmt.where(_T.c.severity == severity)
    if source:
        stmt = stmt.where(_T.c.source == source)
    if key:
        stmt = stmt.where(_T.c.key == key)
    return list(session.execute(stmt))
