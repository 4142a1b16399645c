"""What every CLI module shares: the console, the client, and turning errors into messages."""

from __future__ import annotations

import json
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from loopml.client import Loopml

console = Console()
err_console = Console(stderr=True)


def client() -> Loopml:
    """The Loopml client for the current directory's settings."""
    return Loopml()


def parse_params(items: list[str] | None) -> dict[str, Any]:
    """``["k=v", "n=3"]`` -> ``{"k": "v", "n": 3}``; values are parsed as JSON when they can be."""
    params: dict[str, Any] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f"{item!r} is not key=value (example: --param epochs=10)")
        try:
            params[key] = json.loads(value)
        except json.JSONDecodeError:
            params[key] = value
    return params


def table(title: str, columns: list[str], rows: list[list[Any]]) -> Table:
    out = Table(title=title, show_lines=False)
    for col in columns:
        out.add_column(col)
    for row in rows:
        out.add_row(*["" if v is None else str(v) for v in row])
    return out
