"""Asynchronous-inference requests (e.g. moderation uploads): one row per request, plus its tags.

Why these shapes:

- ``id`` is a uuid hex string handed to the client at submit time, before any worker touches the
  request, so the client can poll it and a retried submit cannot be confused with another one.
- ``status`` and ``revision`` sit on the row: every change is ``UPDATE ... WHERE id = :id AND
  revision = :seen`` (compare-and-set), so a worker finishing a request and a human deciding on it
  at the same instant cannot both win. ``decided_by`` records who made a human decision.
- ``input_digest`` points at the input in the artifact store (content-addressed), never the bytes;
  ``fingerprint`` is a caller-chosen dedup key (e.g. a perceptual hash), indexed with ``kind`` so
  "have we seen this before?" is one index lookup.
- ``result`` is SQL NULL until there is a result (``NullableJSON``), so "not answered yet" is a
  plain ``IS NULL`` in SQL.
- ``job_id`` is the queue job that processes the request, with no foreign key: jobs are pruned on
  their own schedule and a request's history must outlive its job.
- Tags are a separate table keyed ``(request_id, tag)`` with an index on ``(tag, request_id)``:
  "requests tagged X" is an index range scan, which a JSON list could not give on SQLite.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, Integer, String, Text, and_, func, insert, or_, select, update
from sqlalchemy.orm import Mapped, mapped_column

from loopml.storage.metadata.base import Base, BigId, JSONType, UTCDateTime, utcnow
from loopml.storage.metadata.inference import NullableJSON

QUEUED = "queued"
RUNNING = "running"
NEEDS_REVIEW = "needs_review"
SUCCEEDED = "succeeded"
FAILED = "failed"
CANCELLED = "cancelled"
REQUEST_STATUSES = (QUEUED, RUNNING, NEEDS_REVIEW, SUCCEEDED, FAILED, CANCELLED)
#: Statuses a request never leaves on its own.
FINAL_STATUSES = (SUCCEEDED, FAILED, CANCELLED)

#: Column limits, shared with the service's input checks so both fail the same way.
ID_LEN = 32
KIND_MAX = 64
STATUS_MAX = 32
DIGEST_MAX = 80
FINGERPRINT_MAX = 64
ACTOR_MAX = 200
TAG_MAX = 64


class AsyncRequestRow(Base):
    __tablename__ = "async_requests"
    __table_args__ = (
        Index("ix_async_requests_kind_status_created", "kind", "status", "created_at"),
        Index("ix_async_requests_kind_created", "kind", "created_at"),
        Index("ix_async_requests_kind_fingerprint", "kind", "fingerprint"),
    )

    id: Mapped[str] = mapped_column(String(ID_LEN), primary_key=True)
    kind: Mapped[str] = mapped_column(String(KIND_MAX), nullable=False)
    status: Mapped[str] = mapped_column(String(STATUS_MAX), nullable=False, default=QUEUED)
    input_digest: Mapped[str | None] = mapped_column(String(DIGEST_MAX))
    fingerprint: Mapped[str | None] = mapped_column(String(FINGERPRINT_MAX))
    meta: Mapped[dict[str, Any]] = mapped_column(JSONType, nullable=False, default=dict)
    result: Mapped[Any] = mapped_column(NullableJSON, nullable=True)
    error: Mapped[str | None] = mapped_column(Text)
    revision: Mapped[int] = mapped_column(Integer, nullable=False, default=1)
    job_id: Mapped[int | None] = mapped_column(BigId)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    decided_by: Mapped[str | None] = mapped_column(String(ACTOR_MAX))


class AsyncRequestTagRow(Base):
    __tablename__ = "async_request_tags"
    __table_args__ = (Index("ix_async_request_tags_tag_request", "tag", "request_id"),)

    request_id: Mapped[str] = mapped_column(
        String(ID_LEN), ForeignKey("async_requests.id", ondelete="CASCADE"), primary_key=True
    )
    tag: Mapped[str] = mapped_column(String(TAG_MAX), primary_key=True)


# ---------------------------------------------------------------------------------------------
# Queries (used by ``loopml.serving.asynchronous``). Core statements, no ORM identity map: every
# function takes the caller's session so a request, its tags, its job and its notification commit
# in one transaction.

_R = AsyncRequestRow.__table__
_TAGS = AsyncRequestTagRow.__table__
#: Columns returned by every query, in a fixed order (the service maps them to ``AsyncRequest``).
COLUMNS = tuple(_R.c)


def insert_request(session: Any, values: dict[str, Any], tags: Sequence[str]) -> None:
    """Insert one request row and its tags (the caller commits)."""
    conn = session.connection()
    conn.execute(insert(_R).values(**values))
    if tags:
        conn.execute(insert(_TAGS), [{"request_id": values["id"], "tag": tag} for tag in tags])


def set_job(session: Any, request_id: str, job_id: int) -> None:
    session.connection().execute(update(_R).where(_R.c.id == request_id).values(job_id=job_id))


def compare_and_set(session: Any, request_id: str, expected: Sequence[str], values: dict[str, Any]) -> bool:
    """``UPDATE ... WHERE id = :id AND status IN (:expected)``, revision + 1; True when it matched.

    The status check is in the statement, not read before it: on PostgreSQL a concurrent writer
    blocks on the row lock and then re-checks the WHERE clause, on SQLite writers are serialised,
    so two deciders can never both move the same request.
    """
    stmt = (
        update(_R)
        .where(_R.c.id == request_id, _R.c.status.in_(list(expected)))
        .values(revision=_R.c.revision + 1, **values)
    )
    return session.connection().execute(stmt).rowcount == 1


def get_request(session: Any, request_id: str) -> Any:
    return session.connection().execute(select(*COLUMNS).where(_R.c.id == request_id)).first()


def tags_for(session: Any, request_ids: Sequence[str]) -> dict[str, list[str]]:
    """Tags of each request id, sorted (one query for a whole page of requests)."""
    out: dict[str, list[str]] = {rid: [] for rid in request_ids}
    if not request_ids:
        return out
    stmt = select(_TAGS.c.request_id, _TAGS.c.tag).where(_TAGS.c.request_id.in_(list(request_ids)))
    for rid, tag in session.connection().execute(stmt):
        out[rid].append(tag)
    for tags in out.values():
        tags.sort()
    return out


def list_requests(
    session: Any,
    kind: str,
    *,
    status: str | Sequence[str] | None = None,
    tag: str | None = None,
    before: datetime | None = None,
    before_id: str | None = None,
    limit: int = 50,
) -> list[Any]:
    """Requests of ``kind``, newest first; ``before`` (and ``before_id`` to break ties on the same
    timestamp) continue a page from the last row of the previous one (keyset paging: a page costs
    the same at the end of the timeline as at its start, and new uploads do not shift it)."""
    stmt = select(*COLUMNS).where(_R.c.kind == kind)
    if status is not None:
        statuses = [status] if isinstance(status, str) else list(status)
        stmt = stmt.where(_R.c.status.in_(statuses))
    if tag is not None:
        stmt = stmt.join(_TAGS, and_(_TAGS.c.request_id == _R.c.id, _TAGS.c.tag == tag))
    if before is not None:
        if before_id is None:
            stmt = stmt.where(_R.c.created_at < before)
        else:
            stmt = stmt.where(
                or_(_R.c.created_at < before, and_(_R.c.created_at == before, _R.c.id < before_id))
            )
    stmt = stmt.order_by(_R.c.created_at.desc(), _R.c.id.desc()).limit(limit)
    return list(session.connection().execute(stmt))


def count_by_status(session: Any, kind: str) -> dict[str, int]:
    stmt = select(_R.c.status, func.count()).where(_R.c.kind == kind).group_by(_R.c.status)
    return {status: int(n) for status, n in session.connection().execute(stmt)}


def fingerprints(session: Any, kind: str, status: str) -> list[tuple[str, str]]:
    """``(id, fingerprint)`` of every request of ``kind`` in ``status`` that has a fingerprint."""
    stmt = (
        select(_R.c.id, _R.c.fingerprint)
        .where(_R.c.kind == kind, _R.c.status == status, _R.c.fingerprint.is_not(None))
        .order_by(_R.c.created_at)
    )
    return [(rid, fp) for rid, fp in session.connection().execute(stmt)]


def oldest_created(session: Any, kind: str, status: str) -> datetime | None:
    stmt = select(func.min(_R.c.created_at)).where(_R.c.kind == kind, _R.c.status == status)
    value = session.connection().execute(stmt).scalar()
    if isinstance(value, str):  # SQLite aggregates lose the column type
        value = datetime.fromisoformat(value)
    return UTCDateTime().process_result_value(value, None)
