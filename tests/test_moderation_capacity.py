"""Moderation SLO, scaling and cost: the autoscaler's decisions, the cost math, the simulated week's
shape, the discrete-event replay, and the queue-age alert on a real database."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from loopml import Loopml
from loopml.apps.moderation.capacity import HOURS_PER_MONTH, Autoscaler, replay
from loopml.apps.moderation.config import ModerationConfig
from loopml.apps.moderation.slo import ALERT_KEY, PIPELINE, check_queue_age, severity_for
from loopml.apps.moderation.traffic import MINUTES, Segment, WeekTraffic, at, describe
from loopml.errors import ValidationError


# -- autoscaler ------------------------------------------------------------------------------------
def scaler(**kw) -> Autoscaler:
    args = {
        "min_workers": 1,
        "max_workers": 16,
        "target_wait_seconds": 600,
        "images_per_second_per_worker": 4.0,
    }
    return Autoscaler(**{**args, **kw})


def test_growing_backlog_scales_up_at_once() -> None:
    s = scaler()
    calm = s.decide(current=1, queue_depth=0, arrival_rate=1.0, now=0)
    assert calm.workers == 1 and calm.capped_by is None  # 1/s at 4/s per worker, 80 % utilisation
    busy = s.decide(current=1, queue_depth=4800, arrival_rate=6.0, now=60)
    # 6 / (4 * 0.8) = 1.9 workers for the arrivals + 4800 / (4 * 600) = 2 to drain: ceil(3.9) = 4
    assert (busy.workers, busy.needed) == (4, 4) and "scale up" in busy.reason
    more = s.decide(current=4, queue_depth=12_000, arrival_rate=6.0, now=120)
    assert more.workers > 4


def test_caps_by_max_workers_and_by_budget() -> None:
    s = scaler(max_workers=5)
    d = s.decide(current=1, queue_depth=100_000, arrival_rate=50.0, now=0)
    assert (d.workers, d.capped_by) == (5, "max_workers") and d.needed > 5
    # 100,000 KRW a month at 70 KRW/h: 100_000 / (70 * 730) = 1.96 -> 1 worker for the whole month
    poor = scaler(budget_krw_per_month=100_000, krw_per_core_hour=70.0)
    d = poor.decide(current=1, queue_depth=100_000, arrival_rate=50.0, now=0)
    assert (d.workers, d.capped_by) == (1, "budget")
    # late in the month with budget left, more workers are affordable for the remaining hours
    assert poor.budget_workers(spent_krw=20_000, hours_left=24) == 47
    assert poor.budget_workers(spent_krw=100_000, hours_left=24) == 1  # never below min_workers


def test_scale_down_waits_and_steps_so_it_does_not_flap() -> None:
    s = scaler(scale_down_after_seconds=600, step_down=1)
    assert s.decide(current=1, queue_depth=20_000, arrival_rate=8.0, now=0).workers == 11
    # the burst is over: fewer would do, but the pool holds for 10 minutes
    for t in (60, 300, 599):
        d = s.decide(current=11, queue_depth=0, arrival_rate=0.5, now=t)
        assert d.workers == 11 and d.reason.startswith("hold")
    assert s.decide(current=11, queue_depth=0, arrival_rate=0.5, now=660).workers == 10
    # a short burst in between resets the wait
    assert s.decide(current=10, queue_depth=0, arrival_rate=0.5, now=700).workers == 10
    assert s.decide(current=10, queue_depth=30_000, arrival_rate=8.0, now=720).workers == 15
    assert s.decide(current=15, queue_depth=0, arrival_rate=0.5, now=780).workers == 15


def test_cost_math_and_bad_settings() -> None:
    s = scaler(krw_per_core_hour=70.0, cores_per_worker=1)
    assert s.cost(10) == 700.0
    assert s.monthly_cost(168) == pytest.approx(70.0 * HOURS_PER_MONTH)  # one worker all month
    assert scaler(cores_per_worker=2, krw_per_core_hour=70.0).cost(1) == 140.0
    with pytest.raises(ValidationError) as err:
        scaler(min_workers=40, max_workers=50)  # 40 * 70 * 730 = 2.0 M KRW > 1.5 M
    assert err.value.field == "min_workers"
    for bad, name in (
        ({"max_workers": 0}, "max_workers"),
        ({"images_per_second_per_worker": 0}, "images_per_second_per_worker"),
        ({"utilisation": 1.5}, "utilisation"),
    ):
        with pytest.raises(ValidationError) as err:
            scaler(**bad)
        assert err.value.field == name
    with pytest.raises(ValidationError) as err:
        s.cost(-1)
    assert err.value.field == "worker_hours"
    with pytest.raises(ValidationError):
        s.decide(current=1, queue_depth=-1, arrival_rate=0, now=0)


# -- traffic model -----------------------------------------------------------------------------------
def test_week_shape_total_peak_segment_and_spike() -> None:
    week = WeekTraffic(weekly_uploads=150_000, seed=3)
    rates = week.minute_rates()
    assert rates.shape == (MINUTES,)
    assert rates.sum() * 60 == pytest.approx(150_000)
    normal = week.normal_minutes() * (rates.sum() / week._relative()[1].sum())
    p = week.peak
    segment = rates[p.start : p.start + p.minutes]
    assert p.minutes == 120 and np.allclose(segment, 2 * normal.max())  # 2x the normal peak, sustained
    s = week.spike
    assert np.allclose(rates[s.start : s.start + s.minutes], 3 * normal[s.start : s.start + s.minutes])
    # evenings above nights, weekends above weekdays
    assert rates[at(2, 20) : at(2, 21)].mean() > 3 * rates[at(2, 3) : at(2, 4)].mean()
    assert rates[at(5, 0) : at(7, 0)].mean() > rates[at(0, 0) : at(2, 0)].mean()
    arrivals = week.arrivals()
    assert abs(len(arrivals) - 150_000) < 2_000 and np.all(np.diff(arrivals) >= 0)
    in_peak = ((arrivals >= p.start * 60) & (arrivals < (p.start + p.minutes) * 60)).sum()
    assert in_peak == pytest.approx(segment.sum() * 60, rel=0.05)
    assert WeekTraffic(seed=3).arrivals()[:50].tolist() == WeekTraffic(seed=3).arrivals()[:50].tolist()
    assert week.scaled(10).weekly_uploads == 1_500_000
    assert describe(p) == "Sun 19:00-21:00" and describe(s) == "Sat 21:00-21:40"


def test_week_refuses_bad_settings() -> None:
    with pytest.raises(ValidationError) as err:
        WeekTraffic(weekly_uploads=0)
    assert err.value.field == "weekly_uploads"
    with pytest.raises(ValidationError) as err:
        WeekTraffic(peak=Segment(MINUTES - 10, 120, 2.0))
    assert err.value.field == "peak"
    with pytest.raises(ValidationError) as err:
        WeekTraffic(hourly=(1.0,) * 23)
    assert err.value.field == "hourly"


# -- replay --------------------------------------------------------------------------------------------
def test_replay_scales_out_for_the_peak_and_meets_the_slo() -> None:
    week = WeekTraffic(weekly_uploads=400_000, seed=1)
    s = scaler(images_per_second_per_worker=2.0)
    sim = replay(week.arrivals(), [0.4, 0.5, 0.6], s, seed=1)
    p0, p1 = week.peak.seconds
    assert sim.share_over(3600) == 0.0 and sim.share_over(3600, p0, p1) == 0.0
    assert sim.max_workers() >= 3  # ~3.2 uploads/s at the 2x peak need 2/s workers
    assert 168 <= sim.worker_hours < sim.max_workers() * 168
    # a fixed single worker (max 1) drowns in the same week: the backlog of the peak waits for hours
    one = replay(week.arrivals(), [0.4, 0.5, 0.6], scaler(images_per_second_per_worker=2.0, max_workers=1))
    assert one.share_over(3600, p0, p1) > 0.10 and one.max_workers() == 1


# -- queue-age SLO on a real database ----------------------------------------------------------------
def test_severity_thresholds() -> None:
    assert severity_for(29 * 60) is None
    assert severity_for(30 * 60) == "warning"
    assert severity_for(45 * 60) == "critical"
    with pytest.raises(ValidationError) as err:
        severity_for(10, warning_at=600, critical_at=60)
    assert err.value.field == "critical_at"


def test_queue_age_alert_fires_before_an_hour_and_resolves(lm: Loopml) -> None:
    cfg = ModerationConfig()
    assert check_queue_age(lm, cfg).action is None  # empty queue, nothing open
    old = datetime.now(tz=UTC) - timedelta(minutes=31)
    job = lm.jobs.enqueue("moderation.screen", {"request_id": "x"}, queue=cfg.queue, not_before=old)
    warn = check_queue_age(lm, cfg)
    assert (warn.severity, warn.action) == ("warning", "fired")
    assert 30 * 60 <= warn.job_age_seconds < 33 * 60 and warn.request_age_seconds is None
    alert = lm.alerts.get_open(ALERT_KEY)
    assert alert is not None and alert.severity == "warning" and alert.source == PIPELINE
    # 15 minutes later (still before the 1-hour SLO) it is critical, the same alert
    later = check_queue_age(lm, cfg, now=datetime.now(tz=UTC) + timedelta(minutes=15))
    assert later.severity == "critical" and later.alert_id == warn.alert_id
    assert lm.alerts.get_open(ALERT_KEY).fire_count == 2
    # a worker picks the job up: the queue is empty again and the alert resolves
    claimed = lm.jobs.claim("w1", queues=(cfg.queue,), limit=1)
    assert [j.id for j in claimed] == [job.id]
    lm.jobs.ack(job.id, "w1", {"ok": True})
    done = check_queue_age(lm, cfg)
    assert (done.severity, done.action) == (None, "resolved")
    assert lm.alerts.get_open(ALERT_KEY) is None
    with pytest.raises(ValidationError) as err:
        check_queue_age(lm, cfg, now=datetime(2026, 1, 1))
    assert err.value.field == "now"


def test_slo_pipeline_runs_the_check(lm: Loopml) -> None:
    from loopml.pipelines import registered

    assert registered()[PIPELINE].schedule == "* * * * *"
    old = datetime.now(tz=UTC) - timedelta(minutes=50)
    lm.jobs.enqueue("moderation.screen", {"request_id": "y"}, queue="moderation", not_before=old)
    run = lm.pipelines.run(PIPELINE, {"now": ""})
    assert run.status == "succeeded", run.error
    assert lm.pipelines.output(run.id, "queue_age")["severity"] == "critical"
    assert lm.alerts.get_open(ALERT_KEY).severity == "critical"
