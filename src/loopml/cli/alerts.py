"""``loopml alerts list|show|resolve``: see what needs attention and close what was handled."""

from __future__ import annotations

import json

import typer
from rich.panel import Panel

from loopml.alerts import SEVERITIES, STATUSES, Alert
from loopml.cli.common import ago, client, console, table

alerts_app = typer.Typer(help="List, inspect and resolve alerts.", no_args_is_help=True)

_SEVERITY_STYLE = {"info": "cyan", "warning": "yellow", "critical": "bold red"}


def register(app: typer.Typer) -> None:
    """Add the ``alerts`` group to the root app."""
    app.add_typer(alerts_app, name="alerts")


@alerts_app.command("list")
def list_alerts(
    status: str | None = typer.Option(None, help=f"Only this status: {', '.join(STATUSES)}."),
    severity: str | None = typer.Option(None, help=f"Only this severity: {', '.join(SEVERITIES)}."),
    source: str | None = typer.Option(None, help="Only alerts raised by this source."),
    limit: int = typer.Option(50, min=1, max=1000, help="Most recently fired N alerts."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """List alerts, most recently fired first."""
    lm = client()
    try:
        alerts = lm.alerts.list(status=status, severity=severity, source=source, limit=limit)
    finally:
        lm.close()
    if as_json:
        console.print_json(json.dumps([alert.to_dict() for alert in alerts]))
        return
    rows = [
        [
            alert.id,
            _severity(alert),
            alert.status,
            alert.key,
            alert.title,
            alert.source,
            alert.fire_count,
            ago(alert.last_fired_at),
        ]
        for alert in alerts
    ]
    columns = ["id", "severity", "status", "key", "title", "source", "fired", "last fired"]
    console.print(table(f"alerts ({len(alerts)})", columns, rows))


@alerts_app.command("show")
def show(alert_id: int = typer.Argument(..., help="Alert id (see `loopml alerts list`).")) -> None:
    """Show one alert with its detail and data."""
    lm = client()
    try:
        alert = lm.alerts.get(alert_id)
    finally:
        lm.close()
    data = alert.to_dict()
    rows = [[key, data[key]] for key in data if key not in ("detail", "data")]
    console.print(table(f"alert {alert.id}", ["field", "value"], rows))
    if alert.detail:
        console.print(Panel(alert.detail, title="detail"))
    if alert.data:
        console.print(Panel(json.dumps(alert.data, indent=2), title="data"))


@alerts_app.command("resolve")
def resolve(
    key: str = typer.Argument(..., help="The alert key (see `loopml alerts list`)."),
    reason: str = typer.Option("", help="Why it is resolved (kept in the audit log)."),
    actor: str = typer.Option("cli", help="Who (kept in the audit log)."),
) -> None:
    """Resolve the open alert with KEY (a no-op, said so, when none is open)."""
    lm = client()
    try:
        alert = lm.alerts.resolve(key, reason=reason, actor=actor)
    finally:
        lm.close()
    if alert is None:
        console.print(f"no open alert with key {key!r}; nothing to resolve")
        return
    console.print(f"alert {alert.id} ({alert.key}) resolved after {alert.fire_count} firing(s)")


def _severity(alert: Alert) -> str:
    return f"[{_SEVERITY_STYLE.get(alert.severity, 'white')}]{alert.severity}[/]"
