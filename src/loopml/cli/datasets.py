"""``loopml datasets ...``: define contracts, ingest files, inspect versions, quarantine, diffs and SQL."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from loopml.cli.common import client, console, err_console, table

datasets_app = typer.Typer(
    help="Datasets with contracts: ingest validates, quarantines bad rows and stores immutable versions.",
    no_args_is_help=True,
)


def register(app: typer.Typer) -> None:
    """Add ``loopml datasets`` to the root app."""
    app.add_typer(datasets_app, name="datasets")


@datasets_app.command("define")
def define(
    name: str = typer.Argument(..., help="Dataset name (letters, digits, '_' or '-')."),
    contract: Path = typer.Option(..., "--contract", "-c", help="Contract file (.json or .toml)."),
    description: str = typer.Option("", help="What the dataset holds, for people browsing the catalogue."),
    actor: str = typer.Option("cli", help="Who is making the change (recorded in the audit log)."),
) -> None:
    """Create a dataset or change its contract (the change is recorded; versions keep their own contract)."""
    from loopml.data import Contract

    info = client().datasets.define(name, Contract.from_file(contract), description, actor=actor)
    cols = ", ".join(f"{c['name']}:{c['dtype']}" for c in info.contract["columns"])
    console.print(f"dataset [bold]{info.name}[/] defined ({len(info.contract['columns'])} columns: {cols})")


@datasets_app.command("ingest")
def ingest(
    name: str = typer.Argument(..., help="Dataset to ingest into."),
    path: Path = typer.Argument(..., help="CSV (.csv, .csv.gz, .tsv) or Parquet file."),
    contract: Path | None = typer.Option(
        None, "--contract", "-c", help="Define/replace the contract first (.json/.toml)."
    ),
    partition: str | None = typer.Option(
        None, "--partition", "-p", help="Deliver all rows as this partition (e.g. 2026-11-29)."
    ),
    partition_by: str | None = typer.Option(
        None, "--partition-by", help="Split rows into partitions by this column (a datetime column: by day)."
    ),
    actor: str = typer.Option("cli", help="Who ingests (recorded on the version)."),
) -> None:
    """Validate a file against the contract: good rows become a version, bad rows go to quarantine."""
    from loopml.data import Contract, IngestRefusedError

    parsed = Contract.from_file(contract) if contract is not None else None
    lm = client()
    where = (
        {}
        if partition is None and partition_by is None
        else {"partition": partition, "partition_by": partition_by}
    )
    with console.status(f"ingesting {path} into {name} ..."):
        try:
            result = lm.datasets.ingest(name, path, contract=parsed, actor=actor, **where)
        except IngestRefusedError as exc:
            _print_report(exc.report)
            err_console.print(
                f"[bold red]refused:[/] {exc.report.bad_share:.2%} bad rows, the contract allows "
                f"{exc.report.max_bad_share:.2%}. See: loopml datasets quarantine {name}"
            )
            raise typer.Exit(1) from None
    _print_report(result.report)


@datasets_app.command("list")
def list_datasets() -> None:
    """List datasets with their latest version and column count."""
    rows = [
        [
            d.name,
            d.latest_version or "-",
            d.version_count,
            len(d.contract["columns"]),
            d.updated_at.strftime("%Y-%m-%d %H:%M"),
            d.description,
        ]
        for d in client().datasets.list()
    ]
    if not rows:
        console.print("no datasets yet: loopml datasets define NAME --contract contract.json")
        return
    console.print(
        table("datasets", ["name", "latest", "versions", "columns", "updated", "description"], rows)
    )


@datasets_app.command("versions")
def versions(name: str = typer.Argument(..., help="Dataset name.")) -> None:
    """List a dataset's versions: rows kept and quarantined, digest, who and when."""
    found = client().datasets.versions(name)
    rows = [
        [
            v.number,
            v.row_count,
            v.rows_quarantined,
            _size(v.size_bytes),
            v.digest[:19],
            v.actor,
            v.created_at.strftime("%Y-%m-%d %H:%M:%S"),
            v.source,
        ]
        for v in found
    ]
    columns = ["#", "rows", "quarantined", "size", "digest", "actor", "created", "source"]
    if any(v.partitioned for v in found):
        columns += ["partitions", "delivered"]
        for row, v in zip(rows, found, strict=True):
            row += [v.partition_count or "-", _keys(v.partitions_delivered or [])]
    console.print(table(f"{name} versions", columns, rows))


@datasets_app.command("show")
def show(
    name: str = typer.Argument(..., help="Dataset name."),
    version: str = typer.Option("latest", "--version", "-v", help="Version number or 'latest'."),
) -> None:
    """Show one version and its column statistics."""
    v = client().datasets.version(name, version)
    console.print(
        f"[bold]{v.ref}[/]  rows {v.row_count}  quarantined {v.rows_quarantined}  size {_size(v.size_bytes)}\n"
        f"digest {v.digest}\ncreated {v.created_at.isoformat()} by {v.actor} from {v.source}\nuri {v.uri}"
    )
    if v.partitioned:
        console.print(
            f"partitions {v.partition_count} (manifest at uri); this ingest delivered "
            f"{_keys(v.partitions_delivered or [])}: loopml datasets partitions {name} --version {v.number}"
        )
    out = Table(title="column statistics" + (" (delivered partitions only)" if v.partitioned else ""))
    for col in ("column", "dtype", "nulls", "distinct", "min", "max", "mean", "std", "top values"):
        out.add_column(col)
    for column, s in v.stats.items():
        top = ", ".join(f"{val}({n})" for val, n in s.get("top", [])[:5])
        out.add_row(
            column,
            s["dtype"],
            str(s["nulls"]),
            str(s["distinct"]),
            _fmt(s.get("min")),
            _fmt(s.get("max")),
            _fmt(s.get("mean")),
            _fmt(s.get("std")),
            top,
        )
    console.print(out)


@datasets_app.command("partitions")
def partitions(
    name: str = typer.Argument(..., help="Dataset name."),
    version: str = typer.Option("latest", "--version", "-v", help="Version number or 'latest'."),
    limit: int = typer.Option(50, "--limit", "-n", min=1, help="Show the last N partitions."),
) -> None:
    """List a partitioned version's partitions: key, rows, size and Parquet digest (newest keys last)."""
    lm = client()
    v = lm.datasets.version(name, version)
    parts = lm.datasets.partitions(name, v.number)
    delivered = set(v.partitions_delivered or [])
    shown = parts[-limit:]
    rows = [
        [p.key, p.rows, _size(p.size_bytes), p.digest[:19], "yes" if p.key in delivered else ""]
        for p in shown
    ]
    console.print(
        table(
            f"{v.ref}: {len(parts)} partitions, {v.row_count} rows",
            ["partition", "rows", "size", "digest", f"delivered in v{v.number}"],
            rows,
        )
    )
    if len(parts) > len(shown):
        console.print(f"... {len(parts) - len(shown)} earlier partitions not shown (use --limit)")


@datasets_app.command("quarantine")
def quarantine(
    name: str = typer.Argument(..., help="Dataset name."),
    version: str | None = typer.Option(
        None, "--version", "-v", help="Only rows set aside while creating this version."
    ),
    limit: int = typer.Option(20, "--limit", "-n", min=1, help="How many rows to show."),
) -> None:
    """Show quarantined rows: which input row, which checks it failed, and its original values."""
    import pandas as pd

    frame = client().datasets.quarantine(name, version=version, limit=limit)
    if frame.empty:
        console.print(f"no quarantined rows for {name}")
        return
    rows = [
        [
            r.attempt[:8],
            "refused" if pd.isna(r.version) else r.version,
            r.row_index,
            r.checks,
            json.dumps(r.row, default=str),
        ]
        for r in frame.itertuples(index=False)
    ]
    console.print(
        table(
            f"{name} quarantine (newest first)",
            ["attempt", "version", "row", "failed checks", "values"],
            rows,
        )
    )


@datasets_app.command("diff")
def diff(
    name: str = typer.Argument(..., help="Dataset name."),
    a: str = typer.Argument(..., help="Older version number."),
    b: str = typer.Argument("latest", help="Newer version number or 'latest'."),
    show_all: bool = typer.Option(False, "--all", help="Also list unchanged columns."),
) -> None:
    """Compare two versions' statistics: rows, null share, mean, min/max, new and missing categories."""
    d = client().datasets.diff(name, a, b)
    console.print(f"[bold]{name}[/] v{d.a} -> v{d.b}: rows {d.rows_a} -> {d.rows_b} ({d.row_change:+d})")
    if d.partitions is not None:
        console.print(
            "partitions: " + "; ".join(f"{kind} {_keys(keys)}" for kind, keys in d.partitions.items() if keys)
            if any(d.partitions.values())
            else "partitions: none added, removed or changed"
        )
        console.print("(column statistics cover each version's delivered partitions)")
    rows = []
    for c in d.columns:
        if c.status == "unchanged" and not show_all:
            continue
        change = c.null_share_change
        rows.append(
            [
                c.column,
                c.status,
                _arrow(c.dtype_a, c.dtype_b) if c.dtype_a != c.dtype_b else c.dtype_b,
                f"{_fmt(c.null_share_a)} -> {_fmt(c.null_share_b)}" + (f" ({change:+.2%})" if change else ""),
                _arrow(c.mean_a, c.mean_b),
                _arrow(c.min_a, c.min_b),
                _arrow(c.max_a, c.max_b),
                ", ".join(map(str, c.new_values)),
                ", ".join(map(str, c.missing_values)),
            ]
        )
    if not rows:
        console.print("no column changed")
        return
    console.print(
        table(
            "column changes",
            ["column", "status", "dtype", "null share", "mean", "min", "max", "new values", "missing values"],
            rows,
        )
    )


@datasets_app.command("sql")
def sql(
    query: str = typer.Argument(..., help='DuckDB SQL; datasets are tables by name (latest) or "name@N".'),
    limit: int = typer.Option(50, "--limit", "-n", min=1, help="Rows to print."),
    as_json: bool = typer.Option(False, "--json", help="Print all rows as JSON lines instead of a table."),
) -> None:
    """Run SQL over dataset versions with DuckDB (read-only: versions are immutable)."""
    frame = client().datasets.sql(query)
    if as_json:
        for line in frame.to_json(orient="records", lines=True, date_format="iso").splitlines():
            console.print_json(line)
        return
    rows = frame.head(limit).astype(object).where(frame.head(limit).notna(), None).values.tolist()
    console.print(table(f"{len(frame)} row(s)", [str(c) for c in frame.columns], rows))
    if len(frame) > limit:
        console.print(f"... {len(frame) - limit} more (use --limit or --json)")


@datasets_app.command("contract")
def contract(name: str = typer.Argument(..., help="Dataset name.")) -> None:
    """Print the dataset's current contract as JSON (edit it and `define` it back)."""
    console.print_json(json.dumps(client().datasets.get(name).contract))


@datasets_app.command("freshness")
def freshness(name: str = typer.Argument(..., help="Dataset name.")) -> None:
    """How old the newest row is against the contract's max_age; exits 2 when stale."""
    f = client().datasets.freshness(name)
    colour = "red" if f.stale else "green"
    age = "-" if f.age_seconds is None else f"{f.age_seconds / 3600:.1f} h"
    limit = "-" if f.max_age_seconds is None else f"{f.max_age_seconds / 3600:.1f} h"
    console.print(
        f"{name}@{f.version or '-'} newest {f.column} = {f.newest}, age {age}, max {limit}: [{colour}]{'STALE' if f.stale else 'fresh'}[/]"
    )
    if f.stale:
        raise typer.Exit(2)


# -- formatting -------------------------------------------------------------------------------
def _print_report(report: Any) -> None:
    colour = "green" if report.accepted else "red"
    verdict = (
        f"accepted as version {report.version}"
        + ("" if report.new_version else " (unchanged, same rows as latest)")
        if report.accepted
        else "REFUSED"
    )
    console.print(
        f"[{colour}]{report.dataset}: {verdict}[/]  rows in {report.rows_in}, ok {report.rows_ok}, "
        f"quarantined {report.rows_quarantined} ({report.bad_share:.2%}; limit {report.max_bad_share:.2%})"
    )
    if getattr(report, "partitions", None) is not None:
        console.print(
            f"partitions delivered: {_keys(report.partitions)}; the version has {report.partition_count}"
        )
    if report.checks:
        rows = [[c.column, c.check, c.rows, ", ".join(repr(v) for v in c.examples)] for c in report.checks]
        console.print(table("failed checks", ["column", "check", "rows", "examples"], rows))
    for warning in report.warnings:
        console.print(f"[yellow]warning:[/] {warning}")


def _keys(keys: list[str]) -> str:
    from loopml.data.models import describe_keys

    return describe_keys(keys)


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _arrow(a: Any, b: Any) -> str:
    return _fmt(a) if a == b else f"{_fmt(a)} -> {_fmt(b)}"


def _size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024:
            return f"{n:.0f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return f"{n:.1f} TB"
