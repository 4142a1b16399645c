"""datasets tables (owned by the datasets module; placeholder until its tables land)

Revision ID: 0002
Revises: 0001
"""
from __future__ import annotations

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create the datasets tables (see loopml/storage/metadata/datasets.py)."""


def downgrade() -> None:
    """Drop the datasets tables."""
