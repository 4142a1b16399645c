"""inference log: one row per prediction request, and the labels/rewards sent for it later

Revision ID: 0012
Revises: 0011
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

import loopml.storage.metadata.base as lb

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

#: JSON where Python None is SQL NULL (see loopml/storage/metadata/inference.py).
_NULLABLE_JSON = sa.JSON(none_as_null=True).with_variant(JSONB(none_as_null=True), "postgresql")


def upgrade() -> None:
    """Create ``inference_log`` (unique request_id, index endpoint+at) and ``inference_feedback``."""
    op.create_table(
        "inference_log",
        sa.Column("id", lb.BigId, primary_key=True, autoincrement=True),
        sa.Column("request_id", sa.String(128), nullable=False),
        sa.Column("endpoint", sa.String(200), nullable=False),
        sa.Column("model", sa.String(300), nullable=False),
        sa.Column("version", sa.Integer()),
        sa.Column("arm", sa.String(100)),
        sa.Column("inputs", lb.JSONType, nullable=False),
        sa.Column("outputs", lb.JSONType, nullable=False),
        sa.Column("latency_ms", sa.Float(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("error", sa.Text()),
        sa.Column("routing_key", sa.String(256)),
        sa.Column("shadow", _NULLABLE_JSON),
        sa.Column("at", lb.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_inference_log"),
        sa.UniqueConstraint("request_id", name="uq_inference_log_request_id"),
    )
    op.create_index("ix_inference_log_endpoint_at", "inference_log", ["endpoint", "at"])
    op.create_table(
        "inference_feedback",
        sa.Column("id", lb.BigId, primary_key=True, autoincrement=True),
        sa.Column("request_id", sa.String(128), nullable=False),
        sa.Column("label", _NULLABLE_JSON),
        sa.Column("reward", sa.Float()),
        sa.Column("at", lb.UTCDateTime(), nullable=False),
        sa.Column("actor", sa.String(255), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_inference_feedback"),
        sa.ForeignKeyConstraint(
            ["request_id"],
            ["inference_log.request_id"],
            name="fk_inference_feedback_request_id_inference_log",
            ondelete="CASCADE",
        ),
    )
    op.create_index("ix_inference_feedback_request_id", "inference_feedback", ["request_id"])


def downgrade() -> None:
    """Drop both tables (feedback first: it points at the log)."""
    op.drop_index("ix_inference_feedback_request_id", table_name="inference_feedback")
    op.drop_table("inference_feedback")
    op.drop_index("ix_inference_log_endpoint_at", table_name="inference_log")
    op.drop_table("inference_log")
