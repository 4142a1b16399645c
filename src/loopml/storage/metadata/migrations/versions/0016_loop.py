"""loop: action_policies, loop_runs, loop_steps (see loopml/storage/metadata/loop.py)

Revision ID: 0016
Revises: 0015
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import loopml.storage.metadata.base as lb

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create action policies, loop runs (alert/pipeline links SET NULL on delete) and their steps."""
    op.create_table(
        "action_policies",
        sa.Column("id", lb.BigId, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("spec", lb.JSONType, nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("created_at", lb.UTCDateTime(), nullable=False),
        sa.Column("updated_at", lb.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_action_policies"),
        sa.UniqueConstraint("name", name="uq_action_policies_name"),
    )
    op.create_table(
        "loop_runs",
        sa.Column("id", lb.BigId, primary_key=True, autoincrement=True),
        sa.Column("policy", sa.String(100), nullable=False),
        sa.Column("alert_id", lb.BigId),
        sa.Column("alert_key", sa.String(200)),
        sa.Column("endpoint", sa.String(64)),
        sa.Column("model", sa.String(100)),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("stage", sa.String(32), nullable=False),
        sa.Column("baseline", sa.String(120)),
        sa.Column("candidate", sa.String(120)),
        sa.Column("pipeline_run_id", sa.String(32)),
        sa.Column("outcome", sa.Text()),
        sa.Column("data", lb.JSONType, nullable=False),
        sa.Column("created_at", lb.UTCDateTime(), nullable=False),
        sa.Column("updated_at", lb.UTCDateTime(), nullable=False),
        sa.Column("finished_at", lb.UTCDateTime()),
        sa.Column("decided_by", sa.String(200)),
        sa.PrimaryKeyConstraint("id", name="pk_loop_runs"),
        sa.ForeignKeyConstraint(
            ["alert_id"], ["alerts.id"], name="fk_loop_runs_alert_id_alerts", ondelete="SET NULL"
        ),
        sa.ForeignKeyConstraint(
            ["pipeline_run_id"],
            ["pipeline_runs.id"],
            name="fk_loop_runs_pipeline_run_id_pipeline_runs",
            ondelete="SET NULL",
        ),
    )
    op.create_index("ix_loop_runs_status_updated", "loop_runs", ["status", "updated_at"])
    op.create_index("ix_loop_runs_policy_created", "loop_runs", ["policy", "created_at"])
    op.create_table(
        "loop_steps",
        sa.Column("id", lb.BigId, primary_key=True, autoincrement=True),
        sa.Column("loop_run_id", lb.BigId, nullable=False),
        sa.Column("step", sa.String(32), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.Column("data", lb.JSONType, nullable=False),
        sa.Column("at", lb.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_loop_steps"),
        sa.ForeignKeyConstraint(
            ["loop_run_id"], ["loop_runs.id"], name="fk_loop_steps_loop_run_id_loop_runs", ondelete="CASCADE"
        ),
    )
    op.create_index("ix_loop_steps_run_at", "loop_steps", ["loop_run_id", "at"])


def downgrade() -> None:
    """Drop the loop tables (steps first: they point at the runs)."""
    op.drop_index("ix_loop_steps_run_at", table_name="loop_steps")
    op.drop_table("loop_steps")
    op.drop_index("ix_loop_runs_policy_created", table_name="loop_runs")
    op.drop_index("ix_loop_runs_status_updated", table_name="loop_runs")
    op.drop_table("loop_runs")
    op.drop_table("action_policies")
