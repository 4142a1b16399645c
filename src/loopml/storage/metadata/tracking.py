"""Tracking tables (experiments, runs and what a run records) and the queries the tracker uses.

Metric points are the high-volume table: they are written only through ``insert_metric_points``
(one multi-row INSERT per flush of the tracker's buffer) and read back per (run, key) ordered by
step, which the ``(run_id, key, step)`` index serves directly.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Float,
    ForeignKey,
    Index,
    String,
    Text,
    and_,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError as SAIntegrityError
from sqlalchemy.orm import Mapped, Session, mapped_column

from loopml.errors import ConflictError, NotFoundError, ValidationError

# The tables runs link to must be on Base.metadata before a flush resolves the foreign keys,
# even in a process that imported only the tracker.
from loopml.storage.metadata import datasets as _datasets  # noqa: F401
from loopml.storage.metadata import pipelines as _pipelines  # noqa: F401
from loopml.storage.metadata.base import Base, BigId, UTCDateTime, utcnow

RUN_STATUSES = ("running", "finished", "failed", "killed")


class Experiment(Base):
    __tablename__ = "experiments"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(255), nullable=False, unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, default=utcnow)


class Run(Base):
    __tablename__ = "runs"
    __table_args__ = (Index("ix_runs_experiment_start", "experiment_id", "start_time"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    experiment_id: Mapped[int] = mapped_column(BigId, ForeignKey("experiments.id"), nullable=False)
    name: Mapped[str | None] = mapped_column(String(255))
    status: Mapped[str] = mapped_column(String(16), nullable=False, default="running")
    start_time: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, default=utcnow)
    end_time: Mapped[datetime | None] = mapped_column(UTCDateTime)
    git_sha: Mapped[str | None] = mapped_column(String(40))
    pipeline_run_id: Mapped[str | None] = mapped_column(
        String(32), ForeignKey("pipeline_runs.id", ondelete="SET NULL")
    )
    error: Mapped[str | None] = mapped_column(Text)


class RunParam(Base):
    __tablename__ = "run_params"

    run_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True
    )
    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    value: Mapped[str] = mapped_column(Text, nullable=False)


class RunTag(Base):
    __tablename__ = "run_tags"

    run_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True
    )
    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    value: Mapped[str] = mapped_column(Text, nullable=False)


class RunMetric(Base):
    __tablename__ = "run_metrics"
    __table_args__ = (Index("ix_run_metrics_run_key_step", "run_id", "key", "step"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(String(32), ForeignKey("runs.id", ondelete="CASCADE"), nullable=False)
    key: Mapped[str] = mapped_column(String(255), nullable=False)
    step: Mapped[int] = mapped_column(BigInteger, nullable=False)
    #: NULL means NaN: SQLite turns NaN into NULL anyway, so both backends store it the same way.
    value: Mapped[float | None] = mapped_column(Float)
    ts: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)


class RunArtifact(Base):
    __tablename__ = "run_artifacts"

    run_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True
    )
    name: Mapped[str] = mapped_column(String(512), primary_key=True)
    digest: Mapped[str] = mapped_column(String(71), nullable=False)
    size: Mapped[int] = mapped_column(BigInteger, nullable=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, default=utcnow)


class RunInput(Base):
    __tablename__ = "run_inputs"
    __table_args__ = (Index("ix_run_inputs_dataset_version", "dataset_version_id"),)

    run_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True
    )
    dataset_version_id: Mapped[int] = mapped_column(
        BigId, ForeignKey("dataset_versions.id"), primary_key=True
    )


# -- experiments ------------------------------------------------------------------------------
def get_or_create_experiment(session: Session, name: str) -> Experiment:
    """The experiment called ``name``, created on first use (safe when two processes race)."""
    found = session.scalar(select(Experiment).where(Experiment.name == name))
    if found is not None:
        return found
    try:
        with session.begin_nested():
            experiment = Experiment(name=name, created_at=utcnow())
            session.add(experiment)
            session.flush()
        return experiment
    except SAIntegrityError:
        return session.scalars(select(Experiment).where(Experiment.name == name)).one()


def find_experiment(session: Session, name: str) -> Experiment:
    found = session.scalar(select(Experiment).where(Experiment.name == name))
    if found is None:
        known = list(session.scalars(select(Experiment.name)))
        from loopml.errors import did_you_mean

        raise NotFoundError(f"No experiment named {name!r}.{did_you_mean(name, known)}")
    return found


def list_experiments(session: Session) -> list[tuple[Experiment, int]]:
    """Experiments with their run counts, newest first."""
    counts = select(Run.experiment_id, func.count(Run.id).label("n")).group_by(Run.experiment_id).subquery()
    stmt = (
        select(Experiment, func.coalesce(counts.c.n, 0))
        .outerjoin(counts, counts.c.experiment_id == Experiment.id)
        .order_by(Experiment.id.desc())
    )
    return [(exp, int(n)) for exp, n in session.execute(stmt)]


# -- runs -------------------------------------------------------------------------------------
def create_run(
    session: Session,
    *,
    run_id: str,
    experiment_id: int,
    name: str | None,
    git_sha: str | None,
    pipeline_run_id: str | None,
    start_time: datetime,
) -> Run:
    """Insert a running run; an unknown ``pipeline_run_id`` becomes a NotFoundError, not a crash."""
    run = Run(
        id=run_id,
        experiment_id=experiment_id,
        name=name,
        status="running",
        start_time=start_time,
        git_sha=git_sha,
        pipeline_run_id=pipeline_run_id,
    )
    try:
        with session.begin_nested():
            session.add(run)
            session.flush()
    except SAIntegrityError:
        raise NotFoundError(
            f"pipeline_run_id {pipeline_run_id!r} is not a pipeline run; pass the id of an existing "
            "pipeline run (see `loopml pipelines runs`) or leave it out."
        ) from None
    return run


def get_run(session: Session, run_id: str) -> tuple[Run, str]:
    """A run and its experiment name. Accepts a unique id prefix (>= 4 chars), as the CLI shows short ids."""
    row = session.execute(
        select(Run, Experiment.name)
        .join(Experiment, Experiment.id == Run.experiment_id)
        .where(Run.id == run_id)
    ).first()
    if row is None and 4 <= len(run_id) < 32:
        prefix = run_id.replace("%", "").replace("_", "")
        rows = session.execute(
            select(Run, Experiment.name)
            .join(Experiment, Experiment.id == Run.experiment_id)
            .where(Run.id.like(prefix + "%"))
            .limit(2)
        ).all()
        if len(rows) > 1:
            raise ValidationError(f"run id prefix {run_id!r} matches several runs; give more characters.")
        row = rows[0] if rows else None
    if row is None:
        raise NotFoundError(f"No run with id {run_id!r}; list runs with `loopml runs list`.")
    return row[0], row[1]


def list_runs(
    session: Session, *, experiment_id: int | None = None, status: str | None = None, limit: int = 50
) -> list[tuple[Run, str]]:
    stmt = (
        select(Run, Experiment.name)
        .join(Experiment, Experiment.id == Run.experiment_id)
        .order_by(Run.start_time.desc(), Run.id)
        .limit(limit)
    )
    if experiment_id is not None:
        stmt = stmt.where(Run.experiment_id == experiment_id)
    if status is not None:
        stmt = stmt.where(Run.status == status)
    return [(run, exp) for run, exp in session.execute(stmt)]


def end_run(session: Session, run_id: str, status: str, end_time: datetime, error: str | None) -> None:
    """Close a run once: a run already ended keeps its first status (ending is idempotent)."""
    session.execute(
        update(Run)
        .where(Run.id == run_id, Run.status == "running")
        .values(status=status, end_time=end_time, error=error)
    )


# -- params and tags --------------------------------------------------------------------------
def add_params(session: Session, run_id: str, params: dict[str, str]) -> None:
    """Params are inputs and never change: the same value again is a no-op, a new value a ConflictError."""
    if not params:
        return
    existing = dict(
        session.execute(
            select(RunParam.key, RunParam.value).where(
                RunParam.run_id == run_id, RunParam.key.in_(list(params))
            )
        ).all()
    )
    for key, value in params.items():
        if key in existing and existing[key] != value:
            raise ConflictError(
                f"param {key!r} of run {run_id} is already {existing[key]!r}; params cannot change "
                f"(got {value!r}). Log the new value under another key or start a new run."
            )
    new = [{"run_id": run_id, "key": k, "value": v} for k, v in params.items() if k not in existing]
    if new:
        session.execute(insert(RunParam), new)


def set_tags(session: Session, run_id: str, tags: dict[str, str]) -> None:
    """Tags are mutable labels: insert or overwrite."""
    if not tags:
        return
    existing = set(
        session.scalars(select(RunTag.key).where(RunTag.run_id == run_id, RunTag.key.in_(list(tags))))
    )
    for key, value in tags.items():
        if key in existing:
            session.execute(
                update(RunTag).where(RunTag.run_id == run_id, RunTag.key == key).values(value=value)
            )
    new = [{"run_id": run_id, "key": k, "value": v} for k, v in tags.items() if k not in existing]
    if new:
        session.execute(insert(RunTag), new)


def get_params(session: Session, run_id: str) -> dict[str, str]:
    return dict(session.execute(select(RunParam.key, RunParam.value).where(RunParam.run_id == run_id)).all())


def get_tags(session: Session, run_id: str) -> dict[str, str]:
    return dict(session.execute(select(RunTag.key, RunTag.value).where(RunTag.run_id == run_id)).all())


def params_for_runs(session: Session, run_ids: Sequence[str]) -> dict[str, dict[str, str]]:
    out: dict[str, dict[str, str]] = {rid: {} for rid in run_ids}
    for run_id, key, value in session.execute(
        select(RunParam.run_id, RunParam.key, RunParam.value).where(RunParam.run_id.in_(list(run_ids)))
    ):
        out[run_id][key] = value
    return out


# -- metrics ----------------------------------------------------------------------------------
def insert_metric_points(session: Session, rows: Sequence[dict[str, Any]]) -> None:
    """Write a whole buffer of points in one statement, in the caller's transaction.

    Each row: ``run_id, key, step, value, ts`` (tz-aware). NaN values arrive as None (see ``RunMetric``).
    PostgreSQL gets ``COPY ... FROM STDIN`` (binary-free text protocol, no per-row statement);
    SQLite one ``executemany`` of a Core insert (no ORM bookkeeping per row).
    """
    if not rows:
        return
    connection = session.connection()
    if connection.dialect.name == "postgresql":
        _copy_metric_points(connection, rows)
        return
    try:
        connection.execute(insert(RunMetric.__table__), rows)
    except SAIntegrityError as exc:
        raise _unknown_run(exc.orig) from None


def _copy_metric_points(connection: Any, rows: Sequence[dict[str, Any]]) -> None:
    import psycopg

    raw = connection.connection.dbapi_connection
    try:
        with (
            raw.cursor() as cursor,
            cursor.copy("COPY run_metrics (run_id, key, step, value, ts) FROM STDIN") as copy,
        ):
            for row in rows:
                copy.write_row((row["run_id"], row["key"], row["step"], row["value"], row["ts"]))
    except psycopg.errors.IntegrityError as exc:
        raise _unknown_run(exc) from None


def _unknown_run(cause: object) -> NotFoundError:
    return NotFoundError(
        f"metric points refer to a run that does not exist ({cause}); start runs with Tracker.start_run."
    )


def count_metric_points(session: Session, run_id: str) -> int:
    return int(session.scalar(select(func.count(RunMetric.id)).where(RunMetric.run_id == run_id)) or 0)


def metric_history(session: Session, run_id: str, key: str) -> list[tuple[int, float, datetime]]:
    """All points of one metric, ordered by step (then by write order for repeated steps)."""
    rows = session.execute(
        select(RunMetric.step, RunMetric.value, RunMetric.ts)
        .where(RunMetric.run_id == run_id, RunMetric.key == key)
        .order_by(RunMetric.step, RunMetric.id)
    ).all()
    return [(int(step), _from_db(value), ts) for step, value, ts in rows]


def metric_keys(session: Session, run_id: str) -> list[str]:
    return sorted(session.scalars(select(RunMetric.key).where(RunMetric.run_id == run_id).distinct()))


def metric_summaries(session: Session, run_ids: Sequence[str]) -> dict[str, dict[str, dict[str, Any]]]:
    """Per run and key: latest value (highest step, last written), its step, min, max and point count.

    Computed in the database so a run with a million points costs one grouped query, not a transfer.
    """
    ids = list(run_ids)
    if not ids:
        return {}
    agg = (
        select(
            RunMetric.run_id,
            RunMetric.key,
            func.max(RunMetric.step).label("last_step"),
            func.min(RunMetric.value).label("vmin"),
            func.max(RunMetric.value).label("vmax"),
            func.count(RunMetric.id).label("n"),
        )
        .where(RunMetric.run_id.in_(ids))
        .group_by(RunMetric.run_id, RunMetric.key)
        .subquery()
    )
    # The latest value is the point at the highest step; several points at that step: the last written.
    stmt = select(agg, RunMetric.id, RunMetric.value).join(
        RunMetric,
        and_(RunMetric.run_id == agg.c.run_id, RunMetric.key == agg.c.key, RunMetric.step == agg.c.last_step),
    )
    out: dict[str, dict[str, dict[str, Any]]] = {rid: {} for rid in ids}
    last_ids: dict[tuple[str, str], int] = {}
    for row in session.execute(stmt).mappings():
        ident = (row["run_id"], row["key"])
        if last_ids.get(ident, -1) > row["id"]:
            continue
        last_ids[ident] = row["id"]
        out[row["run_id"]][row["key"]] = {
            "last": _from_db(row["value"]),
            "last_step": int(row["last_step"]),
            "min": _from_db(row["vmin"]),
            "max": _from_db(row["vmax"]),
            "count": int(row["n"]),
        }
    return out


def _from_db(value: float | None) -> float:
    return math.nan if value is None else float(value)


# -- artifacts and inputs ---------------------------------------------------------------------
def add_artifact(session: Session, run_id: str, name: str, digest: str, size: int) -> None:
    """Record an artifact under a name; the same bytes again are a no-op, other bytes a ConflictError."""
    existing = session.scalar(
        select(RunArtifact).where(RunArtifact.run_id == run_id, RunArtifact.name == name)
    )
    if existing is not None:
        if existing.digest != digest:
            raise ConflictError(
                f"run {run_id} already has an artifact named {name!r} with other content "
                f"({existing.digest}); artifacts are immutable, log the new one under another name."
            )
        return
    session.add(RunArtifact(run_id=run_id, name=name, digest=digest, size=size, created_at=utcnow()))


def get_artifacts(session: Session, run_id: str) -> list[RunArtifact]:
    return list(
        session.scalars(select(RunArtifact).where(RunArtifact.run_id == run_id).order_by(RunArtifact.name))
    )


def get_artifact(session: Session, run_id: str, name: str) -> RunArtifact:
    found = session.scalar(select(RunArtifact).where(RunArtifact.run_id == run_id, RunArtifact.name == name))
    if found is None:
        from loopml.errors import did_you_mean

        known = [a.name for a in get_artifacts(session, run_id)]
        raise NotFoundError(f"run {run_id} has no artifact named {name!r}.{did_you_mean(name, known)}")
    return found


def add_input(session: Session, run_id: str, dataset_version_id: int) -> None:
    """Link a run to a dataset version it read (idempotent); an unknown version is a NotFoundError."""
    exists = session.scalar(
        select(func.count())
        .select_from(RunInput)
        .where(RunInput.run_id == run_id, RunInput.dataset_version_id == dataset_version_id)
    )
    if exists:
        return
    try:
        with session.begin_nested():
            session.execute(insert(RunInput), [{"run_id": run_id, "dataset_version_id": dataset_version_id}])
    except SAIntegrityError:
        raise NotFoundError(
            f"dataset_version_id {dataset_version_id} does not exist; pass a DatasetVersion returned by "
            "lm.datasets.version(name) or ingest(...)."
        ) from None


def get_inputs(session: Session, run_id: str) -> list[int]:
    return [
        int(v)
        for v in session.scalars(
            select(RunInput.dataset_version_id)
            .where(RunInput.run_id == run_id)
            .order_by(RunInput.dataset_version_id)
        )
    ]


def runs_for_dataset_version(session: Session, dataset_version_id: int) -> list[str]:
    """Reverse lineage: which runs read this dataset version."""
    return list(
        session.scalars(
            select(RunInput.run_id)
            .where(RunInput.dataset_version_id == dataset_version_id)
            .order_by(RunInput.run_id)
        )
    )


def existing_run_ids(session: Session, run_ids: Iterable[str]) -> set[str]:
    return set(session.scalars(select(Run.id).where(Run.id.in_(list(run_ids)))))
