"""``loopml slos ...`` and ``loopml rules ...``: define SLOs and alert rules, evaluate them, see the budget."""

from __future__ import annotations

import json
from typing import Any

import typer

from loopml.alerts import SEVERITIES
from loopml.cli.common import client, console, progress_bar, table
from loopml.errors import ValidationError
from loopml.monitoring.rules import OPS, SOURCES, RuleSpec, default_rules
from loopml.monitoring.slo import KINDS, SloEvaluation, SloSpec

slos_app = typer.Typer(help="Service level objectives and their error budgets.", no_args_is_help=True)
rules_app = typer.Typer(help="Alert rules over monitor windows and SLO readings.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    """Add the ``slos`` and ``rules`` groups to the root app."""
    app.add_typer(slos_app, name="slos")
    app.add_typer(rules_app, name="rules")


def _fmt(value: Any, digits: int = 4) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "NO"
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return str(value)


def _budget(value: float | None) -> str:
    if value is None:
        return "-"
    style = "green" if value > 0.25 else "yellow" if value > 0 else "bold red"
    return f"[{style}]{value * 100:.1f}%[/]"


# -- slos --------------------------------------------------------------------------------------
@slos_app.command("create")
def create_slo(
    name: str = typer.Argument(..., help="SLO name, e.g. fraud-p99."),
    kind: str = typer.Option(..., help=f"What to measure: {', '.join(KINDS)}."),
    objective: float = typer.Option(
        ...,
        help="Good when value <= objective: ms (latency), share 0-1 (error_rate), seconds "
        "(queue_age, freshness), missed ticks (schedule).",
    ),
    endpoint: str | None = typer.Option(None, help="Endpoint (latency, error_rate)."),
    percentile: float | None = typer.Option(None, help="Latency percentile (default 99)."),
    queue: str | None = typer.Option(None, help="Job queue (queue_age)."),
    async_kind: str | None = typer.Option(None, help="Async request kind (queue_age)."),
    dataset: str | None = typer.Option(None, help="Dataset (freshness)."),
    feature_view: str | None = typer.Option(None, help="Feature view (freshness)."),
    pipeline: str | None = typer.Option(None, help="Scheduled pipeline (schedule)."),
    grace: float | None = typer.Option(
        None, help="Seconds a scheduled run may start late (schedule, default 300)."
    ),
    window: int = typer.Option(3600, help="Seconds each reading looks back."),
    good_ratio: float = typer.Option(0.99, help="Share of good events promised over the period."),
    period_days: float = typer.Option(28, help="Error-budget period in days."),
    description: str = typer.Option("", help="What the SLO protects, for people reading alerts."),
    actor: str = typer.Option("cli", help="Who (kept in the audit log)."),
) -> None:
    """Define an SLO."""
    options = {
        "endpoint": endpoint,
        "percentile": percentile,
        "queue": queue,
        "async_kind": async_kind,
        "dataset": dataset,
        "feature_view": feature_view,
        "pipeline": pipeline,
        "grace_seconds": grace,
    }
    target = {key: value for key, value in options.items() if value is not None}
    spec = SloSpec(
        name,
        kind,
        target=target,
        objective=objective,
        window_seconds=window,
        budget={"good_ratio": good_ratio, "period_days": period_days},
        description=description,
    )
    lm = client()
    try:
        info = lm.slos.create(spec, actor=actor)
    finally:
        lm.close()
    console.print(f"SLO {info.name} created: {kind} {json.dumps(info.spec.target)} <= {objective:g}")


@slos_app.command("list")
def list_slos(as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table.")) -> None:
    """List SLOs with their latest reading and the error budget left."""
    lm = client()
    try:
        status = lm.slos.status()
    finally:
        lm.close()
    if as_json:
        console.print_json(json.dumps(status))
        return
    rows = [
        [
            s["name"],
            s["kind"],
            json.dumps(s["target"]),
            _fmt(s["objective"]),
            _fmt(s["value"]),
            _fmt(s["ok"]),
            _budget(s["budget_remaining"]),
            _fmt(s["burn_rate"], 3),
            s["evaluated_at"] or "never",
        ]
        for s in status
    ]
    columns = ["name", "kind", "target", "objective", "value", "ok", "budget left", "burn", "evaluated"]
    console.print(table(f"SLOs ({len(status)})", columns, rows))


@slos_app.command("show")
def show_slo(
    name: str = typer.Argument(..., help="SLO name (see `loopml slos list`)."),
    limit: int = typer.Option(20, min=1, max=10_000, help="Newest N readings."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Show an SLO's spec and its recent readings."""
    lm = client()
    try:
        info = lm.slos.get(name)
        history = lm.slos.history(name, limit=limit)
    finally:
        lm.close()
    if as_json:
        console.print_json(json.dumps({"slo": info.to_dict(), "history": [h.to_dict() for h in history]}))
        return
    spec = info.to_dict()
    console.print(
        table(
            f"SLO {name}",
            ["field", "value"],
            [[k, json.dumps(v) if isinstance(v, dict) else v] for k, v in spec.items()],
        )
    )
    console.print(_readings(f"readings ({len(history)})", history))


@slos_app.command("evaluate")
def evaluate_slo(
    name: str | None = typer.Argument(None, help="SLO name; omit with --all."),
    all_: bool = typer.Option(False, "--all", help="Evaluate every SLO."),
) -> None:
    """Measure SLOs now and store the readings."""
    if (name is None) == (not all_):
        raise ValidationError("give an SLO name or --all (not both)", field="name")
    lm = client()
    try:
        names = [name] if name else [s.name for s in lm.slos.list()]
        results: list[SloEvaluation] = []
        with progress_bar(transient=True) as bar:
            task = bar.add_task("evaluating SLOs", total=len(names))
            for each in names:
                results.append(lm.slos.evaluate(each))
                bar.advance(task)
    finally:
        lm.close()
    console.print(_readings(f"evaluated ({len(results)})", results, with_name=True))


@slos_app.command("delete")
def delete_slo(
    name: str = typer.Argument(..., help="SLO name."),
    yes: bool = typer.Option(False, "--yes", help="Do not ask for confirmation."),
    actor: str = typer.Option("cli", help="Who (kept in the audit log)."),
) -> None:
    """Delete an SLO and its readings."""
    if not yes:
        typer.confirm(f"Delete SLO {name} and its history?", abort=True)
    lm = client()
    try:
        lm.slos.delete(name, actor=actor)
    finally:
        lm.close()
    console.print(f"SLO {name} deleted")


def _readings(title: str, items: list[SloEvaluation], *, with_name: bool = False) -> Any:
    rows = [
        ([e.slo] if with_name else [])
        + [
            e.at.isoformat(timespec="seconds"),
            _fmt(e.value),
            _fmt(e.ok),
            _budget(e.budget_remaining),
            _fmt(e.burn_rate, 3),
        ]
        for e in items
    ]
    columns = (["slo"] if with_name else []) + ["at", "value", "ok", "budget left", "burn"]
    return table(title, columns, rows)


# -- rules -------------------------------------------------------------------------------------
@rules_app.command("create")
def create_rule(
    name: str = typer.Argument(..., help="Rule name; its alert key is rule:<name>."),
    source: str = typer.Option(..., help=f"What the rule reads: {', '.join(SOURCES)}."),
    metric: str = typer.Option(
        ...,
        help="drift: share_drifted, dataset_drifted, prediction, feature:<col>, drifted:<col>; "
        "performance: auc, precision, mae ... or gap:<slice>:<metric>; slo: ok, value, budget_remaining, burn_rate.",
    ),
    op: str = typer.Option(..., help=f"Comparison: {' '.join(OPS)}."),
    threshold: float = typer.Option(..., help="Value compared with the metric."),
    monitor: str | None = typer.Option(None, help="Monitor (drift, performance)."),
    slo: str | None = typer.Option(None, help="SLO (slo)."),
    for_windows: int = typer.Option(1, help="Consecutive windows the condition must hold."),
    severity: str = typer.Option("warning", help=f"Alert severity: {', '.join(SEVERITIES)}."),
    min_rows: int = typer.Option(0, help="Skip windows with fewer rows (labelled rows for performance)."),
    description: str = typer.Option("", help="Added to the alert's detail."),
    disabled: bool = typer.Option(False, "--disabled", help="Create it switched off."),
    actor: str = typer.Option("cli", help="Who (kept in the audit log)."),
) -> None:
    """Define an alert rule."""
    spec = RuleSpec(
        name,
        source,
        monitor=monitor,
        slo=slo,
        metric=metric,
        op=op,
        threshold=threshold,
        for_windows=for_windows,
        severity=severity,
        min_rows=min_rows,
        description=description,
    )
    lm = client()
    try:
        info = lm.alert_rules.create(spec, enabled=not disabled, actor=actor)
    finally:
        lm.close()
    console.print(f"rule {info.name} created: {metric} {op} {threshold:g} -> {severity} alert {spec.key}")


@rules_app.command("defaults")
def create_defaults(
    monitor: str = typer.Argument(..., help="Monitor to watch."),
    actor: str = typer.Option("cli", help="Who (kept in the audit log)."),
) -> None:
    """Create the starter rules for a monitor: dataset drift, prediction drift, AUC drop."""
    lm = client()
    try:
        created = [lm.alert_rules.create(spec, actor=actor) for spec in default_rules(monitor)]
    finally:
        lm.close()
    console.print(f"created {len(created)} rules: {', '.join(r.name for r in created)}")


@rules_app.command("list")
def list_rules(as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table.")) -> None:
    """List alert rules."""
    lm = client()
    try:
        rules = lm.alert_rules.list()
    finally:
        lm.close()
    if as_json:
        console.print_json(json.dumps([r.to_dict() for r in rules]))
        return
    rows = [
        [
            r.name,
            "on" if r.enabled else "off",
            r.spec.source,
            r.spec.monitor or r.spec.slo,
            f"{r.spec.metric} {r.spec.op} {r.spec.threshold:g}",
            r.spec.for_windows,
            r.spec.severity,
        ]
        for r in rules
    ]
    console.print(
        table(
            f"alert rules ({len(rules)})",
            ["name", "state", "source", "on", "condition", "windows", "severity"],
            rows,
        )
    )


@rules_app.command("show")
def show_rule(
    name: str = typer.Argument(..., help="Rule name."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Show one rule."""
    lm = client()
    try:
        info = lm.alert_rules.get(name)
    finally:
        lm.close()
    if as_json:
        console.print_json(json.dumps(info.to_dict()))
        return
    console.print(table(f"rule {name}", ["field", "value"], [[k, v] for k, v in info.to_dict().items()]))


@rules_app.command("enable")
def enable_rule(
    name: str = typer.Argument(..., help="Rule name."), actor: str = typer.Option("cli", help="Who.")
) -> None:
    """Evaluate a rule again."""
    lm = client()
    try:
        lm.alert_rules.enable(name, actor=actor)
    finally:
        lm.close()
    console.print(f"rule {name} enabled")


@rules_app.command("disable")
def disable_rule(
    name: str = typer.Argument(..., help="Rule name."), actor: str = typer.Option("cli", help="Who.")
) -> None:
    """Stop evaluating a rule (an alert it opened stays open)."""
    lm = client()
    try:
        lm.alert_rules.disable(name, actor=actor)
    finally:
        lm.close()
    console.print(f"rule {name} disabled")


@rules_app.command("delete")
def delete_rule(
    name: str = typer.Argument(..., help="Rule name."),
    yes: bool = typer.Option(False, "--yes", help="Do not ask for confirmation."),
    actor: str = typer.Option("cli", help="Who (kept in the audit log)."),
) -> None:
    """Delete a rule."""
    if not yes:
        typer.confirm(f"Delete rule {name}?", abort=True)
    lm = client()
    try:
        lm.alert_rules.delete(name, actor=actor)
    finally:
        lm.close()
    console.print(f"rule {name} deleted")


@rules_app.command("evaluate")
def evaluate_rules(
    name: list[str] | None = typer.Argument(None, help="Rules to evaluate (default: every enabled rule)."),
) -> None:
    """Evaluate rules now: fire or resolve their alerts."""
    lm = client()
    try:
        names = name or [r.name for r in lm.alert_rules.list(enabled=True)]
        outcomes = []
        with progress_bar(transient=True) as bar:
            task = bar.add_task("evaluating rules", total=len(names))
            for each in names:
                outcomes.extend(lm.alert_rules.evaluate(names=[each]))
                bar.advance(task)
    finally:
        lm.close()
    style = {"fired": "bold red", "resolved": "green", "ok": "white", "no_data": "dim"}
    rows = [
        [o.rule, f"[{style[o.state]}]{o.state}[/]", _fmt(o.value), o.alert_id, o.window_start]
        for o in outcomes
    ]
    console.print(
        table(f"rules evaluated ({len(outcomes)})", ["rule", "state", "value", "alert", "window"], rows)
    )
