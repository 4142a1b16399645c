"""The starter story end to end on the embedded default: quarantine, gates and batch scoring."""

from __future__ import annotations

from loopml import Loopml
from loopml.apps.starter import run_story


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
