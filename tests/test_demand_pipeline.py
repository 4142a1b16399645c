"""The weekly demand pipeline end to end on a tiny chain: runs, reruns, failures, stale data, deadline, worker."""

from __future__ import annotations

import threading
import time
from datetime import datetime
from pathlib import Path

import pandas as pd
import pytest

from loopml import Loopml
from loopml.apps.demand import pipeline as weekly
from loopml.apps.demand import results
from loopml.apps.demand.config import DemandConfig
from loopml.apps.demand.simulate import simulate_stores, simulate_visits
from loopml.apps.demand.story import run_weeks
from loopml.errors import ValidationError
from loopml.worker import Worker

TINY = {"n_estimators": 30, "num_leaves": 7, "min_child_samples": 5, "n_jobs": 1}
DATASETS = (
    "demand_visits",
    "demand_stores",
    "demand_forecasts",
    "demand_staffing",
    "demand_gate_eval",
    "demand_backtest",
    "demand_backtest_origins",
)


@pytest.fixture(autouse=True)
def _serial(monkeypatch: pytest.MonkeyPatch) -> None:
    """Backtest origins in-process: spawning workers costs more than the tiny models."""
    monkeypatch.setenv("LOOPML_EXECUTOR", "serial")


def _cfg(**changes: object) -> DemandConfig:
    return DemandConfig.small(stores=4, backtest_weeks=1, lgb_params=TINY, **changes)


def _first_tuesday(cfg: DemandConfig) -> pd.Timestamp:
    end = cfg.end_ts
    return end + pd.Timedelta(days=(1 - end.weekday()) % 7)


def _run(lm: Loopml, cfg: DemandConfig, run_date: pd.Timestamp, **kwargs: str):
    run = lm.pipelines.run(weekly.WEEKLY, weekly.weekly_params(run_date, cfg, **kwargs))
    failed = [(s.step, (s.error or "").strip().splitlines()[-1:]) for s in run.steps if s.status == "failed"]
    return run, failed


def _versions(lm: Loopml) -> dict[str, int]:
    return {name: len(lm.datasets.versions(name)) for name in DATASETS}


def test_two_weeks_end_to_end_then_an_idempotent_rerun(lm_sqlite: Loopml) -> None:
    lm, cfg = lm_sqlite, _cfg()
    first = _first_tuesday(cfg)
    run1, failed = _run(lm, cfg, first)
    assert run1.status == "succeeded", failed
    release1 = lm.pipelines.output(run1.id, "release")
    assert (release1["champion"], release1["challenger"]) == (1, None)
    run2, failed = _run(lm, cfg, first + pd.Timedelta(days=7))
    assert run2.status == "succeeded", failed
    week2 = weekly.week_id(first + pd.Timedelta(days=13))
    assert results.weeks(lm) == [weekly.week_id(first + pd.Timedelta(days=6)), week2]

    forecasts = results.read_forecasts(lm, week=week2)
    assert set(forecasts["grain"]) == {"day", "hour"}
    assert set(forecasts["arm"]) <= {"champion", "challenger", "baseline"}
    used = forecasts[forecasts["used"] & (forecasts["grain"] == "day")]
    assert used.groupby("store_id")["arm"].nunique().max() == 1  # one published model per store
    assert (
        len(used) == forecasts.loc[forecasts["grain"] == "day", ["store_id", "ts"]].drop_duplicates().shape[0]
    )
    assert (forecasts["lower"] <= forecasts["forecast"] + 1e-9).all()
    assert (forecasts["forecast"] <= forecasts["upper"] + 1e-9).all()
    staffing = results.read_staffing(lm, week=week2)
    assert staffing["staff"].min() >= cfg.min_staff
    backtest = lm.pipelines.output(run2.id, "backtest")
    assert backtest["trained_origins"] <= 1 and {"lightgbm@day", "seasonal_naive@hour"} <= set(
        backtest["scores"]
    )

    before, models = _versions(lm), len(lm.registry.versions("demand"))
    plan = lm.pipelines.output(run2.id, "forecast")
    again, failed = _run(lm, cfg, first + pd.Timedelta(days=7))
    assert again.status == "succeeded", failed
    assert _versions(lm) == before and len(lm.registry.versions("demand")) == models
    pd.testing.assert_frame_equal(lm.pipelines.output(again.id, "forecast"), plan)


def test_a_failure_injected_into_every_step_is_survived_by_the_retry(lm_sqlite: Loopml) -> None:
    cfg = _cfg()
    run, failed = _run(lm_sqlite, cfg, _first_tuesday(cfg), inject_failure=",".join(weekly.STEPS))
    assert run.status == "succeeded", failed
    assert {s.step: s.attempts for s in run.steps} == dict.fromkeys(weekly.STEPS, 2)
    assert all("injected failure" in (s.log or "") for s in run.steps)
    # The retry is per run: a new run of the same date with no injection goes through in one attempt each.
    again, failed = _run(lm_sqlite, cfg, _first_tuesday(cfg))
    assert again.status == "succeeded", failed
    assert max(s.attempts for s in again.steps) <= 1


def _daily_csv(tmp_path: Path, cfg: DemandConfig, until: pd.Timestamp) -> Path:
    stores = simulate_stores(cfg)
    visits = simulate_visits(stores, cfg, until=until)
    daily = visits.assign(day=visits["ts"].dt.normalize()).groupby(["store_id", "day"], as_index=False)[
        "visitors"
    ]
    frame = daily.sum().rename(columns={"day": "timestamp"})
    frame = frame[frame["visitors"] >= 0]
    path = tmp_path / "visits.csv"
    frame.assign(timestamp=frame["timestamp"].dt.strftime("%Y-%m-%d")).to_csv(path, index=False)
    return path


def test_user_daily_csv_runs_evaluates_and_stale_data_fails_validate(
    lm_sqlite: Loopml, tmp_path: Path
) -> None:
    cfg = _cfg()
    run_date = _first_tuesday(cfg)
    later = run_date + pd.Timedelta(days=14)
    path = _daily_csv(tmp_path, cfg, later - pd.Timedelta(days=2))
    run, failed = _run(lm_sqlite, cfg, run_date, source=str(path))
    assert run.status == "succeeded", failed
    week = weekly.week_id(run_date + pd.Timedelta(days=6))
    forecasts = results.read_forecasts(lm_sqlite, week=week)
    assert set(forecasts["grain"]) == {"day"}
    plan = results.read_staffing(lm_sqlite, week=week)
    assert plan["staff"].min() >= cfg.min_staff and plan["ts"].dt.hour.nunique() > 1  # spread over open hours

    # Two weeks on, the first shift week's actuals are in the file: it is evaluated, in KRW.
    run, failed = _run(lm_sqlite, cfg, later, source=str(path))
    assert run.status == "succeeded", failed
    assert lm_sqlite.pipelines.output(run.id, "evaluate")["evaluated"] == [week]
    assert set(results.read_evaluation(lm_sqlite)["arm"]) == {"champion", "baseline"}

    # A week later the file has not been refreshed: the run must stop at validate, loudly.
    stale, failed = _run(lm_sqlite, cfg, later + pd.Timedelta(days=7), source=str(path))
    assert stale.status == "failed"
    assert [s for s, _ in failed] == ["validate"]
    message = next(s.error for s in stale.steps if s.step == "validate")
    assert "stale" in message and "7 day(s) missing" in message
    assert next(s.attempts for s in stale.steps if s.step == "validate") == 1  # not retried: data, not luck
    assert results.weeks(lm_sqlite) == [week, weekly.week_id(later + pd.Timedelta(days=6))]


def test_deadline_alert_fires_when_unpublished_and_resolves_after_publishing(lm_sqlite: Loopml) -> None:
    cfg = _cfg()
    run_date = _first_tuesday(cfg)
    week = weekly.week_id(run_date + pd.Timedelta(days=6))
    thursday = (run_date + pd.Timedelta(days=2)).to_pydatetime()
    early = weekly.check_deadline(lm_sqlite, now=thursday.replace(hour=12), config=cfg)
    assert (early["week"], early["alert"]) == (week, None)
    late = weekly.check_deadline(lm_sqlite, now=thursday.replace(hour=18, minute=5), config=cfg)
    assert late["alert"] == "fired"
    alert = lm_sqlite.alerts.get_open(f"demand.forecast_missing:{week}")
    assert alert is not None and alert.severity == "critical"
    run, failed = _run(lm_sqlite, cfg, run_date)
    assert run.status == "succeeded", failed
    done = lm_sqlite.pipelines.run(weekly.DEADLINE, {"now": thursday.replace(hour=19).isoformat()})
    assert done.status == "succeeded"
    assert lm_sqlite.pipelines.output(done.id, "deadline_check")["alert"] == "resolved"
    assert lm_sqlite.alerts.get_open(f"demand.forecast_missing:{week}") is None


def test_a_worker_runs_a_submitted_weekly_run(lm_sqlite: Loopml) -> None:
    cfg = _cfg()
    job = lm_sqlite.pipelines.submit(weekly.WEEKLY, weekly.weekly_params(_first_tuesday(cfg), cfg))
    run_id = job.payload["run_id"]
    stop = threading.Event()
    worker = Worker(lm_sqlite.ctx, lease_seconds=30, grace_seconds=5, poll_max=0.1)
    thread = threading.Thread(target=worker.run, args=(stop,), daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 120
        while lm_sqlite.pipelines.get_run(run_id).status not in ("succeeded", "failed"):
            assert time.monotonic() < deadline, "the worker did not finish the run"
            time.sleep(0.1)
    finally:
        stop.set()
        thread.join(10)
    assert lm_sqlite.pipelines.get_run(run_id).status == "succeeded"
    assert lm_sqlite.jobs.get(job.id).status == "succeeded"


def test_the_story_runs_weeks_and_reports_its_figures(lm_sqlite: Loopml) -> None:
    lines: list[str] = []
    ticks: list[tuple[int, int]] = []
    out = run_weeks(
        lm_sqlite,
        _cfg(),
        weeks=3,
        say=lines.append,
        progress=lambda _d, done, total: ticks.append((done, total)),
    )
    assert [w.status for w in out.weeks] == ["succeeded"] * 3
    assert out.failure_step == "forecast" and out.failure_survived
    assert out.backtest_wape["lightgbm"]["day"] is not None and "hour" in out.backtest_wape["seasonal_naive"]
    assert out.evaluated_weeks and out.evaluation["currency"] == "KRW"
    assert out.deadline["published"] and out.deadline["alert"] is None
    assert ticks[-1] == (3 * len(weekly.STEPS), 3 * len(weekly.STEPS))
    assert any("injected failure" in line for line in lines)


@pytest.mark.parametrize(
    ("value", "match"),
    [
        ("2024-03-20", "is a Wednesday.*use 2024-03-19"),
        ("next week", "not a date"),
        ("2024-03-19T06:00", "time of day"),
        (20240319, "not a date"),
    ],
)
def test_run_date_must_be_a_tuesday_date(value: object, match: str) -> None:
    with pytest.raises(ValidationError, match=match):
        weekly.parse_run_date(value)


def test_bad_params_are_refused_before_anything_runs(lm_sqlite: Loopml) -> None:
    cfg = _cfg()
    with pytest.raises(ValidationError, match="not a step"):
        weekly.weekly_params("2024-03-19", cfg, inject_failure="forcast")
    with pytest.raises(ValidationError, match="DemandConfig"):
        weekly.weekly_params("2024-03-19", {"stores": 3})  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="source is empty"):
        weekly.weekly_params("2024-03-19", cfg, source=" ")
    with pytest.raises(ValidationError, match="weeks"):
        run_weeks(lm_sqlite, cfg, weeks=0)
    with pytest.raises(ValidationError, match="now must be a datetime"):
        weekly.check_deadline(lm_sqlite, now="tomorrow")  # type: ignore[arg-type]
    missing = lm_sqlite.pipelines.run(
        weekly.WEEKLY, weekly.weekly_params("2024-03-19", cfg, source="/nope.csv")
    )
    assert missing.status == "failed" and "does not exist" in missing.steps[0].error


def test_weekly_schedule_is_tuesday_morning_in_seoul() -> None:
    from croniter import croniter

    slot = croniter(weekly.WEEKLY_CRON, datetime(2026, 11, 30, 0, 0)).get_next(datetime)
    seoul = slot.replace(tzinfo=weekly.ZoneInfo("UTC")).astimezone(weekly.KST)
    assert (seoul.strftime("%A"), seoul.hour) == ("Tuesday", 6)
    deadline = croniter(weekly.DEADLINE_CRON, datetime(2026, 11, 30)).get_next(datetime)
    local = deadline.replace(tzinfo=weekly.ZoneInfo("UTC")).astimezone(weekly.KST)
    assert (local.strftime("%A"), local.hour) == ("Thursday", 18)


def test_cli_runs_a_week_and_reads_back_forecasts_staffing_and_the_deadline(
    lm_sqlite: Loopml, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import json

    import typer
    from typer.testing import CliRunner

    from loopml.cli.demand import register

    monkeypatch.setenv("LOOPML_HOME", str(lm_sqlite.settings.home_dir))
    app = typer.Typer()
    register(app)
    app.command("noop")(lambda: None)  # a second command keeps `demand` a sub-command
    cli = CliRunner()
    cfg = _cfg()
    config = tmp_path / "demand.json"
    config.write_text(json.dumps(cfg.to_dict()))
    run_date = _first_tuesday(cfg).date().isoformat()
    week = weekly.week_id(_first_tuesday(cfg) + pd.Timedelta(days=6))

    bad = cli.invoke(app, ["demand", "run", "--date", "2024-03-20", "--config", str(config)])
    assert isinstance(bad.exception, ValidationError) and "Tuesday" in str(bad.exception)
    done = cli.invoke(app, ["demand", "run", "--date", run_date, "--config", str(config)])
    assert done.exit_code == 0, done.output
    assert "first champion" in done.output and week in done.output

    store = int(results.read_forecasts(lm_sqlite, week=week)["store_id"].min())
    out = tmp_path / "store.csv"
    got = cli.invoke(app, ["demand", "forecast", "--store", str(store), "--week", week, "--csv", str(out)])
    assert got.exit_code == 0, got.output
    frame = pd.read_csv(out)
    assert set(frame["store_id"]) == {store} and len(frame) == 7 and frame["used"].all()
    plan = cli.invoke(app, ["demand", "staffing", "--week", week])
    assert plan.exit_code == 0 and "staff-hours" in plan.output
    thursday = (pd.Timestamp(week) - pd.Timedelta(days=4)).date().isoformat()
    late = cli.invoke(app, ["demand", "check-deadline", "--now", f"{thursday}T18:30"])
    assert late.exit_code == 0 and "forecast published" in late.output
    nothing = cli.invoke(app, ["demand", "ab"])
    assert "no A/B analysis" in str(nothing.exception)
    queued = cli.invoke(app, ["demand", "run", "--date", run_date, "--config", str(config), "--submit"])
    assert queued.exit_code == 0 and "queued run" in queued.output
