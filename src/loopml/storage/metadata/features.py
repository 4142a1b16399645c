"""Feature store metadata: entities, feature views and their versions, materialisations, pushed-row logs.

A feature view's *definition* is versioned (a new fingerprint makes a new version) because the same
name with a different transformation produces different numbers: training and serving must agree on
which definition they used. Materialisation runs and push-log segments are recorded here so that the
online store can be rebuilt incrementally and the offline store sees every pushed row.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, Integer, String, Text, UniqueConstraint, func, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from loopml.storage.metadata import datasets as _datasets  # noqa: F401  (FK target table)
from loopml.storage.metadata.base import Base, BigId, JSONType, UTCDateTime, utcnow


class EntityRow(Base):
    __tablename__ = "entities"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(255), nullable=False, unique=True)
    join_key: Mapped[str] = mapped_column(String(255), nullable=False)
    dtype: Mapped[str] = mapped_column(String(16), nullable=False)
    description: Mapped[str] = mapped_column(Text, nullable=False, default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, default=utcnow)


class FeatureViewRow(Base):
    __tablename__ = "feature_views"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(255), nullable=False, unique=True)
    #: ``batch`` (stored, materialised) or ``on_demand`` (computed at request time).
    kind: Mapped[str] = mapped_column(String(16), nullable=False)
    entity_id: Mapped[int | None] = mapped_column(BigId, ForeignKey("entities.id"))
    latest_version: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, default=utcnow)


class FeatureViewVersionRow(Base):
    __tablename__ = "feature_view_versions"
    __table_args__ = (
        UniqueConstraint("view_id", "number", name="uq_feature_view_versions_view_number"),
        UniqueConstraint("view_id", "fingerprint", name="uq_feature_view_versions_view_fingerprint"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    view_id: Mapped[int] = mapped_column(BigId, ForeignKey("feature_views.id"), nullable=False)
    number: Mapped[int] = mapped_column(Integer, nullable=False)
    fingerprint: Mapped[str] = mapped_column(String(64), nullable=False)
    spec: Mapped[dict[str, Any]] = mapped_column(JSONType, nullable=False)
    #: The dataset version the source resolved to when this definition was registered (if any).
    source_version_id: Mapped[int | None] = mapped_column(
        BigId, ForeignKey("dataset_versions.id", ondelete="SET NULL")
    )
    #: Stored data the version needs: {"frames": {input: digest}, "snapshot": {source_fingerprint, digest, rows}}.
    assets: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    stats: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    stats_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_by: Mapped[str] = mapped_column(String(255), nullable=False, default="system")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, default=utcnow)


class MaterialisationRow(Base):
    __tablename__ = "materialisations"
    __table_args__ = (Index("ix_materialisations_version", "view_version_id", "id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    view_version_id: Mapped[int] = mapped_column(
        BigId, ForeignKey("feature_view_versions.id"), nullable=False
    )
    status: Mapped[str] = mapped_column(String(16), nullable=False)
    full: Mapped[bool] = mapped_column(nullable=False, default=False)
    source_fingerprint: Mapped[str | None] = mapped_column(String(80))
    #: Largest event time written from the source; the next incremental run reads rows after it.
    watermark: Mapped[datetime | None] = mapped_column(UTCDateTime)
    #: Largest push-log segment id included; later segments are read by the next run.
    last_segment_id: Mapped[int] = mapped_column(BigId, nullable=False, default=0)
    rows_written: Mapped[int] = mapped_column(BigId, nullable=False, default=0)
    chunks: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    error: Mapped[str | None] = mapped_column(Text)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class FeatureLogSegmentRow(Base):
    """One Parquet file of pushed (streamed) rows, appended to a view's offline data."""

    __tablename__ = "feature_log_segments"
    __table_args__ = (Index("ix_feature_log_segments_view", "view_id", "id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    view_id: Mapped[int] = mapped_column(BigId, ForeignKey("feature_views.id"), nullable=False)
    version_number: Mapped[int] = mapped_column(Integer, nullable=False)
    digest: Mapped[str] = mapped_column(String(80), nullable=False)
    row_count: Mapped[int] = mapped_column(BigId, nullable=False)
    min_event_ts: Mapped[datetime | None] = mapped_column(UTCDateTime)
    max_event_ts: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, default=utcnow)


# -- queries ----------------------------------------------------------------------------------------


def get_entity(session: Session, name: str) -> EntityRow | None:
    return session.scalar(select(EntityRow).where(EntityRow.name == name))


def list_entities(session: Session) -> list[EntityRow]:
    return list(session.scalars(select(EntityRow).order_by(EntityRow.name)))


def get_view(session: Session, name: str) -> FeatureViewRow | None:
    return session.scalar(select(FeatureViewRow).where(FeatureViewRow.name == name))


def get_view_for_update(session: Session, name: str) -> FeatureViewRow | None:
    """Lock the view row so two processes registering a new version cannot take the same number."""
    return session.scalar(select(FeatureViewRow).where(FeatureViewRow.name == name).with_for_update())


def list_views(session: Session) -> list[FeatureViewRow]:
    return list(session.scalars(select(FeatureViewRow).order_by(FeatureViewRow.name)))


def get_version(session: Session, view_id: int, number: int) -> FeatureViewVersionRow | None:
    return session.scalar(
        select(FeatureViewVersionRow).where(
            FeatureViewVersionRow.view_id == view_id, FeatureViewVersionRow.number == number
        )
    )


def get_version_by_fingerprint(
    session: Session, view_id: int, fingerprint: str
) -> FeatureViewVersionRow | None:
    return session.scalar(
        select(FeatureViewVersionRow).where(
            FeatureViewVersionRow.view_id == view_id, FeatureViewVersionRow.fingerprint == fingerprint
        )
    )


def list_versions(session: Session, view_id: int) -> list[FeatureViewVersionRow]:
    return list(
        session.scalars(
            select(FeatureViewVersionRow)
            .where(FeatureViewVersionRow.view_id == view_id)
            .order_by(FeatureViewVersionRow.number)
        )
    )


def last_materialisation(
    session: Session, view_version_id: int, *, status: str | None = "succeeded"
) -> MaterialisationRow | None:
    stmt = select(MaterialisationRow).where(MaterialisationRow.view_version_id == view_version_id)
    if status:
        stmt = stmt.where(MaterialisationRow.status == status)
    return session.scalar(stmt.order_by(MaterialisationRow.id.desc()).limit(1))


def list_materialisations(
    session: Session, view_version_id: int, limit: int = 20
) -> list[MaterialisationRow]:
    return list(
        session.scalars(
            select(MaterialisationRow)
            .where(MaterialisationRow.view_version_id == view_version_id)
            .order_by(MaterialisationRow.id.desc())
            .limit(limit)
        )
    )


def log_segments(session: Session, view_id: int, *, after_id: int = 0) -> list[FeatureLogSegmentRow]:
    return list(
        session.scalars(
            select(FeatureLogSegmentRow)
            .where(FeatureLogSegmentRow.view_id == view_id, FeatureLogSegmentRow.id > after_id)
            .order_by(FeatureLogSegmentRow.id)
        )
    )


def log_summary(session: Session, view_id: int) -> tuple[int, int, datetime | None]:
    """(segments, rows, newest pushed event time) for a view's push log."""
    row = session.execute(
        select(
            func.count(FeatureLogSegmentRow.id),
            func.coalesce(func.sum(FeatureLogSegmentRow.row_count), 0),
            func.max(FeatureLogSegmentRow.max_event_ts),
        ).where(FeatureLogSegmentRow.view_id == view_id)
    ).one()
    newest = row[2]
    if isinstance(newest, str):  # SQLite aggregates lose the column type
        newest = datetime.fromisoformat(newest)
    if newest is not None and newest.tzinfo is None:
        from datetime import UTC

        newest = newest.replace(tzinfo=UTC)
    return int(row[0]), int(row[1]), newest
