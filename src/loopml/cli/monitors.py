"""``loopml monitors ...`` (define, run and read monitors) and ``loopml monitor tick`` (one loop turn)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import typer

from loopml.cli.common import client, console, progress_bar, table

monitors_app = typer.Typer(
    help="Drift and delayed-label performance monitors over the inference log.", no_args_is_help=True
)
monitor_app = typer.Typer(
    help="The monitoring loop (monitors -> SLOs -> alert rules -> closed loop).", no_args_is_help=True
)

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_DURATION = re.compile(r"^\s*(\d+)\s*([smhdw]?)\s*$")


def register(app: typer.Typer) -> None:
    """Add the ``monitors`` and ``monitor`` groups to the root app."""
    app.add_typer(monitors_app, name="monitors")
    app.add_typer(monitor_app, name="monitor")


def parse_duration(text: str, option: str) -> int:
    """``90`` / ``30m`` / ``1h`` / ``14d`` / ``2w`` -> seconds."""
    match = _DURATION.match(text or "")
    if not match:
        raise typer.BadParameter(
            f"{text!r} is not a duration; use e.g. 300, 30m, 1h, 1d or 2w", param_hint=option
        )
    return int(match.group(1)) * _UNITS[match.group(2) or "s"]


@monitors_app.command("create")
def create(
    name: str = typer.Option(..., "--name", help="Monitor name."),
    endpoint: str = typer.Option(..., "--endpoint", help="The endpoint whose inference log is watched."),
    reference_dataset: str | None = typer.Option(
        None, help="Reference: a dataset (its latest version by default)."
    ),
    reference_version: str = typer.Option("latest", help="Version of --reference-dataset."),
    reference_since: str | None = typer.Option(
        None, help="Reference: the endpoint's own log from this ISO time ..."
    ),
    reference_until: str | None = typer.Option(None, help="... to this ISO time."),
    window: str = typer.Option("1h", help="Window length: 300, 30m, 1h, 1d ..."),
    feature: list[str] | None = typer.Option(
        None, "--feature", "-f", help="Input field to watch (repeat); default all."
    ),
    no_prediction: bool = typer.Option(False, help="Do not watch the model's output."),
    task: str = typer.Option("auto", help="Performance task: auto, classification or regression."),
    threshold: float = typer.Option(0.5, help="Classification threshold on the score."),
    slice_: list[str] | None = typer.Option(
        None, "--slice", help="Input field to slice performance by (repeat)."
    ),
    label_horizon: str = typer.Option(
        "14d", help="How long labels keep arriving (late labels refresh windows)."
    ),
    min_rows: int = typer.Option(
        30, help="Windows with fewer rows (labelled rows) get no drift (performance)."
    ),
    spec_file: Path | None = typer.Option(
        None, "--spec", exists=True, dir_okay=False, help="A JSON spec instead."
    ),
    actor: str = typer.Option("cli", help="Who (kept in the audit log)."),
) -> None:
    """Create a monitor; its reference is profiled now."""
    if spec_file is not None:
        spec = json.loads(spec_file.read_text())
    else:
        if reference_dataset:
            version = int(reference_version) if reference_version.isdigit() else reference_version
            reference = {"dataset": reference_dataset, "version": version}
        else:
            reference = {"since": reference_since, "until": reference_until}
        spec = {
            "name": name,
            "endpoint": endpoint,
            "features": feature or None,
            "prediction": not no_prediction,
            "reference": reference,
            "window_seconds": parse_duration(window, "--window"),
            "performance": {
                "task": task,
                "threshold": threshold,
                "slices": slice_ or [],
                "label_horizon_seconds": parse_duration(label_horizon, "--label-horizon"),
            },
            "min_rows": min_rows,
        }
    lm = client()
    try:
        info = lm.monitors.create(spec, actor=actor)
    finally:
        lm.close()
    ref = info.reference or {}
    console.print(
        f"monitor {info.name} created on endpoint {info.endpoint}: "
        + (
            f"reference {ref.get('rows')} rows, columns {', '.join(ref.get('columns', []))}"
            if ref
            else "reference profiled on the first run"
        )
    )


@monitors_app.command("list")
def list_monitors(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """List monitors with their watermark and last run."""
    lm = client()
    try:
        infos = lm.monitors.list()
    finally:
        lm.close()
    if as_json:
        console.print_json(json.dumps([i.to_dict() for i in infos]))
        return
    rows = [
        [
            i.name,
            i.endpoint,
            f"{i.spec.window_seconds}s",
            ", ".join((i.reference or {}).get("columns", [])),
            i.watermark,
            i.last_run_at,
        ]
        for i in infos
    ]
    console.print(
        table(
            f"monitors ({len(infos)})",
            ["name", "endpoint", "window", "columns", "watermark", "last run"],
            rows,
        )
    )


@monitors_app.command("show")
def show(name: str = typer.Argument(..., help="Monitor name.")) -> None:
    """Show a monitor's spec, reference and latest window."""
    lm = client()
    try:
        info = lm.monitors.get(name)
        latest = lm.monitors.latest(name)
    finally:
        lm.close()
    console.print_json(json.dumps(info.to_dict(), default=str))
    if latest is None:
        console.print("no windows yet: run `loopml monitors run " + name + "`")
        return
    drift = latest.drift or {}
    console.print(
        f"latest window {latest.window_start:%Y-%m-%d %H:%M}: {latest.rows} rows, {latest.labelled} labelled, "
        f"drifted: {', '.join(drift.get('drifted_features', [])) or 'none'}"
    )


@monitors_app.command("run")
def run(
    name: str | None = typer.Argument(None, help="Monitor name (default: every monitor)."),
    now: str | None = typer.Option(
        None, help="ISO time that decides which windows are closed (default: now)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Compute the closed windows after each monitor's watermark and refresh late labels."""
    lm = client()
    try:
        names = [name] if name else [m.name for m in lm.monitors.list()]
        runs = []
        with progress_bar(transient=True, disable=as_json) as progress:
            task = progress.add_task("monitors", total=len(names))
            for item in names:
                progress.update(task, description=item)
                if name:
                    runs.append(lm.monitors.run(item, now=now))
                else:
                    try:
                        runs.append(lm.monitors.run(item, now=now))
                    except Exception as exc:  # one broken monitor is reported, the others run
                        from loopml.monitoring.windows import MonitorRun

                        runs.append(MonitorRun(monitor=item, error=str(exc)))
                progress.advance(task)
    finally:
        lm.close()
    if as_json:
        console.print_json(json.dumps([r.to_dict() for r in runs]))
        return
    for r in runs:
        if r.error:
            console.print(f"[red]{r.monitor}: {r.error}[/]")
            continue
        console.print(
            f"{r.monitor}: {r.windows_computed} window(s) computed, {r.windows_recomputed} refreshed for late labels, "
            f"{r.rows_read} log rows read, watermark {r.watermark}"
            + (f", drift in {len(r.drifted_windows)} window(s)" if r.drifted_windows else "")
            + (f", {r.pending_windows} window(s) left for the next run" if r.pending_windows else "")
        )


@monitors_app.command("drift")
def drift(
    name: str = typer.Argument(..., help="Monitor name."),
    feature: str | None = typer.Option(
        None, help="One feature's statistic per window (default: the latest window)."
    ),
    limit: int = typer.Option(48, min=1, help="Windows shown with --feature."),
) -> None:
    """Drift of every feature in the latest window, or one feature over time."""
    lm = client()
    try:
        if feature is not None:
            series = lm.monitors.drift_series(name, feature).tail(limit)
            rows = [
                [
                    f"{r.window_start:%Y-%m-%d %H:%M}",
                    r.test,
                    f"{r.statistic:.4g}",
                    f"{r.threshold:.4g}",
                    "DRIFT" if r.drifted else "",
                ]
                for r in series.itertuples()
            ]
            console.print(table(f"{name}: {feature}", ["window", "test", "statistic", "threshold", ""], rows))
            return
        latest = lm.monitors.latest(name)
    finally:
        lm.close()
    if latest is None or not latest.drift:
        console.print("no drift computed yet (no window, or too few rows in the latest one)")
        return
    rows = [
        [
            feat,
            d["kind"],
            d["test"],
            f"{d['statistic']:.4g}",
            "" if d["p_value"] is None else f"{d['p_value']:.3g}",
            f"{d['threshold']:.4g}",
            "DRIFT" if d["drifted"] else "",
        ]
        for feat, d in latest.drift["features"].items()
    ]
    title = f"{name} @ {latest.window_start:%Y-%m-%d %H:%M}: {latest.drift['share_drifted']:.0%} drifted" + (
        " (dataset drift)" if latest.drift["dataset_drifted"] else ""
    )
    console.print(table(title, ["feature", "kind", "test", "statistic", "p", "threshold", ""], rows))


@monitors_app.command("performance")
def performance(
    name: str = typer.Argument(..., help="Monitor name."),
    limit: int = typer.Option(48, min=1, help="Newest windows shown."),
) -> None:
    """Performance per window (windows with enough labels), with the largest slice gap."""
    lm = client()
    try:
        windows = [w for w in lm.monitors.windows(name, limit=limit) if w.performance]
    finally:
        lm.close()
    if not windows:
        console.print("no performance yet: labels arrive later (send feedback), then run the monitor")
        return
    metrics = [
        m
        for m in ("auc", "accuracy", "precision", "recall", "f1", "mae", "rmse", "wape", "bias")
        if m in windows[0].performance["metrics"]
    ]
    rows = []
    for w in windows:
        perf = w.performance
        gaps = [
            (f"{col}.{metric}", gap) for col, items in perf["gaps"].items() for metric, gap in items.items()
        ]
        widest = max(gaps, key=lambda g: g[1], default=None)
        values = ["" if perf["metrics"].get(m) is None else f"{perf['metrics'][m]:.4g}" for m in metrics]
        rows.append(
            [
                f"{w.window_start:%Y-%m-%d %H:%M}",
                perf["labelled"],
                *values,
                "" if widest is None else f"{widest[0]} {widest[1]:.3g}",
            ]
        )
    console.print(
        table(
            f"{name}: performance ({windows[0].performance['task']})",
            ["window", "labelled", *metrics, "widest gap"],
            rows,
        )
    )


@monitors_app.command("report")
def report(
    name: str = typer.Argument(..., help="Monitor name."),
    out: Path = typer.Option(Path("report.html"), "--out", "-o", help="HTML file to write."),
    limit: int = typer.Option(500, min=1, help="Newest windows in the report."),
) -> None:
    """Write an HTML report (Plotly charts, works offline): drift per feature, performance, traffic."""
    from loopml.monitoring.report import render_report

    lm = client()
    try:
        info = lm.monitors.get(name)
        windows = lm.monitors.windows(name, limit=limit)
    finally:
        lm.close()
    out.write_text(render_report(info, windows), encoding="utf-8")
    console.print(f"wrote {out} ({len(windows)} windows)")


@monitors_app.command("delete")
def delete(
    name: str = typer.Argument(..., help="Monitor name."),
    actor: str = typer.Option("cli", help="Who (kept in the audit log)."),
) -> None:
    """Delete a monitor and its windows."""
    lm = client()
    try:
        lm.monitors.delete(name, actor=actor)
    finally:
        lm.close()
    console.print(f"monitor {name} deleted")


@monitor_app.command("tick")
def tick_command(
    now: str | None = typer.Option(None, help="ISO time to run the tick at (default: now)."),
    as_json: bool = typer.Option(False, "--json", help="Print the whole result as JSON."),
) -> None:
    """Run one monitoring tick: monitors, SLOs, alert rules, then the closed loop."""
    from loopml.monitoring.tick import tick

    lm = client()
    try:
        with progress_bar(transient=True, disable=as_json) as progress:
            progress.add_task("monitoring tick", total=None)
            result = tick(lm, now=now)
    finally:
        lm.close()
    if as_json:
        console.print_json(json.dumps(result))
        return
    rows = []
    for part, outcome in result["parts"].items():
        detail = outcome.get("error") or (
            f"{len(outcome['result'])} item(s)" if isinstance(outcome.get("result"), list) else ""
        )
        rows.append([part, "ok" if outcome["ok"] else "[red]failed[/]", f"{outcome['seconds']:.2f}s", detail])
    console.print(table(f"monitoring tick @ {result['at']}", ["part", "status", "time", "detail"], rows))
