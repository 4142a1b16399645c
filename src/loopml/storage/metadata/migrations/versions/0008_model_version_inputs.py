"""model_version_inputs: model version -> dataset versions lineage as a foreign key

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import loopml.storage.metadata.base as lb

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "model_version_inputs",
        sa.Column("version_id", lb.BigId, nullable=False),
        sa.Column("dataset_version_id", lb.BigId, nullable=False),
        sa.PrimaryKeyConstraint("version_id", "dataset_version_id", name="pk_model_version_inputs"),
        sa.ForeignKeyConstraint(
            ["version_id"],
            ["model_versions.id"],
            name="fk_model_version_inputs_version_id_model_versions",
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["dataset_version_id"],
            ["dataset_versions.id"],
            name="fk_model_version_inputs_dataset_version_id_dataset_versions",
            ondelete="RESTRICT",
        ),
    )


def downgrade() -> None:
    op.drop_table("model_version_inputs")
