"""tracking tables (owned by the tracking module; placeholder until its tables land)

Revision ID: 0005
Revises: 0004
"""
from __future__ import annotations

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create the tracking tables (see loopml/storage/metadata/tracking.py)."""


def downgrade() -> None:
    """Drop the tracking tables."""
