"""``AsyncRequests`` (``lm.async_requests``): submit, transition and query asynchronous requests.

The guarantees, and how each is bought:

- **Accepted work is durable.** ``submit`` writes the input bytes to the content-addressed artifact
  store first (a crash there leaves at most an orphan blob, never a request without its input), then
  ONE transaction inserts the request, its tags and its queue job. When ``submit`` returns, a
  worker will process it even if every process dies the next instant.
- **One decision per request.** ``transition`` is a compare-and-set on ``status`` in the UPDATE
  itself; a second worker re-running a job after a crash, or a human deciding at the same moment,
  gets a ``ConflictError`` naming the current status instead of overwriting the first decision.
- **One notification per decision.** A transition's ``notification`` is stored by
  ``lm.notify.notify(..., session=)`` in the same transaction, keyed by the caller's idempotency
  key: it exists if and only if the transition committed.
"""

from __future__ import annotations

import builtins
import uuid
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from loopml.checks import check_keys
from loopml.context import Context
from loopml.errors import ConflictError, NotFoundError, ValidationError
from loopml.serving.asynchronous import checks
from loopml.serving.asynchronous.records import AsyncRequest, request_from_row
from loopml.storage.metadata import async_requests as ar
from loopml.storage.metadata.base import utcnow
from loopml.storage.metadata.core import record_event
from loopml.storage.queue import JobQueue

SUBJECT = "async_request"
EVENT_SUBMITTED = "async_request.submitted"
EVENT_TRANSITION = "async_request.transition"
NOTIFICATION_KEYS = ("key", "topic", "title", "body", "recipient", "data")


class AsyncRequests:
    """The asynchronous-request service. Stateless apart from the context: one instance serves all
    threads of a process (API handlers and worker threads alike)."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self._jobs = JobQueue(ctx)

    # ------------------------------------------------------------------ writing
    def submit(
        self,
        kind: str,
        *,
        data: bytes | None = None,
        input_digest: str | None = None,
        meta: dict[str, Any] | None = None,
        tags: Sequence[str] = (),
        fingerprint: str | None = None,
        job_kind: str | None,
        queue: str = "default",
        status: str = "queued",
        priority: int = 0,
        max_attempts: int = 5,
        actor: str = "system",
        result: dict[str, Any] | None = None,
        error: str | None = None,
        final: bool = False,
        notification: dict[str, Any] | None = None,
        request_id: str | None = None,
    ) -> AsyncRequest:
        """Accept a request; when this returns, it is committed together with its job.

        ``job_kind=None`` stores a request that is decided already (e.g. a re-upload of rejected
        content): no job, ``final=True`` sets ``finished_at``, ``result``/``error``/``notification``
        are stored as by ``transition``. ``request_id`` (32 hex) lets a caller name the request up
        front (to key its notification); a taken id is a ``ConflictError``. Give the input as ``data`` (stored in the artifact store)
        or as an ``input_digest`` that is already there, or neither.
        """
        kind = checks.ident("kind", kind, ar.KIND_MAX)
        status = checks.ident("status", status, ar.STATUS_MAX)
        if job_kind is not None:
            checks.ident("job_kind", job_kind, 128)
        if data is not None and input_digest is not None:
            raise ValidationError("give data or input_digest, not both", field="data")
        if data is not None and not isinstance(data, bytes | bytearray | memoryview):
            raise ValidationError(f"data must be bytes; got {type(data).__name__}", field="data")
        if input_digest is not None:
            input_digest = checks.digest(input_digest)
            if not self.ctx.artifacts.exists(input_digest):
                raise NotFoundError(
                    f"input_digest {input_digest} is not in the artifact store; store it first with put_bytes",
                    field="input_digest",
                )
        meta = checks.json_object("meta", meta)
        tag_list = checks.tags(tags)
        fingerprint = checks.optional_text("fingerprint", fingerprint, ar.FINGERPRINT_MAX)
        actor = checks.optional_text("actor", actor, ar.ACTOR_MAX) or "system"
        result = checks.json_object("result", result, allow_none=True)
        error = checks.optional_text("error", error, checks.ERROR_MAX)
        note = self._notification(notification)
        if data is not None:  # before the transaction: a crash here leaves only an unreferenced blob
            input_digest = self.ctx.artifacts.put_bytes(bytes(data))
        request_id = uuid.uuid4().hex if request_id is None else checks.request_id(request_id)
        now = utcnow()
        values = {
            "id": request_id,
            "kind": kind,
            "status": status,
            "input_digest": input_digest,
            "fingerprint": fingerprint,
            "meta": meta,
            "result": result,
            "error": error,
            "revision": 1,
            "job_id": None,
            "created_at": now,
            "updated_at": now,
            "finished_at": now if final else None,
            "decided_by": actor if final else None,
        }
        with self.ctx.db.session() as session:
            if ar.get_request(session, request_id) is not None:
                raise ConflictError(
                    f"request {request_id} exists already; submit without request_id", field="id"
                )
            ar.insert_request(session, values, tag_list)
            if job_kind is not None:
                job = self._jobs.enqueue(
                    job_kind,
                    {"request_id": request_id},
                    queue=queue,
                    idempotency_key=f"async:{request_id}",
                    priority=priority,
                    max_attempts=max_attempts,
                    session=session,
                )
                ar.set_job(session, request_id, job.id)
                values["job_id"] = job.id
            record_event(
                session,
                EVENT_SUBMITTED,
                SUBJECT,
                request_id,
                actor=actor,
                data={"kind": kind, "status": status},
            )
            if note is not None:
                self._notify(session, note)
            row = ar.get_request(session, request_id)
        return request_from_row(row, sorted(tag_list))

    def transition(
        self,
        request_id: str,
        *,
        expected: str | Sequence[str],
        status: str,
        result: dict[str, Any] | None = None,
        error: str | None = None,
        final: bool = False,
        actor: str = "system",
        notification: dict[str, Any] | None = None,
    ) -> AsyncRequest:
        """Move a request from one of ``expected`` to ``status`` (compare-and-set), with its result
        and, in the same transaction, its notification.

        A request not in ``expected`` is a ``ConflictError`` naming its current status: the caller
        (a re-run job, a second reviewer) learns that someone else decided first. ``final`` stamps
        ``finished_at``; ``actor`` is recorded as ``decided_by`` and in the audit event.
        """
        request_id = checks.request_id(request_id)
        expected_list = checks.statuses("expected", expected)
        status = checks.ident("status", status, ar.STATUS_MAX)
        result = checks.json_object("result", result, allow_none=True)
        error = checks.optional_text("error", error, checks.ERROR_MAX)
        actor = checks.optional_text("actor", actor, ar.ACTOR_MAX) or "system"
        note = self._notification(notification)
        now = utcnow()
        values: dict[str, Any] = {"status": status, "updated_at": now, "decided_by": actor}
        if result is not None:
            values["result"] = result
        if error is not None:
            values["error"] = error
        if final:
            values["finished_at"] = now
        with self.ctx.db.session() as session:
            if not ar.compare_and_set(session, request_id, expected_list, values):
                row = ar.get_request(session, request_id)
                if row is None:
                    raise self._not_found(request_id)
                raise ConflictError(
                    f"request {request_id} is {row.status!r}, not {' or '.join(map(repr, expected_list))}; "
                    "it was decided already (or changed under you): reload it",
                    field="status",
                )
            row = ar.get_request(session, request_id)
            record_event(
                session,
                EVENT_TRANSITION,
                SUBJECT,
                request_id,
                actor=actor,
                data={"from": expected_list, "to": status, "revision": row.revision},
            )
            if note is not None:
                self._notify(session, note)
            tags = ar.tags_for(session, [request_id])[request_id]
        return request_from_row(row, tags)

    # ------------------------------------------------------------------ reading
    def get(self, request_id: str) -> AsyncRequest:
        request_id = checks.request_id(request_id)
        with self.ctx.db.session() as session:
            row = ar.get_request(session, request_id)
            if row is None:
                raise self._not_found(request_id)
            tags = ar.tags_for(session, [request_id])[request_id]
        return request_from_row(row, tags)

    def list(
        self,
        kind: str,
        *,
        status: str | Sequence[str] | None = None,
        tag: str | None = None,
        before: datetime | str | None = None,
        before_id: str | None = None,
        limit: int = 50,
    ) -> builtins.list[AsyncRequest]:
        """Requests of ``kind``, newest first (a timeline, a review queue). Page on with
        ``before=<last item's created_at>`` (plus ``before_id=<its id>`` when ties are possible)."""
        kind = checks.ident("kind", kind, ar.KIND_MAX)
        if status is not None:
            status = checks.statuses("status", status)
        if tag is not None:
            tag = checks.tags([tag])[0]
        moment = checks.before(before)
        if before_id is not None:
            before_id = checks.request_id(before_id)
            if moment is None:
                raise ValidationError(
                    "before_id needs before (the created_at of the same item)", field="before_id"
                )
        limit = checks.integer("limit", limit, 1, checks.LIMIT_MAX)
        with self.ctx.db.session() as session:
            rows = ar.list_requests(
                session, kind, status=status, tag=tag, before=moment, before_id=before_id, limit=limit
            )
            tags = ar.tags_for(session, [row.id for row in rows])
        return [request_from_row(row, tags[row.id]) for row in rows]

    def counts(self, kind: str) -> dict[str, int]:
        """Requests of ``kind`` per status (only statuses that occur)."""
        kind = checks.ident("kind", kind, ar.KIND_MAX)
        with self.ctx.db.session() as session:
            return ar.count_by_status(session, kind)

    def fingerprints(self, kind: str, *, status: str) -> builtins.list[tuple[str, str]]:
        """``(id, fingerprint)`` of the requests of ``kind`` in ``status``, oldest first (e.g. the
        perceptual hashes of rejected uploads, to catch re-uploads)."""
        kind = checks.ident("kind", kind, ar.KIND_MAX)
        status = checks.ident("status", status, ar.STATUS_MAX)
        with self.ctx.db.session() as session:
            return ar.fingerprints(session, kind, status)

    def oldest_age_seconds(self, kind: str, status: str) -> float | None:
        """Age of the oldest request of ``kind`` still in ``status`` (the queue-age SLO signal);
        None when there is none."""
        kind = checks.ident("kind", kind, ar.KIND_MAX)
        status = checks.ident("status", status, ar.STATUS_MAX)
        with self.ctx.db.session() as session:
            oldest = ar.oldest_created(session, kind, status)
        return None if oldest is None else max(0.0, (utcnow() - oldest).total_seconds())

    def input_bytes(self, request_id: str) -> bytes:
        """The request's input, verified against its digest."""
        return self.ctx.artifacts.get_bytes(self._digest(request_id))

    def input_path(self, request_id: str) -> Path:
        """A local file with the request's input (the stored blob itself on a local artifact store)."""
        return self.ctx.artifacts.local_path(self._digest(request_id))

    # ------------------------------------------------------------------ helpers
    def _digest(self, request_id: str) -> str:
        request = self.get(request_id)
        if request.input_digest is None:
            raise NotFoundError(f"request {request_id} has no stored input", field="id")
        return request.input_digest

    @staticmethod
    def _notification(note: Any) -> dict[str, Any] | None:
        if note is None:
            return None
        if not isinstance(note, dict):
            raise ValidationError(
                "notification must be a dict of lm.notify.notify arguments (key, topic, title, body, recipient, data)",
                field="notification",
            )
        check_keys(note, NOTIFICATION_KEYS, where="notification", required=("key", "topic", "title"))
        return note

    def _notify(self, session: Any, note: dict[str, Any]) -> None:
        from loopml.notify import Notifier  # the notifier joins this session: same commit or none

        fields = dict(note)
        key = fields.pop("key")
        Notifier(self.ctx).notify(key, session=session, **fields)

    @staticmethod
    def _not_found(request_id: str) -> NotFoundError:
        return NotFoundError(f"request {request_id} does not exist", field="id")
