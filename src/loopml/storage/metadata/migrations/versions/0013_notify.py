"""notify: webhooks, notifications, webhook_deliveries (see loopml/storage/metadata/notify.py)

Revision ID: 0013
Revises: 0012
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import loopml.storage.metadata.base as lb

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create webhooks, notifications (unique key: one per key, ever) and one delivery per pair."""
    op.create_table(
        "webhooks",
        sa.Column("id", lb.BigId, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("format", sa.String(16), nullable=False),
        sa.Column("topics", lb.JSONType, nullable=False),
        sa.Column("secret", sa.String(200)),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("created_at", lb.UTCDateTime(), nullable=False),
        sa.Column("updated_at", lb.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_webhooks"),
        sa.UniqueConstraint("name", name="uq_webhooks_name"),
    )
    op.create_table(
        "notifications",
        sa.Column("id", lb.BigId, primary_key=True, autoincrement=True),
        sa.Column("key", sa.String(255), nullable=False),
        sa.Column("topic", sa.String(128), nullable=False),
        sa.Column("recipient", sa.String(200), nullable=False),
        sa.Column("title", sa.String(500), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("data", lb.JSONType, nullable=False),
        sa.Column("created_at", lb.UTCDateTime(), nullable=False),
        sa.Column("read_at", lb.UTCDateTime()),
        sa.PrimaryKeyConstraint("id", name="pk_notifications"),
        sa.UniqueConstraint("key", name="uq_notifications_key"),
    )
    op.create_index("ix_notifications_recipient_created", "notifications", ["recipient", "created_at"])
    op.create_index("ix_notifications_topic_created", "notifications", ["topic", "created_at"])
    op.create_table(
        "webhook_deliveries",
        sa.Column("id", lb.BigId, primary_key=True, autoincrement=True),
        sa.Column("notification_id", lb.BigId, nullable=False),
        sa.Column("webhook_id", lb.BigId, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text()),
        sa.Column("response_status", sa.Integer()),
        sa.Column("job_id", lb.BigId),
        sa.Column("created_at", lb.UTCDateTime(), nullable=False),
        sa.Column("updated_at", lb.UTCDateTime(), nullable=False),
        sa.Column("delivered_at", lb.UTCDateTime()),
        sa.PrimaryKeyConstraint("id", name="pk_webhook_deliveries"),
        sa.ForeignKeyConstraint(
            ["notification_id"],
            ["notifications.id"],
            name="fk_webhook_deliveries_notification_id_notifications",
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["webhook_id"],
            ["webhooks.id"],
            name="fk_webhook_deliveries_webhook_id_webhooks",
            ondelete="CASCADE",
        ),
        sa.UniqueConstraint("notification_id", "webhook_id", name="uq_webhook_deliveries_notification_id"),
    )
    op.create_index("ix_webhook_deliveries_status_created", "webhook_deliveries", ["status", "created_at"])


def downgrade() -> None:
    """Drop the notify tables (deliveries first: they point at the other two)."""
    op.drop_index("ix_webhook_deliveries_status_created", table_name="webhook_deliveries")
    op.drop_table("webhook_deliveries")
    op.drop_index("ix_notifications_topic_created", table_name="notifications")
    op.drop_index("ix_notifications_recipient_created", table_name="notifications")
    op.drop_table("notifications")
    op.drop_table("webhooks")
