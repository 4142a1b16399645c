"""Durable job queue in the metadata database: the same table on SQLite and PostgreSQL.

Why in the metadata database and not Redis or a broker: a job and the state it produces (a pipeline
run, a model version) commit in one database, so accepted work is never lost between two systems,
and the embedded default needs no extra service.

Semantics (at-least-once, made safe by ownership checks):

- ``enqueue`` with an idempotency key returns the existing job for a repeated key;
- ``claim`` leases due jobs (``not_before <= now``) to one worker, best priority first, and counts an
  attempt; the worker must ``heartbeat`` before ``lease_until`` or the job becomes claimable again;
- ``ack`` / ``fail`` / ``release`` only work while the caller still owns the job, so a worker whose
  lease expired (and whose job someone else now runs) gets a ``ConflictError`` instead of
  overwriting the other worker's outcome;
- ``fail`` retries with exponential backoff and jitter; after ``max_attempts`` the job is ``dead``
  (the dead-letter state) until an operator ``requeue``s it.
"""

from __future__ import annotations

import json
import random
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any, NoReturn

from sqlalchemy.orm import Session

from loopml.context import Context
from loopml.errors import ConflictError, NotFoundError, ValidationError
from loopml.storage.metadata import jobs as q
from loopml.storage.metadata.base import UTCDateTime
from loopml.storage.metadata.core import record_event

STATUSES = q.STATUSES
MAX_CLAIM = 1000
MAX_ERROR_CHARS = 4000


@dataclass(frozen=True)
class Job:
    """A job as stored: what to run (``kind`` + ``payload``), where it is and what happened."""

    id: int
    queue: str
    kind: str
    payload: dict[str, Any]
    status: str
    priority: int
    attempts: int
    max_attempts: int
    not_before: datetime
    lease_until: datetime | None
    worker_id: str | None
    idempotency_key: str | None
    last_error: str | None
    result: dict[str, Any] | None
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None
    finished_at: datetime | None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (datetimes as ISO 8601 strings)."""
        out = asdict(self)
        for key, value in out.items():
            if isinstance(value, datetime):
                out[key] = value.isoformat()
        return out

    @property
    def done(self) -> bool:
        """True once the job will not run again without an operator (succeeded, dead, cancelled)."""
        return self.status in (q.SUCCEEDED, q.DEAD, q.CANCELLED)


_UTC = UTCDateTime()


def _job(row: Any) -> Job:
    values = row._asdict()
    for key in ("not_before", "lease_until", "created_at", "updated_at", "started_at", "finished_at"):
        # RETURNING on SQLite can hand back the raw text; normalise to aware UTC datetimes.
        value = values[key]
        if isinstance(value, str):
            value = datetime.fromisoformat(value)
        values[key] = _UTC.process_result_value(value, None)
    return Job(**values)


class JobQueue:
    """The queue service (``lm.jobs``). Thread-safe: it holds no per-call state besides the reap clock."""

    #: Retry delay of the first failure; doubles per attempt (with jitter) up to ``backoff_cap``.
    backoff_base: float = 1.0
    backoff_cap: float = 300.0
    #: How often (seconds) ``claim`` also looks for expired leases; they are rare, so not every call.
    reap_interval: float = 1.0

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self._next_reap = 0.0
        self._reap_lock = threading.Lock()

    @contextmanager
    def _tx(self, *, durable: bool = True) -> Iterator[Any]:
        """A Core connection in a transaction: the hot paths skip the ORM session's bookkeeping.

        On SQLite the engine's ``begin`` hook issues ``BEGIN IMMEDIATE``, as for sessions.
        ``durable=False`` (claim, heartbeat, ack, release) lets PostgreSQL commit without waiting
        for the WAL flush: if the server crashes within that instant, the change is lost and the
        job simply runs again, which at-least-once delivery allows anyway. Enqueue stays durable:
        accepted work must never be lost.
        """
        self.ctx.db.ensure_schema()
        with self.ctx.db.engine.begin() as conn:
            if not durable and self.ctx.db.is_postgres:
                conn.exec_driver_sql("SET LOCAL synchronous_commit = off")
            yield conn

    # -- producing ----------------------------------------------------------------------------
    def enqueue(
        self,
        kind: str,
        payload: dict[str, Any] | None = None,
        *,
        queue: str = "default",
        idempotency_key: str | None = None,
        priority: int = 0,
        not_before: datetime | None = None,
        max_attempts: int = 5,
        session: Session | None = None,
    ) -> Job:
        """Store a job; with an ``idempotency_key`` that exists already, return that job instead.

        A repeated key with a different ``kind`` or ``payload`` is a ``ConflictError``: silently
        returning a job that does something else would hide a caller bug.

        With ``session`` (an ORM ``Session`` of this database) the job is inserted on
        ``session.connection()``, inside the caller's transaction, and not committed: the job and
        the caller's own rows (a request, a notification, a loop run) commit or roll back together,
        so a worker can never pick up a job whose state was rolled back, and no state is left
        without its job. Without it the job commits on its own, as before.
        """
        kind = _name("kind", kind, 128)
        queue = _name("queue", queue, 64)
        payload = _payload(payload)
        if idempotency_key is not None:
            idempotency_key = _name("idempotency_key", idempotency_key, 255)
        if isinstance(priority, bool) or not isinstance(priority, int):
            raise ValidationError(f"priority={priority!r}: use an int (higher runs first, default 0)")
        if isinstance(max_attempts, bool) or not isinstance(max_attempts, int) or max_attempts < 1:
            raise ValidationError(f"max_attempts={max_attempts!r}: use an int >= 1 (default 5)")
        now = q.now()
        if not_before is None:
            not_before = now
        elif not isinstance(not_before, datetime):
            raise ValidationError(
                f"not_before={not_before!r}: use a datetime (naive means UTC), e.g. now + timedelta(minutes=5)"
            )
        values = {
            "queue": queue,
            "kind": kind,
            "payload": payload,
            "status": q.QUEUED,
            "priority": priority,
            "attempts": 0,
            "max_attempts": max_attempts,
            "not_before": not_before,
            "idempotency_key": idempotency_key,
            "created_at": now,
            "updated_at": now,
        }
        if session is not None:
            if not isinstance(session, Session):
                raise ValidationError(
                    f"session={session!r}: pass a SQLAlchemy ORM Session (e.g. from ctx.db.session()) or None"
                )
            return _job(_insert_job(session.connection(), values, kind, payload, idempotency_key))
        with self._tx() as conn:
            return _job(_insert_job(conn, values, kind, payload, idempotency_key))

    # -- consuming ----------------------------------------------------------------------------
    def claim(
        self,
        worker_id: str,
        *,
        queues: Sequence[str] = ("default",),
        limit: int = 1,
        lease_seconds: float = 60,
    ) -> list[Job]:
        """Lease up to ``limit`` due jobs to ``worker_id`` (highest priority, then oldest first)."""
        worker_id = _name("worker_id", worker_id, 128)
        if isinstance(queues, str):
            queues = (queues,)
        if not queues:
            raise ValidationError("queues is empty: name at least one queue, e.g. queues=('default',)")
        queues = [_name("queues", name, 64) for name in queues]
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_CLAIM:
            raise ValidationError(f"limit={limit!r}: use an int between 1 and {MAX_CLAIM}")
        lease = _lease(lease_seconds)
        self._maybe_reap()
        now = q.now()
        with self._tx(durable=False) as conn:
            rows = q.claim_jobs(conn, worker_id, queues, limit, now, now + lease)
        return [_job(row) for row in rows]

    def heartbeat(self, job_id: int, worker_id: str, lease_seconds: float = 60) -> bool:
        """Extend the lease; False when ``worker_id`` no longer owns the job (lease lost)."""
        lease = _lease(lease_seconds)
        now = q.now()
        with self._tx(durable=False) as conn:
            return q.heartbeat(conn, _id(job_id), worker_id, now + lease, now)

    def ack(self, job_id: int, worker_id: str, result: dict[str, Any] | None = None) -> Job:
        """Mark the job ``succeeded`` with its ``result``; ConflictError if the lease was lost."""
        if result is not None:
            result = _payload(result, field="result")
        now = q.now()
        values: dict[str, Any] = {
            "status": q.SUCCEEDED,
            "lease_until": None,
            "finished_at": now,
            "updated_at": now,
        }
        if result is not None:  # left out otherwise, so the column stays SQL NULL
            values["result"] = result
        with self._tx(durable=False) as conn:
            row = q.finish_owned(conn, _id(job_id), worker_id, values)
            if row is None:
                self._explain_not_owned(conn, job_id, worker_id, "ack")
            return _job(row)

    def ack_many(self, worker_id: str, items: Sequence[tuple[int, dict[str, Any] | None]]) -> list[int]:
        """Ack several jobs of one worker in one transaction; returns the ids it still owned and acked.

        The worker uses this to finish jobs that completed together with one commit instead of one
        each (the commit, not the UPDATE, is what costs). Jobs whose lease was lost are left alone.
        """
        checked = [(_id(job_id), None if r is None else _payload(r, field="result")) for job_id, r in items]
        if not checked:
            return []
        now = q.now()
        bare = [job_id for job_id, result in checked if result is None]
        acked: list[int] = []
        with self._tx(durable=False) as conn:
            if bare:
                acked.extend(q.ack_without_result(conn, bare, worker_id, now))
            for job_id, result in checked:
                if result is None:
                    continue
                values = {
                    "status": q.SUCCEEDED,
                    "result": result,
                    "lease_until": None,
                    "finished_at": now,
                    "updated_at": now,
                }
                if q.finish_owned(conn, job_id, worker_id, values) is not None:
                    acked.append(job_id)
        return acked

    def fail(self, job_id: int, worker_id: str, error: str, *, retry: bool = True) -> Job:
        """Record a failure: back to ``queued`` after a backoff, or ``dead`` when out of attempts.

        ``retry=False`` dead-letters at once (unknown kind, bad payload, ``PermanentError``).
        """
        job_id = _id(job_id)
        error = str(error)[-MAX_ERROR_CHARS:]
        now = q.now()
        with self.ctx.db.session() as session:
            current = q.get_job(session, job_id)
            if current is None or current.worker_id != worker_id or current.status != q.RUNNING:
                self._explain_not_owned(session, job_id, worker_id, "fail")
            common = {"last_error": error, "lease_until": None, "updated_at": now}
            if retry and current.attempts < current.max_attempts:
                delay = self.backoff_seconds(current.attempts)
                values = {"status": q.QUEUED, "worker_id": None, "not_before": now + timedelta(seconds=delay)}
            else:
                values = {"status": q.DEAD, "finished_at": now}
            row = q.finish_owned(session, job_id, worker_id, {**common, **values})
            if row is None:  # pragma: no cover - lost the lease between the read and the update
                self._explain_not_owned(session, job_id, worker_id, "fail")
            if row.status == q.DEAD:
                record_event(
                    session,
                    "job.dead",
                    "job",
                    job_id,
                    actor=worker_id,
                    reason=error[-500:],
                    data={"kind": row.kind, "attempts": row.attempts},
                )
            return _job(row)

    def release(self, job_id: int, worker_id: str) -> Job:
        """Give a running job back without counting the attempt (graceful shutdown)."""
        now = q.now()
        values = {
            "status": q.QUEUED,
            "worker_id": None,
            "lease_until": None,
            "not_before": now,
            "updated_at": now,
        }
        with self._tx(durable=False) as conn:
            row = q.finish_owned(conn, _id(job_id), worker_id, values, decrement_attempts=True)
            if row is None:
                self._explain_not_owned(conn, job_id, worker_id, "release")
            return _job(row)

    def backoff_seconds(self, attempts: int) -> float:
        """Delay before retry number ``attempts``: base * 2**(attempts-1), capped, with "equal jitter".

        Half the delay is fixed and half random, so retries of jobs that failed together (a database
        outage) spread out instead of stampeding back at the same instant.
        """
        delay = min(self.backoff_cap, self.backoff_base * 2 ** max(0, attempts - 1))
        return delay / 2 + random.uniform(0, delay / 2)

    def reap(self) -> tuple[int, int]:
        """Requeue (or dead-letter) every running job whose lease has ended; returns (requeued, dead)."""
        requeued = dead = 0
        while True:
            with self._tx() as conn:
                r, d = q.reap_expired(conn, q.now())
            requeued, dead = requeued + r, dead + d
            if r + d < 1000:
                return requeued, dead

    def _maybe_reap(self) -> None:
        now = time.monotonic()
        with self._reap_lock:
            if now < self._next_reap:
                return
            self._next_reap = now + self.reap_interval
        self.reap()

    def _explain_not_owned(self, session: Any, job_id: int, worker_id: str, action: str) -> NoReturn:
        row = q.get_job(session, job_id)
        if row is None:
            raise NotFoundError(f"job {job_id} does not exist; `loopml jobs list` shows the jobs")
        if row.status != q.RUNNING:
            raise ConflictError(
                f"cannot {action} job {job_id}: it is {row.status}, not running "
                f"(its lease ended and it was requeued, finished or cancelled)"
            )
        raise ConflictError(
            f"cannot {action} job {job_id}: worker {worker_id!r} no longer holds it, {row.worker_id!r} does "
            "(the lease expired; heartbeat more often than lease_seconds)"
        )

    # -- inspecting and operating -----------------------------------------------------------------
    def get(self, job_id: int) -> Job:
        """The job, or NotFoundError."""
        job_id = _id(job_id)
        with self.ctx.db.session() as session:
            row = q.get_job(session, job_id)
        if row is None:
            raise NotFoundError(f"job {job_id} does not exist; `loopml jobs list` shows the jobs")
        return _job(row)

    def list(
        self,
        status: str | None = None,
        kind: str | None = None,
        limit: int = 100,
        *,
        queue: str | None = None,
    ) -> list[Job]:
        """Newest jobs first, optionally filtered by status, kind and queue."""
        if status is not None:
            _status(status)
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise ValidationError(f"limit={limit!r}: use an int >= 1")
        with self.ctx.db.session() as session:
            rows = q.list_jobs(session, status=status, kind=kind, queue=queue, limit=limit)
        return [_job(row) for row in rows]

    def stats(self, queue: str | None = None) -> dict[str, int]:
        """Number of jobs per status (every status present, zeros included)."""
        with self.ctx.db.session() as session:
            return q.count_by_status(session, queue)

    def queues(self) -> list[str]:
        """Names of the queues that hold at least one job."""
        with self.ctx.db.session() as session:
            return q.queue_names(session)

    def oldest_age_seconds(self, queue: str = "default", status: str = "queued") -> float | None:
        """Seconds the longest-waiting due job has waited (the queue-age SLO input); None when empty."""
        _status(status)
        now = q.now()
        with self.ctx.db.session() as session:
            since = q.oldest_waiting_since(session, queue, status, now)
        return None if since is None else max(0.0, (now - since).total_seconds())

    def requeue(self, job_id: int, *, actor: str = "system", reason: str | None = None) -> Job:
        """Put a ``dead`` or ``cancelled`` job back in its queue with a fresh attempt budget."""
        job_id = _id(job_id)
        now = q.now()
        values = {
            "status": q.QUEUED,
            "attempts": 0,
            "not_before": now,
            "worker_id": None,
            "lease_until": None,
            "finished_at": None,
            "updated_at": now,
        }
        with self.ctx.db.session() as session:
            row = q.set_status(session, job_id, (q.DEAD, q.CANCELLED), values)
            if row is None:
                self._explain_status(session, job_id, "requeue", "dead or cancelled")
            record_event(session, "job.requeued", "job", job_id, actor=actor, reason=reason)
            return _job(row)

    def cancel(self, job_id: int, *, actor: str = "system", reason: str | None = None) -> Job:
        """Stop a ``queued`` (or ``dead``) job from running; a running job must finish or fail first."""
        job_id = _id(job_id)
        now = q.now()
        values = {"status": q.CANCELLED, "finished_at": now, "updated_at": now}
        with self.ctx.db.session() as session:
            row = q.set_status(session, job_id, (q.QUEUED, q.DEAD), values)
            if row is None:
                self._explain_status(session, job_id, "cancel", "queued or dead")
            record_event(session, "job.cancelled", "job", job_id, actor=actor, reason=reason)
            return _job(row)

    def _explain_status(self, session: Any, job_id: int, action: str, allowed: str) -> NoReturn:
        row = q.get_job(session, job_id)
        if row is None:
            raise NotFoundError(f"job {job_id} does not exist; `loopml jobs list` shows the jobs")
        raise ConflictError(f"cannot {action} job {job_id}: it is {row.status}; only {allowed} jobs can be")


def _insert_job(
    conn: Any, values: dict[str, Any], kind: str, payload: dict[str, Any], idempotency_key: str | None
) -> Any:
    """Insert the job on ``conn`` (no commit); a repeated idempotency key returns the existing row.

    ``insert_job`` is ``ON CONFLICT DO NOTHING``, so a duplicate key never raises a database error
    that would abort the caller's transaction when ``conn`` belongs to a caller's session.
    """
    row = q.insert_job(conn, values)
    if row is None and idempotency_key is not None:
        row = q.get_by_idempotency_key(conn, idempotency_key)
        if row is not None and (row.kind != kind or row.payload != payload):
            raise ConflictError(
                f"idempotency_key {idempotency_key!r} already belongs to job {row.id} "
                f"(kind {row.kind!r}, payload {row.payload!r}); use a new key for different work"
            )
    if row is None:  # pragma: no cover - a key row deleted between insert and read
        raise ConflictError(f"idempotency_key {idempotency_key!r}: concurrent change, retry the enqueue")
    return row


# -- input checks -------------------------------------------------------------------------------
def _name(field: str, value: Any, max_len: int) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValidationError(f"{field}={value!r}: use a non-empty string")
    if len(value) > max_len:
        raise ValidationError(f"{field} is {len(value)} characters long; the limit is {max_len}")
    return value


def _payload(value: Any, field: str = "payload") -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ValidationError(f"{field} must be a dict of JSON values, got {type(value).__name__}")
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ValidationError(
            f"{field} is not JSON-serialisable ({exc}); pass ids and plain values, not objects"
        ) from None
    return value


def _id(job_id: Any) -> int:
    if isinstance(job_id, bool) or not isinstance(job_id, int):
        raise ValidationError(f"job_id={job_id!r}: use the integer id shown by `loopml jobs list`")
    return job_id


def _lease(seconds: Any) -> timedelta:
    if isinstance(seconds, bool) or not isinstance(seconds, int | float) or not 0 < seconds <= 86400:
        raise ValidationError(f"lease_seconds={seconds!r}: use a number of seconds between 0 and 86400")
    return timedelta(seconds=seconds)


def _status(status: str) -> None:
    if status not in STATUSES:
        raise ValidationError(f"status={status!r}: use one of {', '.join(STATUSES)}")
