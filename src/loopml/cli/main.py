"""``loopml``: the root command. Each command group lives in its own module and registers itself."""

from __future__ import annotations

import sys

import typer

from loopml.cli import (
    alerts,
    bench,
    core,
    datasets,
    demand,
    demo,
    endpoints,
    features,
    inference,
    jobs,
    loop,
    models,
    moderation,
    monitors,
    notify,
    pipelines,
    runs,
    serve,
    slos,
)
from loopml.cli.common import err_console
from loopml.errors import LoopmlError

app = typer.Typer(
    name="loopml",
    help="loopml: data contracts, pipelines, tracking, registry, serving and monitoring in one tool.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

for module in (
    core,
    datasets,
    jobs,
    pipelines,
    runs,
    models,
    features,
    endpoints,
    inference,
    alerts,
    notify,
    slos,
    monitors,
    loop,
    demand,
    moderation,
    serve,
    demo,
    bench,
):
    module.register(app)


def main() -> None:
    try:
        app()
    except LoopmlError as exc:
        err_console.print(f"[bold red]error:[/] {exc}", highlight=False, markup=True)
        sys.exit(1)
    except KeyboardInterrupt:
        err_console.print("interrupted")
        sys.exit(130)


if __name__ == "__main__":
    main()
