"""``loopml demo``: the main job on the embedded default, told step by step with its figures."""

from __future__ import annotations

import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path

import typer

from loopml.cli.common import console, table
from loopml.client import Loopml
from loopml.config import load_settings
from loopml.errors import NotFoundError, did_you_mean

DEMO_HOME = Path(".loopml-demo")


def _starter(lm: Loopml, fast: bool) -> None:
    from loopml.apps.starter import run_story

    result = run_story(lm, rows=3_000 if fast else 20_000, say=lambda line: console.print(f"  {line}"))
    caught = len(result.quarantined_ids & result.injected_bad_ids)
    wrongly = len(result.quarantined_ids - result.injected_bad_ids)
    console.print(
        f"\n  quarantine caught {caught} of {len(result.injected_bad_ids)} rows the simulator broke; "
        f"{wrongly} good rows were quarantined"
    )
    rows = [[label, f"{auc:.3f}"] for label, auc in result.auc.items()]
    console.print(table("holdout AUC per candidate", ["model", "AUC"], rows))
    gates = [
        [f"churn/{v}", "[green]passed[/]" if ok else "[red]blocked[/]"] for v, ok, _ in result.gate_outcomes
    ]
    console.print(table("release gates for churn@champion", ["version", "outcome"], gates))
    if result.top_risk is not None:
        top = [
            [int(r.customer_id), f"{r.churn_probability:.3f}", f"churn/{int(r.model_version)}"]
            for r in result.top_risk.itertuples()
        ]
        console.print(
            table("highest churn risk (batch scores)", ["customer", "churn probability", "model"], top)
        )
    console.print(f"  champion is churn/{result.champion_version}; story took {result.seconds:.1f} s")


def _fraud(lm: Loopml, fast: bool) -> None:
    from loopml.apps.fraud.cli import tell

    tell(lm, fast)


def _demand(lm: Loopml, fast: bool) -> None:
    from loopml.cli.demand import tell

    tell(lm, fast)


def _moderation(lm: Loopml, fast: bool) -> None:
    from loopml.cli.moderation import tell

    tell(lm, fast)


def _loop(lm: Loopml, fast: bool) -> None:
    from loopml.apps.fraud.loop_cli import tell_loop

    tell_loop(lm, fast)


#: Stories that need a home of their own when several run: the loop replays the fraud system from its
#: first day (model, endpoint, datasets and feature view of the same names as the fraud story's).
OWN_HOME = ("loop",)

SYSTEMS: dict[str, Callable[[Loopml, bool], None]] = {
    "starter": _starter,
    "fraud": _fraud,
    "demand": _demand,
    "moderation": _moderation,
    "loop": _loop,
}


def register(app: typer.Typer) -> None:
    app.command("demo")(demo)


def demo(
    system: str = typer.Argument("all", help=f"Which reference system: {', '.join(SYSTEMS)} or all."),
    fast: bool = typer.Option(False, "--fast", help="Small sizes (for tests and a first look)."),
    home: Path = typer.Option(DEMO_HOME, help="Where the demo keeps its state (wiped first)."),
    keep: bool = typer.Option(False, help="Keep existing state in --home instead of starting clean."),
) -> None:
    """Run the reference systems end to end on the embedded default and print what happened."""
    if system != "all" and system not in SYSTEMS:
        raise NotFoundError(f"No demo named {system!r}.{did_you_mean(system, list(SYSTEMS))}")
    chosen = SYSTEMS if system == "all" else {system: SYSTEMS[system]}
    if home.exists() and not keep:
        shutil.rmtree(home)
    started = time.perf_counter()
    shared = {name: tell for name, tell in chosen.items() if name not in OWN_HOME or len(chosen) == 1}
    own = {name: tell for name, tell in chosen.items() if name not in shared}
    if shared:
        with Loopml(load_settings(home=home)) as lm:
            for name, tell in shared.items():
                console.rule(f"[bold]demo: {name}")
                tell(lm, fast)
    for name, tell in own.items():
        console.rule(f"[bold]demo: {name}")
        console.print(
            f"  (in its own home {home / name}: it builds the fraud system again from its first day)"
        )
        with Loopml(load_settings(home=home / name)) as lm:
            tell(lm, fast)
    console.rule()
    console.print(f"done in {time.perf_counter() - started:.1f} s; state is in {home.resolve()}")
    exe = sys.argv[0] if Path(sys.argv[0]).name == "loopml" else "loopml"
    for where in ([home] if shared else []) + [home / name for name in own]:
        console.print(
            f"see it in the dashboard: [bold]LOOPML_HOME={where} {exe} up[/] then open http://127.0.0.1:8000/ui/"
        )
