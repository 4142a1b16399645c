"""``loopml models ...`` against a real registry (the same database the `lm` fixture opened)."""

from __future__ import annotations

import json
from pathlib import Path

import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest
import typer
from typer.testing import CliRunner

from loopml import Loopml
from loopml.cli import models as models_cli
from loopml.data import Column, Contract
from loopml.errors import NotFoundError, ValidationError

runner = CliRunner()


@pytest.fixture
def cli(lm: Loopml, monkeypatch: pytest.MonkeyPatch) -> typer.Typer:
    monkeypatch.setenv("LOOPML_HOME", str(lm.settings.home))
    monkeypatch.setenv("LOOPML_METADATA_URL", lm.settings.resolved_metadata_url)
    monkeypatch.setenv("LOOPML_ACTOR", "tester")
    monkeypatch.setenv("COLUMNS", "200")
    app = typer.Typer()
    models_cli.register(app)
    app.command("noop", hidden=True)(lambda: None)  # keep "models" a sub-command group
    return app


@pytest.fixture
def registered(lm: Loopml) -> Loopml:
    rng = np.random.default_rng(3)
    X = pd.DataFrame({"x1": rng.normal(size=400), "x2": rng.normal(size=400)})
    y = 2 * X.x1 - X.x2 + rng.normal(scale=0.2, size=400)
    good = lgb.LGBMRegressor(n_estimators=40, verbose=-1, n_jobs=1).fit(X[:300], y[:300])
    bad = lgb.LGBMRegressor(n_estimators=1, num_leaves=2, verbose=-1, n_jobs=1).fit(X[:300], y[:300])
    contract = Contract(columns=[Column("x1", "float"), Column("x2", "float"), Column("y", "float")])
    lm.datasets.ingest("demand_eval", X[300:].assign(y=y[300:]), contract=contract)
    lm.registry.register("demand", bad, input_example=X.head(), metrics={"mae": 1.2})
    lm.registry.register("demand", good, input_example=X.head(), metrics={"mae": 0.2})
    lm.registry.register("demand", bad, input_example=X.head())
    return lm


def _run(app: typer.Typer, *args: str):
    return runner.invoke(app, ["models", *args])


def test_list_show_and_aliases(cli: typer.Typer, registered: Loopml) -> None:
    registered.registry.set_alias("demand", "challenger", 2, actor="ana", reason="")
    out = _run(cli, "list")
    assert out.exit_code == 0, out.output
    assert "demand" in out.output and "challenger->2" in out.output
    out = _run(cli, "show", "demand")
    assert out.exit_code == 0 and "versions" in out.output and "mae=0.2" in out.output
    out = _run(cli, "show", "demand@challenger")
    assert out.exit_code == 0 and "demand/2" in out.output and "x1" in out.output and "float" in out.output
    data = json.loads(_run(cli, "show", "demand/1", "--json").output)
    assert data["number"] == 1 and data["flavor"] == "lightgbm"
    out = _run(cli, "aliases", "demand", "--history")
    assert "challenger" in out.output and "ana" in out.output


def test_protect_promote_block_and_rollback(cli: typer.Typer, registered: Loopml) -> None:
    gate = json.dumps(
        {"type": "beats_current", "metric": "mae", "eval_dataset": "demand_eval", "label": "y", "margin": 0.1}
    )
    out = _run(
        cli,
        "protect",
        "demand",
        "champion",
        "--gate",
        gate,
        "--gate",
        '{"type": "latency_budget", "p99_ms": 500, "n": 20}',
    )
    assert out.exit_code == 0, out.output
    assert "beats_current" in out.output and "latency_budget" in out.output
    assert _run(cli, "promote", "demand", "1", "--reason", "first").exit_code == 0
    out = _run(cli, "promote", "demand", "2", "--reason", "better")
    assert out.exit_code == 0, out.output
    assert "pass" in out.output and "demand@champion: 1 -> 2" in out.output
    out = _run(cli, "promote", "demand", "3", "--reason", "worse")
    assert out.exit_code == 1 and "FAIL" in out.output and "did not move" in out.output
    assert registered.registry.get_version("demand@champion").number == 2
    out = _run(cli, "set-alias", "demand", "champion", "3")
    assert out.exit_code != 0 and "protected by release gates" in str(out.exception)
    out = _run(cli, "set-alias", "demand", "champion", "3", "--force", "--reason", "incident 7")
    assert out.exit_code == 0 and "forced" in out.output
    out = _run(cli, "rollback", "demand", "--reason", "wrong model")
    assert out.exit_code == 0 and "3 -> 2" in out.output
    history = registered.registry.history("demand", "champion")
    assert [(m.kind, m.actor) for m in history[:2]] == [("rollback", "tester"), ("forced", "tester")]


def test_bad_cli_input_is_explained(cli: typer.Typer, registered: Loopml, tmp_path: Path) -> None:
    out = _run(cli, "show", "nope")
    assert isinstance(out.exception, NotFoundError) and "model 'nope' does not exist" in str(out.exception)
    out = _run(cli, "protect", "demand", "champion", "--gate", "{bad json")
    assert isinstance(out.exception, ValidationError) and "--gate #1 is not valid JSON" in str(out.exception)
    out = _run(cli, "protect", "demand", "champion", "--gates-file", str(tmp_path / "missing.json"))
    assert isinstance(out.exception, ValidationError) and "cannot read it" in str(out.exception)
    out = _run(cli, "protect", "demand", "champion")
    assert "at least one --gate" in str(out.exception)
    out = _run(cli, "promote", "demand", "x3")
    assert isinstance(out.exception, ValidationError) and "version must be a version number" in str(
        out.exception
    )
    out = _run(cli, "rollback", "demand")
    assert out.exit_code == 2 and "--reason" in out.output
    assert "release gates" in _run(cli, "--help").output
