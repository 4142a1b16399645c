"""Registry tables (models, their versions, aliases, alias protections, gate results) and their queries.

A version row is immutable once written (artifact digest, flavor, signature); what changes over time
is which version an alias points at. Every alias move is recorded twice on purpose: the alias row
holds the *current* state (fast lookup on the serving path), the audit event holds the *history*
(who, why, from, to) that ``rollback`` replays.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Boolean,
    Engine,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    func,
    select,
)
from sqlalchemy.exc import IntegrityError as SAIntegrityError
from sqlalchemy.orm import Mapped, Session, mapped_column

from loopml.storage.metadata import datasets as _datasets  # noqa: F401  (FK target table)
from loopml.storage.metadata.base import Base, BigId, JSONType, UTCDateTime, utcnow
from loopml.storage.metadata.core import Event

#: Audit event kinds written by the registry (subject_type "model", subject_id the model name).
EVENT_ALIAS_MOVED = "model.alias_moved"
EVENT_ALIAS_ROLLED_BACK = "model.alias_rolled_back"
EVENT_ALIAS_PROTECTED = "model.alias_protected"
EVENT_VERSION_REGISTERED = "model.version_registered"


class ModelRow(Base):
    __tablename__ = "models"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(128), nullable=False, unique=True)
    description: Mapped[str] = mapped_column(Text, nullable=False, default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, default=utcnow)


class ModelVersionRow(Base):
    __tablename__ = "model_versions"
    __table_args__ = (UniqueConstraint("model_id", "number"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    model_id: Mapped[int] = mapped_column(BigId, ForeignKey("models.id", ondelete="CASCADE"), nullable=False)
    number: Mapped[int] = mapped_column(Integer, nullable=False)
    flavor: Mapped[str] = mapped_column(String(32), nullable=False)
    artifact_digest: Mapped[str] = mapped_column(String(80), nullable=False)
    flavor_meta: Mapped[dict[str, Any]] = mapped_column(JSONType, nullable=False)
    signature: Mapped[dict[str, Any]] = mapped_column(JSONType, nullable=False)
    example_digest: Mapped[str | None] = mapped_column(String(80))
    metrics: Mapped[dict[str, Any]] = mapped_column(JSONType, nullable=False)
    run_id: Mapped[str | None] = mapped_column(String(32), ForeignKey("runs.id", ondelete="SET NULL"))
    lineage: Mapped[dict[str, Any]] = mapped_column(JSONType, nullable=False)
    description: Mapped[str] = mapped_column(Text, nullable=False, default="")
    status: Mapped[str] = mapped_column(String(16), nullable=False, default="ready")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, default=utcnow)
    created_by: Mapped[str] = mapped_column(String(255), nullable=False, default="system")


class ModelVersionInputRow(Base):
    """model version -> dataset versions it was trained or evaluated on (the lineage as a real FK)."""

    __tablename__ = "model_version_inputs"

    version_id: Mapped[int] = mapped_column(
        BigId, ForeignKey("model_versions.id", ondelete="CASCADE"), primary_key=True
    )
    dataset_version_id: Mapped[int] = mapped_column(
        BigId, ForeignKey("dataset_versions.id", ondelete="RESTRICT"), primary_key=True
    )


class ModelAliasRow(Base):
    __tablename__ = "model_aliases"

    model_id: Mapped[int] = mapped_column(
        BigId, ForeignKey("models.id", ondelete="CASCADE"), primary_key=True
    )
    alias: Mapped[str] = mapped_column(String(64), primary_key=True)
    version_id: Mapped[int] = mapped_column(BigId, ForeignKey("model_versions.id"), nullable=False)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, default=utcnow)
    updated_by: Mapped[str] = mapped_column(String(255), nullable=False, default="system")


class AliasProtectionRow(Base):
    __tablename__ = "alias_protections"

    model_id: Mapped[int] = mapped_column(
        BigId, ForeignKey("models.id", ondelete="CASCADE"), primary_key=True
    )
    alias: Mapped[str] = mapped_column(String(64), primary_key=True)
    gates: Mapped[list[dict[str, Any]]] = mapped_column(JSONType, nullable=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, default=utcnow)
    created_by: Mapped[str] = mapped_column(String(255), nullable=False, default="system")


class GateResultRow(Base):
    __tablename__ = "gate_results"
    __table_args__ = (Index("ix_gate_results_version_alias", "version_id", "alias"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    evaluation_id: Mapped[str] = mapped_column(String(32), nullable=False)
    version_id: Mapped[int] = mapped_column(
        BigId, ForeignKey("model_versions.id", ondelete="CASCADE"), nullable=False
    )
    alias: Mapped[str] = mapped_column(String(64), nullable=False)
    gate: Mapped[str] = mapped_column(String(64), nullable=False)
    passed: Mapped[bool] = mapped_column(Boolean, nullable=False)
    summary: Mapped[str] = mapped_column(Text, nullable=False, default="")
    details: Mapped[dict[str, Any]] = mapped_column(JSONType, nullable=False)
    dataset_version_id: Mapped[int | None] = mapped_column(
        BigId, ForeignKey("dataset_versions.id", ondelete="SET NULL")
    )
    evaluated_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, default=utcnow)
    evaluated_by: Mapped[str] = mapped_column(String(255), nullable=False, default="system")


# -- models -----------------------------------------------------------------------------------
def get_model(session: Session, name: str, *, for_update: bool = False) -> ModelRow | None:
    """Look a model up by name; ``for_update`` locks the row (PostgreSQL) to serialise version numbering."""
    stmt = select(ModelRow).where(ModelRow.name == name)
    if for_update:
        stmt = stmt.with_for_update()
    return session.scalars(stmt).one_or_none()


def get_or_create_model(session: Session, name: str, description: str = "") -> ModelRow:
    """The model row, created on first registration; a concurrent creator's row wins the race."""
    row = get_model(session, name, for_update=True)
    if row is not None:
        return row
    try:
        with session.begin_nested():
            row = ModelRow(name=name, description=description)
            session.add(row)
            session.flush()
    except SAIntegrityError:
        row = get_model(session, name, for_update=True)
        assert row is not None  # the unique violation means another transaction created it
    return row


def model_names(session: Session) -> list[str]:
    return list(session.scalars(select(ModelRow.name).order_by(ModelRow.name)))


def list_models(session: Session) -> list[tuple[ModelRow, int, int | None]]:
    """Each model with its version count and latest version number, in one query."""
    stmt = (
        select(ModelRow, func.count(ModelVersionRow.id), func.max(ModelVersionRow.number))
        .outerjoin(ModelVersionRow, ModelVersionRow.model_id == ModelRow.id)
        .group_by(ModelRow.id)
        .order_by(ModelRow.name)
    )
    return [(row, int(count), latest) for row, count, latest in session.execute(stmt)]


# -- versions ---------------------------------------------------------------------------------
def next_version_number(session: Session, model_id: int) -> int:
    current = session.scalar(
        select(func.max(ModelVersionRow.number)).where(ModelVersionRow.model_id == model_id)
    )
    return int(current or 0) + 1


def add_version(
    session: Session, *, dataset_version_ids: Sequence[int] = (), **fields: Any
) -> ModelVersionRow:
    row = ModelVersionRow(**fields)
    session.add(row)
    session.flush()
    session.add_all(
        ModelVersionInputRow(version_id=row.id, dataset_version_id=i) for i in dataset_version_ids
    )
    session.flush()
    return row


def versions_trained_on(session: Session, dataset_version_id: int) -> list[ModelVersionRow]:
    """Every model version whose lineage includes this dataset version (impact of a bad version)."""
    stmt = (
        select(ModelVersionRow)
        .join(ModelVersionInputRow, ModelVersionInputRow.version_id == ModelVersionRow.id)
        .where(ModelVersionInputRow.dataset_version_id == dataset_version_id)
        .order_by(ModelVersionRow.id)
    )
    return list(session.scalars(stmt))


def get_version(session: Session, model_id: int, number: int) -> ModelVersionRow | None:
    stmt = select(ModelVersionRow).where(
        ModelVersionRow.model_id == model_id, ModelVersionRow.number == number
    )
    return session.scalars(stmt).one_or_none()


def get_version_by_id(session: Session, version_id: int) -> ModelVersionRow | None:
    return session.get(ModelVersionRow, version_id)


def latest_version(session: Session, model_id: int) -> ModelVersionRow | None:
    stmt = (
        select(ModelVersionRow)
        .where(ModelVersionRow.model_id == model_id)
        .order_by(ModelVersionRow.number.desc())
        .limit(1)
    )
    return session.scalars(stmt).one_or_none()


def list_versions(session: Session, model_id: int, limit: int = 100) -> list[ModelVersionRow]:
    stmt = (
        select(ModelVersionRow)
        .where(ModelVersionRow.model_id == model_id)
        .order_by(ModelVersionRow.number.desc())
        .limit(limit)
    )
    return list(session.scalars(stmt))


def version_numbers(session: Session, model_id: int) -> list[int]:
    stmt = (
        select(ModelVersionRow.number)
        .where(ModelVersionRow.model_id == model_id)
        .order_by(ModelVersionRow.number)
    )
    return list(session.scalars(stmt))


# -- aliases ----------------------------------------------------------------------------------
def get_alias(
    session: Session, model_id: int, alias: str, *, for_update: bool = False
) -> ModelAliasRow | None:
    stmt = select(ModelAliasRow).where(ModelAliasRow.model_id == model_id, ModelAliasRow.alias == alias)
    if for_update:
        stmt = stmt.with_for_update()
    return session.scalars(stmt).one_or_none()


def list_aliases(session: Session, model_id: int) -> list[tuple[ModelAliasRow, int]]:
    """Aliases of a model with the version *number* each points at."""
    stmt = (
        select(ModelAliasRow, ModelVersionRow.number)
        .join(ModelVersionRow, ModelVersionRow.id == ModelAliasRow.version_id)
        .where(ModelAliasRow.model_id == model_id)
        .order_by(ModelAliasRow.alias)
    )
    return [(row, int(number)) for row, number in session.execute(stmt)]


def set_alias_row(session: Session, model_id: int, alias: str, version_id: int, actor: str) -> None:
    row = get_alias(session, model_id, alias, for_update=True)
    if row is None:
        session.add(ModelAliasRow(model_id=model_id, alias=alias, version_id=version_id, updated_by=actor))
    else:
        row.version_id = version_id
        row.updated_at = utcnow()
        row.updated_by = actor
    session.flush()


def alias_events(session: Session, model_name: str, alias: str) -> list[Event]:
    """Alias moves and rollbacks of one alias, oldest first (the history ``rollback`` replays)."""
    stmt = (
        select(Event)
        .where(
            Event.subject_type == "model",
            Event.subject_id == model_name,
            Event.kind.in_((EVENT_ALIAS_MOVED, EVENT_ALIAS_ROLLED_BACK)),
        )
        .order_by(Event.id)
    )
    return [e for e in session.scalars(stmt) if (e.data or {}).get("alias") == alias]


def model_events(session: Session, model_name: str, limit: int = 50) -> list[Event]:
    stmt = (
        select(Event)
        .where(Event.subject_type == "model", Event.subject_id == model_name)
        .order_by(Event.id.desc())
        .limit(limit)
    )
    return list(session.scalars(stmt))


# -- protections and gate results ---------------------------------------------------------------
def get_protection(session: Session, model_id: int, alias: str) -> AliasProtectionRow | None:
    return session.get(AliasProtectionRow, (model_id, alias))


def list_protections(session: Session, model_id: int) -> list[AliasProtectionRow]:
    stmt = (
        select(AliasProtectionRow)
        .where(AliasProtectionRow.model_id == model_id)
        .order_by(AliasProtectionRow.alias)
    )
    return list(session.scalars(stmt))


def set_protection(
    session: Session, model_id: int, alias: str, gates: list[dict[str, Any]], actor: str
) -> None:
    row = get_protection(session, model_id, alias)
    if row is None:
        session.add(AliasProtectionRow(model_id=model_id, alias=alias, gates=gates, created_by=actor))
    else:
        row.gates = gates
        row.created_at = utcnow()
        row.created_by = actor
    session.flush()


def delete_protection(session: Session, model_id: int, alias: str) -> bool:
    row = get_protection(session, model_id, alias)
    if row is None:
        return False
    session.delete(row)
    session.flush()
    return True


def add_gate_results(session: Session, rows: Sequence[dict[str, Any]]) -> None:
    session.add_all([GateResultRow(**fields) for fields in rows])
    session.flush()


def gate_results_for(session: Session, version_id: int, alias: str | None = None) -> list[GateResultRow]:
    stmt = select(GateResultRow).where(GateResultRow.version_id == version_id).order_by(GateResultRow.id)
    if alias is not None:
        stmt = stmt.where(GateResultRow.alias == alias)
    return list(session.scalars(stmt))


# -- change detection -----------------------------------------------------------------------------
def change_marker_columns() -> list[Any]:
    """Scalar subqueries whose values change whenever what a model ref resolves to may have changed.

    An alias move bumps ``model_aliases.updated_at`` (a new alias adds a row); a new version changes
    what a bare ``name`` (latest) means. Both tables stay small, so a server can poll this every second;
    callers put these columns in one ``SELECT`` with their own markers (see ``endpoints.change_token``).
    """
    return [
        select(func.max(ModelAliasRow.updated_at)).scalar_subquery(),
        select(func.count()).select_from(ModelAliasRow).scalar_subquery(),
        select(func.max(ModelVersionRow.id)).scalar_subquery(),
    ]


_marker_sql: dict[tuple[str, tuple[str, ...]], str] = {}


def read_change_markers(engine: Engine, max_ids: Sequence[Any] = ()) -> tuple[Any, ...]:
    """``max()`` of each column in ``max_ids`` followed by ``change_marker_columns()``, in one SELECT.

    Why not a session: on SQLite every session transaction opens with ``BEGIN IMMEDIATE`` (the write
    lock), so a once-a-second poll would queue behind the inference-log writer, and the ORM session
    costs more than the query. One autocommit SELECT (compiled once per dialect) reads a consistent
    snapshot without any lock; on PostgreSQL its implicit read transaction is rolled back at once.
    Values are raw driver values (a SQLite timestamp is its stored text): fine for a change token.
    """
    dialect = engine.dialect
    key = (dialect.name, tuple(str(c) for c in max_ids))
    sql = _marker_sql.get(key)
    if sql is None:
        columns = [select(func.max(c)).scalar_subquery() for c in max_ids]
        stmt = select(*columns, *change_marker_columns())
        sql = str(stmt.compile(dialect=dialect, compile_kwargs={"literal_binds": True}))
        _marker_sql[key] = sql
    raw = engine.raw_connection()
    try:
        cursor = raw.cursor()
        try:
            cursor.execute(sql)
            row = cursor.fetchone()
        finally:
            cursor.close()
        if dialect.name != "sqlite":
            raw.rollback()
    finally:
        raw.close()  # back to the pool
    return tuple(row)
