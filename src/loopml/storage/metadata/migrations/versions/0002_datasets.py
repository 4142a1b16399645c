"""datasets: datasets, dataset_versions, quarantine_rows

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import loopml.storage.metadata.base as lb

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create the datasets tables (see loopml/storage/metadata/datasets.py)."""
    op.create_table(
        "datasets",
        sa.Column("id", lb.BigId, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("contract", lb.JSONType, nullable=False),
        sa.Column("created_at", lb.UTCDateTime(), nullable=False),
        sa.Column("updated_at", lb.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_datasets"),
        sa.UniqueConstraint("name", name="uq_datasets_name"),
    )
    op.create_table(
        "dataset_versions",
        sa.Column("id", lb.BigId, primary_key=True, autoincrement=True),
        sa.Column("dataset_id", lb.BigId, nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("digest", sa.String(80), nullable=False),
        sa.Column("row_count", sa.BigInteger(), nullable=False),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("rows_in", sa.BigInteger(), nullable=False),
        sa.Column("rows_quarantined", sa.BigInteger(), nullable=False),
        sa.Column("stats", lb.JSONType, nullable=False),
        sa.Column("contract", lb.JSONType, nullable=False),
        sa.Column("source", sa.Text()),
        sa.Column("actor", sa.String(255), nullable=False),
        sa.Column("created_at", lb.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_dataset_versions"),
        sa.ForeignKeyConstraint(
            ["dataset_id"],
            ["datasets.id"],
            name="fk_dataset_versions_dataset_id_datasets",
            ondelete="CASCADE",
        ),
        sa.UniqueConstraint("dataset_id", "number", name="uq_dataset_versions_dataset_id"),
    )
    op.create_index("ix_dataset_versions_digest", "dataset_versions", ["dataset_id", "digest"])
    op.create_table(
        "quarantine_rows",
        sa.Column("id", lb.BigId, primary_key=True, autoincrement=True),
        sa.Column("dataset_id", lb.BigId, nullable=False),
        sa.Column("version_id", lb.BigId),
        sa.Column("attempt", sa.String(32), nullable=False),
        sa.Column("row_index", sa.BigInteger(), nullable=False),
        sa.Column("row", lb.JSONType, nullable=False),
        sa.Column("failed_checks", lb.JSONType, nullable=False),
        sa.Column("created_at", lb.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_quarantine_rows"),
        sa.ForeignKeyConstraint(
            ["dataset_id"], ["datasets.id"], name="fk_quarantine_rows_dataset_id_datasets", ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["version_id"],
            ["dataset_versions.id"],
            name="fk_quarantine_rows_version_id_dataset_versions",
            ondelete="SET NULL",
        ),
    )
    op.create_index("ix_quarantine_rows_dataset", "quarantine_rows", ["dataset_id", "id"])
    op.create_index("ix_quarantine_rows_attempt", "quarantine_rows", ["attempt"])


def downgrade() -> None:
    """Drop the datasets tables."""
    op.drop_index("ix_quarantine_rows_attempt", table_name="quarantine_rows")
    op.drop_index("ix_quarantine_rows_dataset", table_name="quarantine_rows")
    op.drop_table("quarantine_rows")
    op.drop_index("ix_dataset_versions_digest", table_name="dataset_versions")
    op.drop_table("dataset_versions")
    op.drop_table("datasets")
