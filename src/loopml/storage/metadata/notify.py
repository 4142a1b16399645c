"""Notification tables: webhooks, notifications and one delivery row per (notification, webhook).

Why these shapes:

- ``notifications.key`` is unique and never reused: a notifier that runs twice for the same event
  (a retried job, two processes reacting to one alert) inserts with ``ON CONFLICT DO NOTHING`` and
  the database, not a read-then-write, guarantees one notification per key, ever.
- Delivery state lives in ``webhook_deliveries``, not on the notification: one notification fans
  out to every matching webhook, and each delivery retries and fails on its own. The unique
  ``(notification_id, webhook_id)`` makes the fan-out idempotent too. ``job_id`` is the queue job
  that sends it, with no foreign key: jobs are pruned on their own schedule and a delivery's
  history must outlive its job.
- ``webhooks.topics`` is a JSON list of topic prefixes (``["*"]`` = every topic), matched in
  Python: there are few webhooks, so a join table would buy nothing.
- ``secret`` signs the request body (HMAC); it is stored because the sender needs it.
- Deleting a webhook or a notification deletes its deliveries (``ON DELETE CASCADE``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    Boolean,
    ForeignKey,
    Index,
    Integer,
    Row,
    String,
    Text,
    UniqueConstraint,
    delete,
    select,
    update,
)
from sqlalchemy.orm import Mapped, Session, mapped_column

from loopml.storage.metadata.base import Base, BigId, JSONType, UTCDateTime, utcnow

#: Body formats a webhook can receive.
FORMAT_JSON = "json"
FORMAT_SLACK = "slack"
WEBHOOK_FORMATS = (FORMAT_JSON, FORMAT_SLACK)

#: ``webhooks.topics`` entry that matches every topic.
ALL_TOPICS = "*"

PENDING = "pending"
DELIVERED = "delivered"
FAILED = "failed"
DELIVERY_STATUSES = (PENDING, DELIVERED, FAILED)

#: Column limits, shared with the service's input checks so both fail the same way.
WEBHOOK_NAME_MAX = 64
SECRET_MAX = 200
KEY_MAX = 255
TOPIC_MAX = 128
RECIPIENT_MAX = 200
TITLE_MAX = 500


class WebhookRow(Base):
    __tablename__ = "webhooks"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(WEBHOOK_NAME_MAX), nullable=False, unique=True)
    url: Mapped[str] = mapped_column(Text, nullable=False)
    format: Mapped[str] = mapped_column(String(16), nullable=False, default=FORMAT_JSON)
    topics: Mapped[list[str]] = mapped_column(JSONType, nullable=False)
    secret: Mapped[str | None] = mapped_column(String(SECRET_MAX))
    active: Mapped[bool] = mapped_column(Boolean, nullable=False, default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, default=utcnow)


class NotificationRow(Base):
    __tablename__ = "notifications"
    __table_args__ = (
        Index("ix_notifications_recipient_created", "recipient", "created_at"),
        Index("ix_notifications_topic_created", "topic", "created_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    key: Mapped[str] = mapped_column(String(KEY_MAX), nullable=False, unique=True)
    topic: Mapped[str] = mapped_column(String(TOPIC_MAX), nullable=False)
    recipient: Mapped[str] = mapped_column(String(RECIPIENT_MAX), nullable=False, default="")
    title: Mapped[str] = mapped_column(String(TITLE_MAX), nullable=False)
    body: Mapped[str] = mapped_column(Text, nullable=False)
    data: Mapped[dict[str, Any]] = mapped_column(JSONType, nullable=False, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, default=utcnow)
    read_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class WebhookDeliveryRow(Base):
    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        UniqueConstraint("notification_id", "webhook_id"),
        Index("ix_webhook_deliveries_status_created", "status", "created_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    notification_id: Mapped[int] = mapped_column(
        BigId, ForeignKey("notifications.id", ondelete="CASCADE"), nullable=False
    )
    webhook_id: Mapped[int] = mapped_column(
        BigId, ForeignKey("webhooks.id", ondelete="CASCADE"), nullable=False
    )
    status: Mapped[str] = mapped_column(String(16), nullable=False, default=PENDING)
    attempts: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    response_status: Mapped[int | None] = mapped_column(Integer)
    job_id: Mapped[int | None] = mapped_column(BigId)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, default=utcnow)
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


# -- queries (used by loopml.notify only) ---------------------------------------------------------
_W = WebhookRow.__table__
_N = NotificationRow.__table__
_D = WebhookDeliveryRow.__table__

WEBHOOK_COLUMNS = tuple(_W.c)
NOTIFICATION_COLUMNS = tuple(_N.c)
#: A delivery with the names a person reads (webhook name, notification key and topic).
DELIVERY_COLUMNS = (
    *_D.c,
    _W.c.name.label("webhook"),
    _N.c.key.label("key"),
    _N.c.topic.label("topic"),
)


def _insert(session: Session, table: Any) -> Any:
    if session.get_bind().dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    return insert(table)


def insert_webhook(session: Session, values: dict[str, Any]) -> Row[Any] | None:
    """Insert a webhook; None when the name is taken (no error, so the caller's transaction lives)."""
    stmt = (
        _insert(session, _W)
        .values(**values)
        .on_conflict_do_nothing(index_elements=[_W.c.name])
        .returning(*WEBHOOK_COLUMNS)
    )
    return session.execute(stmt).first()


def get_webhook(session: Session, name: str) -> Row[Any] | None:
    return session.execute(select(*WEBHOOK_COLUMNS).where(_W.c.name == name)).first()


def list_webhooks(session: Session, *, active: bool | None = None) -> list[Row[Any]]:
    """Webhooks by name (few of them, so no limit)."""
    stmt = select(*WEBHOOK_COLUMNS).order_by(_W.c.name)
    if active is not None:
        stmt = stmt.where(_W.c.active == active)
    return list(session.execute(stmt))


def webhook_names(session: Session) -> list[str]:
    return list(session.execute(select(_W.c.name).order_by(_W.c.name)).scalars())


def update_webhook(session: Session, name: str, values: dict[str, Any]) -> Row[Any] | None:
    stmt = update(_W).where(_W.c.name == name).values(**values).returning(*WEBHOOK_COLUMNS)
    return session.execute(stmt).first()


def delete_webhook(session: Session, name: str) -> Row[Any] | None:
    """Delete a webhook (its deliveries go with it, ON DELETE CASCADE); the deleted row or None."""
    return session.execute(delete(_W).where(_W.c.name == name).returning(*WEBHOOK_COLUMNS)).first()


def insert_notification(session: Session, values: dict[str, Any]) -> Row[Any] | None:
    """Insert a notification; None when its key exists (``ON CONFLICT DO NOTHING``: the database
    decides, so two racing callers cannot both create one)."""
    stmt = (
        _insert(session, _N)
        .values(**values)
        .on_conflict_do_nothing(index_elements=[_N.c.key])
        .returning(*NOTIFICATION_COLUMNS)
    )
    return session.execute(stmt).first()


def get_notification(session: Session, notification_id: int) -> Row[Any] | None:
    return session.execute(select(*NOTIFICATION_COLUMNS).where(_N.c.id == notification_id)).first()


def get_notification_by_key(session: Session, key: str) -> Row[Any] | None:
    return session.execute(select(*NOTIFICATION_COLUMNS).where(_N.c.key == key)).first()


def list_notifications(
    session: Session,
    *,
    recipient: str | None = None,
    topic: str | None = None,
    unread: bool | None = None,
    limit: int = 100,
) -> list[Row[Any]]:
    """Newest first. ``topic`` is a prefix (``alert.`` finds ``alert.opened`` and ``alert.resolved``)."""
    stmt = select(*NOTIFICATION_COLUMNS).order_by(_N.c.created_at.desc(), _N.c.id.desc()).limit(limit)
    if recipient is not None:
        stmt = stmt.where(_N.c.recipient == recipient)
    if topic is not None:
        stmt = stmt.where(_N.c.topic.startswith(topic, autoescape=True))
    if unread is True:
        stmt = stmt.where(_N.c.read_at.is_(None))
    elif unread is False:
        stmt = stmt.where(_N.c.read_at.is_not(None))
    return list(session.execute(stmt))


def mark_read(session: Session, notification_id: int, now: datetime) -> Row[Any] | None:
    """Set ``read_at`` once (the first read time is kept); the row, or None for an unknown id."""
    session.execute(update(_N).where(_N.c.id == notification_id, _N.c.read_at.is_(None)).values(read_at=now))
    return get_notification(session, notification_id)


def insert_delivery(session: Session, notification_id: int, webhook_id: int, now: datetime) -> int | None:
    """A pending delivery of one notification to one webhook; None if that pair exists already."""
    stmt = (
        _insert(session, _D)
        .values(
            notification_id=notification_id,
            webhook_id=webhook_id,
            status=PENDING,
            attempts=0,
            created_at=now,
            updated_at=now,
        )
        .on_conflict_do_nothing(index_elements=[_D.c.notification_id, _D.c.webhook_id])
        .returning(_D.c.id)
    )
    return session.execute(stmt).scalar()


def _delivery_select() -> Any:
    return select(*DELIVERY_COLUMNS).select_from(
        _D.join(_W, _W.c.id == _D.c.webhook_id).join(_N, _N.c.id == _D.c.notification_id)
    )


def get_delivery(session: Session, delivery_id: int) -> Row[Any] | None:
    return session.execute(_delivery_select().where(_D.c.id == delivery_id)).first()


def list_deliveries(
    session: Session,
    *,
    status: str | None = None,
    notification_id: int | None = None,
    limit: int = 100,
) -> list[Row[Any]]:
    """Newest first (what an operator checks is what just happened)."""
    stmt = _delivery_select().order_by(_D.c.created_at.desc(), _D.c.id.desc()).limit(limit)
    if status is not None:
        stmt = stmt.where(_D.c.status == status)
    if notification_id is not None:
        stmt = stmt.where(_D.c.notification_id == notification_id)
    return list(session.execute(stmt))


def delivery_target(session: Session, delivery_id: int) -> Row[Any] | None:
    """Everything needed to send one delivery: the delivery, its notification and its webhook."""
    stmt = (
        select(
            _D.c.id,
            _D.c.status,
            _N.c.key,
            _N.c.topic,
            _N.c.title,
            _N.c.body,
            _N.c.recipient,
            _N.c.data,
            _N.c.created_at,
            _W.c.name.label("webhook"),
            _W.c.url,
            _W.c.format,
            _W.c.secret,
            _W.c.active,
        )
        .select_from(_D.join(_W, _W.c.id == _D.c.webhook_id).join(_N, _N.c.id == _D.c.notification_id))
        .where(_D.c.id == delivery_id)
    )
    return session.execute(stmt).first()


def update_delivery(
    session: Session, delivery_id: int, values: dict[str, Any], *, from_status: tuple[str, ...] | None = None
) -> bool:
    """Update one delivery, only while it is in ``from_status`` (when given); True if it changed.

    The status guard is what keeps two actors apart: an attempt never overwrites a delivery that
    another worker marked delivered meanwhile, and two operators cannot both retry one failure.
    """
    stmt = update(_D).where(_D.c.id == delivery_id)
    if from_status is not None:
        stmt = stmt.where(_D.c.status.in_(from_status))
    return session.execute(stmt.values(**values)).rowcount == 1


def record_attempt(session: Session, delivery_id: int, values: dict[str, Any], *, now: datetime) -> bool:
    """Count one send attempt and its outcome, unless the delivery is delivered already."""
    stmt = (
        update(_D)
        .where(_D.c.id == delivery_id, _D.c.status != DELIVERED)
        .values(attempts=_D.c.attempts + 1, updated_at=now, **values)
    )
    return session.execute(stmt).rowcount == 1
