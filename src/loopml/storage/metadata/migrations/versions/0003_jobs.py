"""jobs tables (owned by the jobs module; placeholder until its tables land)

Revision ID: 0003
Revises: 0002
"""
from __future__ import annotations

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create the jobs tables (see loopml/storage/metadata/jobs.py)."""


def downgrade() -> None:
    """Drop the jobs tables."""
