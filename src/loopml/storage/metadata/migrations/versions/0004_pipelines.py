"""pipelines: pipeline runs, step runs and cron schedules (see loopml/storage/metadata/pipelines.py)

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import loopml.storage.metadata.base as lb

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create pipeline_runs (job_id -> jobs.id), step_runs (cache_key index) and schedules."""
    op.create_table(
        "pipeline_runs",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("pipeline", sa.String(255), nullable=False),
        sa.Column("params", lb.JSONType, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("trigger", sa.String(16), nullable=False),
        sa.Column("job_id", lb.BigId),
        sa.Column("schedule_slot", lb.UTCDateTime()),
        sa.Column("created_at", lb.UTCDateTime(), nullable=False),
        sa.Column("started_at", lb.UTCDateTime()),
        sa.Column("finished_at", lb.UTCDateTime()),
        sa.Column("error", sa.Text()),
        sa.PrimaryKeyConstraint("id", name="pk_pipeline_runs"),
        sa.ForeignKeyConstraint(
            ["job_id"], ["jobs.id"], name="fk_pipeline_runs_job_id_jobs", ondelete="SET NULL"
        ),
    )
    op.create_index("ix_pipeline_runs_pipeline_created", "pipeline_runs", ["pipeline", "created_at"])
    op.create_table(
        "step_runs",
        sa.Column("id", lb.BigId, primary_key=True, autoincrement=True),
        sa.Column("run_id", sa.String(32), nullable=False),
        sa.Column("step", sa.String(255), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(24), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("started_at", lb.UTCDateTime()),
        sa.Column("finished_at", lb.UTCDateTime()),
        sa.Column("duration_seconds", sa.Float()),
        sa.Column("input_digests", lb.JSONType),
        sa.Column("output_digest", sa.String(80)),
        sa.Column("output_format", sa.String(16)),
        sa.Column("output_type", sa.String(255)),
        sa.Column("cache_key", sa.String(64)),
        sa.Column("cached_from", sa.String(32)),
        sa.Column("log", sa.Text()),
        sa.Column("error", sa.Text()),
        sa.PrimaryKeyConstraint("id", name="pk_step_runs"),
        sa.ForeignKeyConstraint(
            ["run_id"], ["pipeline_runs.id"], name="fk_step_runs_run_id_pipeline_runs", ondelete="CASCADE"
        ),
        sa.UniqueConstraint("run_id", "step", name="uq_step_runs_run_id"),
    )
    op.create_index("ix_step_runs_cache_key", "step_runs", ["cache_key"])
    op.create_table(
        "schedules",
        sa.Column("pipeline", sa.String(255), nullable=False),
        sa.Column("cron", sa.String(128), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("last_slot", lb.UTCDateTime()),
        sa.Column("next_due", lb.UTCDateTime(), nullable=False),
        sa.Column("updated_at", lb.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("pipeline", name="pk_schedules"),
    )


def downgrade() -> None:
    """Drop the pipelines tables (step runs first: they reference runs)."""
    op.drop_table("schedules")
    op.drop_index("ix_step_runs_cache_key", table_name="step_runs")
    op.drop_table("step_runs")
    op.drop_index("ix_pipeline_runs_pipeline_created", table_name="pipeline_runs")
    op.drop_table("pipeline_runs")
