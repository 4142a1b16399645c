"""``loopml runs list|show|compare|experiments``: look at tracked runs from the terminal."""

from __future__ import annotations

import json
import math
from pathlib import Path

import typer
from rich.table import Table

from loopml.cli.common import client, console, table
from loopml.errors import ValidationError
from loopml.tracking.models import Run

runs_app = typer.Typer(help="Tracked runs: params, metrics, artifacts, lineage.", no_args_is_help=True)

CHART_SUFFIXES = (".html", ".htm", ".svg")


def register(app: typer.Typer) -> None:
    """Add ``loopml runs ...`` to the root app."""
    app.add_typer(runs_app, name="runs")


def _num(value: float | None) -> str:
    if value is None:
        return "-"
    if not math.isfinite(value):
        return str(value)
    return f"{value:.6g}"


def _duration(run: Run) -> str:
    seconds = run.duration_seconds
    if seconds is None:
        return "running" if run.status == "running" else "-"
    return f"{seconds:.1f}s" if seconds < 120 else f"{seconds / 60:.1f}m"


def _status(status: str) -> str:
    colour = {"finished": "green", "failed": "red", "killed": "yellow", "running": "cyan"}[status]
    return f"[{colour}]{status}[/]"


@runs_app.command("list")
def list_runs(
    experiment: str | None = typer.Option(None, "--experiment", "-e", help="Only runs of this experiment."),
    status: str | None = typer.Option(
        None, help="Only runs with this status: running, finished, failed, killed."
    ),
    limit: int = typer.Option(20, min=1, max=10_000, help="How many runs (newest first)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """List runs, newest first, with their status, duration, git commit and latest metrics."""
    with client() as lm:
        runs = lm.tracking.list_runs(experiment=experiment, limit=limit, status=status)
    if as_json:
        console.print_json(json.dumps([r.to_dict() for r in runs]))
        return
    out = Table(title=f"runs{' in ' + experiment if experiment else ''} ({len(runs)})")
    for col in ("id", "experiment", "name", "status", "started", "duration", "git"):
        out.add_column(col, no_wrap=col in ("id", "status", "started"), overflow="fold")
    out.add_column("metrics (latest)", overflow="fold", ratio=1)
    for run in runs:
        metrics = ", ".join(f"{k}={_num(m.last)}" for k, m in list(run.metrics.items())[:4])
        if len(run.metrics) > 4:
            metrics += f" (+{len(run.metrics) - 4})"
        out.add_row(
            run.id[:12],
            run.experiment,
            run.name or "",
            _status(run.status),
            run.start_time.strftime("%Y-%m-%d %H:%M:%S"),
            _duration(run),
            (run.git_sha or "")[:8] + ("*" if run.tags.get("git.dirty") == "true" else ""),
            metrics,
        )
    console.print(out)
    if not runs:
        console.print("no runs yet: start one with lm.tracking.start_run('my-experiment')")


@runs_app.command("experiments")
def experiments() -> None:
    """List experiments and how many runs each has."""
    with client() as lm:
        rows = lm.tracking.list_experiments()
    console.print(
        table(
            "experiments",
            ["id", "name", "runs", "created"],
            [[e.id, e.name, e.run_count, e.created_at.strftime("%Y-%m-%d %H:%M")] for e in rows],
        )
    )


@runs_app.command("show")
def show(
    run_id: str = typer.Argument(..., help="Run id (a unique prefix of at least 4 characters is enough)."),
    chart: Path | None = typer.Option(
        None, help="Write metric charts to this file: .html (page with params + charts) or .svg (one metric)."
    ),
    metric: list[str] | None = typer.Option(
        None, "--metric", "-m", help="Metric(s) to chart (repeatable); default: all."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of tables."),
) -> None:
    """Show a run: params, latest metrics, tags, artifacts, inputs; optionally render metric charts."""
    if chart is not None and chart.suffix.lower() not in CHART_SUFFIXES:
        raise ValidationError(
            f"--chart {str(chart)!r}: use a file ending in .html or .svg (e.g. --chart run.html)."
        )
    with client() as lm:
        run = lm.tracking.get_run(run_id)
        keys = list(metric or run.metrics)
        histories = {key: lm.tracking.metric_history(run.id, key) for key in keys} if chart else {}
    if as_json:
        console.print_json(json.dumps(run.to_dict()))
    else:
        _print_run(run)
    if chart is not None:
        _write_chart(run, histories, chart)


def _print_run(run: Run) -> None:
    header = Table.grid(padding=(0, 2))
    header.add_row("run", f"[bold]{run.id}[/]")
    header.add_row("experiment", run.experiment + (f" / {run.name}" if run.name else ""))
    header.add_row("status", _status(run.status) + (f"  ({run.error})" if run.error else ""))
    header.add_row("started", run.start_time.isoformat(timespec="seconds") + f"  duration {_duration(run)}")
    dirty = " (dirty)" if run.tags.get("git.dirty") == "true" else ""
    header.add_row("git", (run.git_sha or "unknown") + dirty)
    if run.pipeline_run_id:
        header.add_row("pipeline run", run.pipeline_run_id)
    console.print(header)
    if run.params:
        console.print(table("params", ["key", "value"], [[k, v] for k, v in sorted(run.params.items())]))
    if run.metrics:
        console.print(
            table(
                "metrics",
                ["key", "latest", "step", "min", "max", "points"],
                [
                    [k, _num(m.last), m.last_step, _num(m.min), _num(m.max), m.count]
                    for k, m in run.metrics.items()
                ],
            )
        )
    if run.tags:
        console.print(table("tags", ["key", "value"], [[k, v] for k, v in sorted(run.tags.items())]))
    if run.artifacts:
        console.print(
            table(
                "artifacts", ["name", "size", "digest"], [[a.name, a.size, a.digest] for a in run.artifacts]
            )
        )
    if run.inputs:
        console.print(table("inputs", ["dataset_version_id"], [[i] for i in run.inputs]))


def _write_chart(run: Run, histories: dict, path: Path) -> None:
    from loopml.tracking.chart import render_html, render_svg

    if not histories:
        raise ValidationError(f"run {run.id} has no metrics to chart; log some with run.log_metric(...).")
    if path.suffix.lower() == ".svg":
        if len(histories) != 1:
            raise ValidationError(
                f"--chart {path.name}: an .svg holds one metric; pick it with --metric "
                f"(one of: {', '.join(histories)}) or write .html for all."
            )
        key, points = next(iter(histories.items()))
        text = render_svg(key, points)
    else:
        text = render_html(run, histories)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise ValidationError(f"--chart {str(path)!r}: cannot write the file ({exc}).") from None
    console.print(f"wrote {path} ({len(histories)} chart{'s' if len(histories) != 1 else ''})")


@runs_app.command("compare")
def compare(
    run_ids: list[str] = typer.Argument(..., help="Two or more run ids (or unique prefixes)."),
    goal: list[str] | None = typer.Option(
        None,
        help="Direction of 'best' for a metric, key=min|max (repeatable); default inferred from the name.",
    ),
    all_params: bool = typer.Option(
        False, "--all-params", help="Also show params that are the same in every run."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """Params that differ, and each metric's final and best value, side by side (best run in bold)."""
    goals = {}
    for item in goal or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValidationError(f"--goal {item!r}: write key=min or key=max (e.g. --goal auc=max).")
        goals[key] = value
    with client() as lm:
        result = lm.tracking.compare(run_ids, goals=goals)
    if as_json:
        console.print_json(json.dumps(result.to_dict()))
        return
    out = Table(title=f"compare {len(result.run_ids)} runs")
    out.add_column("")
    for rid, name in zip(result.run_ids, result.names, strict=True):
        out.add_column(rid[:12] + (f"\n{name}" if name else ""), overflow="fold")
    for key, values in result.params_differ.items():
        out.add_row(f"[cyan]param[/] {key}", *["-" if v is None else v for v in values])
    if all_params:
        for key, value in result.params_same.items():
            out.add_row(f"[dim]param {key}[/]", *[value] * len(result.run_ids))
    for m in result.metrics:
        arrow = "↓" if m.goal == "min" else "↑"
        out.add_row(f"[magenta]{m.key}[/] final", *[_num(v) for v in m.final])
        best_cells = [
            f"[bold green]{_num(v)}[/]" if rid == m.best_run else _num(v)
            for rid, v in zip(result.run_ids, m.best, strict=True)
        ]
        out.add_row(f"[magenta]{m.key}[/] best {arrow}", *best_cells)
    console.print(out)
    if not result.params_differ:
        console.print(f"all {len(result.params_same)} params are the same in every run")
