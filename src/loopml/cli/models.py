"""``loopml models``: list and inspect registered models, protect aliases, promote through gates, roll back."""

from __future__ import annotations

import getpass
import json
import os
from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from loopml.cli.common import client, console, table
from loopml.errors import ValidationError
from loopml.registry import GateBlockedError, GateReport, ModelVersion, parse_ref

models_app = typer.Typer(help="Model registry: versions, aliases and release gates.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    """Add this module's commands to the root app."""
    from loopml.cli.scoring import add_score_command

    add_score_command(models_app)
    app.add_typer(models_app, name="models")


def _actor(actor: str | None) -> str:
    if actor:
        return actor
    try:
        return os.environ.get("LOOPML_ACTOR") or getpass.getuser()
    except (KeyError, OSError):  # no login name in some containers
        return "cli"


ACTOR_HELP = "Who is acting (recorded in the audit trail; default: $LOOPML_ACTOR or your login)."


@models_app.command("list")
def list_models() -> None:
    """List models with their version count, latest version and aliases."""
    rows = []
    for m in client().registry.list_models():
        aliases = ", ".join(
            f"{a}{'*' if a in m.protected else ''}->{v}" for a, v in sorted(m.aliases.items())
        )
        rows.append(
            [
                m.name,
                m.version_count,
                m.latest_version,
                aliases or "-",
                m.created_at.strftime("%Y-%m-%d %H:%M"),
            ]
        )
    if not rows:
        console.print("no models yet; register one with lm.registry.register(name, model, input_example=...)")
        return
    console.print(
        table("models (* = protected alias)", ["model", "versions", "latest", "aliases", "created"], rows)
    )


@models_app.command("show")
def show(
    ref: str = typer.Argument(
        ..., help="A model (demand), a version (demand/3) or an alias (demand@champion)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of tables."),
) -> None:
    """Show a model's versions and aliases, or one version's signature, metrics, lineage and gate results."""
    lm = client()
    parsed = parse_ref(ref)
    if parsed.alias is None and parsed.number is None and "/" not in ref:
        info = lm.registry.get_model(parsed.name)
        versions = lm.registry.versions(parsed.name, limit=50)
        if as_json:
            console.print_json(
                json.dumps({"model": info.to_dict(), "versions": [v.to_dict() for v in versions]})
            )
            return
        console.print(f"[bold]{info.name}[/] {info.description}")
        rows = [
            [
                v.number,
                v.flavor,
                ", ".join(v.aliases) or "-",
                _metrics(v.metrics),
                v.created_by,
                v.created_at.strftime("%Y-%m-%d %H:%M"),
            ]
            for v in versions
        ]
        console.print(table("versions", ["version", "flavor", "aliases", "metrics", "by", "created"], rows))
        _print_aliases(lm, parsed.name)
        return
    version = lm.registry.get_version(ref)
    results = lm.registry.gate_results(version.model, version.number)
    if as_json:
        console.print_json(json.dumps({**version.to_dict(), "gate_results": [r.to_dict() for r in results]}))
        return
    _print_version(version)
    if results:
        console.print(_results_table(f"gate results of {version.ref}", results))


def _metrics(metrics: dict[str, Any]) -> str:
    return (
        ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in metrics.items()) or "-"
    )


def _print_version(v: ModelVersion) -> None:
    rows = [
        ["version", v.ref],
        ["flavor", f"{v.flavor} {json.dumps(v.flavor_meta)}"],
        ["artifact", v.digest],
        ["aliases", ", ".join(v.aliases) or "-"],
        ["metrics", _metrics(v.metrics)],
        ["run", v.run_id or "-"],
        ["dataset versions", ", ".join(map(str, v.lineage.get("dataset_version_ids", []))) or "-"],
        ["git sha", v.lineage.get("git_sha") or "-"],
        ["created", f"{v.created_at:%Y-%m-%d %H:%M:%S} by {v.created_by}"],
        ["description", v.description or "-"],
    ]
    console.print(table(f"model version {v.ref}", ["field", "value"], rows))
    cols = [
        [
            c["name"],
            c["dtype"],
            "yes" if c.get("nullable") else "no",
            ", ".join(map(str, c.get("categories") or [])) or "",
        ]
        for c in v.signature.get("columns", [])
    ]
    console.print(table("signature", ["column", "dtype", "nullable", "categories"], cols))


def _print_aliases(lm: Any, name: str) -> None:
    rows = [
        [
            a.alias,
            a.version or "(unset)",
            "yes" if a.protected else "no",
            ", ".join(g["type"] for g in a.gates) or "-",
            a.updated_by,
            a.updated_at.strftime("%Y-%m-%d %H:%M"),
        ]
        for a in lm.registry.aliases(name)
    ]
    if rows:
        console.print(table("aliases", ["alias", "version", "protected", "gates", "by", "updated"], rows))


@models_app.command("aliases")
def aliases(
    name: str = typer.Argument(..., help="Model name."),
    history: bool = typer.Option(False, "--history", help="Also show every alias move and rollback."),
) -> None:
    """Show a model's aliases, their gates and (with --history) the audit trail of moves."""
    lm = client()
    _print_aliases(lm, name)
    if history:
        rows = [
            [
                m.at.strftime("%Y-%m-%d %H:%M:%S"),
                m.alias,
                m.kind,
                m.from_version or "-",
                m.to_version,
                m.actor,
                m.reason or "",
            ]
            for m in lm.registry.history(name)
        ]
        console.print(
            table(
                "alias history (newest first)",
                ["when", "alias", "kind", "from", "to", "actor", "reason"],
                rows,
            )
        )


@models_app.command("set-alias")
def set_alias(
    name: str = typer.Argument(..., help="Model name."),
    alias: str = typer.Argument(..., help="Alias to move (champion, challenger, ...)."),
    version: str = typer.Argument(..., help="Version number to point it at."),
    reason: str = typer.Option("", "--reason", "-r", help="Why (required with --force)."),
    force: bool = typer.Option(False, "--force", help="Bypass the gates of a protected alias (audited)."),
    actor: str | None = typer.Option(None, "--actor", help=ACTOR_HELP),
) -> None:
    """Point an alias at a version directly (protected aliases need --force and a reason)."""
    move = client().registry.set_alias(name, alias, version, actor=_actor(actor), reason=reason, force=force)
    console.print(f"{name}@{alias}: {move.from_version or '-'} -> {move.to_version} ({move.kind})")


@models_app.command("protect")
def protect(
    name: str = typer.Argument(..., help="Model name."),
    alias: str = typer.Argument("champion", help="Alias to protect."),
    gate: list[str] = typer.Option(
        None,
        "--gate",
        "-g",
        help='A gate as JSON, repeatable: \'{"type": "beats_current", "metric": "mae", "eval_dataset": "sales@3", '
        '"label": "y", "margin": 0.02}\', \'{"type": "latency_budget", "p99_ms": 20}\', '
        '\'{"type": "slice_metric", "column": "region", "metric": "mae", "max_gap": 0.5}\'.',
    ),
    gates_file: Path | None = typer.Option(
        None, "--gates-file", help="A JSON file holding a list of gate specs."
    ),
    reason: str = typer.Option("", "--reason", "-r", help="Why these gates (audited)."),
    actor: str | None = typer.Option(None, "--actor", help=ACTOR_HELP),
) -> None:
    """Declare the release gates an alias only moves through (replaces its earlier gates)."""
    specs = _gate_specs(gate or [], gates_file)
    p = client().registry.protect(name, alias, specs, actor=_actor(actor), reason=reason or None)
    rows = [
        [g["type"], json.dumps({k: v for k, v in g.items() if k != "type" and v is not None})]
        for g in p.gates
    ]
    console.print(table(f"{name}@{alias} is protected by", ["gate", "settings"], rows))


def _gate_specs(gates: list[str], gates_file: Path | None) -> list[dict[str, Any]]:
    specs: list[dict[str, Any]] = []
    for i, text in enumerate(gates):
        try:
            spec = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValidationError(
                f"--gate #{i + 1} is not valid JSON ({exc.msg}); example: "
                '\'{"type": "latency_budget", "p99_ms": 20}\''
            ) from None
        specs.append(spec)
    if gates_file is not None:
        try:
            loaded = json.loads(gates_file.read_text())
        except OSError as exc:
            raise ValidationError(f"--gates-file {gates_file}: cannot read it ({exc.strerror})") from None
        except json.JSONDecodeError as exc:
            raise ValidationError(
                f"--gates-file {gates_file} is not valid JSON ({exc.msg} at line {exc.lineno})"
            ) from None
        if not isinstance(loaded, list):
            raise ValidationError(f"--gates-file {gates_file} must hold a JSON list of gate specs")
        specs.extend(loaded)
    if not specs:
        raise ValidationError("give at least one --gate JSON spec or a --gates-file")
    for i, spec in enumerate(specs):
        if not isinstance(spec, dict):
            raise ValidationError(f"gate #{i + 1} must be a JSON object with a 'type'; got {spec!r}")
    return specs


@models_app.command("promote")
def promote(
    name: str = typer.Argument(..., help="Model name."),
    version: str = typer.Argument(..., help="Candidate version number."),
    alias: str = typer.Option("champion", "--alias", "-a", help="Alias to move."),
    reason: str = typer.Option("", "--reason", "-r", help="Why (audited)."),
    dry_run: bool = typer.Option(
        False, "--dry-run", help="Evaluate and record the gates, do not move the alias."
    ),
    actor: str | None = typer.Option(None, "--actor", help=ACTOR_HELP),
) -> None:
    """Evaluate the alias's release gates for a version and move the alias if every gate passes."""
    lm = client()
    try:
        with console.status(f"evaluating the gates of {name}@{alias} for version {version} ..."):
            report = lm.registry.promote(
                name, version, alias, actor=_actor(actor), reason=reason, dry_run=dry_run
            )
    except GateBlockedError as exc:
        _print_report(exc.report)
        console.print(
            f"[bold red]blocked:[/] {name}@{alias} did not move. Use `loopml models set-alias {name} {alias} "
            f"{version} --force --reason ...` to override (audited)."
        )
        raise typer.Exit(1) from None
    _print_report(report)
    if report.moved:
        console.print(f"[green]{name}@{alias}: {report.previous_version or '-'} -> {report.version}[/]")
    else:
        console.print(
            f"dry run: {'would move' if report.passed else 'would be blocked'}; {name}@{alias} unchanged"
        )


def _print_report(report: GateReport) -> None:
    if not report.results:
        console.print(f"{report.model}@{report.alias} is not protected: no gates to evaluate")
        return
    console.print(
        _results_table(f"release gates: {report.model}/{report.version} -> {report.alias}", report.results)
    )


def _results_table(title: str, results: Any) -> Table:
    out = Table(title=title)
    for col in ("gate", "metric", "candidate", "current", "threshold / margin", "result", "details"):
        out.add_column(col)
    for r in results:
        d = r.details
        if "required" in d:
            threshold = f"{d['margin']} {d['margin_type']} (needs {_num(d['required'])})"
        elif d.get("max_gap") is not None:
            threshold = f"max gap {d['max_gap']}"
        else:
            threshold = _num(d.get("threshold"))
        current = d.get("current", d.get("overall"))
        out.add_row(
            r.gate,
            str(d.get("metric") or "-"),
            _num(d.get("candidate")),
            _num(current) if current is not None else ("(none)" if "current" in d else "-"),
            threshold,
            "[green]pass[/]" if r.passed else "[bold red]FAIL[/]",
            r.summary,
        )
    return out


def _num(value: Any) -> str:
    if value is None:
        return "-"
    return f"{value:.4g}" if isinstance(value, float) else str(value)


@models_app.command("rollback")
def rollback(
    name: str = typer.Argument(..., help="Model name."),
    alias: str = typer.Option("champion", "--alias", "-a", help="Alias to move back."),
    reason: str = typer.Option(..., "--reason", "-r", help="What went wrong (required, audited)."),
    actor: str | None = typer.Option(None, "--actor", help=ACTOR_HELP),
) -> None:
    """Move an alias back to its previous holder (from the audit trail); no gates are evaluated."""
    move = client().registry.rollback(name, alias, actor=_actor(actor), reason=reason)
    console.print(f"{name}@{alias}: {move.from_version} -> {move.to_version} (rolled back by {move.actor})")
