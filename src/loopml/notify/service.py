"""``Notifier`` (``lm.notify``): webhooks, notifications stored once per key, and their deliveries.

A notification and its deliveries' queue jobs commit in one transaction (the caller's, with
``session=``), so "this decision was made" and "someone will be told" cannot disagree: a
rollback leaves neither, a commit leaves both, and the ``notify.deliver`` jobs carry the sending
through worker crashes and receiver outages with the queue's retries and backoff.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from loopml.context import Context
from loopml.errors import ConflictError, NotFoundError, did_you_mean
from loopml.notify import checks, delivery, formats
from loopml.notify.records import (
    Delivery,
    Notification,
    Webhook,
    aware,
    delivery_from_row,
    notification_from_row,
    webhook_from_row,
)
from loopml.storage.metadata import notify as n
from loopml.storage.metadata.base import utcnow
from loopml.storage.metadata.core import record_event
from loopml.storage.queue import JobQueue

JOB_KIND = "notify.deliver"
QUEUE = "notify"
#: With the queue's backoff (1 s doubling, half of it jitter) eight attempts span 1 to 2 minutes:
#: enough for a receiver's restart; longer outages end ``failed`` and are resent with ``retry``.
MAX_ATTEMPTS = 8
TEST_TOPIC = "webhook.test"
_UNSET: Any = object()


class Notifier:
    """The notification service. Stateless apart from the context, so one instance serves all threads."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.jobs = JobQueue(ctx)

    @contextmanager
    def _session(self, session: Any = None) -> Iterator[Any]:
        """The caller's session (join its transaction) or a new unit of work."""
        if session is not None:
            yield session
            return
        with self.ctx.db.session() as own:
            yield own

    # -- webhooks ---------------------------------------------------------------------------------
    def add_webhook(
        self,
        name: str,
        url: str,
        *,
        format: str = n.FORMAT_JSON,
        topics: Sequence[str] = (n.ALL_TOPICS,),
        secret: str | None = None,
        actor: str = "system",
    ) -> Webhook:
        """Register a receiver for notifications whose topic starts with one of ``topics``."""
        name = checks.webhook_name(name)
        values = {
            "name": name,
            "url": checks.url(url),
            "format": checks.webhook_format(format),
            "topics": checks.topics(topics),
            "secret": checks.secret(secret),
            "active": True,
        }
        actor = checks.line("actor", actor, checks.ACTOR_MAX)
        now = utcnow()
        with self.ctx.db.session() as session:
            row = n.insert_webhook(session, {**values, "created_at": now, "updated_at": now})
            if row is None:
                raise ConflictError(
                    f"webhook {name!r} exists already; change it with update_webhook "
                    "(`loopml webhooks update`) or pick another name",
                    field="name",
                )
            self._audit(session, "webhook.added", name, actor, row)
        return webhook_from_row(row)

    def update_webhook(
        self,
        name: str,
        *,
        url: str | None = None,
        format: str | None = None,
        topics: Sequence[str] | None = None,
        secret: str | None = _UNSET,
        active: bool | None = None,
        actor: str = "system",
    ) -> Webhook:
        """Change what is given. ``secret=None`` removes the signature; leaving it out keeps it."""
        name = checks.webhook_name(name)
        values: dict[str, Any] = {}
        if url is not None:
            values["url"] = checks.url(url)
        if format is not None:
            values["format"] = checks.webhook_format(format)
        if topics is not None:
            values["topics"] = checks.topics(topics)
        if secret is not _UNSET:
            values["secret"] = checks.secret(secret)
        if active is not None:
            values["active"] = checks.flag("active", active)
        actor = checks.line("actor", actor, checks.ACTOR_MAX)
        with self.ctx.db.session() as session:
            row = n.update_webhook(session, name, {**values, "updated_at": utcnow()})
            if row is None:
                raise self._unknown_webhook(session, name)
            self._audit(session, "webhook.updated", name, actor, row, changed=sorted(values))
        return webhook_from_row(row)

    def remove_webhook(self, name: str, *, actor: str = "system") -> None:
        """Delete a webhook and its delivery history (pending deliveries are dropped, not sent)."""
        name = checks.webhook_name(name)
        actor = checks.line("actor", actor, checks.ACTOR_MAX)
        with self.ctx.db.session() as session:
            row = n.delete_webhook(session, name)
            if row is None:
                raise self._unknown_webhook(session, name)
            self._audit(session, "webhook.removed", name, actor, row)

    def get_webhook(self, name: str) -> Webhook:
        name = checks.webhook_name(name)
        with self.ctx.db.session() as session:
            row = n.get_webhook(session, name)
            if row is None:
                raise self._unknown_webhook(session, name)
        return webhook_from_row(row)

    def list_webhooks(self) -> list[Webhook]:
        with self.ctx.db.session() as session:
            return [webhook_from_row(row) for row in n.list_webhooks(session)]

    # -- notifications ----------------------------------------------------------------------------
    def notify(
        self,
        key: str,
        *,
        topic: str,
        title: str,
        body: str = "",
        recipient: str = "",
        data: dict[str, Any] | None = None,
        session: Any = None,
    ) -> Notification:
        """Store the notification for ``key`` once, ever, and queue a delivery per matching webhook.

        A repeated key returns the stored notification and sends nothing again, so a caller that
        may run twice (a retried job) can call this unconditionally. With ``session`` everything
        joins the caller's transaction and commits or rolls back with the caller's own change.
        """
        values = {
            "key": checks.line("key", key, n.KEY_MAX),
            "topic": checks.topic(topic),
            "title": checks.text("title", title, n.TITLE_MAX, required=True),
            "body": checks.text("body", body, checks.BODY_MAX),
            "recipient": checks.line("recipient", recipient, n.RECIPIENT_MAX, required=False),
            "data": checks.data(data),
        }
        with self._session(session) as s:
            notification, _ = self._store(s, values, webhooks=None)
        return notification

    def _store(
        self, session: Any, values: dict[str, Any], *, webhooks: list[Webhook] | None, enqueue: bool = True
    ) -> tuple[Notification, list[int]]:
        """Insert the notification and, if it is new, its deliveries (+ jobs); returns the delivery ids."""
        now = utcnow()
        row = n.insert_notification(session, {**values, "created_at": now, "read_at": None})
        if row is None:
            existing = n.get_notification_by_key(session, values["key"])
            return notification_from_row(existing), []
        notification = notification_from_row(row)
        if webhooks is None:
            webhooks = [webhook_from_row(w) for w in n.list_webhooks(session, active=True)]
            webhooks = [w for w in webhooks if w.matches(notification.topic)]
        ids = []
        for webhook in webhooks:
            delivery_id = n.insert_delivery(session, notification.id, webhook.id, now)
            if delivery_id is None:  # pragma: no cover - the notification was inserted just now
                continue
            if enqueue:
                self._enqueue(session, delivery_id)
            ids.append(delivery_id)
        return notification, ids

    def _enqueue(self, session: Any, delivery_id: int, suffix: str = "") -> None:
        job = self.jobs.enqueue(
            JOB_KIND,
            {"delivery_id": delivery_id},
            queue=QUEUE,
            idempotency_key=f"{JOB_KIND}:{delivery_id}{suffix}",
            max_attempts=MAX_ATTEMPTS,
            session=session,
        )
        n.update_delivery(session, delivery_id, {"job_id": job.id})

    def notifications(
        self,
        *,
        recipient: str | None = None,
        topic: str | None = None,
        unread: bool | None = None,
        limit: int = 100,
    ) -> list[Notification]:
        """Newest first; ``topic`` is a prefix (``alert.`` finds opened and resolved alerts)."""
        if recipient is not None:
            recipient = checks.line("recipient", recipient, n.RECIPIENT_MAX, required=False)
        if topic is not None:
            topic = checks.topic(topic)
        unread = checks.optional_flag("unread", unread)
        limit = checks.limit(limit)
        with self.ctx.db.session() as session:
            rows = n.list_notifications(session, recipient=recipient, topic=topic, unread=unread, limit=limit)
        return [notification_from_row(row) for row in rows]

    def get(self, notification_id: int) -> Notification:
        notification_id = checks.record_id("notification_id", notification_id, "`loopml notifications list`")
        with self.ctx.db.session() as session:
            row = n.get_notification(session, notification_id)
        if row is None:
            raise self._unknown_notification(notification_id)
        return notification_from_row(row)

    def mark_read(self, notification_id: int) -> Notification:
        """Mark read (idempotent: the first read time is kept)."""
        notification_id = checks.record_id("notification_id", notification_id, "`loopml notifications list`")
        with self.ctx.db.session() as session:
            row = n.mark_read(session, notification_id, utcnow())
        if row is None:
            raise self._unknown_notification(notification_id)
        return notification_from_row(row)

    # -- deliveries -------------------------------------------------------------------------------
    def deliveries(
        self, *, status: str | None = None, notification_id: int | None = None, limit: int = 100
    ) -> list[Delivery]:
        """Newest first, optionally only one status or one notification's deliveries."""
        if status is not None:
            status = checks.delivery_status(status)
        if notification_id is not None:
            notification_id = checks.record_id(
                "notification_id", notification_id, "`loopml notifications list`"
            )
        limit = checks.limit(limit)
        with self.ctx.db.session() as session:
            rows = n.list_deliveries(session, status=status, notification_id=notification_id, limit=limit)
        return [delivery_from_row(row) for row in rows]

    def get_delivery(self, delivery_id: int) -> Delivery:
        delivery_id = checks.record_id("delivery_id", delivery_id, "`loopml webhooks deliveries`")
        with self.ctx.db.session() as session:
            row = n.get_delivery(session, delivery_id)
        if row is None:
            raise self._unknown_delivery(delivery_id)
        return delivery_from_row(row)

    def retry(self, delivery_id: int, *, actor: str = "system") -> Delivery:
        """Send a failed delivery again: back to pending with a new queue job, in one transaction."""
        delivery_id = checks.record_id("delivery_id", delivery_id, "`loopml webhooks deliveries`")
        actor = checks.line("actor", actor, checks.ACTOR_MAX)
        with self.ctx.db.session() as session:
            changed = n.update_delivery(
                session,
                delivery_id,
                {"status": n.PENDING, "updated_at": utcnow()},
                from_status=(n.FAILED,),
            )
            if not changed:
                row = n.get_delivery(session, delivery_id)
                if row is None:
                    raise self._unknown_delivery(delivery_id)
                raise ConflictError(
                    f"delivery {delivery_id} is {row.status}; only failed deliveries can be retried "
                    "(pending ones are still being tried by the queue)",
                    field="delivery_id",
                )
            self._enqueue(session, delivery_id, suffix=f":retry:{uuid.uuid4().hex[:12]}")
            record_event(session, "webhook.delivery_retried", "webhook_delivery", delivery_id, actor=actor)
            row = n.get_delivery(session, delivery_id)
        return delivery_from_row(row)

    def deliver_now(self, delivery_id: int, *, last_attempt: bool = False) -> Delivery:
        """Make one send attempt now and record it; a delivered delivery is never sent again.

        The POST happens outside any database transaction (a slow receiver must not hold a
        lock). Returns the delivery as recorded: ``delivered``; ``failed`` when the receiver
        refused it for good (or ``last_attempt`` and it failed); else still ``pending`` with
        ``last_error`` (the ``notify.deliver`` job then raises so the queue retries). A crash
        after the POST and before the record means one resend: receivers dedupe on
        ``Idempotency-Key``.
        """
        delivery_id = checks.record_id("delivery_id", delivery_id, "`loopml webhooks deliveries`")
        with self.ctx.db.session() as session:
            target = n.delivery_target(session, delivery_id)
        if target is None:
            raise self._unknown_delivery(delivery_id)
        if target.status == n.DELIVERED:
            return self.get_delivery(delivery_id)
        if not target.active:
            outcome = delivery.Outcome(
                False, False, None, f"webhook {target.webhook!r} is inactive; activate it, then retry"
            )
        else:
            try:
                body = formats.render(
                    target.format,
                    key=target.key,
                    topic=target.topic,
                    title=target.title,
                    body=target.body,
                    recipient=target.recipient,
                    data=target.data or {},
                    created_at=aware(target.created_at),
                )
            except ValueError as exc:
                outcome = delivery.Outcome(False, False, None, f"{exc}; fix the webhook format")
            else:
                headers = formats.headers(
                    key=target.key,
                    webhook=target.webhook,
                    topic=target.topic,
                    body=body,
                    secret=target.secret,
                )
                outcome = delivery.post(target.url, body, headers)
        self._record(delivery_id, outcome, last_attempt=last_attempt)
        return self.get_delivery(delivery_id)

    def _record(self, delivery_id: int, outcome: delivery.Outcome, *, last_attempt: bool) -> None:
        now = utcnow()
        if outcome.ok:
            # last_error is kept: "delivered on attempt 3 after HTTP 503" is worth seeing
            values: dict[str, Any] = {"status": n.DELIVERED, "delivered_at": now}
        elif outcome.retryable and not last_attempt:
            values = {"status": n.PENDING, "last_error": outcome.error}
        else:
            reason = (
                outcome.error if not outcome.retryable else f"gave up after the last attempt: {outcome.error}"
            )
            values = {"status": n.FAILED, "last_error": reason}
        values["response_status"] = outcome.response_status
        with self.ctx.db.session() as session:
            n.record_attempt(session, delivery_id, values, now=now)

    def test_webhook(self, name: str, *, actor: str = "system") -> Delivery:
        """Send a test notification to one webhook now (whatever its topics) and return the outcome.

        One attempt, no queue job: an operator testing a URL wants the answer, not retries. A
        failure is recorded as ``failed`` and can be sent again with ``retry``.
        """
        webhook = self.get_webhook(name)
        actor = checks.line("actor", actor, checks.ACTOR_MAX)
        values = {
            "key": f"{TEST_TOPIC}:{webhook.name}:{uuid.uuid4().hex}",
            "topic": TEST_TOPIC,
            "title": f"Test notification for webhook {webhook.name}",
            "body": f"Sent by {actor} to check that {webhook.url} receives loopml notifications.",
            "recipient": "",
            "data": {"webhook": webhook.name, "actor": actor},
        }
        with self.ctx.db.session() as session:
            _, ids = self._store(session, values, webhooks=[webhook], enqueue=False)
        return self.deliver_now(ids[0], last_attempt=True)

    # -- helpers ----------------------------------------------------------------------------------
    @staticmethod
    def _audit(session: Any, kind: str, name: str, actor: str, row: Any, **extra: Any) -> None:
        data = {"url": row.url, "format": row.format, "topics": row.topics, "active": row.active, **extra}
        record_event(session, kind, "webhook", name, actor=actor, data=data)

    @staticmethod
    def _unknown_webhook(session: Any, name: str) -> NotFoundError:
        hint = did_you_mean(name, n.webhook_names(session))
        return NotFoundError(f"webhook {name!r} does not exist.{hint}", field="name")

    @staticmethod
    def _unknown_notification(notification_id: int) -> NotFoundError:
        return NotFoundError(
            f"notification {notification_id} does not exist; `loopml notifications list` shows them",
            field="notification_id",
        )

    @staticmethod
    def _unknown_delivery(delivery_id: int) -> NotFoundError:
        return NotFoundError(
            f"webhook delivery {delivery_id} does not exist; `loopml webhooks deliveries` shows them",
            field="delivery_id",
        )
