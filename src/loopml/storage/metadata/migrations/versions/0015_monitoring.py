"""monitoring: monitors, monitor_windows, slos, slo_evaluations, alert_rules
(see loopml/storage/metadata/monitoring.py)

Revision ID: 0015
Revises: 0014
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

import loopml.storage.metadata.base as lb

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None

#: JSON where Python None is SQL NULL (see loopml/storage/metadata/inference.py).
_NULLABLE_JSON = sa.JSON(none_as_null=True).with_variant(JSONB(none_as_null=True), "postgresql")


def upgrade() -> None:
    """Create monitors + one row per window, SLOs + their evaluation history, and alert rules."""
    op.create_table(
        "monitors",
        sa.Column("id", lb.BigId, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("endpoint", sa.String(64), nullable=False),
        sa.Column("spec", lb.JSONType, nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("reference_digest", sa.String(80)),
        sa.Column("watermark", lb.UTCDateTime()),
        sa.Column("last_run_at", lb.UTCDateTime()),
        sa.Column("created_at", lb.UTCDateTime(), nullable=False),
        sa.Column("updated_at", lb.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_monitors"),
        sa.UniqueConstraint("name", name="uq_monitors_name"),
    )
    op.create_table(
        "monitor_windows",
        sa.Column("id", lb.BigId, primary_key=True, autoincrement=True),
        sa.Column("monitor_id", lb.BigId, nullable=False),
        sa.Column("window_start", lb.UTCDateTime(), nullable=False),
        sa.Column("window_end", lb.UTCDateTime(), nullable=False),
        sa.Column("rows", sa.Integer(), nullable=False),
        sa.Column("labelled", sa.Integer(), nullable=False),
        sa.Column("drift", _NULLABLE_JSON),
        sa.Column("performance", _NULLABLE_JSON),
        sa.Column("computed_at", lb.UTCDateTime(), nullable=False),
        sa.Column("updated_at", lb.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_monitor_windows"),
        sa.ForeignKeyConstraint(
            ["monitor_id"], ["monitors.id"], name="fk_monitor_windows_monitor_id_monitors", ondelete="CASCADE"
        ),
        sa.UniqueConstraint("monitor_id", "window_start", name="uq_monitor_windows_monitor_id"),
    )
    op.create_index("ix_monitor_windows_monitor_end", "monitor_windows", ["monitor_id", "window_end"])
    op.create_table(
        "slos",
        sa.Column("id", lb.BigId, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("spec", lb.JSONType, nullable=False),
        sa.Column("created_at", lb.UTCDateTime(), nullable=False),
        sa.Column("updated_at", lb.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_slos"),
        sa.UniqueConstraint("name", name="uq_slos_name"),
    )
    op.create_table(
        "slo_evaluations",
        sa.Column("id", lb.BigId, primary_key=True, autoincrement=True),
        sa.Column("slo_id", lb.BigId, nullable=False),
        sa.Column("at", lb.UTCDateTime(), nullable=False),
        sa.Column("value", sa.Float()),
        sa.Column("ok", sa.Boolean(), nullable=False),
        sa.Column("budget_remaining", sa.Float()),
        sa.Column("data", lb.JSONType, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_slo_evaluations"),
        sa.ForeignKeyConstraint(
            ["slo_id"], ["slos.id"], name="fk_slo_evaluations_slo_id_slos", ondelete="CASCADE"
        ),
    )
    op.create_index("ix_slo_evaluations_slo_at", "slo_evaluations", ["slo_id", "at"])
    op.create_table(
        "alert_rules",
        sa.Column("id", lb.BigId, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("spec", lb.JSONType, nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("created_at", lb.UTCDateTime(), nullable=False),
        sa.Column("updated_at", lb.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_alert_rules"),
        sa.UniqueConstraint("name", name="uq_alert_rules_name"),
    )


def downgrade() -> None:
    """Drop the monitoring tables (children before the tables they point at)."""
    op.drop_table("alert_rules")
    op.drop_index("ix_slo_evaluations_slo_at", table_name="slo_evaluations")
    op.drop_table("slo_evaluations")
    op.drop_table("slos")
    op.drop_index("ix_monitor_windows_monitor_end", table_name="monitor_windows")
    op.drop_table("monitor_windows")
    op.drop_table("monitors")
