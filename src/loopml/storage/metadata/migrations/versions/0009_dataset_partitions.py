"""dataset_partitions: partitioned datasets (a version is a manifest of per-partition Parquet blobs)

Revision ID: 0009
Revises: 0008
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import loopml.storage.metadata.base as lb

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Add the partitioned flag to datasets and the partition bookkeeping to dataset_versions."""
    op.add_column(
        "datasets", sa.Column("partitioned", sa.Boolean(), nullable=False, server_default=sa.false())
    )
    op.add_column("dataset_versions", sa.Column("partition_count", sa.Integer(), nullable=True))
    op.add_column("dataset_versions", sa.Column("partitions_delivered", lb.JSONType, nullable=True))


def downgrade() -> None:
    """Drop the partition columns (partitioned datasets' versions become unreadable manifests)."""
    with op.batch_alter_table("dataset_versions") as batch:
        batch.drop_column("partitions_delivered")
        batch.drop_column("partition_count")
    with op.batch_alter_table("datasets") as batch:
        batch.drop_column("partitioned")
