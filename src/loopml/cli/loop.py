"""``loopml loop ...`` (closed-loop runs) and ``loopml policies ...`` (the action policies that start them)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import typer
from rich.panel import Panel
from rich.table import Table

from loopml.cli.common import client, console, table
from loopml.errors import ValidationError

loop_app = typer.Typer(
    help="Closed-loop runs: alert -> retrain -> gates -> shadow -> canary -> promote / rollback.",
    no_args_is_help=True,
)
policies_app = typer.Typer(
    help="Action policies: which alerts retrain and release which model.", no_args_is_help=True
)

_STATUS_STYLE = {
    "ok": "green",
    "waiting": "yellow",
    "failed": "red",
    "skipped": "dim",
    "promoted": "bold green",
    "rolled_back": "bold red",
    "blocked": "bold red",
    "failed_run": "bold red",
    "rejected": "magenta",
    "running": "cyan",
    "waiting_approval": "yellow",
    "resolved": "green",
    "warning": "yellow",
    "critical": "bold red",
    "info": "cyan",
}
_ICON = {"ok": "✔", "waiting": "…", "failed": "✘", "resolved": "✔"}


def register(app: typer.Typer) -> None:
    """Add the ``loop`` and ``policies`` groups to the root app."""
    app.add_typer(loop_app, name="loop")
    app.add_typer(policies_app, name="policies")


def _style(status: str) -> str:
    return f"[{_STATUS_STYLE.get(status, 'white')}]{status}[/]"


# ------------------------------------------------------------------------------------------- runs


@loop_app.command("list")
def list_runs(
    status: str | None = typer.Option(
        None, help="Only this status (running, waiting_approval, promoted, ...)."
    ),
    policy: str | None = typer.Option(None, help="Only runs of this policy."),
    limit: int = typer.Option(50, min=1, max=1000, help="Newest N runs."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """List loop runs, newest first."""
    lm = client()
    try:
        runs = lm.loop.list(status=status, policy=policy, limit=limit)
    finally:
        lm.close()
    if as_json:
        console.print_json(json.dumps([r.to_dict() for r in runs], default=str))
        return
    rows = [
        [
            r.id,
            r.policy,
            _style(r.status),
            r.stage,
            r.alert_key or "(manual)",
            r.candidate or "",
            r.outcome or "",
        ]
        for r in runs
    ]
    console.print(
        table(
            f"loop runs ({len(runs)})",
            ["id", "policy", "status", "stage", "alert", "candidate", "outcome"],
            rows,
        )
    )


@loop_app.command("show")
def show(
    run_id: int = typer.Argument(..., help="Loop run id (see `loopml loop list`)."),
    as_json: bool = typer.Option(False, "--json", help="Print the run and its story as JSON."),
) -> None:
    """Show one run as a timeline, from the alert that triggered it to its outcome."""
    lm = client()
    try:
        run = lm.loop.get(run_id)
        story = lm.loop.story(run_id)
    finally:
        lm.close()
    if as_json:
        console.print_json(json.dumps({**run.to_dict(), "story": story}, default=str))
        return
    console.print(timeline(run, story))


def timeline(run: Any, story: list[dict[str, Any]]) -> Panel:
    """The story as a Rich timeline: time, step, status, what happened."""
    grid = Table.grid(padding=(0, 1))
    grid.add_column(style="dim", no_wrap=True)
    grid.add_column(no_wrap=True)
    grid.add_column(no_wrap=True)
    grid.add_column()
    for item in story:
        at = str(item["at"])[11:19]
        status = str(item["status"])
        icon = _ICON.get(status, "•")
        grid.add_row(at, f"{icon} [bold]{item['step']}[/]", _style(status), str(item["detail"]))
    title = f"loop run {run.id} - policy {run.policy} - {_style(run.status)}" + (
        f" - {run.baseline} -> {run.candidate}" if run.candidate else ""
    )
    return Panel(grid, title=title, title_align="left")


def _decide(action: str, run_id: int, actor: str, reason: str | None) -> None:
    lm = client()
    try:
        fn = lm.loop.approve if action == "approve" else lm.loop.reject
        run = fn(run_id, actor=actor, reason=reason)
    finally:
        lm.close()
    console.print(
        f"loop run {run.id}: {_style(run.status)} (stage {run.stage})"
        + (f" - {run.outcome}" if run.outcome else "")
    )


@loop_app.command("approve")
def approve(
    run_id: int = typer.Argument(..., help="A run waiting for approval."),
    reason: str | None = typer.Option(None, help="Why (kept in the audit log)."),
    actor: str = typer.Option("cli", help="Who approves (kept in the audit log)."),
) -> None:
    """Approve a run waiting for a person: it retrains, or promotes (approve_promotion)."""
    _decide("approve", run_id, actor, reason)


@loop_app.command("reject")
def reject(
    run_id: int = typer.Argument(..., help="A run in progress."),
    reason: str | None = typer.Option(None, help="Why (kept in the audit log)."),
    actor: str = typer.Option("cli", help="Who rejects (kept in the audit log)."),
) -> None:
    """Stop a run in progress: the endpoint goes back to its baseline."""
    _decide("reject", run_id, actor, reason)


@loop_app.command("start")
def start(
    policy: str = typer.Argument(..., help="Action policy name (see `loopml policies list`)."),
    alert: int | None = typer.Option(None, help="The alert id this run answers."),
    reason: str | None = typer.Option(None, help="Why (kept in the audit log)."),
    actor: str = typer.Option("cli", help="Who starts it (kept in the audit log)."),
) -> None:
    """Start a run of POLICY by hand (the cooldown does not apply; an active run does)."""
    lm = client()
    try:
        run = lm.loop.start(policy, alert=alert, actor=actor, reason=reason)
    finally:
        lm.close()
    console.print(
        f"loop run {run.id} started: {_style(run.status)}; move it on with `loopml loop advance {run.id}` "
        "(or let a worker do it)"
    )


@loop_app.command("advance")
def advance(
    run_id: int | None = typer.Argument(
        None, help="One run; without it: process open alerts, then every running run."
    ),
    until_done: bool = typer.Option(False, "--until-done", help="Repeat until no run is running any more."),
    interval: float = typer.Option(
        5.0, min=0.0, max=3600.0, help="Seconds between rounds with --until-done."
    ),
    max_rounds: int = typer.Option(720, min=1, max=100_000, help="Give up after this many rounds."),
) -> None:
    """Move runs on by one step each (a retrain pipeline no worker has claimed runs in this process)."""
    lm = client()
    try:
        with console.status("advancing the loop ...") as status:
            for round_no in range(1, max_rounds + 1):
                if run_id is None:
                    started = lm.loop.process_alerts()
                    for run in started:
                        console.print(f"started loop run {run.id} for policy {run.policy} ({run.alert_key})")
                    runs = lm.loop.advance_all()
                else:
                    runs = [lm.loop.advance(run_id)]
                for run in runs:
                    last = run.steps[-1] if run.steps else None
                    detail = f" - {last.detail}" if last is not None else ""
                    status.update(f"round {round_no}: run {run.id} {run.status} at {run.stage}{detail[:100]}")
                running = [r for r in runs if r.status == "running"]
                if not until_done or not running:
                    break
                time.sleep(interval)
    finally:
        lm.close()
    if not runs:
        console.print("no running loop runs")
    for run in runs:
        console.print(
            f"loop run {run.id}: {_style(run.status)} at stage {run.stage}"
            + (f" - {run.outcome}" if run.outcome else "")
        )


# --------------------------------------------------------------------------------------- policies


@policies_app.command("create")
def create_policy(
    spec: Path = typer.Option(
        ..., "--spec", exists=False, help="A JSON file with the ActionPolicy (see docs/loop.md)."
    ),
    replace: bool = typer.Option(False, "--replace", help="Replace the policy with the same name."),
    actor: str = typer.Option("cli", help="Who (kept in the audit log)."),
) -> None:
    """Create (or with --replace, update) an action policy from a JSON file."""
    if not spec.is_file():
        raise ValidationError(f"--spec {spec}: no such file; write the policy as JSON first", field="spec")
    try:
        data = json.loads(spec.read_text())
    except ValueError as exc:
        raise ValidationError(f"--spec {spec} is not valid JSON: {exc}", field="spec") from None
    lm = client()
    try:
        name = data.get("name") if isinstance(data, dict) else None
        exists = replace and isinstance(name, str) and any(p.name == name for p in lm.loop.list_policies())
        info = (
            lm.loop.update_policy(name, data, actor=actor)
            if exists
            else lm.loop.create_policy(data, actor=actor)
        )
    finally:
        lm.close()
    console.print(f"policy {info.name} {'updated' if exists else 'created'}")


@policies_app.command("list")
def list_policies(
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """List action policies."""
    lm = client()
    try:
        infos = lm.loop.list_policies()
    finally:
        lm.close()
    if as_json:
        console.print_json(json.dumps([i.to_dict() for i in infos], default=str))
        return
    rows = []
    for info in infos:
        p = info.policy
        on = " ".join(f"{k}={v}" for k, v in p.on.items() if v is not None)
        canary = (p.release or {}).get("canary") or {}
        rows.append(
            [
                p.name,
                "yes" if p.enabled else "no",
                on,
                p.endpoint,
                p.model,
                p.retrain["pipeline"],
                p.mode,
                ",".join(f"{w:g}" for w in canary.get("weights", [])) or "-",
                f"{p.cooldown_seconds:g}s",
            ]
        )
    columns = ["name", "enabled", "on", "endpoint", "model", "pipeline", "mode", "canary", "cooldown"]
    console.print(table(f"action policies ({len(infos)})", columns, rows))


@policies_app.command("show")
def show_policy(name: str = typer.Argument(..., help="Policy name.")) -> None:
    """Show one policy as JSON."""
    lm = client()
    try:
        info = lm.loop.get_policy(name)
    finally:
        lm.close()
    console.print_json(json.dumps(info.to_dict(), default=str))


@policies_app.command("delete")
def delete_policy(
    name: str = typer.Argument(..., help="Policy name."),
    actor: str = typer.Option("cli", help="Who (kept in the audit log)."),
) -> None:
    """Delete a policy (refused while it has a run in progress; its runs stay)."""
    lm = client()
    try:
        lm.loop.delete_policy(name, actor=actor)
    finally:
        lm.close()
    console.print(f"policy {name} deleted")


def _enable(name: str, enabled: bool, actor: str) -> None:
    lm = client()
    try:
        lm.loop.set_policy_enabled(name, enabled, actor=actor)
    finally:
        lm.close()
    console.print(f"policy {name} {'enabled' if enabled else 'disabled'}")


@policies_app.command("enable")
def enable(
    name: str = typer.Argument(..., help="Policy name."), actor: str = typer.Option("cli", help="Who.")
) -> None:
    """Let a paused policy start runs again."""
    _enable(name, True, actor)


@policies_app.command("disable")
def disable(
    name: str = typer.Argument(..., help="Policy name."), actor: str = typer.Option("cli", help="Who.")
) -> None:
    """Pause a policy: it starts no runs (runs in progress go on)."""
    _enable(name, False, actor)
