"""``loopml bench NAME``: run a benchmark script from the source checkout and merge its results."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import typer

from loopml.cli.common import console
from loopml.errors import ConfigError, NotFoundError, did_you_mean


def _bench_dir() -> Path:
    here = Path(__file__).resolve()
    for parent in here.parents:
        candidate = parent / "benchmarks"
        if (candidate / "merge_results.py").exists():
            return candidate
    raise ConfigError(
        "loopml bench runs the scripts in the source checkout's benchmarks/ folder, which this install does not "
        "have. Clone the repository and run `make bench` there."
    )


def available() -> dict[str, Path]:
    return {p.stem.removeprefix("bench_"): p for p in sorted(_bench_dir().glob("bench_*.py"))}


def register(app: typer.Typer) -> None:
    app.command("bench")(bench)


def bench(
    name: str = typer.Argument("all", help="Benchmark to run (queue, tracking, features, ...) or 'all'."),
    python: str = typer.Option(
        sys.executable, help="Interpreter to run it with (e.g. .venv-bench/bin/python)."
    ),
) -> None:
    """Run a benchmark from benchmarks/ and update docs/benchmarks.md with its results."""
    scripts = available()
    if name == "all":
        chosen = list(scripts.values())
    elif name in scripts:
        chosen = [scripts[name]]
    else:
        raise NotFoundError(f"No benchmark named {name!r}.{did_you_mean(name, list(scripts))}")
    failed = []
    for script in chosen:
        console.rule(f"[bold]{script.stem}")
        if subprocess.call([python, str(script)]) != 0:
            failed.append(script.stem)
    subprocess.call([sys.executable, str(_bench_dir() / "merge_results.py")])
    if failed:
        console.print(f"[red]failed:[/] {', '.join(failed)}")
        raise typer.Exit(1)
