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

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, Integer, String, Text
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
