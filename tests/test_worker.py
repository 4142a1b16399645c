"""The in-process Worker: handlers, retries, dead letters, heartbeats and graceful stop (both backends)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from loopml import Loopml
from loopml.context import Context
from loopml.errors import ConfigError, ConflictError, ValidationError
from loopml.storage.queue import Job, JobQueue
from loopml.worker import (
    PermanentError,
    Worker,
    WorkerStats,
    job_handler,
    load_handler_modules,
    registered_handlers,
)


def _fast_queue(lm: Loopml) -> JobQueue:
    queue = JobQueue(lm.ctx)
    queue.backoff_base = 0.01
    queue.reap_interval = 0
    return queue


def _run_until(worker: Worker, done: Callable[[], bool], timeout: float = 20.0) -> WorkerStats:
    """Run the worker in a thread until ``done()`` holds, then stop it and return its stats."""
    stop = threading.Event()
    result: list[WorkerStats] = []
    thread = threading.Thread(target=lambda: result.append(worker.run(stop)))
    thread.start()
    deadline = time.monotonic() + timeout
    try:
        while not done():
            assert time.monotonic() < deadline, "worker did not reach the expected state in time"
            time.sleep(0.02)
    finally:
        stop.set()
        thread.join(timeout)
    assert not thread.is_alive()
    return result[0]


def test_worker_runs_jobs_concurrently_and_records_results(lm: Loopml) -> None:
    active = 0
    peak = 0
    lock = threading.Lock()

    def square(ctx: Context, job: Job) -> dict[str, Any]:
        nonlocal active, peak
        with lock:
            active += 1
            peak = max(peak, active)
        time.sleep(0.05)
        with lock:
            active -= 1
        return {"square": job.payload["n"] ** 2}

    ids = [lm.jobs.enqueue("square", {"n": n}).id for n in range(12)]
    worker = Worker(
        lm.ctx, concurrency=4, handlers={"square": square}, poll_min=0.01, job_queue=_fast_queue(lm)
    )
    stats = _run_until(worker, lambda: lm.jobs.stats()["succeeded"] == 12)
    assert [lm.jobs.get(i).result for i in ids] == [{"square": n * n} for n in range(12)]
    assert stats.succeeded == 12 and stats.claimed == 12 and stats.failed == 0
    assert 2 <= peak <= 4


def test_handler_errors_retry_with_traceback_then_dead_letter(lm: Loopml) -> None:
    calls: list[int] = []

    def flaky(ctx: Context, job: Job) -> None:
        calls.append(job.attempts)
        raise RuntimeError(f"upstream timeout on attempt {job.attempts}")

    job = lm.jobs.enqueue("flaky", max_attempts=3)
    worker = Worker(
        lm.ctx, handlers={"flaky": flaky}, poll_min=0.01, poll_max=0.05, job_queue=_fast_queue(lm)
    )
    stats = _run_until(worker, lambda: lm.jobs.get(job.id).status == "dead")
    dead = lm.jobs.get(job.id)
    assert calls == [1, 2, 3] and dead.attempts == 3
    assert (
        "Traceback" in (dead.last_error or "")
        and "RuntimeError: upstream timeout on attempt 3" in dead.last_error
    )
    assert stats.failed == 3 and stats.dead == 1


def test_a_job_that_fails_once_then_succeeds(lm: Loopml) -> None:
    def once(ctx: Context, job: Job) -> dict[str, int]:
        if job.attempts == 1:
            raise ConnectionError("flaky network")
        return {"attempt": job.attempts}

    job = lm.jobs.enqueue("once")
    worker = Worker(lm.ctx, handlers={"once": once}, poll_min=0.01, poll_max=0.05, job_queue=_fast_queue(lm))
    _run_until(worker, lambda: lm.jobs.get(job.id).status == "succeeded")
    done = lm.jobs.get(job.id)
    assert done.result == {"attempt": 2} and "ConnectionError: flaky network" in (done.last_error or "")


def test_permanent_error_unknown_kind_and_bad_result_are_not_retried(lm: Loopml) -> None:
    def permanent(ctx: Context, job: Job) -> None:
        raise PermanentError("payload has no 'dataset' key")

    def bad_result(ctx: Context, job: Job) -> Any:
        return [1, 2, 3]

    def not_json(ctx: Context, job: Job) -> Any:
        return {"model": object()}

    handlers = {"permanent": permanent, "bad_result": bad_result, "not_json": not_json}
    kinds = ("permanent", "bad_result", "not_json", "nobody.handles.this")
    ids = {kind: lm.jobs.enqueue(kind).id for kind in kinds}
    worker = Worker(lm.ctx, handlers=handlers, poll_min=0.01, job_queue=_fast_queue(lm))
    _run_until(worker, lambda: lm.jobs.stats()["dead"] == 4)
    jobs = {kind: lm.jobs.get(i) for kind, i in ids.items()}
    assert all(j.attempts == 1 for j in jobs.values())
    assert jobs["permanent"].last_error == "PermanentError: payload has no 'dataset' key"
    assert "returned list; return a dict or None" in (jobs["bad_result"].last_error or "")
    assert "returned a result that is not JSON" in (jobs["not_json"].last_error or "")
    unknown = jobs["nobody.handles.this"].last_error or ""
    assert (
        "no handler for job kind 'nobody.handles.this'" in unknown
        and "bad_result, not_json, permanent" in unknown
    )


def test_heartbeats_keep_a_long_job_from_being_stolen(lm: Loopml) -> None:
    def slow(ctx: Context, job: Job) -> dict[str, bool]:
        time.sleep(1.6)
        return {"ok": True}

    job = lm.jobs.enqueue("slow")
    thief = _fast_queue(lm)
    stolen: list[Job] = []
    worker = Worker(
        lm.ctx, handlers={"slow": slow}, lease_seconds=1, poll_min=0.01, job_queue=_fast_queue(lm)
    )

    def done() -> bool:
        current = lm.jobs.get(job.id)
        if current.worker_id == worker.worker_id:  # only try to steal once the worker holds it
            stolen.extend(thief.claim("thief", lease_seconds=30))
        return current.status == "succeeded"

    _run_until(worker, done)
    assert stolen == [] and lm.jobs.get(job.id).attempts == 1


def test_stop_releases_jobs_that_outlive_the_grace_period(lm: Loopml) -> None:
    started = threading.Event()
    gate = threading.Event()

    def stuck(ctx: Context, job: Job) -> None:
        started.set()
        gate.wait(10)

    job = lm.jobs.enqueue("stuck")
    waiting = lm.jobs.enqueue(
        "stuck"
    )  # claimed with the first but never started (concurrency 1 + prefetch 0)
    worker = Worker(
        lm.ctx, handlers={"stuck": stuck}, grace_seconds=0.2, poll_min=0.01, job_queue=_fast_queue(lm)
    )
    stats = _run_until(worker, started.is_set)
    gate.set()
    released = lm.jobs.get(job.id)
    assert (released.status, released.attempts, released.worker_id) == ("queued", 0, None)
    assert lm.jobs.get(waiting.id).status == "queued"
    assert stats.released == 1


def test_stop_lets_in_flight_jobs_finish_within_grace(lm: Loopml) -> None:
    started = threading.Event()

    def short(ctx: Context, job: Job) -> dict[str, str]:
        started.set()
        time.sleep(0.3)
        return {"done": "yes"}

    job = lm.jobs.enqueue("short")
    worker = Worker(
        lm.ctx, handlers={"short": short}, grace_seconds=10, poll_min=0.01, job_queue=_fast_queue(lm)
    )
    stats = _run_until(worker, started.is_set)
    assert lm.jobs.get(job.id).status == "succeeded" and stats.released == 0 and stats.succeeded == 1


def test_worker_only_takes_its_queues(lm: Loopml) -> None:
    mine = lm.jobs.enqueue("noop", queue="gpu")
    other = lm.jobs.enqueue("noop", queue="cpu")
    worker = Worker(
        lm.ctx, queues=("gpu",), handlers={"noop": lambda ctx, job: None}, job_queue=_fast_queue(lm)
    )
    _run_until(worker, lambda: lm.jobs.get(mine.id).status == "succeeded")
    assert lm.jobs.get(other.id).status == "queued"


def test_job_handler_registry() -> None:
    @job_handler("tests.registry.kind")
    def first(ctx: Context, job: Job) -> None:
        return None

    assert registered_handlers()["tests.registry.kind"] is first
    job_handler("tests.registry.kind")(first)  # same function again (module re-import) is fine
    with pytest.raises(ConflictError, match=r"already has handler .*first; cannot also register .*second"):

        @job_handler("tests.registry.kind")
        def second(ctx: Context, job: Job) -> None:
            return None

    with pytest.raises(ValidationError, match="job_handler\\(kind=''\\)"):
        job_handler("")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"concurrency": 0}, "concurrency=0"),
        ({"concurrency": "4"}, "concurrency='4'"),
        ({"queues": ()}, "queues=()"),
        ({"lease_seconds": 0.5}, "lease_seconds=0.5"),
        ({"grace_seconds": -1}, "grace_seconds=-1"),
    ],
)
def test_worker_rejects_bad_settings(lm_sqlite: Loopml, kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message.replace("(", "\\(").replace(")", "\\)")):
        Worker(lm_sqlite.ctx, **kwargs)


def test_unimportable_pipeline_module_is_a_config_error(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    lm = Loopml(home=tmp_path / "home", pipeline_modules=["no_such_module_xyz"])
    try:
        with pytest.raises(ConfigError, match="pipeline_modules lists 'no_such_module_xyz'"):
            load_handler_modules(lm.ctx)
    finally:
        lm.close()


def test_pipeline_modules_register_handlers(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "tests_worker_mod.py").write_text(
        "from loopml.worker import job_handler\n"
        "@job_handler('tests.from_module')\n"
        "def handle(ctx, job):\n    return {'ok': True}\n"
    )
    lm = Loopml(home=tmp_path / "home", pipeline_modules=["tests_worker_mod"])
    try:
        assert "tests_worker_mod" in load_handler_modules(lm.ctx)
        assert "tests.from_module" in registered_handlers()
    finally:
        lm.close()
