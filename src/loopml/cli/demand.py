"""``loopml demand``: run the weekly demand batch and read what it published.

``run`` executes (or ``--submit``s) ``demand.weekly`` for one Tuesday; ``forecast``/``staffing`` print
or export a store's published week; ``evaluate`` and ``ab`` show how the forecasts did once actuals
landed; ``check-deadline`` is the Thursday watch that fires the "forecast missing" alert.
"""

from __future__ import annotations

import json
import math
from datetime import datetime
from pathlib import Path
from typing import Any

import typer

from loopml.cli.common import client, console, progress_bar, table
from loopml.cli.pipelines import run_live
from loopml.errors import NotFoundError, ValidationError

demand_app = typer.Typer(
    help="Weekly store-demand forecasts and staff plans (reference system 1).", no_args_is_help=True
)


def register(app: typer.Typer) -> None:
    """Add the ``demand`` group to the root app."""
    app.add_typer(demand_app, name="demand")


def _config(path: Path | None, retrain: str | None) -> Any:
    from loopml.apps.demand.config import DemandConfig

    data: dict[str, Any] = {}
    if path is not None:
        if not path.is_file():
            raise ValidationError(f"--config {path}: no such file; give a JSON file of DemandConfig settings")
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise ValidationError(
                f"--config {path} is not valid JSON ({exc.msg} at line {exc.lineno})"
            ) from None
    if retrain is not None:
        data["retrain"] = retrain
    return DemandConfig.from_dict(data)


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    if isinstance(value, float):
        return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.{digits}f}"  # KRW, staff-hours
    return str(value)


@demand_app.command("run")
def run(
    date: str = typer.Option(
        ..., "--date", help="The run's Tuesday (YYYY-MM-DD); plans the week from the next Monday."
    ),
    source: str = typer.Option(
        "simulator",
        "--source",
        help="'simulator' or a CSV/Parquet file or directory (store_id, timestamp, visitors).",
    ),
    retrain: str = typer.Option(
        None, "--retrain", help="weekly (train a candidate) or keep (reuse the champion)."
    ),
    config: Path = typer.Option(
        None, "--config", help="JSON file with DemandConfig settings (see docs/demand.md)."
    ),
    inject_failure: str = typer.Option(
        "", "--inject-failure", help="Make this step fail once (shows the retry)."
    ),
    submit: bool = typer.Option(
        False, "--submit", help="Queue the run for a worker instead of running it here."
    ),
) -> None:
    """Run the weekly pipeline demand.weekly for one Tuesday (or queue it with --submit)."""
    from loopml.apps.demand import pipeline as weekly

    cfg = _config(config, retrain)
    if source != "simulator" and not Path(source).expanduser().exists():
        raise ValidationError(
            f"--source {source}: no such file or directory; give 'simulator' or a CSV/Parquet path"
        )
    params = weekly.weekly_params(date, cfg, source=source, inject_failure=inject_failure)
    lm = client()
    if submit:
        job = lm.pipelines.submit(weekly.WEEKLY, params, trigger="manual")
        console.print(
            f"queued run [bold]{job.payload['run_id']}[/] of {weekly.WEEKLY} as job {job.id}; a worker "
            f"(`loopml worker` or `loopml up`) runs it; follow it with `loopml pipelines show {job.payload['run_id']}`"
        )
        return
    result = run_live(lm, weekly.WEEKLY, params, steps=len(weekly.STEPS))
    rows = [[s.step, s.label, s.attempts, f"{s.duration_seconds or 0:.2f}s"] for s in result.steps]
    console.print(
        table(
            f"{weekly.WEEKLY} run {result.id[:8]}: {result.status}",
            ["step", "status", "attempts", "time"],
            rows,
        )
    )
    if result.status != "succeeded":
        failed = next((s for s in result.steps if s.status == "failed"), None)
        reason = failed.error.strip().splitlines()[-1] if failed and failed.error else result.error
        console.print(f"[red]failed:[/] {reason}\nsee `loopml pipelines show {result.id} --logs`")
        raise typer.Exit(1)
    release = lm.pipelines.output(result.id, "release")
    for line in release.get("events", []):
        console.print(f"  {line}")
    console.print(
        f"published week {weekly.week_id(weekly.shift_week(params['run_date']))}: "
        f"see `loopml demand forecast --store 1 --week {weekly.week_id(weekly.shift_week(params['run_date']))}`"
    )


def _week_or_latest(lm: Any, week: str | None, table_name: str) -> str:
    from loopml.apps.demand import results

    return results.parse_week(week) if week else results.latest_week(lm, table_name)


@demand_app.command("forecast")
def forecast(
    store: int = typer.Option(None, "--store", help="Store id (all stores when omitted)."),
    week: str = typer.Option(
        None, "--week", help="Monday of the shift week (default: the latest published)."
    ),
    grain: str = typer.Option("day", "--grain", help="day or hour (week/month for weekly/monthly data)."),
    csv: Path = typer.Option(None, "--csv", help="Write the rows to this CSV file instead of printing them."),
    all_models: bool = typer.Option(
        False, "--all-models", help="Also show the shadow model and the baseline."
    ),
) -> None:
    """Published forecasts of one week with their intervals and model version."""
    from loopml.apps.demand import results

    lm = client()
    week_id = _week_or_latest(lm, week, "forecasts")
    frame = results.read_forecasts(lm, store=store, week=week_id, grain=grain, used_only=not all_models)
    if csv is not None:
        csv.write_text(results.to_csv(frame))
        console.print(f"wrote {len(frame):,} forecast rows of week {week_id} to {csv}")
        return
    rows = [
        [int(r.store_id), str(r.ts)[:16], _fmt(r.forecast, 1), f"{r.lower:.1f}-{r.upper:.1f}", r.model, r.arm]
        for r in frame.head(200).itertuples()
    ]
    console.print(
        table(
            f"forecasts, week {week_id} ({grain})",
            ["store", "time", "forecast", "interval", "model", "arm"],
            rows,
        )
    )
    if len(frame) > 200:
        console.print(f"  ... {len(frame) - 200:,} more rows; use --store or --csv FILE")


@demand_app.command("staffing")
def staffing(
    store: int = typer.Option(None, "--store", help="Store id (all stores when omitted)."),
    week: str = typer.Option(
        None, "--week", help="Monday of the shift week (default: the latest published)."
    ),
    csv: Path = typer.Option(None, "--csv", help="Write the plan to this CSV file instead of printing it."),
) -> None:
    """The published staffing plan: staff per store and opening hour."""
    from loopml.apps.demand import results

    lm = client()
    week_id = _week_or_latest(lm, week, "staffing")
    frame = results.read_staffing(lm, store=store, week=week_id)
    if csv is not None:
        csv.write_text(results.to_csv(frame))
        console.print(f"wrote {len(frame):,} staffing rows of week {week_id} to {csv}")
        return
    if store is None:
        per_store = frame.groupby("store_id").agg(
            hours=("staff", "size"), staff_hours=("staff", "sum"), peak=("staff", "max")
        )
        rows = [[int(s), int(r.hours), int(r.staff_hours), int(r.peak)] for s, r in per_store.iterrows()]
        console.print(
            table(
                f"staffing plan, week {week_id}", ["store", "open hours", "staff-hours", "peak staff"], rows
            )
        )
        return
    rows = [[str(r.ts)[:16], _fmt(r.visitors_forecast, 1), int(r.staff), r.arm] for r in frame.itertuples()]
    console.print(
        table(f"store {store}, week {week_id}", ["hour", "visitors forecast", "staff", "arm"], rows)
    )


@demand_app.command("evaluate")
def evaluate(
    week: str = typer.Option(None, "--week", help="One evaluated week (default: all of them)."),
) -> None:
    """Forecast error and staffing cost (KRW) of the weeks whose actuals have landed, vs the naive plans."""
    from loopml.apps.demand import evaluation, results

    lm = client()
    frame = results.read_evaluation(lm, week=week)
    if frame.empty:
        raise NotFoundError(
            "no week has been evaluated yet: actuals land two weeks after a forecast is published"
        )
    rolled = evaluation.summary(frame)
    per_week = rolled.pop("per_week", None) or []
    rows = [[key, _fmt(value) if isinstance(value, float) else value] for key, value in _flat(rolled)]
    console.print(table(f"evaluation ({frame['week'].nunique()} week(s))", ["figure", "value"], rows))
    if per_week:
        columns = [
            "week",
            "stores",
            "wape_model",
            "wape_seasonal_naive",
            "cost_model",
            "cost_fixed",
            "saved_vs_fixed",
            "saved_vs_seasonal_naive",
        ]
        weekly = [
            [_fmt(w.get(c)) if isinstance(w.get(c), float) else w.get(c) for c in columns] for w in per_week
        ]
        console.print(table("per week (cost in KRW)", columns, weekly))


def _flat(data: Any, prefix: str = "") -> list[tuple[str, Any]]:
    if isinstance(data, dict):
        out: list[tuple[str, Any]] = []
        for key, value in data.items():
            out.extend(_flat(value, f"{prefix}{key}."))
        return out
    return [(prefix.rstrip("."), data)]


@demand_app.command("ab")
def ab() -> None:
    """The store A/B analyses: champion vs challenger WAPE, the paired-bootstrap CI and the verdict."""
    from loopml.apps.demand import results

    frame = results.read_ab(client())
    rows = [
        [
            str(r.week)[:10],
            r.weeks,
            r.stores,
            _fmt(r.champion_wape),
            _fmt(r.challenger_wape),
            f"[{_fmt(r.ci_low)}, {_fmt(r.ci_high)}]",
            r.verdict,
        ]
        for r in frame.itertuples()
    ]
    console.print(
        table(
            "store A/B",
            ["after week", "weeks", "stores", "champion WAPE", "challenger WAPE", "95% CI", "verdict"],
            rows,
        )
    )
    console.print(f"  {frame.iloc[-1]['explanation']}")


@demand_app.command("check-deadline")
def check_deadline(
    now: str = typer.Option(
        None, "--now", help="Pretend it is this Seoul time (ISO, e.g. 2026-12-03T18:30)."
    ),
) -> None:
    """Fire (or resolve) the critical alert when the coming week's forecast is not published by the deadline."""
    from loopml.apps.demand.pipeline import check_deadline as check

    moment = None
    if now:
        try:
            moment = datetime.fromisoformat(now)
        except ValueError:
            raise ValidationError(f"--now {now!r} is not an ISO datetime; e.g. 2026-12-03T18:30") from None
    result = check(client(), now=moment)
    state = {"fired": "[red]alert fired[/]", "resolved": "[green]alert resolved[/]"}.get(
        result.get("alert"), "no alert"
    )
    published = "published" if result["published"] else "NOT published"
    console.print(f"week {result['week']}: forecast {published}; deadline {result['deadline']}; {state}")


# -- `loopml demo demand` -------------------------------------------------------------------------------
def tell(lm: Any, fast: bool) -> None:
    """Run the demand story with a progress bar and print its figures (``loopml demo demand``)."""
    from loopml.apps.demand.story import demo_config, demo_weeks, run_weeks

    cfg, weeks = demo_config(fast), demo_weeks(fast)
    console.print(
        f"  {cfg.stores} stores, {cfg.years:g} years of {cfg.freq} visits, {weeks} weekly Tuesday runs "
        f"(backtest {cfg.backtest_weeks} weeks; the benchmark size is 300 stores, see docs/demand.md)"
    )
    lines: list[str] = []
    with progress_bar(transient=True) as bar:
        task = bar.add_task("demand.weekly", total=1)

        def progress(label: str, done: int, total: int) -> None:
            bar.update(task, description=label, completed=done, total=total)

        result = run_weeks(lm, cfg, weeks=weeks, say=lines.append, progress=progress)
    for line in lines:
        console.print(f"  {line}")
    console.print(table("demand: what the weekly batch achieved", ["figure", "value"], figures(result)))
    console.print(
        "  dashboard: `loopml up`, then http://127.0.0.1:8000/ui/demand (forecast vs actual, staffing, A/B)"
    )


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def _krw(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f} KRW"


def figures(result: Any) -> list[list[str]]:
    """The rows of the demo's summary table (a ``DemandStoryResult``)."""
    bt = result.backtest_wape
    rows = [
        [
            f"backtest WAPE ({grain})",
            f"seasonal-naive {_pct(bt.get('seasonal_naive', {}).get(grain))} -> "
            f"LightGBM {_pct(bt.get('lightgbm', {}).get(grain))}",
        ]
        for grain in ("day", "hour", "week", "month")
        if grain in bt.get("lightgbm", {})
    ]
    rows.append(["LightGBM WAPE below seasonal-naive", _pct(result.backtest_improvement)])
    rows.append(["weeks evaluated on actuals", ", ".join(result.evaluated_weeks) or "none yet"])
    ev = result.evaluation or {}
    if ev:
        rows.append(
            [
                "live WAPE: published vs seasonal-naive",
                f"{_pct(ev.get('wape_model'))} vs {_pct(ev.get('wape_seasonal_naive'))}",
            ]
        )
        rows.append(
            [
                "staffing cost saved vs fixed plan",
                f"{_krw(ev.get('saved_vs_fixed'))} ({_pct(ev.get('saved_vs_fixed_share'))})",
            ]
        )
        rows.append(
            [
                "staffing cost saved vs seasonal-naive plan",
                f"{_krw(ev.get('saved_vs_seasonal_naive'))} ({_pct(ev.get('saved_vs_seasonal_naive_share'))})",
            ]
        )
    ab = result.ab or {}
    if ab:
        ci = ""
        if ab.get("ci_low") is not None and ab.get("ci_high") is not None:
            ci = f"; 95% CI of the WAPE gain {ab['ci_low']:+.3f} .. {ab['ci_high']:+.3f}"
        rows.append(
            [
                f"store A/B: demand/{ab.get('champion')} vs demand/{ab.get('challenger')}",
                f"{ab.get('verdict')} after {ab.get('weeks', 0)} week(s){ci}",
            ]
        )
    else:
        rows.append(["store A/B", "no challenger live"])
    if result.failure_step:
        outcome = "survived by the retry" if result.failure_survived else "NOT survived"
        rows.append(["injected failure", f"step {result.failure_step!r}: {outcome}"])
    rows.append(["champion now", f"demand/{result.champion}"])
    per_week = ", ".join(f"{s:.0f}" for s in result.week_seconds)
    rows.append(["time", f"{result.seconds:.0f} s in all; per weekly run {per_week} s"])
    return rows
