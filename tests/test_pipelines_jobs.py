"""Pipelines as durable jobs: submit, the pipeline.run handler, crash survival, cron schedules."""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
import threading
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from loopml import Loopml
from loopml.errors import ConflictError, NotFoundError
from loopml.pipelines import Pipeline, pipeline, step, unregister
from loopml.pipelines.jobs import run_pipeline_job
from loopml.pipelines.scheduler import run_scheduler, scheduler_tick
from loopml.storage.metadata import pipelines as m
from loopml.worker import PermanentError, Worker

calls: Counter[str] = Counter()


@step
def extract(days: int) -> list:
    calls["extract"] += 1
    return list(range(days))


@step
def total(extract: list) -> int:
    calls["total"] += 1
    return sum(extract)


@pipeline("tj-sum", params={"days": 3})
def tj_sum() -> list:
    return [extract, total]


@pytest.fixture(autouse=True)
def _reset() -> None:
    calls.clear()


def _claim(lm: Loopml, worker: str = "w-test"):
    jobs = lm.jobs.claim(worker, lease_seconds=60)
    assert len(jobs) == 1
    return jobs[0]


def test_submit_creates_a_queued_run_linked_to_its_job(lm: Loopml) -> None:
    job = lm.pipelines.submit("tj-sum", {"days": 4}, idempotency_key="nightly-1")
    assert job.kind == "pipeline.run" and job.status == "queued"
    run = lm.pipelines.get_run(job.payload["run_id"])
    assert (run.status, run.trigger, run.job_id, run.params) == ("queued", "api", job.id, {"days": 4})
    assert [(s.step, s.status) for s in run.steps] == [("extract", "pending"), ("total", "pending")]
    again = lm.pipelines.submit("tj-sum", {"days": 4}, idempotency_key="nightly-1")
    assert again.id == job.id and len(lm.pipelines.runs("tj-sum")) == 1
    with pytest.raises(ConflictError, match="nightly-1"):
        lm.pipelines.submit("tj-sum", {"days": 5}, idempotency_key="nightly-1")
    with pytest.raises(NotFoundError, match="Did you mean: tj-sum"):
        lm.pipelines.submit("tj-summ")


def test_handler_runs_the_job_and_a_second_call_changes_nothing(lm: Loopml) -> None:
    job = lm.pipelines.submit("tj-sum", {"days": 4})
    claimed = _claim(lm)
    result = run_pipeline_job(lm.ctx, claimed)
    assert result == {"run_id": job.payload["run_id"], "status": "succeeded", "error": None}
    assert lm.pipelines.output(result["run_id"], "total") == 6
    assert run_pipeline_job(lm.ctx, claimed)["status"] == "succeeded"
    assert calls == Counter(extract=1, total=1)


def test_handler_creates_a_missing_run_record_from_the_payload(lm: Loopml) -> None:
    """A submitter that died between enqueue and insert still leaves a runnable job."""
    payload = {
        "run_id": "a" * 32,
        "pipeline": "tj-sum",
        "params": {"days": 2},
        "trigger": "api",
        "module": None,
        "schedule_slot": None,
    }
    lm.jobs.enqueue("pipeline.run", payload)
    result = run_pipeline_job(lm.ctx, _claim(lm))
    assert result["status"] == "succeeded"
    assert lm.pipelines.get_run("a" * 32).job_id is not None


def test_handler_fails_permanently_when_the_pipeline_is_unknown(lm: Loopml) -> None:
    @step
    def only(x: int) -> int:
        return x

    pipe = Pipeline("tj-gone", [only], params={"x": 1})
    job = lm.pipelines.submit(pipe)
    unregister("tj-gone")
    with pytest.raises(PermanentError, match="tj-gone"):
        run_pipeline_job(lm.ctx, _claim(lm))
    run = lm.pipelines.get_run(job.payload["run_id"])
    assert run.status == "failed" and "could not load the pipeline" in run.error
    lm.jobs.enqueue("pipeline.run", {"nothing": 1})
    with pytest.raises(PermanentError, match="run_id"):
        run_pipeline_job(lm.ctx, _claim(lm))


def _work_until_done(lm: Loopml, run_id: str, timeout: float = 20.0) -> None:
    stop = threading.Event()
    worker = Worker(lm.ctx, lease_seconds=5, grace_seconds=5, poll_max=0.1)
    thread = threading.Thread(target=worker.run, args=(stop,), daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            if lm.pipelines.get_run(run_id).status in ("succeeded", "failed"):
                return
            time.sleep(0.05)
        raise AssertionError(f"run {run_id} did not finish: {lm.pipelines.get_run(run_id).to_dict()}")
    finally:
        stop.set()
        thread.join(10)


def test_a_worker_executes_a_submitted_run(lm: Loopml) -> None:
    job = lm.pipelines.submit("tj-sum", {"days": 5})
    _work_until_done(lm, job.payload["run_id"])
    assert lm.pipelines.get_run(job.payload["run_id"]).status == "succeeded"
    deadline = time.monotonic() + 5
    while lm.jobs.get(job.id).status != "succeeded" and time.monotonic() < deadline:
        time.sleep(0.05)
    assert lm.jobs.get(job.id).result["status"] == "succeeded"


CRASH_MODULE = """
import os
from pathlib import Path
from loopml.pipelines import pipeline, step

@step
def prepare(n: int) -> list:
    with open(Path.cwd() / "prepare.calls", "a") as fh:
        fh.write("x\\n")
    return list(range(n))

@step
def explode(prepare: list) -> int:
    marker = Path.cwd() / "explode.crashed"
    if not marker.exists():
        marker.write_text("1")
        print("about to die")
        os._exit(137)  # the worker process is killed mid-step (OOM, kill -9, power loss)
    return sum(prepare)

@pipeline("tj-crash", params={"n": 4})
def crash():
    return [prepare, explode]
"""

CRASH_WORKER = """
import threading
from loopml import Loopml
from loopml.worker import Worker, load_handler_modules
lm = Loopml()
load_handler_modules(lm.ctx)
Worker(lm.ctx, lease_seconds=1, poll_max=0.1).run(threading.Event())
"""


def test_a_run_survives_its_worker_being_killed(lm: Loopml, tmp_path: Path) -> None:
    (tmp_path / "tjcrashpipes.py").write_text(CRASH_MODULE)
    sys.path.insert(0, str(tmp_path))
    try:
        importlib.import_module("tjcrashpipes")
    finally:
        sys.path.remove(str(tmp_path))
    job = lm.pipelines.submit("tj-crash")
    run_id = job.payload["run_id"]
    env = {
        **os.environ,
        "LOOPML_HOME": str(lm.settings.home_dir),
        "LOOPML_METADATA_URL": lm.settings.resolved_metadata_url,
        "LOOPML_PIPELINE_MODULES": json.dumps(["tjcrashpipes"]),
    }
    proc = subprocess.run(
        [sys.executable, "-c", CRASH_WORKER],
        cwd=tmp_path,
        env=env,
        timeout=60,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 137, proc.stderr[-2000:]
    crashed = lm.pipelines.get_run(run_id)
    assert crashed.status == "running"
    assert [(s.step, s.status) for s in crashed.steps] == [("prepare", "succeeded"), ("explode", "running")]
    assert lm.jobs.get(job.id).status == "running"  # its lease (1 s) runs out, then another worker takes it
    time.sleep(1.1)
    _work_until_done(lm, run_id)
    resumed = lm.pipelines.get_run(run_id)
    assert resumed.status == "succeeded", resumed.error
    assert resumed.step("explode").attempts == 2
    assert "interrupted" in resumed.step("explode").log
    assert (tmp_path / "prepare.calls").read_text().count("x") == 1  # the finished step was not redone
    assert lm.pipelines.output(run_id, "explode") == 6


# -- schedules --------------------------------------------------------------------------------
def _define_scheduled(cron: str = "0 6 * * *") -> None:
    @pipeline("tj-daily", schedule=cron, params={"days": 2})
    def daily() -> list:
        return [extract, total]


def _jobs_for(jobs: list, name: str) -> list:
    return [j for j in jobs if j.payload["pipeline"] == name]


def test_scheduler_runs_a_missed_schedule_once_for_the_latest_slot(lm: Loopml) -> None:
    _define_scheduled()
    try:
        t0 = datetime(2024, 1, 1, 5, 0, tzinfo=UTC)
        assert _jobs_for(scheduler_tick(lm.ctx, t0), "tj-daily") == []  # first sight: due at the next slot
        (sched,) = [s for s in lm.pipelines.schedules() if s.pipeline == "tj-daily"]
        assert sched.next_due == datetime(2024, 1, 1, 6, 0, tzinfo=UTC) and sched.last_slot is None
        # down for three and a half days: four slots missed, one run for the newest slot
        back = datetime(2024, 1, 4, 7, 30, tzinfo=UTC)
        (job,) = _jobs_for(scheduler_tick(lm.ctx, back), "tj-daily")
        assert job.idempotency_key == "schedule:tj-daily:2024-01-04T06:00:00+00:00"
        run = lm.pipelines.get_run(job.payload["run_id"])
        assert (run.trigger, run.schedule_slot, run.params) == (
            "schedule",
            datetime(2024, 1, 4, 6, 0, tzinfo=UTC),
            {"days": 2},
        )
        assert _jobs_for(scheduler_tick(lm.ctx, back + timedelta(minutes=5)), "tj-daily") == []
        (sched,) = [s for s in lm.pipelines.schedules() if s.pipeline == "tj-daily"]
        assert sched.last_slot == datetime(2024, 1, 4, 6, 0, tzinfo=UTC)
        assert sched.next_due == datetime(2024, 1, 5, 6, 0, tzinfo=UTC)
        # a second scheduler that read the schedule before the first advanced it: same job, no new run
        with lm.ctx.db.session() as session:
            m.update_schedule(session, "tj-daily", next_due=datetime(2024, 1, 2, 6, 0, tzinfo=UTC))
        (dup,) = _jobs_for(scheduler_tick(lm.ctx, back), "tj-daily")
        assert dup.id == job.id and len(lm.pipelines.runs("tj-daily")) == 1
    finally:
        unregister("tj-daily")


def test_paused_schedules_do_not_fire_and_cron_changes_are_picked_up(lm: Loopml) -> None:
    _define_scheduled()
    try:
        t0 = datetime(2024, 3, 1, 0, 0, tzinfo=UTC)
        scheduler_tick(lm.ctx, t0)
        paused = lm.pipelines.set_schedule_enabled("tj-daily", False)
        assert paused.enabled is False
        assert _jobs_for(scheduler_tick(lm.ctx, t0 + timedelta(days=2)), "tj-daily") == []
        assert lm.pipelines.set_schedule_enabled("tj-daily", True).enabled
        assert len(_jobs_for(scheduler_tick(lm.ctx, t0 + timedelta(days=2)), "tj-daily")) == 1
        with pytest.raises(NotFoundError, match="has no schedule"):
            lm.pipelines.set_schedule_enabled("tj-sum", False)
        _define_scheduled("30 7 * * 1")  # redefined: Mondays 07:30
        scheduler_tick(lm.ctx, datetime(2024, 3, 5, 0, 0, tzinfo=UTC))  # a Tuesday
        (sched,) = [s for s in lm.pipelines.schedules() if s.pipeline == "tj-daily"]
        assert sched.cron == "30 7 * * 1" and sched.next_due == datetime(2024, 3, 11, 7, 30, tzinfo=UTC)
        assert sched.enabled
    finally:
        unregister("tj-daily")


def test_run_scheduler_loop_enqueues_due_runs_until_stopped(lm: Loopml) -> None:
    _define_scheduled("* * * * *")
    try:
        scheduler_tick(lm.ctx)
        with lm.ctx.db.session() as session:
            m.update_schedule(session, "tj-daily", next_due=datetime.now(UTC) - timedelta(minutes=3))
        stop = threading.Event()
        thread = threading.Thread(
            target=run_scheduler, args=(lm.ctx, stop), kwargs={"interval": 0.1}, daemon=True
        )
        thread.start()
        deadline = time.monotonic() + 10
        while not lm.pipelines.runs("tj-daily") and time.monotonic() < deadline:
            time.sleep(0.05)
        stop.set()
        thread.join(5)
        assert not thread.is_alive()
        (run,) = lm.pipelines.runs("tj-daily")
        assert run.trigger == "schedule" and run.status == "queued"
    finally:
        unregister("tj-daily")
