"""``loopml inference ...``: housekeeping of the inference log (``archive`` old days to Parquet)."""

from __future__ import annotations

import json
import re
from datetime import timedelta

import typer

from loopml.cli.common import client, console, progress_bar
from loopml.cli.monitors import parse_duration

_DURATION = re.compile(r"^\s*\d+\s*[smhdw]?\s*$")

inference_app = typer.Typer(
    help="The inference log: archive old days as partitioned Parquet.", no_args_is_help=True
)


def register(app: typer.Typer) -> None:
    """Add the ``inference`` group to the root app."""
    app.add_typer(inference_app, name="inference")


@inference_app.command("archive")
def archive(
    before: str = typer.Option(
        ...,
        "--before",
        help="Archive whole UTC days older than this: a duration (7d, 36h) or an ISO time (2026-11-01).",
    ),
    endpoint: str | None = typer.Option(None, "--endpoint", help="Only this endpoint (default: all)."),
    delete: bool = typer.Option(
        False, "--delete", help="Remove the archived rows and their feedback from the table afterwards."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the ArchiveResult as JSON."),
) -> None:
    """Write the log's whole days before --before into the dataset inference_archive (one version)."""
    cutoff: timedelta | str = before
    if _DURATION.match(before):
        cutoff = timedelta(seconds=parse_duration(before, "--before"))
    lm = client()
    try:
        with progress_bar(disable=as_json) as bar:
            tasks: dict[str, int] = {}

            def progress(stage: str, done: int, total: int) -> None:
                if stage not in tasks:
                    tasks[stage] = bar.add_task(
                        "reading days" if stage == "read" else "deleting days", total=total
                    )
                bar.update(tasks[stage], completed=done, total=total)

            result = lm.inference.archive(before=cutoff, endpoint=endpoint, delete=delete, progress=progress)
    finally:
        lm.close()
    if as_json:
        console.print_json(json.dumps(result.to_dict(), default=str))
        return
    console.print(
        f"{result.dataset} version {result.version or '-'}: archived {len(result.days_archived)} day(s) "
        f"({result.rows_archived} rows), skipped {len(result.days_skipped)} already archived, "
        f"days before {result.cutoff.date().isoformat()}"
    )
    if delete:
        console.print(
            f"deleted {result.rows_deleted} rows ({len(result.days_deleted)} day(s)) from the table"
        )
        if result.days_kept:
            console.print(
                f"kept {len(result.days_kept)} day(s) that changed while archiving (run again): "
                + ", ".join(result.days_kept[:5])
            )
