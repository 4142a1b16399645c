"""features tables (owned by the features module; placeholder until its tables land)

Revision ID: 0007
Revises: 0006
"""
from __future__ import annotations

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create the features tables (see loopml/storage/metadata/features.py)."""


def downgrade() -> None:
    """Drop the features tables."""
