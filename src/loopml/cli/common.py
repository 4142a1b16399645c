"""What every CLI module shares: the console, the client, and turning errors into messages."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import typer
from rich.console import Console
from rich.table import Table

from loopml.client import Loopml

if TYPE_CHECKING:
    from rich.progress import Progress

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


def progress_bar(
    *,
    label: str = "[bold]{task.description}",
    spinner: bool = True,
    transient: bool = False,
    disable: bool = False,
) -> Progress:
    """The CLI's one look for long work: [spinner] label, bar, done/total, elapsed time.

    ``transient`` clears the bar when done (when a table follows that says it all); ``disable``
    hides it (``--json`` output must stay parseable). rich.progress is imported here, not at
    start-up, because most commands never show a bar.
    """
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        SpinnerColumn,
        TextColumn,
        TimeElapsedColumn,
    )

    columns = [TextColumn(label), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()]
    if spinner:
        columns.insert(0, SpinnerColumn())
    return Progress(*columns, console=console, transient=transient, disable=disable)


def duration(seconds: float) -> str:
    """A short human duration: 42.0s, 3.5m, 2.1h, 4.0d."""
    if seconds < 60:
        return f"{seconds:.1f}s"
    if seconds < 3600:
        return f"{seconds / 60:.1f}m"
    if seconds < 86400:
        return f"{seconds / 3600:.1f}h"
    return f"{seconds / 86400:.1f}d"


def ago(ts: datetime) -> str:
    return duration((datetime.now(UTC) - ts).total_seconds()) + " ago"
