"""Tables and queries for datasets: the dataset (name + current contract), its versions, quarantined rows.

A version row points at an immutable Parquet blob by digest and carries the contract it was accepted
under, so the history stays explainable after the contract changes. For a *partitioned* dataset the
digest names a manifest (partition key -> Parquet blob) instead; ``partition_count`` and
``partitions_delivered`` say how many partitions the version has and which ones its ingest wrote.
Quarantine rows belong to an ingest *attempt* and, when the ingest was accepted, to the version it
produced; a refused ingest has no version but its rows are kept all the same.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    false,
    func,
    insert,
    select,
)
from sqlalchemy.orm import Mapped, Session, mapped_column

from loopml.storage.metadata.base import Base, BigId, JSONType, UTCDateTime, utcnow

QUARANTINE_BATCH = 5_000


class Dataset(Base):
    __tablename__ = "datasets"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(128), nullable=False, unique=True)
    description: Mapped[str] = mapped_column(Text, nullable=False, default="")
    contract: Mapped[dict[str, Any]] = mapped_column(JSONType, nullable=False)
    #: set by the first partitioned ingest; plain and partitioned ingests cannot be mixed afterwards
    partitioned: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False, server_default=false())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, default=utcnow)


class DatasetVersionRow(Base):
    __tablename__ = "dataset_versions"
    __table_args__ = (
        UniqueConstraint("dataset_id", "number"),
        Index("ix_dataset_versions_digest", "dataset_id", "digest"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    dataset_id: Mapped[int] = mapped_column(
        BigId, ForeignKey("datasets.id", ondelete="CASCADE"), nullable=False
    )
    number: Mapped[int] = mapped_column(Integer, nullable=False)
    digest: Mapped[str] = mapped_column(String(80), nullable=False)
    row_count: Mapped[int] = mapped_column(BigInteger, nullable=False)
    size_bytes: Mapped[int] = mapped_column(BigInteger, nullable=False)
    rows_in: Mapped[int] = mapped_column(BigInteger, nullable=False)
    rows_quarantined: Mapped[int] = mapped_column(BigInteger, nullable=False)
    stats: Mapped[dict[str, Any]] = mapped_column(JSONType, nullable=False)
    contract: Mapped[dict[str, Any]] = mapped_column(JSONType, nullable=False)
    source: Mapped[str | None] = mapped_column(Text)
    actor: Mapped[str] = mapped_column(String(255), nullable=False, default="system")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, default=utcnow)
    #: partitioned datasets only: partitions in the manifest, and the keys this version's ingest wrote
    partition_count: Mapped[int | None] = mapped_column(Integer)
    partitions_delivered: Mapped[list[str] | None] = mapped_column(JSONType)


class QuarantineRow(Base):
    __tablename__ = "quarantine_rows"
    __table_args__ = (
        Index("ix_quarantine_rows_dataset", "dataset_id", "id"),
        Index("ix_quarantine_rows_attempt", "attempt"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    dataset_id: Mapped[int] = mapped_column(
        BigId, ForeignKey("datasets.id", ondelete="CASCADE"), nullable=False
    )
    version_id: Mapped[int | None] = mapped_column(
        BigId, ForeignKey("dataset_versions.id", ondelete="SET NULL")
    )
    attempt: Mapped[str] = mapped_column(String(32), nullable=False)
    row_index: Mapped[int] = mapped_column(BigInteger, nullable=False)
    row: Mapped[dict[str, Any]] = mapped_column(JSONType, nullable=False)
    failed_checks: Mapped[list[dict[str, Any]]] = mapped_column(JSONType, nullable=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, default=utcnow)


# -- datasets ---------------------------------------------------------------------------------
def get_dataset(session: Session, name: str, *, for_update: bool = False) -> Dataset | None:
    """Look a dataset up by name; ``for_update`` locks it (PostgreSQL) so version numbers are not raced."""
    stmt = select(Dataset).where(Dataset.name == name)
    if for_update:
        stmt = stmt.with_for_update()
    return session.scalars(stmt).one_or_none()


def dataset_names(session: Session) -> list[str]:
    return list(session.scalars(select(Dataset.name).order_by(Dataset.name)))


def list_datasets(session: Session) -> list[Dataset]:
    return list(session.scalars(select(Dataset).order_by(Dataset.name)))


def create_dataset(session: Session, name: str, contract: dict[str, Any], description: str = "") -> Dataset:
    dataset = Dataset(name=name, contract=contract, description=description)
    session.add(dataset)
    session.flush()
    return dataset


def version_summaries(session: Session) -> dict[int, tuple[int, int]]:
    """``{dataset_id: (latest number, version count)}`` in one query, for listings."""
    rows = session.execute(
        select(DatasetVersionRow.dataset_id, func.max(DatasetVersionRow.number), func.count()).group_by(
            DatasetVersionRow.dataset_id
        )
    )
    return {dataset_id: (int(latest), int(count)) for dataset_id, latest, count in rows}


# -- versions ---------------------------------------------------------------------------------
def latest_version(session: Session, dataset_id: int) -> DatasetVersionRow | None:
    stmt = (
        select(DatasetVersionRow)
        .where(DatasetVersionRow.dataset_id == dataset_id)
        .order_by(DatasetVersionRow.number.desc())
        .limit(1)
    )
    return session.scalars(stmt).one_or_none()


def get_version(session: Session, dataset_id: int, number: int) -> DatasetVersionRow | None:
    stmt = select(DatasetVersionRow).where(
        DatasetVersionRow.dataset_id == dataset_id, DatasetVersionRow.number == number
    )
    return session.scalars(stmt).one_or_none()


def get_version_by_id(session: Session, version_id: int) -> DatasetVersionRow | None:
    return session.get(DatasetVersionRow, version_id)


def list_versions(session: Session, dataset_id: int) -> list[DatasetVersionRow]:
    stmt = (
        select(DatasetVersionRow)
        .where(DatasetVersionRow.dataset_id == dataset_id)
        .order_by(DatasetVersionRow.number)
    )
    return list(session.scalars(stmt))


def version_numbers(session: Session, dataset_id: int) -> list[int]:
    stmt = select(DatasetVersionRow.number).where(DatasetVersionRow.dataset_id == dataset_id)
    return sorted(session.scalars(stmt))


def add_version(session: Session, dataset_id: int, **fields: Any) -> DatasetVersionRow:
    """Append the next version number; the caller holds the dataset row lock (``for_update``)."""
    current = session.scalar(
        select(func.max(DatasetVersionRow.number)).where(DatasetVersionRow.dataset_id == dataset_id)
    )
    row = DatasetVersionRow(dataset_id=dataset_id, number=(current or 0) + 1, **fields)
    session.add(row)
    session.flush()
    return row


# -- quarantine -------------------------------------------------------------------------------
def insert_quarantine(
    session: Session, rows: Iterable[dict[str, Any]], *, batch: int = QUARANTINE_BATCH
) -> int:
    """Bulk-insert quarantine rows in batches (executemany), returning how many were written."""
    total = 0
    chunk: list[dict[str, Any]] = []
    now = utcnow()
    for row in rows:
        row.setdefault("created_at", now)
        chunk.append(row)
        if len(chunk) >= batch:
            session.execute(insert(QuarantineRow), chunk)
            total += len(chunk)
            chunk = []
    if chunk:
        session.execute(insert(QuarantineRow), chunk)
        total += len(chunk)
    return total


def list_quarantine(
    session: Session, dataset_id: int, *, version_ids: Sequence[int] | None = None, limit: int = 100
) -> list[QuarantineRow]:
    """Newest attempts first, then input order within an attempt."""
    stmt = select(QuarantineRow).where(QuarantineRow.dataset_id == dataset_id)
    if version_ids is not None:
        stmt = stmt.where(QuarantineRow.version_id.in_(list(version_ids)))
    stmt = stmt.order_by(
        QuarantineRow.created_at.desc(), QuarantineRow.attempt, QuarantineRow.row_index
    ).limit(limit)
    return list(session.scalars(stmt))


def count_quarantine(session: Session, dataset_id: int) -> int:
    return int(session.scalar(select(func.count()).where(QuarantineRow.dataset_id == dataset_id)) or 0)
