"""``loopml features list|show|materialize|check|audit``: the feature store from the shell.

Definitions are Python; the commands import the modules listed in settings ``pipeline_modules`` (and
any ``--module``) so that views with a Python transformation can be (re)computed here too.
"""

from __future__ import annotations

import importlib
import json

import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from loopml.cli.common import client, console, table
from loopml.errors import ConfigError

features_app = typer.Typer(
    help="Feature store: views, versions, materialisation, skew checks, audits.", no_args_is_help=True
)

MODULE_HELP = "Python module(s) defining feature views to import first (e.g. features); repeatable."


def register(app: typer.Typer) -> None:
    """Add ``loopml features ...`` to the root app."""
    app.add_typer(features_app, name="features")


def _store(modules: list[str] | None):  # -> FeatureStore (import kept lazy for a fast CLI start)
    lm = client()
    for name in [*lm.settings.pipeline_modules, *(modules or [])]:
        try:
            importlib.import_module(name)
        except ImportError as exc:
            raise ConfigError(
                f"--module {name!r} cannot be imported: {exc}. Run from the project directory."
            ) from None
    return lm.features


@features_app.command("list")
def list_views(as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table.")) -> None:
    """List feature views with their latest version, entity, features, TTL and freshness."""
    fs = _store(None)
    rows = fs.summary()
    if as_json:
        console.print_json(json.dumps(rows))
        return
    console.print(
        table(
            "feature views",
            [
                "view",
                "kind",
                "entity",
                "version",
                "features",
                "ttl (s)",
                "source",
                "last materialised",
                "pushed rows",
            ],
            [
                [
                    r["name"],
                    r["kind"],
                    r["entity"],
                    r["latest_version"],
                    len(r["features"]),
                    r["ttl_seconds"],
                    r["source"],
                    r["freshness"]["last_materialised_at"],
                    r["freshness"]["pushed_rows"],
                ]
                for r in rows
            ],
        )
    )


@features_app.command("show")
def show(
    view: str = typer.Argument(..., help="Feature view name."),
    stats: bool = typer.Option(False, "--stats", help="Compute and store statistics for the latest version."),
) -> None:
    """Show a view's versions, features (with statistics when computed) and recent materialisations."""
    fs = _store(None)
    info = fs.get_view(view)
    if stats and info.kind == "batch":
        fs.compute_stats(view)
    row = next(r for r in fs.summary() if r["name"] == view)
    console.print(
        f"[bold]{view}[/] ({info.kind}, entity {info.entity}, ttl {info.ttl_seconds}s, {row['source']})"
    )
    console.print(
        table(
            "versions",
            ["version", "fingerprint", "created", "by"],
            [[v["number"], v["fingerprint"], v["created_at"], v["created_by"]] for v in row["versions"]],
        )
    )
    feats = (row["stats"] or {}).get("features", {})
    console.print(
        table(
            "features",
            ["feature", "dtype", "nulls", "mean", "min", "max"],
            [
                [
                    n,
                    t,
                    feats.get(n, {}).get("nulls"),
                    _fmt(feats.get(n, {}).get("mean")),
                    feats.get(n, {}).get("min"),
                    feats.get(n, {}).get("max"),
                ]
                for n, t in info.features.items()
            ],
        )
    )
    console.print(
        table(
            "materialisations",
            ["status", "rows", "chunks", "full", "started", "error"],
            [
                [m["status"], m["rows"], m["chunks"], m["full"], m["started_at"], m["error"]]
                for m in row["materialisations"]
            ],
        )
    )


def _fmt(value: object) -> str:
    return f"{value:.4g}" if isinstance(value, float) else ("" if value is None else str(value))


@features_app.command("materialize")
def materialize(
    views: list[str] = typer.Argument(None, help="Views to materialise (default: all stored views)."),
    full: bool = typer.Option(False, "--full", help="Re-read everything instead of only what is new."),
    chunk_rows: int = typer.Option(50_000, "--chunk-rows", min=1, help="Rows per write to the online store."),
    module: list[str] = typer.Option(None, "--module", "-m", help=MODULE_HELP),
) -> None:
    """Write the latest values per key to the online store, incrementally and in bounded chunks."""
    fs = _store(module)
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed:,} rows"),
        TimeElapsedColumn(),
        console=console,
    ) as progress:
        tasks: dict[str, int] = {}

        def tick(view: str, rows: int) -> None:
            if view not in tasks:
                tasks[view] = progress.add_task(view, total=None)
            progress.advance(tasks[view], rows)

        results = fs.materialize(views or None, full=full, chunk_rows=chunk_rows, progress=tick, actor="cli")
    console.print(
        table(
            "materialisation",
            ["view", "version", "status", "rows", "chunks", "watermark", "seconds", "note"],
            [
                [
                    r.view,
                    r.version,
                    r.status,
                    r.rows_written,
                    r.chunks,
                    r.watermark,
                    f"{r.seconds:.2f}",
                    r.message,
                ]
                for r in results
            ],
        )
    )


@features_app.command("check")
def check(
    views: list[str] = typer.Argument(None, help="Views to check (default: all stored views)."),
    sample: int = typer.Option(100, "--sample", min=1, help="Keys to sample per view."),
    module: list[str] = typer.Option(None, "--module", "-m", help=MODULE_HELP),
) -> None:
    """Sample keys and compare online values with offline point-in-time values now; exit 1 on skew."""
    fs = _store(module)
    report = fs.check(views or None, sample=sample)
    rows = []
    for v in report.views:
        for f in v.features:
            rows.append(
                [
                    v.view,
                    v.version,
                    f.feature,
                    v.keys_sampled,
                    f.compared,
                    f.mismatches,
                    v.missing_online,
                    v.stale_online,
                    json.dumps(f.examples[:2]),
                ]
            )
    console.print(
        table(
            "online/offline skew",
            [
                "view",
                "version",
                "feature",
                "keys",
                "compared",
                "mismatches",
                "missing online",
                "stale online",
                "examples",
            ],
            rows,
        )
    )
    if not report.ok:
        console.print(
            "[red]skew found[/]: run `loopml features materialize --full` and check writers that bypass push()"
        )
        raise typer.Exit(1)
    console.print("[green]no skew[/]")


@features_app.command("audit")
def audit(as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table.")) -> None:
    """List features that no registered model version takes as input (they cost without helping)."""
    fs = _store(None)
    report = fs.audit()
    if as_json:
        console.print_json(json.dumps(report.to_dict()))
        return
    console.print(table("unused features", ["feature"], [[f] for f in report.unused]))
    console.print(
        f"{len(report.unused)} of {report.total} features ({report.unused_share:.0%}) are used by none of "
        f"{len(report.models)} registered model versions"
    )
