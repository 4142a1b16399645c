"""``loopml demo loop --fast``: the closed loop closes by itself, in both directions, on both backends."""

from __future__ import annotations

import pytest

from loopml.apps.fraud import FraudConfig
from loopml.apps.fraud.loop_story import LoopSettings, loop_config, run_loop_story
from loopml.errors import ValidationError


def test_loop_demo_promotes_the_better_model_and_rolls_back_the_worse(lm_sqlite) -> None:
    """SQLite only: the loop engine's own tests cover PostgreSQL; this is the whole story, ~1 minute."""
    lines: list[str] = []
    result = run_loop_story(lm_sqlite, fast=True, say=lines.append)
    first, second = result.run(0), result.run(1)
    assert first is not None and second is not None, lines
    # run 1: the recall alert on delayed chargebacks starts it, the retrained model is promoted
    assert first.status == "promoted", first.outcome
    assert first.alert_key == "rule:fraud-recall-drop"
    assert result.champion == first.candidate
    steps = [item["step"] for item in first.timeline]
    order = [
        "alert",
        "triggered",
        "retrain",
        "gates",
        "shadow",
        "canary",
        "promote",
        "outcome",
        "alert_resolved",
    ]
    assert [s for s in dict.fromkeys(steps) if s in order] == order, steps
    assert first.timeline[-1]["status"] == "resolved"
    # the canary's PSI limit came from the shadow, and the honest retrain's skew stayed low
    shadow = next(i for i in first.timeline if i["step"] == "shadow" and i["status"] == "ok")
    assert "canary PSI limit" in shadow["detail"] and shadow["data"]["skew_psi"] < 1.0
    # run 2: the skewed retrain passes its own (equally skewed) gate; live, its scores do not look like
    # its scores on that eval set, so the loop's skew check rolls the canary back
    assert second.status == "rolled_back", second.outcome
    assert "training/serving skew" in (second.outcome or "")
    assert not result.unfinished
    assert any(g["passed"] for g in second.gates)
    assert second.retrain["amount_source"] == "ledger"
    # better model: higher AUC on the same post-shift traffic; the skewed one is worse than the champion
    auc = {a["model"]: a["auc"] for a in result.auc}
    assert auc[first.candidate] > auc["fraud/1"] + 0.03
    assert auc[second.candidate] < auc[first.candidate]
    # the webhook receiver got the Slack-format alert, and no request failed
    opened = [m for m in result.webhook if m["topic"] == "alert.opened"]
    assert any("fraud-recall-drop" in m["body"]["text"] for m in opened)
    assert all("blocks" in m["body"] for m in result.webhook)
    assert result.failed_requests == 0 and result.total_requests > 1000
    # quiet before the shift, drifted after
    windows = {w["window_start"][:10]: w for w in result.windows}
    shift = result.shift_start[:10]
    before = [w for day, w in windows.items() if day < shift]
    assert before and all(not w["drifted"] for w in before)
    assert "mcc" in windows[shift]["drifted"]
    assert not result.tick_errors, result.tick_errors


def test_loop_demo_rejects_bad_input(lm_sqlite) -> None:
    with pytest.raises(ValidationError) as err:
        run_loop_story("not a client")  # type: ignore[arg-type]
    assert err.value.field == "lm"
    with pytest.raises(ValidationError) as err:
        run_loop_story(lm_sqlite, FraudConfig.small())
    assert err.value.field == "shift_day"
    with pytest.raises(ValidationError) as err:
        run_loop_story(lm_sqlite, loop_config(True), settings=LoopSettings(tick_hours=5))
    assert err.value.field == "tick_hours"
    with pytest.raises(ValidationError) as err:
        run_loop_story(lm_sqlite, loop_config(True), settings=LoopSettings(live_day=12))
    assert err.value.field == "live_day"


def test_webhook_texts_are_printed_unescaped() -> None:
    from loopml.apps.fraud.loop_cli import slack_text

    # Slack's mrkdwn escapes &, < and >; people read the decoded text
    assert slack_text({"text": "recall &lt; 0.4 &amp; auc &gt;= 0.9"}) == "recall < 0.4 & auc >= 0.9"
    assert slack_text({"text": "a &amp;lt; b"}) == "a &lt; b"  # an escaped entity stays one
    assert slack_text(None) == "" and slack_text({"raw": "x"}) == ""
