"""Alert rules on SQLite and PostgreSQL: drift / performance rules over stored monitor windows and
SLO rules over stored readings fire, dedupe, wait for ``for_windows`` and resolve through
``lm.alerts``; bad input names the field; the HTTP routes and the CLI."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import typer
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from loopml import Loopml
from loopml.cli import slos as slos_cli
from loopml.errors import ConflictError, NotFoundError, ValidationError
from loopml.monitoring.rules import RuleOutcome, RuleSpec, default_rules, metric_value
from loopml.monitoring.slo import SloSpec
from loopml.serving.app import create_app
from loopml.storage.metadata.monitoring import MonitorRow, MonitorWindowRow

T0 = datetime(2026, 11, 30, tzinfo=UTC)


def _drift(share: float, *, amount: float = 0.05, pred: float = 0.01) -> dict[str, Any]:
    return {
        "features": {
            "amount": {"statistic": amount, "drifted": amount > 0.2, "method": "psi"},
            "prediction": {"statistic": pred, "drifted": pred > 0.2, "method": "psi"},
        },
        "share_drifted": share,
        "dataset_drifted": share >= 0.5,
    }


def _perf(auc: float, gap: float = 0.0) -> dict[str, Any]:
    return {
        "task": "classification",
        "labelled": 200,
        "metrics": {"auc": auc},
        "slices": {},
        "gaps": {"country": {"auc": gap}},
    }


def _monitor(lm: Loopml, name: str = "fraud-mon", endpoint: str = "fraud") -> int:
    with lm.ctx.db.session() as session:
        row = MonitorRow(name=name, endpoint=endpoint, spec={}, revision=1)
        session.add(row)
        session.flush()
        return row.id


def _window(
    lm: Loopml,
    monitor_id: int,
    i: int,
    *,
    drift: dict | None = None,
    perf: dict | None = None,
    rows: int = 500,
    labelled: int = 200,
) -> None:
    start = T0 + timedelta(hours=i)
    with lm.ctx.db.session() as session:
        session.add(
            MonitorWindowRow(
                monitor_id=monitor_id,
                window_start=start,
                window_end=start + timedelta(hours=1),
                rows=rows,
                labelled=labelled,
                drift=drift,
                performance=perf,
            )
        )


def _states(outcomes: list[RuleOutcome]) -> dict[str, str]:
    return {o.rule: o.state for o in outcomes}


def test_drift_rule_fires_once_dedupes_and_resolves(lm: Loopml) -> None:
    mid = _monitor(lm)
    lm.alert_rules.create(
        RuleSpec(
            "share",
            "drift",
            monitor="fraud-mon",
            metric="share_drifted",
            op=">=",
            threshold=0.3,
            severity="critical",
        )
    )
    assert _states(lm.alert_rules.evaluate()) == {"share": "no_data"}
    _window(lm, mid, 0, drift=_drift(0.5))
    first = lm.alert_rules.evaluate()[0]
    assert (first.state, first.value, first.window_start) == ("fired", 0.5, T0)
    again = lm.alert_rules.evaluate()[0]
    assert again.state == "fired" and again.alert_id == first.alert_id
    [alert] = lm.alerts.list(status="open")
    assert alert.key == "rule:share" and alert.fire_count == 2 and alert.severity == "critical"
    assert alert.title == "share: share_drifted >= 0.3 (now 0.5)" and alert.source == "monitoring"
    assert alert.data == {
        "rule": "share",
        "source": "drift",
        "monitor": "fraud-mon",
        "endpoint": "fraud",
        "slo": None,
        "metric": "share_drifted",
        "value": 0.5,
        "threshold": 0.3,
        "window_start": T0.isoformat(),
    }
    _window(lm, mid, 1, drift=_drift(0.1))
    resolved = lm.alert_rules.evaluate()[0]
    assert resolved.state == "resolved" and resolved.alert_id == alert.id
    assert lm.alerts.list(status="open") == []
    assert lm.alert_rules.evaluate()[0].state == "ok"
    # `now` ignores windows that had not ended yet: at T0 + 1h only the drifted window counted.
    assert lm.alert_rules.evaluate(now=T0 + timedelta(hours=1))[0].state == "fired"
    assert len(lm.alerts.list(key="rule:share")) == 2  # a new incident after the resolve


def test_for_windows_and_min_rows(lm: Loopml) -> None:
    mid = _monitor(lm)
    lm.alert_rules.create(
        RuleSpec(
            "amount",
            "drift",
            monitor="fraud-mon",
            metric="feature:amount",
            op=">",
            threshold=0.2,
            for_windows=3,
            min_rows=100,
        )
    )
    _window(lm, mid, 0, drift=_drift(0.1, amount=0.4))
    _window(lm, mid, 1, drift=_drift(0.1, amount=0.5))
    assert _states(lm.alert_rules.evaluate()) == {"amount": "no_data"}  # only two windows so far
    _window(lm, mid, 2, drift=_drift(0.1, amount=0.9), rows=10)  # too few rows: skipped
    assert _states(lm.alert_rules.evaluate()) == {"amount": "no_data"}
    _window(lm, mid, 3, drift=_drift(0.1, amount=0.3))
    fired = lm.alert_rules.evaluate()[0]
    assert fired.state == "fired" and fired.value == pytest.approx(0.3)
    assert "held on the last 3 window(s)" in lm.alerts.get(fired.alert_id).detail
    _window(lm, mid, 4, drift=_drift(0.1, amount=0.01))
    assert lm.alert_rules.evaluate()[0].state == "resolved"
    _window(lm, mid, 5, drift=_drift(0.1, amount=0.6))
    # holds on the newest window only: not long enough to fire again.
    assert lm.alert_rules.evaluate()[0].state == "ok"
    assert lm.alerts.list(status="open") == []


def test_performance_and_prediction_metrics(lm: Loopml) -> None:
    mid = _monitor(lm)
    for spec in default_rules("fraud-mon"):
        lm.alert_rules.create(spec)
    lm.alert_rules.create(
        RuleSpec("gap", "performance", monitor="fraud-mon", metric="gap:country:auc", op=">", threshold=0.1)
    )
    _window(lm, mid, 0, drift=_drift(0.6, pred=0.5), perf=_perf(0.62, gap=0.2))
    _window(lm, mid, 1, drift=_drift(0.6, pred=0.5), perf=_perf(0.65, gap=0.05), labelled=50)
    states = _states(lm.alert_rules.evaluate())
    assert states == {
        "fraud-mon.dataset_drift": "fired",
        "fraud-mon.prediction_drift": "fired",
        "fraud-mon.auc_drop": "fired",  # the 50-label window is below min_rows=100: the 0.62 one counts
        "gap": "ok",
    }
    assert {a.severity for a in lm.alerts.list(status="open")} == {"warning", "critical"}


def test_slo_rule_reads_the_slo_readings(lm: Loopml) -> None:
    lm.slos.create(
        SloSpec("wait", "queue_age", target={"queue": "rq"}, objective=60, budget={"good_ratio": 0.9})
    )
    lm.alert_rules.create(
        RuleSpec("wait-bad", "slo", slo="wait", metric="ok", op="==", threshold=0, for_windows=2)
    )
    lm.alert_rules.create(
        RuleSpec("wait-budget", "slo", slo="wait", metric="budget_remaining", op="<", threshold=0)
    )
    assert _states(lm.alert_rules.evaluate()) == {"wait-bad": "no_data", "wait-budget": "no_data"}
    lm.jobs.enqueue("noop", queue="rq")
    now = datetime.now(UTC)
    lm.slos.evaluate("wait", now=now + timedelta(minutes=5))
    assert _states(lm.alert_rules.evaluate()) == {"wait-bad": "no_data", "wait-budget": "fired"}
    lm.slos.evaluate("wait", now=now + timedelta(minutes=6))
    outcomes = lm.alert_rules.evaluate()
    assert _states(outcomes) == {"wait-bad": "fired", "wait-budget": "fired"}
    alert = lm.alerts.get(outcomes[0].alert_id)
    assert alert.data["slo"] == "wait" and alert.data["monitor"] is None


def test_definitions_enable_disable_and_not_found(lm: Loopml) -> None:
    _monitor(lm)
    spec = RuleSpec("r", "drift", monitor="fraud-mon", metric="dataset_drifted", op="==", threshold=1)
    info = lm.alert_rules.create(spec)
    assert info.enabled and info.spec == spec
    with pytest.raises(ConflictError):
        lm.alert_rules.create(spec)
    assert lm.alert_rules.disable("r").enabled is False
    assert lm.alert_rules.evaluate() == []
    assert lm.alert_rules.enable("r").enabled is True
    updated = lm.alert_rules.update("r", {**spec.to_dict(), "threshold": 0})
    assert updated.spec.threshold == 0
    with pytest.raises(NotFoundError, match="fraud-mon") as err:
        lm.alert_rules.create(
            RuleSpec("x", "drift", monitor="fraud-mn", metric="share_drifted", op=">", threshold=0)
        )
    assert err.value.field == "monitor"
    with pytest.raises(NotFoundError) as err:
        lm.alert_rules.create(RuleSpec("y", "slo", slo="nope", metric="ok", op="==", threshold=0))
    assert err.value.field == "slo"
    lm.alert_rules.delete("r")
    with pytest.raises(NotFoundError):
        lm.alert_rules.get("r")


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"source": "logs", "monitor": "m", "metric": "x", "op": ">", "threshold": 1}, "source"),
        ({"source": "drift", "monitor": "m", "metric": "x", "op": "=>", "threshold": 1}, "metric"),
        ({"source": "drift", "monitor": "m", "metric": "share_drifted", "op": "=>", "threshold": 1}, "op"),
        ({"source": "drift", "metric": "share_drifted", "op": ">", "threshold": 1}, "monitor"),
        ({"source": "slo", "monitor": "m", "metric": "ok", "op": ">", "threshold": 1}, "slo"),
        ({"source": "slo", "slo": "s", "metric": "auc", "op": ">", "threshold": 1}, "metric"),
        ({"source": "performance", "monitor": "m", "metric": "gap:x", "op": ">", "threshold": 1}, "metric"),
        ({"source": "drift", "monitor": "m", "metric": "feature:", "op": ">", "threshold": 1}, "metric"),
        (
            {
                "source": "drift",
                "monitor": "m",
                "metric": "share_drifted",
                "op": ">",
                "threshold": float("inf"),
            },
            "threshold",
        ),
        (
            {
                "source": "drift",
                "monitor": "m",
                "metric": "share_drifted",
                "op": ">",
                "threshold": 1,
                "for_windows": 0,
            },
            "for_windows",
        ),
        (
            {
                "source": "drift",
                "monitor": "m",
                "metric": "share_drifted",
                "op": ">",
                "threshold": 1,
                "severity": "high",
            },
            "severity",
        ),
        (
            {
                "source": "drift",
                "monitor": "m",
                "metric": "share_drifted",
                "op": ">",
                "threshold": 1,
                "min_rows": -1,
            },
            "min_rows",
        ),
        ({"source": "slo", "slo": "s", "metric": "ok", "op": ">", "threshold": 1, "min_rows": 5}, "min_rows"),
    ],
)
def test_bad_rules_name_the_field(kwargs: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError) as err:
        RuleSpec("bad", **kwargs)
    assert err.value.field == field


def test_metric_value_reads_each_shape() -> None:
    drift = RuleSpec("d", "drift", monitor="m", metric="drifted:amount", op="==", threshold=1)
    assert metric_value(drift, _drift(0.1, amount=0.3)) == 1.0
    assert metric_value(drift, {"features": {}}) is None and metric_value(drift, None) is None
    pred = RuleSpec("p", "drift", monitor="m", metric="prediction", op=">", threshold=0.2)
    assert metric_value(pred, _drift(0.1, pred=0.25)) == 0.25
    perf = RuleSpec("a", "performance", monitor="m", metric="wape", op=">", threshold=0.2)
    assert metric_value(perf, _perf(0.7)) is None
    assert metric_value(perf, {"metrics": {"wape": float("nan")}}) is None


def test_http_routes(lm: Loopml) -> None:
    mid = _monitor(lm)
    _window(lm, mid, 0, drift=_drift(0.9))
    client = TestClient(create_app(lm))
    body = {
        "name": "h",
        "source": "drift",
        "monitor": "fraud-mon",
        "metric": "share_drifted",
        "op": ">",
        "threshold": 0.5,
    }
    assert client.post("/v1/alert-rules", json=body).status_code == 201
    assert client.post("/v1/alert-rules", json=body).status_code == 409
    bad = client.post("/v1/alert-rules", json={**body, "name": "b", "op": "~"})
    assert bad.status_code == 422 and "op" in bad.text
    assert client.post("/v1/alert-rules", json={**body, "name": "c", "extra": 1}).status_code == 422
    outcomes = client.post("/v1/alert-rules/evaluate").json()["outcomes"]
    assert outcomes[0]["state"] == "fired" and outcomes[0]["window_start"] == T0.isoformat()
    assert client.patch("/v1/alert-rules/h", json={"enabled": False}).json()["enabled"] is False
    assert client.get("/v1/alert-rules", params={"enabled": "false"}).json()["rules"][0]["name"] == "h"
    assert client.patch("/v1/alert-rules/h", json={"enabled": "maybe"}).status_code == 422
    assert client.get("/v1/alert-rules/h").json()["metric"] == "share_drifted"
    assert client.delete("/v1/alert-rules/h").status_code == 204
    assert client.get("/v1/alert-rules/h").status_code == 404


def test_cli(lm: Loopml, metadata_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOOPML_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("LOOPML_METADATA_URL", metadata_url)
    mid = _monitor(lm)
    _window(lm, mid, 0, drift=_drift(0.9))
    app = typer.Typer()
    slos_cli.register(app)
    runner = CliRunner()

    def ok(*args: str) -> str:
        result = runner.invoke(app, list(args))
        assert result.exit_code == 0, (result.output, result.exception)
        return result.output

    def create(name: str, op: str, threshold: str) -> list[str]:
        flags = f"--source drift --monitor fraud-mon --metric share_drifted --op {op} --threshold {threshold}"
        return ["rules", "create", name, *flags.split()]

    ok(*create("c1", ">=", "0.3"), "--severity", "critical")
    assert "c1" in ok("rules", "list")
    assert "fired" in ok("rules", "evaluate")
    assert json.loads(ok("rules", "show", "c1", "--json"))["severity"] == "critical"
    assert "disabled" in ok("rules", "disable", "c1")
    assert "enabled" in ok("rules", "enable", "c1")
    assert "3 rules" in ok("rules", "defaults", "fraud-mon")
    ok("rules", "delete", "c1", "--yes")
    bad = runner.invoke(app, create("c2", "=~", "1"))
    assert isinstance(bad.exception, ValidationError) and bad.exception.field == "op"
    for command in ("create", "list", "show", "enable", "disable", "delete", "evaluate", "defaults"):
        assert runner.invoke(app, ["rules", command, "--help"]).exit_code == 0
