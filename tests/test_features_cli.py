"""``loopml features ...`` commands: list, show, materialize, check, audit, and their errors."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from loopml import Loopml, load_settings
from loopml.cli import common
from loopml.cli.main import app
from loopml.features import Entity, FeatureView

runner = CliRunner()


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A project directory with one registered Parquet-backed view (importable from a fresh process)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("LOOPML_HOME", str(tmp_path / "home"))
    monkeypatch.setattr(common.console, "width", 250)  # the test terminal is narrow; keep cells whole
    now = pd.Timestamp.now(tz="UTC")
    data = tmp_path / "clicks.parquet"
    pd.DataFrame(
        {"user_id": [1, 2, 1], "event_ts": [now, now, now - pd.Timedelta(hours=1)], "clicks": [3, 4, 1]}
    ).to_parquet(data)
    user = Entity("user", join_key="user_id")
    with Loopml(load_settings(home=tmp_path / "home")) as lm:
        lm.features.register(
            user,
            FeatureView(
                "user_stats", entity=user, features={"clicks": "int"}, source=str(data), ttl=timedelta(days=1)
            ),
        )
    return tmp_path


def test_features_commands_end_to_end(project: Path) -> None:
    listed = runner.invoke(app, ["features", "list"])
    assert listed.exit_code == 0, listed.output
    assert "user_stats" in listed.output
    mat = runner.invoke(app, ["features", "materialize", "user_stats"])
    assert mat.exit_code == 0, mat.output
    assert "succeeded" in mat.output
    assert "skipped" in runner.invoke(app, ["features", "materialize"]).output
    check = runner.invoke(app, ["features", "check", "--sample", "5"])
    assert check.exit_code == 0 and "no skew" in check.output, check.output
    show = runner.invoke(app, ["features", "show", "user_stats", "--stats"])
    assert show.exit_code == 0 and "clicks" in show.output and "2.667" in show.output, show.output
    audit = runner.invoke(app, ["features", "audit", "--json"])
    assert audit.exit_code == 0 and '"unused"' in audit.output and "user_stats:clicks" in audit.output


def test_features_commands_report_bad_input(project: Path) -> None:
    from loopml.errors import ConfigError, NotFoundError

    result = runner.invoke(app, ["features", "show", "user_stat"])
    assert isinstance(result.exception, NotFoundError) and "Did you mean: user_stats" in str(result.exception)
    result = runner.invoke(app, ["features", "materialize", "nope"])
    assert isinstance(result.exception, NotFoundError)
    result = runner.invoke(app, ["features", "check", "-m", "no_such_module_xyz"])
    assert isinstance(result.exception, ConfigError) and "no_such_module_xyz" in str(result.exception)
    result = runner.invoke(app, ["features", "materialize", "--chunk-rows", "0"])
    assert result.exit_code == 2
    help_text = runner.invoke(app, ["features", "check", "--help"]).output
    assert "Sample keys and compare online values" in help_text
