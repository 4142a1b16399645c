"""async requests: async_requests, async_request_tags (see loopml/storage/metadata/async_requests.py)

Revision ID: 0014
Revises: 0013
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

import loopml.storage.metadata.base as lb

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

#: JSON where Python None is SQL NULL (see loopml/storage/metadata/inference.py).
_NULLABLE_JSON = sa.JSON(none_as_null=True).with_variant(JSONB(none_as_null=True), "postgresql")


def upgrade() -> None:
    """Create the request table (uuid-hex ids) and its tags (PK request_id+tag, index tag+request_id)."""
    op.create_table(
        "async_requests",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("kind", sa.String(64), nullable=False),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("input_digest", sa.String(80)),
        sa.Column("fingerprint", sa.String(64)),
        sa.Column("meta", lb.JSONType, nullable=False),
        sa.Column("result", _NULLABLE_JSON),
        sa.Column("error", sa.Text()),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("job_id", lb.BigId),
        sa.Column("created_at", lb.UTCDateTime(), nullable=False),
        sa.Column("updated_at", lb.UTCDateTime(), nullable=False),
        sa.Column("finished_at", lb.UTCDateTime()),
        sa.Column("decided_by", sa.String(200)),
        sa.PrimaryKeyConstraint("id", name="pk_async_requests"),
    )
    op.create_index(
        "ix_async_requests_kind_status_created", "async_requests", ["kind", "status", "created_at"]
    )
    op.create_index("ix_async_requests_kind_created", "async_requests", ["kind", "created_at"])
    op.create_index("ix_async_requests_kind_fingerprint", "async_requests", ["kind", "fingerprint"])
    op.create_table(
        "async_request_tags",
        sa.Column("request_id", sa.String(32), nullable=False),
        sa.Column("tag", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("request_id", "tag", name="pk_async_request_tags"),
        sa.ForeignKeyConstraint(
            ["request_id"],
            ["async_requests.id"],
            name="fk_async_request_tags_request_id_async_requests",
            ondelete="CASCADE",
        ),
    )
    op.create_index("ix_async_request_tags_tag_request", "async_request_tags", ["tag", "request_id"])


def downgrade() -> None:
    """Drop both tables (tags first: they point at the requests)."""
    op.drop_index("ix_async_request_tags_tag_request", table_name="async_request_tags")
    op.drop_table("async_request_tags")
    op.drop_index("ix_async_requests_kind_fingerprint", table_name="async_requests")
    op.drop_index("ix_async_requests_kind_created", table_name="async_requests")
    op.drop_index("ix_async_requests_kind_status_created", table_name="async_requests")
    op.drop_table("async_requests")
