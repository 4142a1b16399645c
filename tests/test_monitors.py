"""Monitors over the inference log: incremental windows, drift only where the data moved, performance
once late labels arrive, slice gaps, the HTTP API, the CLI, the tick pipeline and bad input.

Runs on SQLite and PostgreSQL (``lm`` fixture). Predictions are logged with controlled timestamps
(hour 0 is the reference, hours 3 and 4 are shifted) and labels are sent after the first run.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import typer
from fastapi.testclient import TestClient
from scipy import stats
from typer.testing import CliRunner

from loopml import Loopml
from loopml.data import Column, Contract
from loopml.errors import ConflictError, NotFoundError, ValidationError
from loopml.monitoring.monitors import Monitors, MonitorSpec
from loopml.monitoring.tick import tick
from loopml.serving.inference import InferenceRecord
from loopml.storage.metadata import monitoring as mq

T0 = datetime(2026, 11, 2, tzinfo=UTC)
PER_HOUR = 120
SHIFTED = (3, 4)


def _requests(hour: int, rng: np.random.Generator) -> list[InferenceRecord]:
    """Stratified samples (one per quantile, shuffled): unshifted hours match the reference closely,
    so "no drift" is not left to chance, while hours in SHIFTED move ``x`` by two standard deviations."""
    shift = 2.0 if hour in SHIFTED else 0.0
    quantiles = (rng.permutation(PER_HOUR) + rng.uniform(0.2, 0.8, PER_HOUR)) / PER_HOUR
    xs = stats.norm.ppf(quantiles) + shift
    amounts = stats.gamma.ppf(rng.permutation(quantiles), 2.0, scale=50.0)
    records = []
    for i in range(PER_HOUR):
        x = float(xs[i])
        region = "north" if i % 3 == 0 else "south"
        score = 1 / (1 + math.exp(-x))
        records.append(
            InferenceRecord(
                request_id=f"h{hour}-{i}",
                endpoint="fraud",
                model="fraud",
                version=1,
                arm=None,
                inputs=[{"x": x, "region": region, "amount": float(amounts[i])}],
                outputs=[{"label": int(score >= 0.5), "probability": score}],
                latency_ms=3.0,
                status="ok",
                at=T0 + timedelta(hours=hour, seconds=i * 3600 / PER_HOUR),
            )
        )
    return records


def log_hours(lm: Loopml, hours: range, seed: int = 7) -> None:
    for hour in hours:
        lm.inference.write(_requests(hour, np.random.default_rng([seed, hour])))


def label_hour(lm: Loopml, hour: int) -> None:
    """Labels: right for south, a coin flip for north (so the region slices have a gap)."""
    records = lm.inference.records(
        "fraud", since=T0 + timedelta(hours=hour), until=T0 + timedelta(hours=hour + 1)
    )
    items = []
    for i, row in enumerate(records.itertuples()):
        predicted = row.outputs[0]["label"]
        region = row.inputs[0]["region"]
        label = predicted if region == "south" else (i // 3) % 2
        items.append({"request_id": row.request_id, "label": label})
    lm.inference.feedback_many("fraud", items)


def spec(**kw) -> MonitorSpec:
    values = dict(
        name="fraud-hourly",
        endpoint="fraud",
        reference={"since": T0.isoformat(), "until": (T0 + timedelta(hours=1)).isoformat()},
        window_seconds=3600,
        performance={"slices": ["region"], "min_slice_rows": 20},
        min_rows=30,
    )
    values.update(kw)
    return MonitorSpec(**values)


def test_incremental_drift_and_late_labels(lm: Loopml) -> None:
    log_hours(lm, range(6))
    info = lm.monitors.create(spec(), actor="test")
    assert info.reference["columns"] == ["amount", "region", "x", "prediction"]
    assert info.reference["rows"] == PER_HOUR and info.watermark is None

    first = lm.monitors.run("fraud-hourly", now=T0 + timedelta(hours=6, minutes=5))
    assert first.ok and first.windows_computed == 6 and first.rows_read == 6 * PER_HOUR
    assert first.watermark == T0 + timedelta(hours=6)
    windows = lm.monitors.windows("fraud-hourly")
    assert [w.window_start for w in windows] == [T0 + timedelta(hours=h) for h in range(6)]
    drifted = {w.window_start.hour for w in windows if w.drift["dataset_drifted"]}
    assert drifted == set(SHIFTED)
    assert sorted(first.drifted_windows) == [(T0 + timedelta(hours=h)).isoformat() for h in SHIFTED]
    for w in windows:
        features = w.drift["features"]
        assert features["x"]["drifted"] is (w.window_start.hour in SHIFTED)
        assert features["prediction"]["drifted"] is (w.window_start.hour in SHIFTED)
        assert features["region"]["drifted"] is False and features["region"]["kind"] == "categorical"
        assert w.rows == PER_HOUR and w.labelled == 0 and w.performance is None

    # nothing new closed: the second run reads no log row at all
    again = lm.monitors.run("fraud-hourly", now=T0 + timedelta(hours=6, minutes=30))
    assert (again.windows_computed, again.windows_recomputed, again.rows_read) == (0, 0, 0)

    # labels arrive for hours 1 and 2, and hour 6 is logged: only those three windows are read
    label_hour(lm, 1)
    label_hour(lm, 2)
    log_hours(lm, range(6, 7))
    third = lm.monitors.run("fraud-hourly", now=T0 + timedelta(hours=7, minutes=1))
    assert third.windows_computed == 1 and third.windows_recomputed == 2
    assert third.rows_read == 3 * PER_HOUR
    by_hour = {w.window_start.hour: w for w in lm.monitors.windows("fraud-hourly")}
    assert len(by_hour) == 7
    for hour in (1, 2):
        perf = by_hour[hour].performance
        assert by_hour[hour].labelled == PER_HOUR and perf["labelled"] == PER_HOUR
        assert perf["task"] == "classification"
        assert perf["slices"]["region"]["south"]["accuracy"] == 1.0
        assert perf["gaps"]["region"]["accuracy"] > 0.3
        assert by_hour[hour].drift == windows[hour].drift  # drift is never recomputed
    assert by_hour[0].performance is None and by_hour[6].performance is None

    fourth = lm.monitors.run("fraud-hourly", now=T0 + timedelta(hours=7, minutes=2))
    assert fourth.rows_read == 0  # the labels were taken into account already

    # reading in tiny chunks (memory bound for big windows) gives the same windows
    small = Monitors(lm.ctx)
    small.chunk_rows = 7
    small.create(spec(name="chunked"))
    small.run("chunked", now=T0 + timedelta(hours=7))
    chunked = {w.window_start: w for w in small.windows("chunked")}
    for w in lm.monitors.windows("fraud-hourly"):
        assert chunked[w.window_start].drift == w.drift
        assert chunked[w.window_start].performance == w.performance

    # a second run that read a stale watermark cannot store its windows twice
    with lm.ctx.db.session() as session:
        row = mq.get_monitor(session, "fraud-hourly")
        assert not mq.advance_watermark(session, row.id, old=T0, new=T0 + timedelta(hours=1), now=T0)

    series = lm.monitors.drift_series("fraud-hourly", "x")
    assert list(series.columns) == ["window_start", "statistic", "threshold", "drifted", "test"]
    assert series["drifted"].tolist() == [h in SHIFTED for h in range(7)]
    perf = lm.monitors.performance_series("fraud-hourly", "accuracy")
    assert len(perf) == 2 and perf["n"].tolist() == [PER_HOUR, PER_HOUR]
    south = lm.monitors.performance_series("fraud-hourly", "accuracy", slice="region=south")
    assert south["value"].tolist() == [1.0, 1.0]
    assert lm.monitors.latest("fraud-hourly").window_start == T0 + timedelta(hours=6)

    # labels outside the label horizon are not worth a re-read
    label_hour(lm, 0)
    late = lm.monitors.run("fraud-hourly", now=T0 + timedelta(days=20), max_windows=100)
    assert late.windows_recomputed == 0
    # a long quiet gap: empty windows are stored without reading, and caught up over several runs
    assert (late.windows_computed, late.rows_read, late.pending_windows) == (100, 0, 20 * 24 - 7 - 100)
    assert lm.monitors.latest("fraud-hourly").rows == 0


def test_dataset_reference_and_lifecycle(lm: Loopml) -> None:
    log_hours(lm, range(2))
    rng = np.random.default_rng(1)
    reference = pd.DataFrame(
        {
            "x": rng.normal(0, 1, 500),
            "region": rng.choice(["north", "south"], 500),
            "amount": rng.gamma(2.0, 50.0, 500),
            "is_fraud": rng.integers(0, 2, 500),
        }
    )
    contract = Contract(
        columns=[
            Column("x", "float"),
            Column("region", "str"),
            Column("amount", "float"),
            Column("is_fraud", "int"),
        ]
    )
    lm.datasets.ingest("fraud_train", reference, contract=contract)
    info = lm.monitors.create(
        spec(name="from-dataset", reference={"dataset": "fraud_train", "version": "latest"})
    )
    # features=None: the dataset columns the endpoint receives as inputs, not the label column
    assert sorted(info.reference["features"]) == ["amount", "region", "x"]
    assert info.reference["prediction"] is False and info.reference["source"]["version"] == 1
    run = lm.monitors.run("from-dataset", now=T0 + timedelta(hours=2))
    assert run.windows_computed == 2
    assert set(lm.monitors.latest("from-dataset").drift["features"]) == {"x", "region", "amount"}

    with pytest.raises(ConflictError):
        lm.monitors.create(spec(name="from-dataset", reference={"dataset": "fraud_train"}))
    with pytest.raises(ValidationError) as info_err:
        lm.monitors.update("from-dataset", spec(name="from-dataset", window_seconds=600))
    assert info_err.value.field == "window_seconds"

    updated = lm.monitors.update(
        "from-dataset", spec(name="from-dataset", features=["x"]), expected_revision=1
    )
    assert updated.revision == 2 and updated.reference["columns"] == ["x", "prediction"]
    with pytest.raises(ConflictError):
        lm.monitors.update("from-dataset", spec(name="from-dataset"), expected_revision=1)

    frame = reference.assign(x=reference["x"] + 5)
    swapped = lm.monitors.set_reference("from-dataset", frame[["x"]])
    assert swapped.spec.reference == {"frame": swapped.reference_digest}
    lm.monitors.run("from-dataset", now=T0 + timedelta(hours=3))
    assert [m.name for m in lm.monitors.list()] == ["from-dataset"]
    lm.monitors.delete("from-dataset")
    assert lm.monitors.list() == []
    with pytest.raises(NotFoundError):
        lm.monitors.get("from-dataset")


def test_bad_input_names_the_field(lm: Loopml) -> None:
    log_hours(lm, range(1))
    cases = [
        (dict(name="1bad"), "name"),
        (dict(endpoint="no such"), "endpoint"),
        (dict(window_seconds=10), "window_seconds"),
        (dict(window_seconds=True), "window_seconds"),
        (dict(min_rows=0), "min_rows"),
        (dict(features=[]), "features"),
        (dict(features=["x", "x"]), "features[1]"),
        (dict(features=["prediction"]), "features[0]"),
        (dict(reference=None), "reference"),
        (dict(reference={"since": "yesterday", "until": "2026-01-01"}), "reference.since"),
        (dict(reference={"since": "2026-01-02", "until": "2026-01-01"}), "reference.until"),
        (dict(reference={"dataset": "d", "versoin": 1}), "reference.versoin"),
        (dict(performance={"task": "ranking"}), "performance.task"),
        (dict(performance={"treshold": 0.5}), "performance.treshold"),
        (dict(performance={"slices": "region"}), "performance.slices"),
        (dict(drift={"no_such_setting": 1}), "drift"),
        (dict(prediction="yes"), "prediction"),
    ]
    for kwargs, field in cases:
        with pytest.raises(ValidationError) as info:
            spec(**kwargs)
        assert info.value.field == field, (kwargs, str(info.value))
    with pytest.raises(ValidationError) as info:
        MonitorSpec.from_dict({"name": "m", "endpoint": "fraud", "windows": 3})
    assert info.value.field == "windows"
    with pytest.raises(NotFoundError) as nf:
        lm.monitors.create(spec(endpoint="ghost"))
    assert nf.value.field == "endpoint"
    with pytest.raises(NotFoundError):
        lm.monitors.create(spec(reference={"dataset": "missing"}))
    with pytest.raises(ValidationError) as empty:  # a reference window without traffic
        lm.monitors.create(spec(reference={"since": "2020-01-01", "until": "2020-01-02"}))
    assert empty.value.field == "reference"
    lm.monitors.create(spec())
    with pytest.raises(NotFoundError) as nf:
        lm.monitors.run("fraud-hourlx")
    assert "fraud-hourly" in str(nf.value)
    lm.monitors.run("fraud-hourly", now=T0 + timedelta(hours=1))
    for call, field in [
        (lambda: lm.monitors.drift_series("fraud-hourly", "nope"), "feature"),
        (lambda: lm.monitors.performance_series("fraud-hourly", "auc", slice="region"), "slice"),
        (lambda: lm.monitors.windows("fraud-hourly", limit=0), "limit"),
        (lambda: lm.monitors.windows("fraud-hourly", since="soon"), "since"),
        (lambda: lm.monitors.run("fraud-hourly", now="later"), "now"),
        (lambda: lm.monitors.set_reference("fraud-hourly", [1, 2]), "reference"),
        (lambda: lm.monitors.create({"name": "x", "endpoint": "fraud", "reference": "d"}), "reference"),
        (lambda: lm.monitors.create(42), "spec"),
    ]:
        with pytest.raises(ValidationError) as info:
            call()
        assert info.value.field == field, field


def test_http_api(lm: Loopml) -> None:
    from loopml.serving.app import create_app

    log_hours(lm, range(4))
    body = spec().to_dict()
    with TestClient(create_app(lm, apps=()), raise_server_exceptions=False) as http:
        created = http.post("/v1/monitors", json=body)
        assert created.status_code == 201, created.text
        assert http.post("/v1/monitors", json=body).status_code == 409
        bad = http.post("/v1/monitors", json={**body, "name": "m2", "window_seconds": 5})
        assert bad.status_code == 422 and "window_seconds" in bad.text
        assert http.get("/v1/monitors/nope").status_code == 404
        ran = http.post("/v1/monitors/fraud-hourly/run", json={"now": (T0 + timedelta(hours=4)).isoformat()})
        assert ran.status_code == 200 and ran.json()["windows_computed"] == 4
        assert http.post("/v1/monitors/fraud-hourly/run", json={"when": "x"}).status_code == 422
        listed = http.get("/v1/monitors").json()["monitors"]
        assert [m["name"] for m in listed] == ["fraud-hourly"]
        shown = http.get("/v1/monitors/fraud-hourly").json()
        assert shown["latest"]["window_start"].startswith("2026-11-02T03:00")
        windows = http.get("/v1/monitors/fraud-hourly/windows", params={"limit": 2}).json()["windows"]
        assert len(windows) == 2 and windows[1]["drift"]["dataset_drifted"] is True
        series = http.get("/v1/monitors/fraud-hourly/drift", params={"feature": "x"}).json()["series"]
        assert [s["drifted"] for s in series] == [False, False, False, True]
        assert http.get("/v1/monitors/fraud-hourly/drift", params={"feature": "zz"}).status_code == 422
        perf = http.get("/v1/monitors/fraud-hourly/performance", params={"metric": "auc"})
        assert perf.status_code == 200 and perf.json()["series"] == []
        assert http.delete("/v1/monitors/fraud-hourly").status_code == 200
        assert http.get("/v1/monitors").json()["monitors"] == []


def test_cli_and_report(lm: Loopml, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from loopml.cli import monitors as cli

    monkeypatch.setenv("LOOPML_HOME", str(lm.settings.home))
    monkeypatch.setenv("LOOPML_METADATA_URL", lm.settings.resolved_metadata_url)
    log_hours(lm, range(5))
    app = typer.Typer()
    cli.register(app)
    runner = CliRunner()
    since, until = T0.isoformat(), (T0 + timedelta(hours=1)).isoformat()
    args = ["monitors", "create", "--endpoint", "fraud", "--name", "m1", "--window", "1h"]
    args += ["--reference-since", since, "--reference-until", until, "--feature", "x", "--slice", "region"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["monitors", "run", "m1", "--now", (T0 + timedelta(hours=5)).isoformat()])
    assert result.exit_code == 0 and "5 window" in result.output, result.output
    label_hour(lm, 2)
    result = runner.invoke(
        app, ["monitor", "tick", "--now", (T0 + timedelta(hours=5, minutes=1)).isoformat()]
    )
    assert result.exit_code == 0 and "monitors" in result.output, result.output
    for command in (
        ["monitors", "list"],
        ["monitors", "show", "m1"],
        ["monitors", "drift", "m1"],
        ["monitors", "drift", "m1", "--feature", "x"],
        ["monitors", "performance", "m1"],
    ):
        result = runner.invoke(app, command)
        assert result.exit_code == 0, (command, result.output)
    assert "prediction" in runner.invoke(app, ["monitors", "drift", "m1"]).output
    out = tmp_path / "report.html"
    result = runner.invoke(app, ["monitors", "report", "m1", "--out", str(out)])
    assert result.exit_code == 0, result.output
    page = out.read_text()
    assert "Plotly.newPlot" in page and "drift: x" in page and "auc by region" in page
    bad = runner.invoke(
        app, ["monitors", "create", "--endpoint", "fraud", "--name", "m2", "--window", "soon"]
    )
    assert bad.exit_code != 0 and "window" in bad.output
    assert runner.invoke(app, ["monitors", "--help"]).exit_code == 0


def test_tick_and_pipeline(lm: Loopml) -> None:
    from loopml.monitoring import jobs

    log_hours(lm, range(3))
    lm.monitors.create(spec())
    result = tick(lm, now=T0 + timedelta(hours=3))
    assert list(result["parts"]) == ["monitors", "slos", "alert_rules", "loop_alerts", "loop_advance"]
    monitors = result["parts"]["monitors"]
    assert monitors["ok"] and monitors["result"][0]["windows_computed"] == 3
    for part in result["parts"].values():  # a failing part is reported, never raised
        assert part["ok"] or part["error"]
    assert jobs.TICK_PIPELINE.schedule == "*/5 * * * *"
    run = lm.pipelines.run(jobs.TICK, {"now": (T0 + timedelta(hours=3)).isoformat()})
    assert run.status == "succeeded", run
    output = lm.pipelines.output(run.id, "tick")
    assert output["parts"]["monitors"]["result"][0]["windows_computed"] == 0
