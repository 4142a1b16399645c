"""The ``jobs`` table and the SQL behind the durable queue.

Every state change of a job is one short statement so that several worker processes can share the
table without "database is locked" on SQLite or lock waits on PostgreSQL:

- claim: one ``UPDATE ... WHERE id IN (SELECT ... LIMIT n) RETURNING`` (atomic under SQLite's
  ``BEGIN IMMEDIATE``; ``FOR UPDATE SKIP LOCKED`` on PostgreSQL so claimers never wait on each other);
- ack / fail / heartbeat / release: an ``UPDATE`` guarded by ``worker_id`` and ``status='running'``,
  so a worker whose lease expired cannot finish a job another worker now holds (rowcount 0).

The service layer (``loopml.storage.queue``) turns rows into frozen ``Job`` dataclasses.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from functools import lru_cache
from typing import Any

from sqlalchemy import (
    Index,
    Integer,
    Row,
    String,
    Text,
    UniqueConstraint,
    bindparam,
    case,
    cast,
    func,
    select,
    update,
)
from sqlalchemy.orm import Mapped, Session, mapped_column

from loopml.storage.metadata.base import Base, BigId, JSONType, UTCDateTime, utcnow

QUEUED = "queued"
RUNNING = "running"
SUCCEEDED = "succeeded"
DEAD = "dead"
CANCELLED = "cancelled"
STATUSES = (QUEUED, RUNNING, SUCCEEDED, DEAD, CANCELLED)


class JobRow(Base):
    __tablename__ = "jobs"
    __table_args__ = (
        UniqueConstraint("idempotency_key"),
        Index("ix_jobs_lease", "status", "lease_until"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    queue: Mapped[str] = mapped_column(String(64), nullable=False)
    kind: Mapped[str] = mapped_column(String(128), nullable=False)
    payload: Mapped[dict[str, Any]] = mapped_column(JSONType, nullable=False)
    status: Mapped[str] = mapped_column(String(16), nullable=False)
    priority: Mapped[int] = mapped_column(Integer, nullable=False)
    attempts: Mapped[int] = mapped_column(Integer, nullable=False)
    max_attempts: Mapped[int] = mapped_column(Integer, nullable=False)
    not_before: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    worker_id: Mapped[str | None] = mapped_column(String(128))
    idempotency_key: Mapped[str | None] = mapped_column(String(255))
    last_error: Mapped[str | None] = mapped_column(Text)
    result: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


# The claim index matches the claim's ORDER BY (priority DESC, not_before) so a claim reads the
# first rows of the index instead of sorting the whole backlog of its queue.
Index("ix_jobs_claim", JobRow.queue, JobRow.status, JobRow.priority.desc(), JobRow.not_before)

#: Columns returned by every query, in a fixed order (the service maps them to ``Job``).
COLUMNS = tuple(JobRow.__table__.c)
_T = JobRow.__table__


#: A SQLAlchemy ``Connection`` (hot paths: no ORM overhead) or ``Session`` (paths that also audit).
Executor = Any


def _dialect(conn: Executor) -> str:
    dialect = getattr(conn, "dialect", None) or conn.get_bind().dialect
    return dialect.name


def _p(name: str, column: str) -> Any:
    """A bound parameter typed like ``column`` (so UTC datetimes and JSON are converted)."""
    return bindparam(name, type_=_T.c[column].type)


# Statements are built once per dialect and shape: building a Core statement costs more than
# executing it on SQLite, and the queue's hot path is a few tiny statements per job.
@lru_cache(maxsize=8)
def _insert_stmt(dialect: str, with_key: bool) -> Any:
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    stmt = insert(_T)
    if with_key:
        stmt = stmt.on_conflict_do_nothing(index_elements=["idempotency_key"])
    return stmt.returning(*COLUMNS)


@lru_cache(maxsize=4)
def _claim_stmt(dialect: str) -> Any:
    pick = (
        select(_T.c.id)
        .where(
            _T.c.queue.in_(bindparam("queues", expanding=True)),
            _T.c.status == QUEUED,
            _T.c.not_before <= _p("now", "not_before"),
        )
        .order_by(_T.c.priority.desc(), _T.c.not_before, _T.c.id)
        .limit(bindparam("lim", type_=Integer()))
    )
    if dialect == "postgresql":
        pick = pick.with_for_update(skip_locked=True)
    return (
        update(_T)
        .where(_T.c.id.in_(pick.scalar_subquery()))
        .values(
            status=RUNNING,
            attempts=_T.c.attempts + 1,
            worker_id=_p("worker", "worker_id"),
            lease_until=_p("lease", "lease_until"),
            started_at=_p("now", "started_at"),
            updated_at=_p("now", "updated_at"),
        )
        .returning(*COLUMNS)
    )


_OWNED = (
    (_T.c.id == _p("b_id", "id")) & (_T.c.worker_id == _p("b_worker", "worker_id")) & (_T.c.status == RUNNING)
)


@lru_cache(maxsize=32)
def _owned_update_stmt(keys: tuple[str, ...], decrement_attempts: bool) -> Any:
    values: dict[str, Any] = {key: _p(f"v_{key}", key) for key in keys}
    if decrement_attempts:
        values["attempts"] = case((_T.c.attempts > 0, _T.c.attempts - 1), else_=0)
    return update(_T).where(_OWNED).values(**values).returning(*COLUMNS)


_HEARTBEAT = (
    update(_T)
    .where(_OWNED)
    .values(lease_until=_p("lease", "lease_until"), updated_at=_p("now", "updated_at"))
)
_GET = select(*COLUMNS).where(_T.c.id == _p("b_id", "id"))


def insert_job(conn: Executor, values: dict[str, Any]) -> Row[Any] | None:
    """Insert one job; with an idempotency key already taken, insert nothing and return None.

    ``ON CONFLICT DO NOTHING`` (both SQLite and PostgreSQL) makes a concurrent duplicate enqueue a
    no-op instead of an error that would abort the caller's transaction.
    """
    # None values are left out so JSON columns get SQL NULL, not the JSON text 'null'.
    row = {key: value for key, value in values.items() if value is not None}
    stmt = _insert_stmt(_dialect(conn), values.get("idempotency_key") is not None)
    return conn.execute(stmt, row).first()


def get_job(conn: Executor, job_id: int) -> Row[Any] | None:
    return conn.execute(_GET, {"b_id": job_id}).first()


def get_by_idempotency_key(conn: Executor, key: str) -> Row[Any] | None:
    return conn.execute(select(*COLUMNS).where(_T.c.idempotency_key == key)).first()


def claim_jobs(
    conn: Executor,
    worker_id: str,
    queues: Sequence[str],
    limit: int,
    now: datetime,
    lease_until: datetime,
) -> list[Row[Any]]:
    """Mark up to ``limit`` due jobs as running for ``worker_id`` and return them, best first."""
    params = {"queues": list(queues), "now": now, "lim": limit, "worker": worker_id, "lease": lease_until}
    rows = list(conn.execute(_claim_stmt(_dialect(conn)), params))
    rows.sort(key=lambda r: (-r.priority, r.not_before, r.id))
    return rows


def reap_expired(conn: Executor, now: datetime, limit: int = 1000) -> tuple[int, int]:
    """Give jobs whose lease ended (their worker died or hung) back to the queue, or dead-letter them.

    The attempt that crashed already counted when it was claimed, so a job that used its last
    attempt goes to ``dead``; the others are due again at once (a crash is not the job's fault, so
    no backoff). Returns ``(requeued, dead)``.
    """
    expired = select(_T.c.id).where(_T.c.status == RUNNING, _T.c.lease_until < now).limit(limit)
    if _dialect(conn) == "postgresql":
        expired = expired.with_for_update(skip_locked=True)
    ids = list(conn.execute(expired).scalars())
    if not ids:
        return 0, 0
    message = (
        "lease expired after attempt "
        + cast(_T.c.attempts, String)
        + " of "
        + cast(_T.c.max_attempts, String)
        + " (worker "
        + func.coalesce(_T.c.worker_id, "?")
        + " crashed or stopped heartbeating?)"
    )
    common = {"lease_until": None, "updated_at": now, "last_error": message}
    dead = conn.execute(
        update(_T)
        .where(_T.c.id.in_(ids), _T.c.status == RUNNING, _T.c.attempts >= _T.c.max_attempts)
        .values(status=DEAD, finished_at=now, **common)
    ).rowcount
    requeued = conn.execute(
        update(_T)
        .where(_T.c.id.in_(ids), _T.c.status == RUNNING)
        .values(status=QUEUED, worker_id=None, not_before=now, **common)
    ).rowcount
    return requeued, dead


def heartbeat(conn: Executor, job_id: int, worker_id: str, lease_until: datetime, now: datetime) -> bool:
    params = {"b_id": job_id, "b_worker": worker_id, "lease": lease_until, "now": now}
    return conn.execute(_HEARTBEAT, params).rowcount == 1


def finish_owned(
    conn: Executor, job_id: int, worker_id: str, values: dict[str, Any], *, decrement_attempts: bool = False
) -> Row[Any] | None:
    """Apply ``values`` to a job only while ``worker_id`` still holds it; None when it does not."""
    keys = tuple(sorted(values))
    params = {"b_id": job_id, "b_worker": worker_id, **{f"v_{key}": values[key] for key in keys}}
    return conn.execute(_owned_update_stmt(keys, decrement_attempts), params).first()


def ack_without_result(conn: Executor, job_ids: list[int], worker_id: str, now: datetime) -> list[int]:
    """Mark the jobs ``worker_id`` still owns among ``job_ids`` as succeeded; returns their ids."""
    stmt = (
        update(_T)
        .where(_T.c.id.in_(job_ids), _T.c.worker_id == worker_id, _T.c.status == RUNNING)
        .values(status=SUCCEEDED, lease_until=None, finished_at=now, updated_at=now)
        .returning(_T.c.id)
    )
    return list(conn.execute(stmt).scalars())


def set_status(
    session: Session, job_id: int, from_statuses: Iterable[str], values: dict[str, Any]
) -> Row[Any] | None:
    """Change a job that is in one of ``from_statuses`` (operator actions: requeue, cancel)."""
    stmt = (
        update(_T)
        .where(_T.c.id == job_id, _T.c.status.in_(list(from_statuses)))
        .values(**values)
        .returning(*COLUMNS)
    )
    return session.execute(stmt).first()


def list_jobs(
    session: Session,
    *,
    status: str | None = None,
    kind: str | None = None,
    queue: str | None = None,
    limit: int = 100,
) -> list[Row[Any]]:
    stmt = select(*COLUMNS).order_by(_T.c.id.desc()).limit(limit)
    if status:
        stmt = stmt.where(_T.c.status == status)
    if kind:
        stmt = stmt.where(_T.c.kind == kind)
    if queue:
        stmt = stmt.where(_T.c.queue == queue)
    return list(session.execute(stmt))


def count_by_status(session: Session, queue: str | None = None) -> dict[str, int]:
    stmt = select(_T.c.status, func.count()).group_by(_T.c.status)
    if queue:
        stmt = stmt.where(_T.c.queue == queue)
    counts = dict.fromkeys(STATUSES, 0)
    for status, n in session.execute(stmt):
        counts[status] = int(n)
    return counts


def queue_names(session: Session) -> list[str]:
    return list(session.scalars(select(_T.c.queue).distinct().order_by(_T.c.queue)))


def oldest_waiting_since(session: Session, queue: str, status: str, now: datetime) -> datetime | None:
    """When the longest-waiting job of ``status`` in ``queue`` became due (queued) or was created."""
    if status == QUEUED:
        stmt = select(func.min(_T.c.not_before)).where(
            _T.c.queue == queue, _T.c.status == QUEUED, _T.c.not_before <= now
        )
    else:
        stmt = select(func.min(_T.c.created_at)).where(_T.c.queue == queue, _T.c.status == status)
    value = session.scalar(stmt)
    if value is None:
        return None
    # func.min() loses the column type on SQLite: parse the stored text back into a UTC datetime.
    return UTCDateTime().process_result_value(_as_datetime(value), None)


def _as_datetime(value: Any) -> datetime:
    if isinstance(value, datetime):
        return value
    return datetime.fromisoformat(str(value))


def now() -> datetime:
    return utcnow()
