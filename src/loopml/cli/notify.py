"""``loopml webhooks ...`` and ``loopml notifications list``: manage receivers, see what was sent."""

from __future__ import annotations

import json

import typer

from loopml.cli.common import ago, client, console, table
from loopml.notify import Delivery

webhooks_app = typer.Typer(
    help="Add, test and remove webhooks; inspect and retry deliveries.", no_args_is_help=True
)
notifications_app = typer.Typer(help="List stored notifications.", no_args_is_help=True)

_STATUS_STYLE = {"delivered": "green", "pending": "yellow", "failed": "bold red"}


def register(app: typer.Typer) -> None:
    """Add the ``webhooks`` and ``notifications`` groups to the root app."""
    app.add_typer(webhooks_app, name="webhooks")
    app.add_typer(notifications_app, name="notifications")


@webhooks_app.command("add")
def add(
    name: str = typer.Argument(..., help="Webhook name, e.g. ops-slack."),
    url: str = typer.Argument(..., help="http(s) URL that receives a POST per notification."),
    fmt: str = typer.Option("json", "--format", help="Body format: json or slack."),
    topic: list[str] = typer.Option(
        None, "--topic", help="Topic prefix to send (repeatable), e.g. --topic alert. Default: every topic."
    ),
    secret: str | None = typer.Option(
        None,
        envvar="LOOPML_WEBHOOK_SECRET",
        help="Sign bodies with HMAC-SHA256 (X-Loopml-Signature). The env var keeps it out of shell history.",
    ),
    actor: str = typer.Option("cli", help="Who (kept in the audit log)."),
) -> None:
    """Add a webhook."""
    with client() as lm:
        webhook = lm.notify.add_webhook(
            name, url, format=fmt, topics=topic or ["*"], secret=secret, actor=actor
        )
    signed = "signed" if webhook.has_secret else "unsigned"
    console.print(
        f"webhook {webhook.name} -> {webhook.url} ({webhook.format}, {signed}, topics {', '.join(webhook.topics)})"
    )


@webhooks_app.command("update")
def update(
    name: str = typer.Argument(..., help="Webhook name (see `loopml webhooks list`)."),
    url: str | None = typer.Option(None, help="New URL."),
    fmt: str | None = typer.Option(None, "--format", help="New body format: json or slack."),
    topic: list[str] = typer.Option(None, "--topic", help="Replace the topic prefixes (repeatable)."),
    active: bool | None = typer.Option(None, "--active/--inactive", help="Resume or pause deliveries."),
    actor: str = typer.Option("cli", help="Who (kept in the audit log)."),
) -> None:
    """Change a webhook's URL, format, topics or active flag (the secret stays as it is)."""
    with client() as lm:
        webhook = lm.notify.update_webhook(
            name, url=url, format=fmt, topics=topic or None, active=active, actor=actor
        )
    state = "active" if webhook.active else "inactive"
    console.print(
        f"webhook {webhook.name} -> {webhook.url} ({webhook.format}, {state}, topics {', '.join(webhook.topics)})"
    )


@webhooks_app.command("list")
def list_webhooks(
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """List webhooks."""
    with client() as lm:
        webhooks = lm.notify.list_webhooks()
    if as_json:
        console.print_json(json.dumps([w.to_dict() for w in webhooks]))
        return
    rows = [
        [
            w.name,
            w.url,
            w.format,
            ", ".join(w.topics),
            "yes" if w.has_secret else "no",
            "yes" if w.active else "no",
        ]
        for w in webhooks
    ]
    console.print(
        table(f"webhooks ({len(webhooks)})", ["name", "url", "format", "topics", "signed", "active"], rows)
    )


@webhooks_app.command("remove")
def remove(
    name: str = typer.Argument(..., help="Webhook name."),
    actor: str = typer.Option("cli", help="Who (kept in the audit log)."),
) -> None:
    """Remove a webhook and its delivery history."""
    with client() as lm:
        lm.notify.remove_webhook(name, actor=actor)
    console.print(f"webhook {name} removed")


@webhooks_app.command("test")
def test(
    name: str = typer.Argument(..., help="Webhook name."),
    actor: str = typer.Option("cli", help="Who (shown in the test message)."),
) -> None:
    """Send a test notification to one webhook now and show what the receiver answered."""
    with client() as lm, console.status(f"sending a test notification to {name} ..."):
        delivery = lm.notify.test_webhook(name, actor=actor)
    _print_outcome(delivery)
    if delivery.status != "delivered":
        raise typer.Exit(1)


@webhooks_app.command("deliveries")
def deliveries(
    status: str | None = typer.Option(None, help="Only this status: pending, delivered or failed."),
    notification: int | None = typer.Option(None, help="Only the deliveries of this notification id."),
    limit: int = typer.Option(50, min=1, max=1000, help="Newest N deliveries."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """List webhook deliveries, newest first."""
    with client() as lm:
        found = lm.notify.deliveries(status=status, notification_id=notification, limit=limit)
    if as_json:
        console.print_json(json.dumps([d.to_dict() for d in found]))
        return
    rows = [
        [
            d.id,
            d.webhook,
            d.topic,
            d.key,
            _status(d.status),
            d.attempts,
            d.response_status,
            (d.last_error or "")[:80],
            ago(d.updated_at),
        ]
        for d in found
    ]
    columns = ["id", "webhook", "topic", "key", "status", "attempts", "http", "last error", "updated"]
    console.print(table(f"webhook deliveries ({len(found)})", columns, rows))


@webhooks_app.command("retry")
def retry(
    delivery_id: int = typer.Argument(
        ..., help="Delivery id (see `loopml webhooks deliveries --status failed`)."
    ),
    actor: str = typer.Option("cli", help="Who (kept in the audit log)."),
) -> None:
    """Queue a failed delivery again (a worker on the `notify` queue sends it)."""
    with client() as lm:
        delivery = lm.notify.retry(delivery_id, actor=actor)
    console.print(f"delivery {delivery.id} to {delivery.webhook} queued again as job {delivery.job_id}")


@notifications_app.command("list")
def list_notifications(
    recipient: str | None = typer.Option(None, help="Only notifications for this recipient."),
    topic: str | None = typer.Option(None, help="Only topics starting with this, e.g. alert."),
    unread: bool = typer.Option(False, "--unread", help="Only unread notifications."),
    limit: int = typer.Option(50, min=1, max=1000, help="Newest N notifications."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """List notifications, newest first."""
    with client() as lm:
        found = lm.notify.notifications(
            recipient=recipient, topic=topic, unread=True if unread else None, limit=limit
        )
    if as_json:
        console.print_json(json.dumps([x.to_dict() for x in found]))
        return
    rows = [
        [x.id, x.topic, x.recipient, x.title, x.key, "yes" if x.read else "no", ago(x.created_at)]
        for x in found
    ]
    columns = ["id", "topic", "recipient", "title", "key", "read", "created"]
    console.print(table(f"notifications ({len(found)})", columns, rows))


def _status(status: str) -> str:
    return f"[{_STATUS_STYLE.get(status, 'white')}]{status}[/]"


def _print_outcome(delivery: Delivery) -> None:
    http = f"HTTP {delivery.response_status}" if delivery.response_status else "no response"
    console.print(f"delivery {delivery.id} to {delivery.webhook}: {_status(delivery.status)} ({http})")
    if delivery.last_error:
        console.print(f"  {delivery.last_error}", highlight=False, markup=False)
