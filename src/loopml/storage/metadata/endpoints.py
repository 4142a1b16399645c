"""Endpoint tables: the current spec of each endpoint and its append-only revision history.

``endpoints`` holds the live state (one row per name, read on every reload); ``endpoint_revisions``
holds every version of the spec with who changed it and why. Revisions are never deleted - deleting
an endpoint appends a ``delete`` revision - so ``max(endpoint_revisions.id)`` only grows and a
server polling ``change_token`` can never miss a change by seeing an old value come back (SQLite
would otherwise reuse the id of a deleted row).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Integer, String, Text, UniqueConstraint, func, select
from sqlalchemy.exc import IntegrityError as SAIntegrityError
from sqlalchemy.orm import Mapped, Session, mapped_column

from loopml.errors import ConflictError
from loopml.storage.metadata import registry as _registry
from loopml.storage.metadata.base import Base, BigId, JSONType, UTCDateTime, utcnow

#: Audit event kinds (subject_type "endpoint", subject_id the endpoint name).
EVENT_CREATED = "endpoint.created"
EVENT_UPDATED = "endpoint.updated"
EVENT_POLICY_CHANGED = "endpoint.policy_changed"
EVENT_CANARY_ROLLED_BACK = "endpoint.canary_rolled_back"
EVENT_CANARY_PROMOTED = "endpoint.canary_promoted"
EVENT_DELETED = "endpoint.deleted"

#: Revision actions, mirrored in the audit events.
ACTIONS = ("create", "update", "policy", "rollback", "promote", "delete")
NAME_MAX = 64


class RevisionRace(ConflictError):
    """Another writer changed the same endpoint in the same instant; re-read and try again."""


class EndpointRow(Base):
    __tablename__ = "endpoints"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(NAME_MAX), nullable=False, unique=True)
    spec: Mapped[dict[str, Any]] = mapped_column(JSONType, nullable=False)
    revision: Mapped[int] = mapped_column(Integer, nullable=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, default=utcnow)
    updated_by: Mapped[str] = mapped_column(String(255), nullable=False, default="system")


class EndpointRevisionRow(Base):
    __tablename__ = "endpoint_revisions"
    __table_args__ = (UniqueConstraint("endpoint", "revision"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    endpoint: Mapped[str] = mapped_column(String(NAME_MAX), nullable=False)
    revision: Mapped[int] = mapped_column(Integer, nullable=False)
    action: Mapped[str] = mapped_column(String(16), nullable=False)
    spec: Mapped[dict[str, Any]] = mapped_column(JSONType, nullable=False)
    actor: Mapped[str] = mapped_column(String(255), nullable=False, default="system")
    reason: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, default=utcnow)


def get_endpoint(session: Session, name: str, *, for_update: bool = False) -> EndpointRow | None:
    """The live row; ``for_update`` serialises concurrent changes to one endpoint (PostgreSQL)."""
    stmt = select(EndpointRow).where(EndpointRow.name == name)
    if for_update:
        stmt = stmt.with_for_update()
    return session.scalars(stmt).one_or_none()


def list_endpoints(session: Session) -> list[EndpointRow]:
    return list(session.scalars(select(EndpointRow).order_by(EndpointRow.name)))


def endpoint_names(session: Session) -> list[str]:
    return list(session.scalars(select(EndpointRow.name).order_by(EndpointRow.name)))


def add_endpoint(
    session: Session, *, name: str, spec: dict[str, Any], revision: int, actor: str, at: datetime
) -> EndpointRow:
    """Insert the live row; a concurrent creator of the same name surfaces as ``RevisionRace``."""
    row = EndpointRow(name=name, spec=spec, revision=revision, created_at=at, updated_at=at, updated_by=actor)
    _flush(session, row, f"endpoint {name!r} was created by someone else at the same time")
    return row


def update_endpoint(
    session: Session, row: EndpointRow, *, spec: dict[str, Any], revision: int, actor: str, at: datetime
) -> None:
    row.spec = spec
    row.revision = revision
    row.updated_at = at
    row.updated_by = actor
    session.flush()


def delete_endpoint(session: Session, row: EndpointRow) -> None:
    session.delete(row)
    session.flush()


def _flush(session: Session, row: Base, message: str) -> None:
    try:
        with session.begin_nested():
            session.add(row)
            session.flush()
    except SAIntegrityError:
        raise RevisionRace(f"{message}; re-read it and apply your change again", field="name") from None


def last_revision(session: Session, name: str) -> int:
    """Highest revision number ever given to ``name`` (0 if none): a re-created endpoint continues it."""
    stmt = select(func.max(EndpointRevisionRow.revision)).where(EndpointRevisionRow.endpoint == name)
    return int(session.scalar(stmt) or 0)


def add_revision(
    session: Session,
    *,
    name: str,
    revision: int,
    action: str,
    spec: dict[str, Any],
    actor: str,
    reason: str | None,
    at: datetime,
) -> EndpointRevisionRow:
    """Append a revision; two writers giving out the same number surface as ``RevisionRace``."""
    row = EndpointRevisionRow(
        endpoint=name, revision=revision, action=action, spec=spec, actor=actor, reason=reason, created_at=at
    )
    _flush(session, row, f"endpoint {name!r} was changed by someone else at the same time")
    return row


def list_revisions(session: Session, name: str, limit: int = 50) -> list[EndpointRevisionRow]:
    """Newest first."""
    stmt = (
        select(EndpointRevisionRow)
        .where(EndpointRevisionRow.endpoint == name)
        .order_by(EndpointRevisionRow.revision.desc())
        .limit(limit)
    )
    return list(session.scalars(stmt))


def change_token(session: Session) -> str:
    """One cheap query whose answer changes whenever any endpoint or any model alias/version changes.

    ``max(id)`` is an index lookup on the primary key; the registry markers read two small tables.
    """
    columns = [select(func.max(EndpointRevisionRow.id)).scalar_subquery(), *_registry.change_marker_columns()]
    values = session.execute(select(*columns)).one()
    return ":".join(
        "" if v is None else (v.isoformat() if isinstance(v, datetime) else str(v)) for v in values
    )
