"""registry tables (owned by the registry module; placeholder until its tables land)

Revision ID: 0006
Revises: 0005
"""
from __future__ import annotations

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create the registry tables (see loopml/storage/metadata/registry.py)."""


def downgrade() -> None:
    """Drop the registry tables."""
