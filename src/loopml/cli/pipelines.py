"""``loopml run PIPELINE`` and ``loopml pipelines list|runs|show|schedule``."""

from __future__ import annotations

import json
from typing import Any

import typer
from rich.table import Table

from loopml.cli.common import client, console, progress_bar, table
from loopml.errors import ValidationError

pipelines_app = typer.Typer(help="Pipelines: definitions, run records and schedules.", no_args_is_help=True)

_DONE = {"succeeded", "skipped", "failed", "upstream_failed"}
_COLOURS = {
    "succeeded": "green",
    "skipped": "cyan",
    "skipped (cached)": "cyan",
    "failed": "red",
    "upstream_failed": "yellow",
    "running": "blue",
    "retrying": "magenta",
    "queued": "white",
    "pending": "white",
}


def register(app: typer.Typer) -> None:
    """Add ``run`` and the ``pipelines`` group to the root app."""
    app.command("run")(run)
    app.add_typer(pipelines_app, name="pipelines")


def _parse(items: list[str] | None) -> dict[str, Any]:
    """``k=v`` pairs as strings: the pipeline converts each to its default's type (and says so if it cannot)."""
    out: dict[str, Any] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValidationError(f"--param {item!r} is not key=value; example: --param weeks=8")
        out[key.strip()] = value
    return out


def _status(label: str) -> str:
    return f"[{_COLOURS.get(label, 'white')}]{label}[/]"


def _seconds(value: float | None) -> str:
    return "" if value is None else f"{value:.2f}s"


def run(
    pipeline: str = typer.Argument(..., help="Pipeline name (see `loopml pipelines list`)."),
    param: list[str] = typer.Option(
        None, "--param", "-p", help="Override a param: --param k=v (repeatable)."
    ),
    submit: bool = typer.Option(
        False, "--submit", help="Queue the run for a worker instead of running it here."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the run record as JSON."),
) -> None:
    """Run a pipeline now with a live progress bar, or --submit it as a durable job."""
    lm = client()
    params = _parse(param)
    if submit:
        job = lm.pipelines.submit(pipeline, params, trigger="manual")
        run_id = job.payload["run_id"]
        if as_json:
            console.print_json(json.dumps({"job_id": job.id, "run_id": run_id}))
            return
        console.print(
            f"queued run [bold]{run_id}[/] of {pipeline} as job {job.id}; "
            f"start a worker (`loopml worker`) and follow it with `loopml pipelines show {run_id}`"
        )
        return
    info = lm.pipelines.get(pipeline)
    params = lm.pipelines.resolve_params(pipeline, params)  # bad params fail before the progress bar
    result = run_live(lm, pipeline, params, steps=len(info.steps), transient=as_json, disable=as_json)
    if as_json:
        console.print_json(json.dumps(result.to_dict()))
    else:
        _print_run(result, logs=False)
    if result.status != "succeeded":
        raise typer.Exit(1)


def run_live(
    lm: Any,
    pipeline: str,
    params: dict[str, Any],
    *,
    steps: int,
    transient: bool = False,
    disable: bool = False,
) -> Any:
    """Run ``pipeline`` here behind a bar that advances as each of its ``steps`` finishes; returns the run.

    Shared by ``loopml pipelines run`` and the app commands that run one pipeline (``loopml demand
    run``), so a step that is retried or skipped moves every bar the same way.
    """
    with progress_bar(transient=transient, disable=disable) as progress:
        task = progress.add_task(f"{pipeline}: starting", total=steps)
        finished: set[str] = set()

        def on_step(state: Any) -> None:
            if state.status in _DONE and state.step not in finished:
                finished.add(state.step)
                progress.update(task, advance=1, description=f"{pipeline}: {state.step} {state.label}")
            elif state.status not in _DONE:
                progress.update(task, description=f"{pipeline}: {state.step} {state.label}")

        return lm.pipelines.run(pipeline, params, on_step=on_step)


def _print_run(result: Any, *, logs: bool) -> None:
    rows = [
        [
            s.step,
            _status(s.label),
            s.attempts,
            _seconds(s.duration_seconds),
            s.output_format or "",
            (s.output_digest or "")[7:19],
            (s.error or "").strip().splitlines()[-1][:80] if s.error else "",
        ]
        for s in result.steps
    ]
    title = f"run {result.id} of {result.pipeline}: {result.status} ({_seconds(result.duration_seconds) or 'not finished'})"
    console.print(table(title, ["step", "status", "attempts", "duration", "format", "output", "error"], rows))
    if result.error:
        console.print(f"[red]error:[/] {result.error}", highlight=False)
    if logs:
        for s in result.steps:
            if s.log.strip():
                console.rule(f"{s.step} log")
                console.print(s.log.rstrip(), markup=False, highlight=False)


@pipelines_app.command("list")
def list_pipelines(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """List defined pipelines: steps in execution order, params, schedule and last run."""
    infos = client().pipelines.list()
    if as_json:
        console.print_json(json.dumps([i.to_dict() for i in infos]))
        return
    rows = [
        [
            i.name,
            " -> ".join(s.name for s in i.steps),
            ", ".join(f"{k}={v!r}" for k, v in i.params.items()),
            i.schedule or "",
            _status(i.last_status) if i.last_status else "never run",
        ]
        for i in infos
    ]
    console.print(table("pipelines", ["name", "steps", "params", "schedule (UTC)", "last run"], rows))
    if not infos:
        console.print(
            "no pipelines defined: add @pipeline(...) to pipelines.py or list modules in pipeline_modules"
        )


@pipelines_app.command("runs")
def list_runs(
    pipeline: str = typer.Argument(None, help="Only runs of this pipeline."),
    limit: int = typer.Option(20, "--limit", "-n", help="How many runs, newest first."),
    status: str = typer.Option(None, "--status", help="queued, running, succeeded or failed."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Recent pipeline runs with status, trigger and timings."""
    runs = client().pipelines.runs(pipeline, limit=limit, status=status)
    if as_json:
        console.print_json(json.dumps([r.to_dict() for r in runs]))
        return
    rows = [
        [
            r.id,
            r.pipeline,
            _status(r.status),
            r.trigger,
            r.created_at.strftime("%Y-%m-%d %H:%M"),
            _seconds(r.duration_seconds),
            f"{sum(s.status in ('succeeded', 'skipped') for s in r.steps)}/{len(r.steps)}"
            f" ({sum(s.status == 'skipped' for s in r.steps)} cached)",
        ]
        for r in runs
    ]
    out = Table(title="pipeline runs")
    out.add_column("run", no_wrap=True, min_width=32)
    for col in ("pipeline", "status", "trigger", "created (UTC)", "duration", "steps done"):
        out.add_column(col)
    for row in rows:
        out.add_row(*[str(v) for v in row])
    console.print(out)


@pipelines_app.command("show")
def show(
    run_id: str = typer.Argument(..., help="Run id (from `loopml pipelines runs`)."),
    logs: bool = typer.Option(False, "--logs", help="Also print each step's captured log."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """One run: per-step status, attempts, duration, output artifact and errors."""
    result = client().pipelines.get_run(run_id)
    if as_json:
        console.print_json(json.dumps(result.to_dict()))
        return
    console.print(
        f"params: {json.dumps(result.params)}   trigger: {result.trigger}   job: {result.job_id or '-'}",
        highlight=False,
    )
    _print_run(result, logs=logs)


@pipelines_app.command("schedule")
def schedule(
    pause: str = typer.Option(None, "--pause", help="Pause this pipeline's schedule."),
    resume: str = typer.Option(None, "--resume", help="Resume this pipeline's schedule."),
    tick: bool = typer.Option(
        False, "--tick", help="Enqueue runs for due slots now (what `loopml up` does)."
    ),
) -> None:
    """Show cron schedules (UTC) with their last and next slot; pause, resume or fire due ones."""
    lm = client()
    if pause:
        lm.pipelines.set_schedule_enabled(pause, False, actor="cli")
    if resume:
        lm.pipelines.set_schedule_enabled(resume, True, actor="cli")
    if tick:
        from loopml.pipelines.scheduler import scheduler_tick

        jobs = scheduler_tick(lm.ctx)
        console.print(f"enqueued {len(jobs)} scheduled run(s)")
    rows = [
        [
            s.pipeline,
            s.cron,
            "yes" if s.enabled else "[yellow]paused[/]",
            s.last_slot.strftime("%Y-%m-%d %H:%M") if s.last_slot else "never",
            s.next_due.strftime("%Y-%m-%d %H:%M"),
        ]
        for s in lm.pipelines.schedules()
    ]
    console.print(table("schedules (UTC)", ["pipeline", "cron", "enabled", "last slot", "next due"], rows))
