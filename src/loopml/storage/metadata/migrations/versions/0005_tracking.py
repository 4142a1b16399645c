"""tracking: experiments, runs, params, metrics, tags, artifacts, inputs

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import loopml.storage.metadata.base as lb

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def _run_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["run_id"], ["runs.id"], name=f"fk_{table}_run_id_runs", ondelete="CASCADE"
    )


def upgrade() -> None:
    op.create_table(
        "experiments",
        sa.Column("id", lb.BigId, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("created_at", lb.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_experiments"),
        sa.UniqueConstraint("name", name="uq_experiments_name"),
    )
    op.create_table(
        "runs",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("experiment_id", lb.BigId, nullable=False),
        sa.Column("name", sa.String(255)),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("start_time", lb.UTCDateTime(), nullable=False),
        sa.Column("end_time", lb.UTCDateTime()),
        sa.Column("git_sha", sa.String(40)),
        sa.Column("pipeline_run_id", sa.String(32)),
        sa.Column("error", sa.Text()),
        sa.PrimaryKeyConstraint("id", name="pk_runs"),
        sa.ForeignKeyConstraint(
            ["experiment_id"], ["experiments.id"], name="fk_runs_experiment_id_experiments"
        ),
        sa.ForeignKeyConstraint(
            ["pipeline_run_id"],
            ["pipeline_runs.id"],
            name="fk_runs_pipeline_run_id_pipeline_runs",
            ondelete="SET NULL",
        ),
    )
    op.create_index("ix_runs_experiment_start", "runs", ["experiment_id", "start_time"])
    for table in ("run_params", "run_tags"):
        op.create_table(
            table,
            sa.Column("run_id", sa.String(32), nullable=False),
            sa.Column("key", sa.String(255), nullable=False),
            sa.Column("value", sa.Text(), nullable=False),
            sa.PrimaryKeyConstraint("run_id", "key", name=f"pk_{table}"),
            _run_fk(table),
        )
    op.create_table(
        "run_metrics",
        sa.Column("id", lb.BigId, primary_key=True, autoincrement=True),
        sa.Column("run_id", sa.String(32), nullable=False),
        sa.Column("key", sa.String(255), nullable=False),
        sa.Column("step", sa.BigInteger(), nullable=False),
        sa.Column("value", sa.Float()),
        sa.Column("ts", lb.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_run_metrics"),
        _run_fk("run_metrics"),
    )
    op.create_index("ix_run_metrics_run_key_step", "run_metrics", ["run_id", "key", "step"])
    op.create_table(
        "run_artifacts",
        sa.Column("run_id", sa.String(32), nullable=False),
        sa.Column("name", sa.String(512), nullable=False),
        sa.Column("digest", sa.String(71), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("created_at", lb.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("run_id", "name", name="pk_run_artifacts"),
        _run_fk("run_artifacts"),
    )
    op.create_table(
        "run_inputs",
        sa.Column("run_id", sa.String(32), nullable=False),
        sa.Column("dataset_version_id", lb.BigId, nullable=False),
        sa.PrimaryKeyConstraint("run_id", "dataset_version_id", name="pk_run_inputs"),
        _run_fk("run_inputs"),
        sa.ForeignKeyConstraint(
            ["dataset_version_id"],
            ["dataset_versions.id"],
            name="fk_run_inputs_dataset_version_id_dataset_versions",
        ),
    )
    op.create_index("ix_run_inputs_dataset_version", "run_inputs", ["dataset_version_id"])


def downgrade() -> None:
    op.drop_index("ix_run_inputs_dataset_version", table_name="run_inputs")
    op.drop_table("run_inputs")
    op.drop_table("run_artifacts")
    op.drop_index("ix_run_metrics_run_key_step", table_name="run_metrics")
    op.drop_table("run_metrics")
    op.drop_table("run_tags")
    op.drop_table("run_params")
    op.drop_index("ix_runs_experiment_start", table_name="runs")
    op.drop_table("runs")
    op.drop_table("experiments")
