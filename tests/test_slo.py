"""SLOs on SQLite and PostgreSQL: every kind measured from real rows (inference log, queued jobs,
dataset versions, feature materialisations, a cron schedule with runs), the error-budget math,
history / status, input checks, the HTTP routes and the CLI."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import typer
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from loopml import Loopml
from loopml.cli import slos as slos_cli
from loopml.data import Column, Contract
from loopml.errors import ConflictError, NotFoundError, ValidationError
from loopml.features import Entity, FeatureView
from loopml.monitoring.slo import SloEvaluation, SloSpec
from loopml.monitoring.slo_sources import budget_remaining, burn_rate
from loopml.pipelines import Pipeline, register, step, unregister
from loopml.pipelines.scheduler import sync_schedules
from loopml.serving.app import create_app
from loopml.serving.inference import InferenceRecord
from loopml.storage.metadata import pipelines as pm

NOW = datetime.now(UTC).replace(microsecond=0)


def _log(
    lm: Loopml, endpoint: str, at: datetime, latencies: list[float], statuses: list[str] | None = None
) -> None:
    statuses = statuses or ["ok"] * len(latencies)
    lm.inference.write(
        InferenceRecord(
            uuid.uuid4().hex,
            endpoint,
            "m",
            1,
            None,
            [{"x": 1}],
            [0.5],
            latency,
            status,
            at=at + timedelta(seconds=i),
        )
        for i, (latency, status) in enumerate(zip(latencies, statuses, strict=True))
    )


def test_latency_slo_measures_the_percentile_and_spends_a_request_budget(lm: Loopml) -> None:
    _log(lm, "fraud", NOW - timedelta(hours=2), [10.0] * 100)  # in the period, outside the window
    _log(lm, "fraud", NOW - timedelta(minutes=30), [10.0] * 95 + [500.0] * 5)
    _log(lm, "other", NOW - timedelta(minutes=30), [900.0] * 10)  # another endpoint: not counted
    lm.slos.create(
        SloSpec(
            "fraud-p99",
            "latency",
            target={"endpoint": "fraud", "percentile": 99},
            objective=100,
            budget={"good_ratio": 0.95, "period_days": 1},
        )
    )
    ev = lm.slos.evaluate("fraud-p99", now=NOW)
    assert isinstance(ev, SloEvaluation)
    assert ev.value == pytest.approx(500.0) and ev.ok is False
    assert ev.data["requests"] == 100 and ev.data["slow_requests"] == 5
    # 5 slow of 200 requests in the period; 5 % of 200 = 10 allowed -> half the budget is left.
    assert ev.budget_remaining == pytest.approx(0.5)
    assert ev.burn_rate == pytest.approx((5 / 100) / 0.05)
    p90 = lm.slos.create(
        {
            "name": "fraud-p90",
            "kind": "latency",
            "target": {"endpoint": "fraud", "percentile": 90},
            "objective": 100,
        }
    )
    assert p90.spec.window_seconds == 3600 and p90.spec.budget == {"good_ratio": 0.99, "period_days": 28}
    ok = lm.slos.evaluate("fraud-p90", now=NOW)
    assert ok.value == pytest.approx(10.0) and ok.ok is True
    assert ok.budget_remaining == pytest.approx(1 - 5 / (0.01 * 200))  # overspent: negative
    quiet = lm.slos.evaluate("fraud-p99", now=NOW + timedelta(days=3))
    assert (quiet.value, quiet.ok, quiet.budget_remaining, quiet.burn_rate) == (None, True, 1.0, None)


def test_latency_percentile_matches_numpy(lm: Loopml) -> None:
    latencies = [float((i * 37) % 101) + 0.5 for i in range(101)]  # shuffled 0.5 .. 100.5
    _log(lm, "ep", NOW - timedelta(minutes=20), latencies)
    for pct in (50, 90, 99, 100):
        lm.slos.create(
            SloSpec(f"p{pct}", "latency", target={"endpoint": "ep", "percentile": pct}, objective=1000)
        )
        value = lm.slos.evaluate(f"p{pct}", now=NOW).value
        assert value == pytest.approx(float(np.percentile(latencies, pct))), pct


def test_error_rate_counts_every_status_but_ok(lm: Loopml) -> None:
    _log(lm, "fraud", NOW - timedelta(minutes=10), [5.0] * 50, ["ok"] * 47 + ["error", "error", "fallback"])
    lm.slos.create(SloSpec("fraud-errors", "error_rate", target={"endpoint": "fraud"}, objective=0.05))
    ev = lm.slos.evaluate("fraud-errors", now=NOW)
    assert ev.value == pytest.approx(3 / 50) and ev.ok is False
    assert ev.data["errors"] == 3 and ev.budget_remaining == pytest.approx(1 - 3 / (0.01 * 50))
    lm.slos.update(
        "fraud-errors", SloSpec("fraud-errors", "error_rate", target={"endpoint": "fraud"}, objective=0.1)
    )
    assert lm.slos.evaluate("fraud-errors", now=NOW).ok is True


def test_queue_age_and_the_evaluation_counted_budget(lm: Loopml) -> None:
    spec = SloSpec(
        "jobs-wait",
        "queue_age",
        target={"queue": "slo-q"},
        objective=300,
        budget={"good_ratio": 0.5, "period_days": 1},
    )
    lm.slos.create(spec)
    empty = lm.slos.evaluate("jobs-wait", now=NOW)
    assert (empty.value, empty.ok, empty.budget_remaining) == (0.0, True, 1.0)
    job = lm.jobs.enqueue("noop", queue="slo-q")
    start = datetime.now(UTC)
    readings = [lm.slos.evaluate("jobs-wait", now=start + timedelta(minutes=m)) for m in (10, 20)]
    assert [r.ok for r in readings] == [False, False]
    assert readings[0].value == pytest.approx(600, abs=5)
    lm.jobs.cancel(job.id)
    last = lm.slos.evaluate("jobs-wait", now=start + timedelta(minutes=30))
    assert last.ok is True
    # ok, bad, bad, ok with good_ratio 0.5: 2 bad of 4 = exactly the budget.
    assert [r.budget_remaining for r in readings] == [pytest.approx(0.0), pytest.approx(1 - 2 / 1.5)]
    assert last.budget_remaining == pytest.approx(0.0) and last.burn_rate == pytest.approx(1.0)
    history = lm.slos.history("jobs-wait")
    assert [h.ok for h in history] == [True, False, False, True]
    assert history[-1].burn_rate == pytest.approx(1.0)
    assert [h.ok for h in lm.slos.history("jobs-wait", since=start + timedelta(minutes=15), limit=10)] == [
        False,
        True,
    ]
    assert [h.ok for h in lm.slos.history("jobs-wait", limit=1)] == [True]


def test_queue_age_of_async_requests_waiting_for_the_screener(lm: Loopml) -> None:
    lm.slos.create(SloSpec("screen-wait", "queue_age", target={"async_kind": "photo"}, objective=3600))
    assert lm.slos.evaluate("screen-wait", now=NOW).value == 0.0
    request = lm.async_requests.submit("photo", data=b"jpeg", job_kind="photo.screen", status="screening")
    ev = lm.slos.evaluate("screen-wait", now=request.created_at + timedelta(hours=2))
    assert ev.value == pytest.approx(7200) and ev.ok is False and ev.data["status"] == "screening"
    with pytest.raises(ValidationError) as err:
        SloSpec("x", "queue_age", target={"queue": "q", "status": "screening"}, objective=1)
    assert err.value.field == "target.status"


def test_freshness_of_a_dataset_by_version_time_and_by_its_freshness_column(lm: Loopml) -> None:
    lm.datasets.define("plain", Contract([Column("x", "int")]))
    lm.slos.create(SloSpec("plain-fresh", "freshness", target={"dataset": "plain"}, objective=3600))
    never = lm.slos.evaluate("plain-fresh", now=NOW)
    assert never.value is None and never.ok is False  # nothing delivered is stale
    lm.datasets.ingest("plain", pd.DataFrame({"x": [1, 2]}))
    created = lm.datasets.version("plain").created_at
    ev = lm.slos.evaluate("plain-fresh", now=created + timedelta(hours=2))
    assert ev.value == pytest.approx(7200) and ev.ok is False and ev.data["version"] == 1
    assert lm.slos.evaluate("plain-fresh", now=created + timedelta(minutes=5)).ok is True

    contract = Contract([Column("ts", "datetime"), Column("y", "float")], freshness_column="ts")
    lm.datasets.define("events", contract)
    lm.datasets.ingest(
        "events",
        pd.DataFrame(
            {"ts": pd.to_datetime(["2026-01-01T00:00", "2026-01-02T00:00"], utc=True), "y": [1.0, 2.0]}
        ),
    )
    lm.slos.create(SloSpec("events-fresh", "freshness", target={"dataset": "events"}, objective=86400))
    ev = lm.slos.evaluate("events-fresh", now=datetime(2026, 1, 2, 12, tzinfo=UTC))
    assert ev.value == pytest.approx(12 * 3600) and ev.ok is True and ev.data["column"] == "ts"
    assert lm.slos.evaluate("events-fresh", now=datetime(2026, 1, 4, tzinfo=UTC)).ok is False

    lm.slos.create(SloSpec("ghost-fresh", "freshness", target={"dataset": "ghost"}, objective=1))
    with pytest.raises(NotFoundError):
        lm.slos.evaluate("ghost-fresh", now=NOW)
    # evaluate_all skips the one that cannot be measured and evaluates the rest.
    assert sorted(e.slo for e in lm.slos.evaluate_all(now=NOW)) == ["events-fresh", "plain-fresh"]


def test_freshness_of_a_feature_view_is_the_age_of_its_last_materialisation(lm: Loopml) -> None:
    frame = pd.DataFrame(
        {
            "user_id": [1, 2],
            "event_ts": pd.to_datetime(["2026-01-01", "2026-01-02"], utc=True),
            "clicks": [3, 4],
        }
    )
    user = Entity("user", join_key="user_id")
    lm.features.register(user, FeatureView("clicks_v", entity=user, features={"clicks": "int"}, source=frame))
    lm.slos.create(SloSpec("clicks-fresh", "freshness", target={"feature_view": "clicks_v"}, objective=600))
    assert lm.slos.evaluate("clicks-fresh", now=NOW).ok is False  # never materialised
    lm.features.materialize(["clicks_v"])
    done = datetime.now(UTC)
    ev = lm.slos.evaluate("clicks-fresh", now=done + timedelta(minutes=5))
    assert ev.ok is True and 0 < ev.value <= 330
    assert lm.slos.evaluate("clicks-fresh", now=done + timedelta(hours=1)).ok is False
    lm.slos.create(SloSpec("typo", "freshness", target={"feature_view": "click_v"}, objective=1))
    with pytest.raises(NotFoundError, match="clicks_v"):
        lm.slos.evaluate("typo")


@step
def _noop() -> int:
    return 1


def test_schedule_slo_counts_cron_ticks_without_a_run_started_within_the_grace(lm: Loopml) -> None:
    name = f"slo_test_{uuid.uuid4().hex[:8]}"
    register(Pipeline(name, [_noop], schedule="0 * * * *"))
    try:
        now = datetime(2026, 11, 30, 12, 30, tzinfo=UTC)
        sync_schedules(lm.ctx, now - timedelta(hours=5))
        with lm.ctx.db.session() as session:
            for i, started in enumerate(("09:02", "10:15", "11:05")):  # 10:15 is past the 10-minute grace
                run_id = f"{name}{i}"[-32:]
                pm.insert_run(
                    session, run_id=run_id, pipeline=name, params={}, trigger="schedule", steps=["_noop"]
                )
                hour, minute = map(int, started.split(":"))
                pm.start_run(session, run_id, now.replace(hour=hour, minute=minute))
        spec = SloSpec(
            "sched",
            "schedule",
            target={"pipeline": name, "grace_seconds": 600},
            objective=0,
            window_seconds=4 * 3600,
        )
        lm.slos.create(spec)
        ev = lm.slos.evaluate("sched", now=now)
        assert ev.data["ticks"] == 4  # 09:00, 10:00, 11:00, 12:00
        assert ev.value == 2 and ev.ok is False
        assert ev.data["missed"] == ["2026-11-30T10:00:00+00:00", "2026-11-30T12:00:00+00:00"]
        # 12:05: the 12:00 tick is still within its grace, so it is not counted yet.
        assert lm.slos.evaluate("sched", now=now.replace(minute=5)).data["ticks"] == 3
        lm.pipelines.set_schedule_enabled(name, False)
        paused = lm.slos.evaluate("sched", now=now)
        assert paused.value == 0 and paused.ok is True and paused.data["paused"] is True
        lm.slos.create(SloSpec("nosched", "schedule", target={"pipeline": "nope"}, objective=0))
        with pytest.raises(NotFoundError, match="has no schedule"):
            lm.slos.evaluate("nosched")
    finally:
        unregister(name)


def test_status_list_delete_and_conflicts(lm: Loopml) -> None:
    lm.slos.create(SloSpec("a-errors", "error_rate", target={"endpoint": "a"}, objective=0.01))
    lm.slos.create(SloSpec("b-wait", "queue_age", target={"queue": "b"}, objective=60))
    with pytest.raises(ConflictError):
        lm.slos.create(SloSpec("b-wait", "queue_age", target={"queue": "b"}, objective=60))
    lm.slos.evaluate("b-wait", now=NOW)
    status = {s["name"]: s for s in lm.slos.status()}
    assert status["a-errors"]["ok"] is None and status["a-errors"]["budget_remaining"] is None
    assert status["b-wait"]["ok"] is True and status["b-wait"]["budget_remaining"] == 1.0
    assert [s.name for s in lm.slos.list()] == ["a-errors", "b-wait"]
    lm.slos.delete("b-wait")
    with pytest.raises(NotFoundError, match="a-errors"):
        lm.slos.get("a-error")
    with pytest.raises(NotFoundError):
        lm.slos.delete("b-wait")
    with pytest.raises(ValidationError) as err:
        lm.slos.update("a-errors", SloSpec("renamed", "error_rate", target={"endpoint": "a"}, objective=0.01))
    assert err.value.field == "name"


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"kind": "uptime", "target": {}, "objective": 1}, "kind"),
        ({"kind": "latency", "target": {}, "objective": 1}, "target.endpoint"),
        ({"kind": "latency", "target": {"endpoint": "e", "p": 9}, "objective": 1}, "target.p"),
        (
            {"kind": "latency", "target": {"endpoint": "e", "percentile": 0}, "objective": 1},
            "target.percentile",
        ),
        ({"kind": "latency", "target": "fraud", "objective": 1}, "target"),
        ({"kind": "queue_age", "target": {"queue": "q", "async_kind": "k"}, "objective": 1}, "target"),
        ({"kind": "freshness", "target": {}, "objective": 1}, "target"),
        ({"kind": "schedule", "target": {"pipeline": ""}, "objective": 1}, "target.pipeline"),
        ({"kind": "error_rate", "target": {"endpoint": "e"}, "objective": 2}, "objective"),
        ({"kind": "latency", "target": {"endpoint": "e"}, "objective": -1}, "objective"),
        ({"kind": "latency", "target": {"endpoint": "e"}, "objective": float("nan")}, "objective"),
        (
            {"kind": "latency", "target": {"endpoint": "e"}, "objective": 1, "window_seconds": 5},
            "window_seconds",
        ),
        (
            {"kind": "latency", "target": {"endpoint": "e"}, "objective": 1, "budget": {"good_ratio": 1}},
            "budget.good_ratio",
        ),
        (
            {"kind": "latency", "target": {"endpoint": "e"}, "objective": 1, "budget": {"days": 1}},
            "budget.days",
        ),
        ({"kind": "latency", "target": {"endpoint": "e"}, "objective": True}, "objective"),
    ],
)
def test_bad_specs_name_the_field(kwargs: dict, field: str) -> None:
    with pytest.raises(ValidationError) as err:
        SloSpec("x", **kwargs)
    assert err.value.field == field


def test_bad_names_and_arguments(lm: Loopml) -> None:
    with pytest.raises(ValidationError) as err:
        SloSpec("1 bad", "latency", target={"endpoint": "e"}, objective=1)
    assert err.value.field == "name"
    with pytest.raises(ValidationError) as err:
        SloSpec.from_dict(
            {"name": "x", "kind": "latency", "target": {"endpoint": "e"}, "objective": 1, "extra": 1}
        )
    assert err.value.field == "extra"
    with pytest.raises(ValidationError):
        lm.slos.history("x", limit=0)
    with pytest.raises(ValidationError):
        lm.slos.evaluate("x", now="yesterday")  # type: ignore[arg-type]


def test_budget_helpers() -> None:
    assert budget_remaining(0, 0, 0.99) == 1.0
    assert budget_remaining(1000, 5, 0.99) == pytest.approx(0.5)
    assert budget_remaining(1000, 20, 0.99) == pytest.approx(-1.0)
    assert burn_rate(100, 1, 0.99) == pytest.approx(1.0) and burn_rate(0, 0, 0.9) is None


def test_http_routes(lm: Loopml) -> None:
    client = TestClient(create_app(lm))
    body = {"name": "api-errors", "kind": "error_rate", "target": {"endpoint": "e"}, "objective": 0.02}
    created = client.post("/v1/slos", json=body)
    assert created.status_code == 201, created.text
    assert created.json()["budget"]["good_ratio"] == 0.99
    assert client.post("/v1/slos", json=body).status_code == 409
    bad = client.post("/v1/slos", json={**body, "name": "b", "kind": "nope"})
    assert bad.status_code == 422 and "kind" in bad.text
    ev = client.post("/v1/slos/api-errors/evaluate")
    assert ev.status_code == 200 and ev.json()["ok"] is True
    assert client.get("/v1/slos").json()["slos"][0]["name"] == "api-errors"
    assert client.get("/v1/slos/api-errors").json()["kind"] == "error_rate"
    assert len(client.get("/v1/slos/api-errors/history").json()["evaluations"]) == 1
    assert client.get("/v1/slos/status").json()["status"][0]["ok"] is True
    assert client.get("/v1/slos/nope").status_code == 404
    assert client.delete("/v1/slos/api-errors").status_code == 204
    assert client.get("/v1/slos").json()["slos"] == []


def test_cli(lm: Loopml, metadata_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOOPML_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("LOOPML_METADATA_URL", metadata_url)
    app = typer.Typer()
    slos_cli.register(app)
    runner = CliRunner()
    out = runner.invoke(
        app,
        [
            "slos",
            "create",
            "cli-p99",
            "--kind",
            "latency",
            "--endpoint",
            "fraud",
            "--percentile",
            "99",
            "--objective",
            "100",
            "--good-ratio",
            "0.999",
        ],
    )
    assert out.exit_code == 0, out.output
    out = runner.invoke(app, ["slos", "create", "cli-q", "--kind", "queue_age", "--objective", "60"])
    assert isinstance(out.exception, ValidationError) and out.exception.field == "target"
    out = runner.invoke(app, ["slos", "evaluate", "cli-p99"])
    assert out.exit_code == 0 and "cli-p99" in out.output
    out = runner.invoke(app, ["slos", "evaluate", "--all"])
    assert out.exit_code == 0, out.output
    out = runner.invoke(app, ["slos", "list"])
    assert out.exit_code == 0 and "cli-p99" in out.output and "100" in out.output
    out = runner.invoke(app, ["slos", "show", "cli-p99", "--json"])
    assert json.loads(out.output)["slo"]["target"] == {"endpoint": "fraud", "percentile": 99.0}
    out = runner.invoke(app, ["slos", "delete", "cli-p99", "--yes"])
    assert out.exit_code == 0
    out = runner.invoke(app, ["slos", "show", "cli-p99"])
    assert isinstance(out.exception, NotFoundError)
    for command in ("create", "list", "show", "evaluate", "delete"):
        assert runner.invoke(app, ["slos", command, "--help"]).exit_code == 0
