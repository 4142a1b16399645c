"""The starter story end to end on the embedded default: quarantine, gates and batch scoring."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from loopml import Loopml, NotFoundError
from loopml.apps.starter import run_story
from loopml.cli.main import app


def test_starter_story_quarantines_gates_and_scores(lm_sqlite: Loopml) -> None:
    lines: list[str] = []
    result = run_story(lm_sqlite, rows=2_500, say=lines.append)

    # exactly the rows the simulator broke are quarantined, and nothing else
    assert result.quarantined_ids == result.injected_bad_ids
    assert result.rows_ok + result.rows_quarantined == result.rows_in
    # the baseline becomes the first champion, the better model passes, the broken one is blocked
    outcomes = {version: passed for version, passed, _ in result.gate_outcomes}
    assert outcomes == {1: True, 2: True, 3: False}
    assert result.champion_version == 2
    assert "BLOCKED" in next(text for v, ok, text in result.gate_outcomes if not ok)
    # the champion's batch scores are a dataset version of their own
    scores = lm_sqlite.datasets.read("churn_scores")
    assert len(scores) == result.scored_rows == result.rows_ok
    assert scores["model_version"].eq(2).all()
    assert any(line.startswith("gate") for line in lines)


def test_demo_command_runs_and_names_unknown_systems(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["demo", "starter", "--fast", "--home", str(tmp_path / "demo")])
    assert result.exit_code == 0, result.output
    assert "BLOCKED" in result.output and "loopml up" in result.output
    with pytest.raises(NotFoundError, match="starter"):
        CliRunner().invoke(app, ["demo", "startr"], catch_exceptions=False)
