"""alerts: incidents deduplicated by key while open (see loopml/storage/metadata/alerts.py)

Revision ID: 0010
Revises: 0009
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import loopml.storage.metadata.base as lb

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

_OPEN = sa.text("status = 'open'")


def upgrade() -> None:
    """Create ``alerts`` with a partial unique index: at most one open alert per key."""
    op.create_table(
        "alerts",
        sa.Column("id", lb.BigId, primary_key=True, autoincrement=True),
        sa.Column("key", sa.String(200), nullable=False),
        sa.Column("severity", sa.String(16), nullable=False),
        sa.Column("title", sa.String(500), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.Column("source", sa.String(100), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("data", lb.JSONType, nullable=False),
        sa.Column("created_at", lb.UTCDateTime(), nullable=False),
        sa.Column("updated_at", lb.UTCDateTime(), nullable=False),
        sa.Column("resolved_at", lb.UTCDateTime()),
        sa.Column("fire_count", sa.Integer(), nullable=False),
        sa.Column("last_fired_at", lb.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_alerts"),
    )
    op.create_index("ix_alerts_key_status", "alerts", ["key", "status"])
    op.create_index(
        "uq_alerts_open_key", "alerts", ["key"], unique=True, sqlite_where=_OPEN, postgresql_where=_OPEN
    )
    op.create_index("ix_alerts_status_last_fired", "alerts", ["status", "last_fired_at"])


def downgrade() -> None:
    """Drop the alerts table."""
    op.drop_index("ix_alerts_status_last_fired", table_name="alerts")
    op.drop_index("uq_alerts_open_key", table_name="alerts")
    op.drop_index("ix_alerts_key_status", table_name="alerts")
    op.drop_table("alerts")
