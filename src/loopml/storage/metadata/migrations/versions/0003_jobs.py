"""jobs: the durable job queue (see loopml/storage/metadata/jobs.py)

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import loopml.storage.metadata.base as lb

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create the jobs table with its claim index (queue, status, priority, not_before)."""
    op.create_table(
        "jobs",
        sa.Column("id", lb.BigId, primary_key=True, autoincrement=True),
        sa.Column("queue", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(128), nullable=False),
        sa.Column("payload", lb.JSONType, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("priority", sa.Integer(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("max_attempts", sa.Integer(), nullable=False),
        sa.Column("not_before", lb.UTCDateTime(), nullable=False),
        sa.Column("lease_until", lb.UTCDateTime()),
        sa.Column("worker_id", sa.String(128)),
        sa.Column("idempotency_key", sa.String(255)),
        sa.Column("last_error", sa.Text()),
        sa.Column("result", lb.JSONType),
        sa.Column("created_at", lb.UTCDateTime(), nullable=False),
        sa.Column("updated_at", lb.UTCDateTime(), nullable=False),
        sa.Column("started_at", lb.UTCDateTime()),
        sa.Column("finished_at", lb.UTCDateTime()),
        sa.PrimaryKeyConstraint("id", name="pk_jobs"),
        sa.UniqueConstraint("idempotency_key", name="uq_jobs_idempotency_key"),
    )
    op.create_index("ix_jobs_claim", "jobs", ["queue", "status", sa.text("priority DESC"), "not_before"])
    op.create_index("ix_jobs_lease", "jobs", ["status", "lease_until"])


def downgrade() -> None:
    """Drop the jobs table."""
    op.drop_index("ix_jobs_lease", table_name="jobs")
    op.drop_index("ix_jobs_claim", table_name="jobs")
    op.drop_table("jobs")
