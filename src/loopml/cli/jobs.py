"""CLI commands for jobs (placeholder until its owner lands them)."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add this module's commands to the root app."""
