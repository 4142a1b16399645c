"""Audit events: every state change a person may later ask "who did this and why" about."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Index, String, Text, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from loopml.storage.metadata.base import Base, BigId, JSONType, UTCDateTime, utcnow


class Event(Base):
    __tablename__ = "events"
    __table_args__ = (Index("ix_events_subject", "subject_type", "subject_id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    ts: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, nullable=False)
    kind: Mapped[str] = mapped_column(String(64), nullable=False)
    subject_type: Mapped[str] = mapped_column(String(64), nullable=False)
    subject_id: Mapped[str] = mapped_column(String(255), nullable=False)
    actor: Mapped[str] = mapped_column(String(255), nullable=False, default="system")
    reason: Mapped[str | None] = mapped_column(Text)
    data: Mapped[dict[str, Any] | None] = mapped_column(JSONType)


def record_event(
    session: Session,
    kind: str,
    subject_type: str,
    subject_id: str | int,
    *,
    actor: str = "system",
    reason: str | None = None,
    data: dict[str, Any] | None = None,
) -> Event:
    """Add an audit event to the caller's transaction, so it commits with the change it describes."""
    event = Event(
        kind=kind,
        subject_type=subject_type,
        subject_id=str(subject_id),
        actor=actor,
        reason=reason,
        data=data,
    )
    session.add(event)
    return event


def list_events(
    session: Session, *, subject_type: str | None = None, subject_id: str | None = None, limit: int = 100
) -> list[Event]:
    stmt = select(Event).order_by(Event.id.desc()).limit(limit)
    if subject_type:
        stmt = stmt.where(Event.subject_type == subject_type)
    if subject_id is not None:
        stmt = stmt.where(Event.subject_id == str(subject_id))
    return list(session.scalars(stmt))
