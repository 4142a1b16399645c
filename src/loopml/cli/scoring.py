"""``loopml models score REF DATASET``: batch-score a dataset version and store the scores as a dataset.

``models`` is a Typer sub-app owned by ``cli/models.py``, so this module adds its command to that
app through ``add_score_command(models_app)`` instead of registering a group of its own.
"""

from __future__ import annotations

import json
import time

import typer

from loopml.cli.common import client, console


def score(
    ref: str = typer.Argument(
        ..., help="The model to score with: fraud@champion, fraud/3 or fraud (latest)."
    ),
    dataset: str = typer.Argument(..., help="The dataset to score (its latest version unless --version)."),
    version: str = typer.Option("latest", "--version", "-v", help="Dataset version number, or 'latest'."),
    output: str | None = typer.Option(
        None, "--output", "-o", help="Dataset to write the scores to (default <dataset>_<model>_scores)."
    ),
    id_columns: list[str] | None = typer.Option(
        None, "--id", help="Column to copy next to the scores (repeat; default: the contract's unique key)."
    ),
    batch_rows: int = typer.Option(50_000, "--batch-rows", help="Rows per model call.", min=1),
    as_json: bool = typer.Option(False, "--json", help="Print the new dataset version as JSON."),
) -> None:
    """Score a dataset version with a registered model; the scores become a new dataset version."""
    from loopml.serving.inference import score_dataset

    lm = client()
    try:
        started = time.perf_counter()
        result = score_dataset(
            lm,
            ref,
            dataset,
            version=int(version) if version.isdigit() else version,
            output=output,
            batch_rows=batch_rows,
            id_columns=tuple(id_columns or ()),
            actor="cli",
        )
        seconds = time.perf_counter() - started
    finally:
        lm.close()
    if as_json:
        console.print_json(json.dumps({**result.to_dict(), "seconds": round(seconds, 3)}, default=str))
        return
    console.print(
        f"scored {result.row_count} rows of {dataset} with {ref} in {seconds:.2f}s -> {result.ref} "
        f"({result.digest[:19]})"
    )


def add_score_command(models_app: typer.Typer) -> None:
    """Add ``score`` to the ``loopml models`` group."""
    models_app.command("score")(score)
