"""registry: models, model_versions, model_aliases, alias_protections, gate_results

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import loopml.storage.metadata.base as lb

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create the registry tables (see loopml/storage/metadata/registry.py)."""
    op.create_table(
        "models",
        sa.Column("id", lb.BigId, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("created_at", lb.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_models"),
        sa.UniqueConstraint("name", name="uq_models_name"),
    )
    op.create_table(
        "model_versions",
        sa.Column("id", lb.BigId, primary_key=True, autoincrement=True),
        sa.Column("model_id", lb.BigId, nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("flavor", sa.String(32), nullable=False),
        sa.Column("artifact_digest", sa.String(80), nullable=False),
        sa.Column("flavor_meta", lb.JSONType, nullable=False),
        sa.Column("signature", lb.JSONType, nullable=False),
        sa.Column("example_digest", sa.String(80)),
        sa.Column("metrics", lb.JSONType, nullable=False),
        sa.Column("run_id", sa.String(32)),
        sa.Column("lineage", lb.JSONType, nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("created_at", lb.UTCDateTime(), nullable=False),
        sa.Column("created_by", sa.String(255), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_model_versions"),
        sa.UniqueConstraint("model_id", "number", name="uq_model_versions_model_id"),
        sa.ForeignKeyConstraint(
            ["model_id"], ["models.id"], name="fk_model_versions_model_id_models", ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["run_id"], ["runs.id"], name="fk_model_versions_run_id_runs", ondelete="SET NULL"
        ),
    )
    op.create_table(
        "model_aliases",
        sa.Column("model_id", lb.BigId, nullable=False),
        sa.Column("alias", sa.String(64), nullable=False),
        sa.Column("version_id", lb.BigId, nullable=False),
        sa.Column("updated_at", lb.UTCDateTime(), nullable=False),
        sa.Column("updated_by", sa.String(255), nullable=False),
        sa.PrimaryKeyConstraint("model_id", "alias", name="pk_model_aliases"),
        sa.ForeignKeyConstraint(
            ["model_id"], ["models.id"], name="fk_model_aliases_model_id_models", ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["version_id"], ["model_versions.id"], name="fk_model_aliases_version_id_model_versions"
        ),
    )
    op.create_table(
        "alias_protections",
        sa.Column("model_id", lb.BigId, nullable=False),
        sa.Column("alias", sa.String(64), nullable=False),
        sa.Column("gates", lb.JSONType, nullable=False),
        sa.Column("created_at", lb.UTCDateTime(), nullable=False),
        sa.Column("created_by", sa.String(255), nullable=False),
        sa.PrimaryKeyConstraint("model_id", "alias", name="pk_alias_protections"),
        sa.ForeignKeyConstraint(
            ["model_id"], ["models.id"], name="fk_alias_protections_model_id_models", ondelete="CASCADE"
        ),
    )
    op.create_table(
        "gate_results",
        sa.Column("id", lb.BigId, primary_key=True, autoincrement=True),
        sa.Column("evaluation_id", sa.String(32), nullable=False),
        sa.Column("version_id", lb.BigId, nullable=False),
        sa.Column("alias", sa.String(64), nullable=False),
        sa.Column("gate", sa.String(64), nullable=False),
        sa.Column("passed", sa.Boolean(), nullable=False),
        sa.Column("summary", sa.Text(), nullable=False),
        sa.Column("details", lb.JSONType, nullable=False),
        sa.Column("dataset_version_id", lb.BigId),
        sa.Column("evaluated_at", lb.UTCDateTime(), nullable=False),
        sa.Column("evaluated_by", sa.String(255), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_gate_results"),
        sa.ForeignKeyConstraint(
            ["version_id"],
            ["model_versions.id"],
            name="fk_gate_results_version_id_model_versions",
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["dataset_version_id"],
            ["dataset_versions.id"],
            name="fk_gate_results_dataset_version_id_dataset_versions",
            ondelete="SET NULL",
        ),
    )
    op.create_index("ix_gate_results_version_alias", "gate_results", ["version_id", "alias"])


def downgrade() -> None:
    """Drop the registry tables."""
    op.drop_index("ix_gate_results_version_alias", table_name="gate_results")
    op.drop_table("gate_results")
    op.drop_table("alias_protections")
    op.drop_table("model_aliases")
    op.drop_table("model_versions")
    op.drop_table("models")
