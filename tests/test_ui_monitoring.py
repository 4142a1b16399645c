"""Monitoring pages of the dashboard (health, monitors, SLOs, loop) over data made by the real services.

``populate_monitoring`` builds one closed loop end to end through the public APIs: a served model,
a week-old log with two shifted hours and late labels, a monitor that found the drift, SLOs with
readings, a drift rule whose alert started a loop run that retrained and promoted a new version.
It is shared with the Playwright test in tests/browser/test_monitoring_ui.py.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient
from sklearn.linear_model import LogisticRegression

from loopml import Loopml
from loopml.data import Column, Contract
from loopml.monitoring.actions import ActionPolicy
from loopml.monitoring.monitors import MonitorSpec
from loopml.monitoring.rules import RuleSpec
from loopml.monitoring.slo import SloSpec
from loopml.pipelines import Pipeline, register, step
from loopml.serving.app import create_app
from loopml.serving.endpoints import EndpointSpec, Single
from loopml.serving.inference import InferenceRecord
from loopml.web import monitoring_figures as mfig
from loopml.web import monitoring_pages
from ui_pages import page_figure, ui_client

ENDPOINT = "scores"
MONITOR = "scores-hourly"
RULE = "scores-drift"
POLICY = "scores-retrain"
PIPELINE = "ui-monitoring-retrain"
T0 = datetime(2026, 11, 2, tzinfo=UTC)
HOURS = 8
SHIFTED = (6, 7)
LABELLED = range(6)
PER_HOUR = 90
FEATURES = ["x", "amount"]


def _train(seed: int) -> tuple[LogisticRegression, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    X = pd.DataFrame({"x": rng.normal(size=300), "amount": rng.gamma(2.0, 50.0, size=300)})
    y = (X.x + 0.3 * rng.normal(size=300) > 0).astype(int)
    return LogisticRegression().fit(X, y), X.head(5)


@step(cache=False)
def retrain(lm: Any, pipeline_run_id: str) -> dict:
    """Fit a fresh model and register it from a tracking run of this pipeline run (the loop's lineage)."""
    model, example = _train(seed=9)
    with lm.tracking.start_run("ui-monitoring", pipeline_run_id=pipeline_run_id) as run:
        version = lm.registry.register("fraud", model, input_example=example, run_id=run.id)
    return {"version": version.number}


register(Pipeline(PIPELINE, [retrain]), module=__name__)


def _hour(hour: int, rng: np.random.Generator) -> list[InferenceRecord]:
    shift = 2.0 if hour in SHIFTED else 0.0
    records = []
    for i in range(PER_HOUR):
        x = float(rng.normal() + shift)
        score = 1 / (1 + math.exp(-x))
        records.append(
            InferenceRecord(
                request_id=f"h{hour}-{i}",
                endpoint=ENDPOINT,
                model="fraud",
                version=1,
                arm=None,
                inputs=[{"x": x, "amount": float(rng.gamma(2.0, 50.0)), "region": ("north", "south")[i % 2]}],
                outputs=[{"label": int(score >= 0.5), "probability": score}],
                latency_ms=3.0,
                status="ok",
                at=T0 + timedelta(hours=hour, seconds=i * 3600 / PER_HOUR),
            )
        )
    return records


def _recent(now: datetime, n: int = 120) -> list[InferenceRecord]:
    """The last two hours of live traffic: p99 above the 5 ms SLO, 1 request in 20 an error."""
    return [
        InferenceRecord(
            request_id=f"live-{i}",
            endpoint=ENDPOINT,
            model="fraud",
            version=1,
            arm=None,
            inputs=[{"x": 0.1 * (i % 7), "amount": 10.0 + i, "region": "north"}],
            outputs=[{"label": 0, "probability": 0.2}] if i % 20 else [0.0],
            latency_ms=2.0 + (i % 10) * 1.5,
            status="ok" if i % 20 else "error",
            at=now - timedelta(minutes=110) + timedelta(seconds=i * 6600 / n),
        )
        for i in range(n)
    ]


def populate_monitoring(lm: Loopml) -> dict[str, Any]:
    """Everything the monitoring pages draw, made through the public services (see the module doc)."""
    now = datetime.now(UTC)
    model, example = _train(seed=1)
    lm.registry.register("fraud", model, input_example=example)
    lm.registry.promote("fraud", 1, "champion", actor="test", reason="first model")
    lm.endpoints.create(EndpointSpec(ENDPOINT, Single("fraud@champion")), actor="test")
    rng = np.random.default_rng(3)
    for hour in range(HOURS):
        lm.inference.write(_hour(hour, rng))
    lm.inference.write(_recent(now))
    for hour in LABELLED:
        frame = lm.inference.records(
            ENDPOINT, since=T0 + timedelta(hours=hour), until=T0 + timedelta(hours=hour + 1)
        )
        labels = []
        for row in frame.itertuples():  # right in the south; in the north one label in three is wrong
            truth = int(row.inputs[0]["x"] > 0)
            flip = row.inputs[0]["region"] == "north" and rng.random() < 0.33
            labels.append({"request_id": row.request_id, "label": 1 - truth if flip else truth})
        lm.inference.feedback_many(ENDPOINT, labels, actor="chargebacks")

    lm.monitors.create(
        MonitorSpec(
            name=MONITOR,
            endpoint=ENDPOINT,
            features=["x", "amount", "region"],
            reference={"since": T0.isoformat(), "until": (T0 + timedelta(hours=1)).isoformat()},
            window_seconds=3600,
            performance={"slices": ["region"], "min_slice_rows": 20},
            min_rows=30,
        ),
        actor="test",
    )
    result = lm.monitors.run(MONITOR, now=T0 + timedelta(hours=HOURS, minutes=5))
    assert result.ok and result.windows_computed == HOURS, result

    lm.slos.create(
        SloSpec("scores-p99", "latency", target={"endpoint": ENDPOINT, "percentile": 99}, objective=5)
    )
    lm.slos.create(SloSpec("scores-errors", "error_rate", target={"endpoint": ENDPOINT}, objective=0.2))
    lm.jobs.enqueue("ui.test.noop", {"n": 1}, queue="default")
    lm.slos.create(SloSpec("default-queue", "queue_age", target={"queue": "default"}, objective=3600))
    for minutes in (60, 40, 20, 0):
        for name in ("scores-p99", "scores-errors", "default-queue"):
            lm.slos.evaluate(name, now=now - timedelta(minutes=minutes))

    lm.alert_rules.create(
        RuleSpec(
            RULE,
            "drift",
            monitor=MONITOR,
            metric="share_drifted",
            op=">=",
            threshold=0.3,
            severity="critical",
        )
    )
    outcomes = lm.alert_rules.evaluate()
    assert [o.state for o in outcomes] == ["fired"], outcomes
    lm.alerts.fire(
        "queue.slow:default", severity="warning", title="default queue is slow", data={"queue": "default"}
    )
    lm.alerts.fire(
        "rule:scores-p99-burn",
        severity="critical",
        title="scores-p99 burns its budget",
        data={"endpoint": ENDPOINT},
    )
    policy = ActionPolicy.from_dict(
        {
            "name": POLICY,
            "on": {"rule": RULE},
            "endpoint": ENDPOINT,
            "model": "fraud",
            "retrain": {"pipeline": PIPELINE, "params": {}},
            "release": {"alias": "champion", "shadow": None, "canary": None},
        }
    )
    lm.loop.create_policy(policy, actor="test")
    (run,) = lm.loop.process_alerts()
    for _ in range(10):
        run = lm.loop.advance(run.id)
        if not run.active:
            break
    assert run.status == "promoted", run.outcome
    return {"run_id": run.id, "candidate": run.candidate}


@pytest.fixture
def ui(lm: Loopml) -> TestClient:
    return ui_client(lm)


def test_pages_draw_the_whole_loop(lm: Loopml, ui: TestClient) -> None:
    made = populate_monitoring(lm)

    # -- health overview
    page = ui.get("/ui/overview")
    assert page.status_code == 200, page.text
    text = page.text
    assert 'href="/ui/overview"' in text and "Health" in text  # nav entry
    assert 'data-testid="health-endpoint-scores"' in text
    spark = page_figure(text, "spark-requests-scores")
    assert sum(spark["data"][0]["y"]) == 120  # the two hours of live traffic, in 30-minute buckets
    (row,) = monitoring_pages.health(lm)["endpoints"]
    assert 60 <= row["requests"] <= 66 and f">{row['requests']}<" in text  # the last hour of it
    assert row["p99_over"] and not row["errors_over"]
    p99 = page_figure(text, "spark-p99-scores")
    assert p99["data"][0]["line"]["color"] == mfig.BAD  # p99 is above the 5 ms objective
    budgets = page_figure(text, "budgets")
    assert set(budgets["data"][0]["y"]) == {"scores-p99", "scores-errors", "default-queue"}
    alerts = page_figure(text, "alerts")
    assert dict(zip(alerts["data"][0]["x"], alerts["data"][0]["y"], strict=True)) == {
        "critical": 1,
        "warning": 1,
    }
    queues = page_figure(text, "queues")
    assert queues["data"][0]["x"] == lm.jobs.queues()
    assert queues["data"][0]["y"] == [lm.jobs.stats(q)["queued"] for q in lm.jobs.queues()]
    assert queues["data"][2]["y"] == [3600.0]  # the queue-age objective drawn next to the oldest wait
    strip = page_figure(text, "pipeline-runs")
    assert strip["data"][0]["y"] == [PIPELINE] and strip["data"][0]["name"] == "succeeded"
    assert 'data-testid="health-pipeline-ui-monitoring-retrain"' in text

    # -- monitors list and one monitor
    page = ui.get("/ui/monitors")
    assert page.status_code == 200 and f'href="/ui/monitors/{MONITOR}"' in page.text
    assert page_figure(page.text, f"spark-{MONITOR}")["data"][0]["type"] == "bar"
    (listed,) = monitoring_pages.monitors(lm)["monitors"]
    assert listed["dataset_drifted"] is True and listed["drifted_features"] == ["x", "prediction"]
    assert listed["metric"] == "auc" and 0.5 < listed["metric_value"] < 1
    page = ui.get(f"/ui/monitors/{MONITOR}")
    assert page.status_code == 200, page.text
    text = page.text
    heat = page_figure(text, "heatmap")
    assert (
        heat["data"][0]["y"] == ["x", "amount", "region", "prediction"] and len(heat["data"][0]["x"]) == HOURS
    )
    x_row = heat["data"][0]["z"][0]
    assert all(v >= 1 for h, v in enumerate(x_row) if h in SHIFTED)  # drifted windows at or over threshold
    assert all(v < 1 for h, v in enumerate(x_row) if h not in SHIFTED)
    share = page_figure(text, "share")
    colors = share["data"][0]["marker"]["color"]
    assert [h for h, c in enumerate(colors) if c == mfig.BAD] == list(SHIFTED)
    feature = page_figure(text, "feature")
    assert feature["data"][0]["name"] == "x"  # the default is the newest window's most drifted feature
    dist = page_figure(text, "distribution")
    assert [t["type"] for t in dist["data"]] == ["bar", "bar"] and "(drifted)" in dist["layout"]["title"][
        "text"
    ]
    assert abs(sum(dist["data"][0]["y"]) - 1) < 1e-9 and abs(sum(dist["data"][1]["y"]) - 1) < 1e-9
    perf = page_figure(text, "performance")
    names = [t["name"] for t in perf["data"]]
    assert "auc" in names and names[-1] == "label coverage"
    coverage = perf["data"][-1]["y"]
    assert coverage[: len(LABELLED)] == [1.0] * len(LABELLED) and coverage[-1] == 0.0
    slices = page_figure(text, "slices")
    assert slices["data"][0]["x"] == ["region=north", "region=south"]
    assert page_figure(text, "gaps")["data"][0]["name"] == "region"

    # choose another feature (categorical) and an older window
    windows = monitoring_pages.monitor(lm, MONITOR)["window_options"]
    oldest = windows[-1]["value"]
    page = ui.get(
        f"/ui/monitors/{MONITOR}", params={"feature": "region", "window": oldest, "metric": "precision"}
    )
    assert page.status_code == 200, page.text
    dist = page_figure(page.text, "distribution")
    assert (
        sorted(dist["data"][0]["x"]) == ["north", "south"] and "(no drift)" in dist["layout"]["title"]["text"]
    )
    assert "precision per slice" in page_figure(page.text, "slices")["layout"]["title"]["text"]

    # -- SLOs
    page = ui.get("/ui/slos")
    assert page.status_code == 200, page.text
    history = page_figure(page.text, "slo-scores-p99")
    assert len(history["data"][0]["x"]) == 4 and history["layout"]["shapes"][0]["y0"] == 5
    assert mfig.BAD in history["data"][0]["marker"]["color"]  # readings over 5 ms are red
    assert 'id="slo-default-queue"' in page.text

    # -- loop history and the run's story
    page = ui.get("/ui/loop")
    assert page.status_code == 200, page.text
    assert f'href="/ui/loop/{made["run_id"]}"' in page.text and POLICY in page.text
    hist = page_figure(page.text, "loop-history")
    assert hist["data"][0]["name"] == "promoted"
    page = ui.get(f"/ui/loop/{made['run_id']}")
    assert page.status_code == 200, page.text
    text = page.text
    story = page_figure(text, "story")
    steps = story["data"][1]["y"]
    assert steps[0] == "alert" and steps[-2:] == ["outcome", "alert_resolved"]
    assert {"triggered", "retrain", "gates", "promote"} <= set(steps)
    assert f'href="/ui/endpoints/{ENDPOINT}"' in text and 'href="/ui/models/fraud"' in text
    assert 'href="/ui/alerts"' in text and 'href="/ui/pipelines/runs/' in text
    assert f'href="/ui/monitors/{MONITOR}"' in text  # the monitor whose drift fired the alert
    assert made["candidate"] in text


def test_empty_states_name_the_command_that_fills_them(lm: Loopml, ui: TestClient) -> None:
    expected = {
        "/ui/overview": ["No endpoints yet", "No SLOs yet", "No open alerts", "No loop run in progress"],
        "/ui/monitors": ["No monitors yet: loopml monitors create"],
        "/ui/slos": ["No SLOs yet: loopml slos create"],
        "/ui/loop": ["No loop runs yet", "loopml policies create"],
    }
    for url, phrases in expected.items():
        page = ui.get(url)
        assert page.status_code == 200, (url, page.text)
        for phrase in phrases:
            assert phrase in page.text, (url, phrase)


def test_a_monitor_without_windows_says_how_to_compute_them(lm: Loopml, ui: TestClient) -> None:
    model, example = _train(seed=1)
    lm.registry.register("fraud", model, input_example=example)
    lm.endpoints.create(EndpointSpec("quiet", Single("fraud/1")), actor="test")
    contract = Contract(columns=[Column("x", "float"), Column("amount", "float")])
    lm.datasets.ingest("quiet_ref", example, contract=contract)
    lm.monitors.create(
        MonitorSpec(
            name="quiet-m",
            endpoint="quiet",
            features=["x"],
            reference={"dataset": "quiet_ref"},
        ),
        actor="test",
    )
    page = ui.get("/ui/monitors/quiet-m")
    assert page.status_code == 200, page.text
    assert "loopml monitors run quiet-m" in page.text and "data-figure" not in page.text


def test_unknown_names_and_bad_parameters_are_error_pages(lm_sqlite: Loopml) -> None:
    ui = TestClient(create_app(lm_sqlite, apps=()))
    populate_monitoring(lm_sqlite)
    page = ui.get("/ui/monitors/scores-hourli")
    assert page.status_code == 404 and "scores-hourly" in page.text  # did you mean
    assert 'data-testid="error"' in page.text
    page = ui.get("/ui/loop/999999")
    assert page.status_code == 404 and "loop run 999999 does not exist" in page.text
    assert ui.get("/ui/loop/abc").status_code == 422
    page = ui.get(f"/ui/monitors/{MONITOR}", params={"feature": "amout"})
    assert page.status_code == 422 and "amount" in page.text and "feature" in page.text
    page = ui.get(f"/ui/monitors/{MONITOR}", params={"window": "yesterday"})
    assert page.status_code == 422 and "window" in page.text
    page = ui.get(f"/ui/monitors/{MONITOR}", params={"window": "2020-01-01T00:00:00+00:00"})
    assert page.status_code == 404 and "pick one from the list" in page.text
    page = ui.get(f"/ui/monitors/{MONITOR}", params={"metric": "aucc"})
    assert page.status_code == 422 and "auc" in page.text
    assert ui.get(f"/ui/monitors/{MONITOR}", params={"limit": 0}).status_code == 422
    page = ui.get("/ui/loop", params={"status": "nope"})
    assert page.status_code == 422 and "status" in page.text


def test_drift_score_puts_every_test_on_one_scale() -> None:
    assert mfig.drift_score({"test": "wasserstein", "statistic": 0.2, "threshold": 0.1}) == 2.0
    assert mfig.drift_score({"test": "psi", "statistic": 0.05, "threshold": 0.1}) == 0.5
    assert mfig.drift_score({"test": "ks", "statistic": 0.3, "p_value": 0.05, "threshold": 0.05}) == 1.0
    assert mfig.drift_score({"test": "ks", "statistic": 0.3, "p_value": 0.0025, "threshold": 0.05}) == 2.0
    assert mfig.drift_score({"test": "chi2", "statistic": 1.0, "p_value": 1.0, "threshold": 0.05}) == 0.0
    assert (
        mfig.drift_score({"test": "ks", "statistic": 9.0, "p_value": 0.0, "threshold": 0.05})
        == mfig.SCORE_CAP
    )
    assert mfig.drift_score({"test": "ks", "statistic": 9.0, "p_value": None, "threshold": 0.05}) is None
