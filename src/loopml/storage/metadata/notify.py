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

from sqlalchemy import Boolean, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

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
