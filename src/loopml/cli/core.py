"""Project-level commands: ``init``, ``info``, ``db upgrade``, ``version``."""

from __future__ import annotations

from pathlib import Path

import typer

from loopml.cli.common import console, table
from loopml.config import CONFIG_FILE, load_settings
from loopml.context import Context
from loopml.errors import LoopmlError

DEFAULT_TOML = """\
# loopml settings. Every key can also be set as an environment variable: LOOPML_<KEY>.
# Empty URLs mean "embedded": SQLite and files under `home`.
home = ".loopml"
# metadata_url = "postgresql+psycopg://user@127.0.0.1:5432/loopml"
# artifacts_url = "s3://my-bucket/loopml"
# online_url = "redis://127.0.0.1:6379/0"
# api_token = "change-me"   # required as a Bearer token on mutating HTTP routes when set
"""

db_app = typer.Typer(help="Metadata database schema.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.command("init")(init)
    app.command("info")(info)
    app.command("version")(version)
    app.add_typer(db_app, name="db")


def init(
    directory: Path = typer.Argument(Path("."), help="Where to create loopml.toml and the .loopml home."),
    force: bool = typer.Option(False, help="Overwrite an existing loopml.toml."),
) -> None:
    """Scaffold a project: loopml.toml, a pipelines module and the embedded home, schema included."""
    directory.mkdir(parents=True, exist_ok=True)
    toml = directory / CONFIG_FILE
    if toml.exists() and not force:
        console.print(f"{toml} exists; keeping it (use --force to overwrite).")
    else:
        toml.write_text(DEFAULT_TOML)
        console.print(f"wrote {toml}")
    pipelines = directory / "pipelines.py"
    if not pipelines.exists():
        pipelines.write_text(_PIPELINES_TEMPLATE)
        console.print(f"wrote {pipelines} (an example pipeline: loopml run hello)")
    ctx = Context.from_settings(home=directory / ".loopml")
    ctx.db.upgrade()
    console.print(f"created the metadata schema in {ctx.db.display_url}")
    console.print("next: [bold]loopml info[/] to check the backends, [bold]loopml up[/] to start everything")


def info() -> None:
    """Print the resolved settings and check that each backend answers."""
    settings = load_settings()
    rows = [[k, v] for k, v in settings.describe().items()]
    console.print(table("settings", ["setting", "value"], rows))
    ctx = Context.from_settings(settings)
    checks = [
        ("metadata", ctx.db.check),
        ("artifacts", ctx.artifacts.check),
        ("online", lambda: _online_check(ctx)),
    ]
    results = []
    failed = False
    for name, check in checks:
        try:
            results.append([name, f"[green]{check()}[/]"])
        except LoopmlError as exc:
            failed = True
            results.append([name, f"[red]{exc}[/]"])
    console.print(table("backends", ["backend", "status"], results))
    if failed:
        raise typer.Exit(1)


def _online_check(ctx: Context) -> str:
    try:
        from loopml.storage.online import open_online_store
    except ImportError:
        return "not built yet"
    return open_online_store(ctx.settings.resolved_online_url).check()


def version() -> None:
    """Print the loopml version."""
    from loopml import __version__

    console.print(__version__)


@db_app.command("upgrade")
def db_upgrade(revision: str = typer.Argument("head", help="Target revision (default: latest).")) -> None:
    """Apply metadata migrations (also done automatically on first use)."""
    ctx = Context.from_settings()
    before = ctx.db.current_revision()
    ctx.db.upgrade(revision)
    console.print(
        f"metadata schema: {before or 'empty'} -> {ctx.db.current_revision()} ({ctx.db.display_url})"
    )


@db_app.command("current")
def db_current() -> None:
    """Show the applied and the latest schema revision."""
    ctx = Context.from_settings()
    console.print(f"applied: {ctx.db.current_revision() or 'none'}   latest: {ctx.db.head_revision()}")


_PIPELINES_TEMPLATE = '''"""Your pipelines. Run one with: loopml run hello --param name=loopml

A step's parameters are the outputs of the steps it is named after, or pipeline params; `lm` is
the loopml client. See docs/pipelines.md.
"""

from loopml.pipelines import pipeline, step


@step
def greeting(name: str) -> str:
    return f"hello, {name}"


@step
def shout(greeting: str) -> str:
    print(greeting.upper())
    return greeting.upper()


@pipeline("hello", params={"name": "world"})
def hello():
    return [greeting, shout]
'''
