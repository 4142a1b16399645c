"""features: entities, feature views and versions, materialisations, push-log segments

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import loopml.storage.metadata.base as lb

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create the features tables (see loopml/storage/metadata/features.py)."""
    op.create_table(
        "entities",
        sa.Column("id", lb.BigId, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("join_key", sa.String(255), nullable=False),
        sa.Column("dtype", sa.String(16), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("created_at", lb.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_entities"),
        sa.UniqueConstraint("name", name="uq_entities_name"),
    )
    op.create_table(
        "feature_views",
        sa.Column("id", lb.BigId, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("entity_id", lb.BigId),
        sa.Column("latest_version", sa.Integer(), nullable=False),
        sa.Column("created_at", lb.UTCDateTime(), nullable=False),
        sa.Column("updated_at", lb.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_feature_views"),
        sa.UniqueConstraint("name", name="uq_feature_views_name"),
        sa.ForeignKeyConstraint(["entity_id"], ["entities.id"], name="fk_feature_views_entity_id_entities"),
    )
    op.create_table(
        "feature_view_versions",
        sa.Column("id", lb.BigId, primary_key=True, autoincrement=True),
        sa.Column("view_id", lb.BigId, nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("fingerprint", sa.String(64), nullable=False),
        sa.Column("spec", lb.JSONType, nullable=False),
        sa.Column("source_version_id", lb.BigId),
        sa.Column("assets", lb.JSONType),
        sa.Column("stats", lb.JSONType),
        sa.Column("stats_at", lb.UTCDateTime()),
        sa.Column("created_by", sa.String(255), nullable=False),
        sa.Column("created_at", lb.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_feature_view_versions"),
        sa.UniqueConstraint("view_id", "number", name="uq_feature_view_versions_view_number"),
        sa.UniqueConstraint("view_id", "fingerprint", name="uq_feature_view_versions_view_fingerprint"),
        sa.ForeignKeyConstraint(
            ["view_id"], ["feature_views.id"], name="fk_feature_view_versions_view_id_feature_views"
        ),
        sa.ForeignKeyConstraint(
            ["source_version_id"],
            ["dataset_versions.id"],
            name="fk_feature_view_versions_source_version_id_dataset_versions",
            ondelete="SET NULL",
        ),
    )
    op.create_table(
        "materialisations",
        sa.Column("id", lb.BigId, primary_key=True, autoincrement=True),
        sa.Column("view_version_id", lb.BigId, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("full", sa.Boolean(), nullable=False),
        sa.Column("source_fingerprint", sa.String(80)),
        sa.Column("watermark", lb.UTCDateTime()),
        sa.Column("last_segment_id", lb.BigId, nullable=False),
        sa.Column("rows_written", lb.BigId, nullable=False),
        sa.Column("chunks", sa.Integer(), nullable=False),
        sa.Column("error", sa.Text()),
        sa.Column("started_at", lb.UTCDateTime(), nullable=False),
        sa.Column("finished_at", lb.UTCDateTime()),
        sa.PrimaryKeyConstraint("id", name="pk_materialisations"),
        sa.ForeignKeyConstraint(
            ["view_version_id"],
            ["feature_view_versions.id"],
            name="fk_materialisations_view_version_id_feature_view_versions",
        ),
    )
    op.create_index("ix_materialisations_version", "materialisations", ["view_version_id", "id"])
    op.create_table(
        "feature_log_segments",
        sa.Column("id", lb.BigId, primary_key=True, autoincrement=True),
        sa.Column("view_id", lb.BigId, nullable=False),
        sa.Column("version_number", sa.Integer(), nullable=False),
        sa.Column("digest", sa.String(80), nullable=False),
        sa.Column("row_count", lb.BigId, nullable=False),
        sa.Column("min_event_ts", lb.UTCDateTime()),
        sa.Column("max_event_ts", lb.UTCDateTime()),
        sa.Column("created_at", lb.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_feature_log_segments"),
        sa.ForeignKeyConstraint(
            ["view_id"], ["feature_views.id"], name="fk_feature_log_segments_view_id_feature_views"
        ),
    )
    op.create_index("ix_feature_log_segments_view", "feature_log_segments", ["view_id", "id"])


def downgrade() -> None:
    """Drop the features tables."""
    op.drop_index("ix_feature_log_segments_view", table_name="feature_log_segments")
    op.drop_table("feature_log_segments")
    op.drop_index("ix_materialisations_version", table_name="materialisations")
    op.drop_table("materialisations")
    op.drop_table("feature_view_versions")
    op.drop_table("feature_views")
    op.drop_table("entities")
