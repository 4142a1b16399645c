"""``loopml serve`` (the HTTP API + dashboard) and ``loopml up`` (API, worker and scheduler together)."""

from __future__ import annotations

import os

import typer

from loopml.cli.common import console, err_console, table
from loopml.config import load_settings
from loopml.errors import ConfigError


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)
    app.command("up")(up)


def _check_port(port: int | None) -> None:
    if port is not None and not 1 <= port <= 65535:
        raise ConfigError(f"--port {port}: use a TCP port between 1 and 65535.")


def serve(
    host: str | None = typer.Option(None, help="Interface to bind (default: settings host, 127.0.0.1)."),
    port: int | None = typer.Option(None, help="TCP port (default: settings port, 8000)."),
    workers: int | None = typer.Option(
        None, min=1, max=64, help="Uvicorn worker processes (default: settings)."
    ),
    log_level: str | None = typer.Option(
        None, help="Uvicorn log level: critical, error, warning, info, debug."
    ),
) -> None:
    """Serve the admin API (/v1), dashboard (/ui), /healthz and /metrics with uvicorn (httptools + uvloop)."""
    import uvicorn

    _check_port(port)
    settings = load_settings()
    host = host or settings.host
    port = port or settings.port
    workers = workers or settings.workers
    console.print(
        f"loopml API on [bold]http://{host}:{port}[/]  dashboard: [bold]http://{host}:{port}/ui/[/]"
    )
    uvicorn.run(
        "loopml.serving.app:app_from_env",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        http="httptools",
        loop="uvloop",
        log_level=log_level or settings.log_level,
    )


def up(
    host: str | None = typer.Option(None, help="Interface the API binds (default: settings host)."),
    port: int | None = typer.Option(None, help="API port (default: settings port)."),
    concurrency: int = typer.Option(1, min=1, max=64, help="Jobs the worker runs at once."),
    no_worker: bool = typer.Option(False, "--no-worker", help="Do not start a worker."),
    no_scheduler: bool = typer.Option(False, "--no-scheduler", help="Do not start the scheduler."),
    grace: float = typer.Option(35.0, min=0.0, help="Seconds children get to stop before they are killed."),
) -> None:
    """Run everything: the API + dashboard, one worker and the scheduler, restarting crashed children."""
    from loopml.processes import ROLES, Supervisor, child_command, install_stop_signals, role_problem

    _check_port(port)
    settings = load_settings()
    host = host or settings.host
    port = port or settings.port
    wanted = [
        r for r in ROLES if not (r == "worker" and no_worker) and not (r == "scheduler" and no_scheduler)
    ]
    commands = {}
    rows = []
    for role in wanted:
        problem = role_problem(role)
        if problem:
            rows.append([role, f"[yellow]skipped[/]: {problem}"])
            continue
        commands[role] = child_command(role, settings, host=host, port=port, concurrency=concurrency)
        rows.append([role, "[green]starting[/]"])
    console.print(table("loopml up", ["process", "status"], rows))
    if "api" not in commands:
        raise ConfigError("loopml up: the API cannot start (see the table above); fix the install and retry.")
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    supervisor = Supervisor(
        commands, on_event=lambda m: err_console.print(f"[dim]up:[/] {m}"), grace_seconds=grace, env=env
    )
    install_stop_signals(supervisor.stop_event)
    console.print(
        f"dashboard: [bold]http://{host}:{port}/ui/[/]   API: http://{host}:{port}/docs   (Ctrl-C stops all)"
    )
    supervisor.run()
