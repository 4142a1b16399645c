"""pipelines tables (owned by the pipelines module; placeholder until its tables land)

Revision ID: 0004
Revises: 0003
"""
from __future__ import annotations

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create the pipelines tables (see loopml/storage/metadata/pipelines.py)."""


def downgrade() -> None:
    """Drop the pipelines tables."""
