"""Real `loopml worker` processes on a shared database: SIGKILL loses no job, SIGTERM exits cleanly.

Each backend (SQLite file, PostgreSQL database) gets the same scenario. The handler sleeps, then
records its side effect idempotently (one file per job id, created with O_EXCL) and appends a line to
a completion log, so the test can tell "ran to completion once" from "ran twice".
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from loopml import Loopml, load_settings

HANDLERS = """
import os, time
from loopml.worker import job_handler

@job_handler("crashtest.slow")
def slow(ctx, job):
    out = job.payload["out"]
    with open(os.path.join(out, "starts.log"), "a") as f:
        f.write(f"{job.id} {os.getpid()} {job.attempts}\\n")
    time.sleep(job.payload["seconds"])
    try:  # the side effect, keyed by job id: a second run cannot create it again
        fd = os.open(os.path.join(out, f"effect-{job.id}"), os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        os.write(fd, str(os.getpid()).encode())
        os.close(fd)
    except FileExistsError:
        pass
    with open(os.path.join(out, "completions.log"), "a") as f:
        f.write(f"{job.id} {os.getpid()}\\n")
    return {"pid": os.getpid()}
"""


@pytest.fixture
def project(tmp_path: Path, metadata_url: str) -> tuple[Path, dict[str, str], Loopml]:
    """A project directory with the handler module, the env for worker processes and a client."""
    (tmp_path / "crashjobs.py").write_text(HANDLERS)
    (tmp_path / "out").mkdir()
    env = {
        **os.environ,
        "LOOPML_HOME": str(tmp_path / "home"),
        "LOOPML_METADATA_URL": metadata_url,
        "LOOPML_PIPELINE_MODULES": json.dumps(["crashjobs"]),
        "PYTHONPATH": str(tmp_path),
    }
    lm = Loopml(load_settings(home=tmp_path / "home", metadata_url=metadata_url))
    yield tmp_path, env, lm
    lm.close()


def _start_worker(cwd: Path, env: dict[str, str], *args: str) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, "-m", "loopml.cli.main", "worker", "--log-level", "warning", *args]
    return subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _wait(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.kill()
    proc.wait(10)


def test_sigkill_mid_job_loses_no_job(project: tuple[Path, dict[str, str], Loopml]) -> None:
    root, env, lm = project
    out = root / "out"
    ids = [lm.jobs.enqueue("crashtest.slow", {"out": str(out), "seconds": 0.4}).id for _ in range(8)]
    doomed = _start_worker(root, env, "--concurrency", "2", "--lease-seconds", "1")
    survivor = None
    try:
        _wait(lambda: len(lm.jobs.list(status="running")) == 2, 30, "the first worker to start two jobs")
        in_flight = {j.id for j in lm.jobs.list(status="running")}
        doomed.send_signal(signal.SIGKILL)
        doomed.wait(10)
        survivor = _start_worker(root, env, "--concurrency", "2", "--lease-seconds", "1")
        _wait(lambda: lm.jobs.stats()["succeeded"] == len(ids), 60, "every job to succeed")
    finally:
        _stop(doomed)
        if survivor is not None:
            survivor.send_signal(signal.SIGTERM)
            assert survivor.wait(20) == 0, survivor.stderr.read().decode() if survivor.stderr else ""

    jobs = {i: lm.jobs.get(i) for i in ids}
    assert all(job.status == "succeeded" for job in jobs.values())
    completions = Counter(int(line.split()[0]) for line in (out / "completions.log").read_text().splitlines())
    assert completions == Counter(dict.fromkeys(ids, 1)), "each job must run to completion exactly once"
    assert sorted(int(p.name.split("-")[1]) for p in out.glob("effect-*")) == sorted(ids)
    # the killed worker's jobs were started twice and show the crash in attempts and last_error
    starts = Counter(int(line.split()[0]) for line in (out / "starts.log").read_text().splitlines())
    for job_id, job in jobs.items():
        expected = 2 if job_id in in_flight else 1
        assert (job.attempts, starts[job_id]) == (expected, expected), job
        if job_id in in_flight:
            assert "lease expired after attempt 1" in (job.last_error or "")
    assert lm.jobs.stats()["running"] == 0


def test_sigterm_finishes_the_in_flight_job_and_exits_zero(
    project: tuple[Path, dict[str, str], Loopml],
) -> None:
    root, env, lm = project
    out = root / "out"
    job = lm.jobs.enqueue("crashtest.slow", {"out": str(out), "seconds": 0.8})
    proc = _start_worker(root, env, "--grace-seconds", "20")
    try:
        _wait(lambda: (out / "starts.log").exists(), 30, "the job to start")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0
    finally:
        _stop(proc)
    done = lm.jobs.get(job.id)
    assert (done.status, done.attempts) == ("succeeded", 1)


def test_sigterm_releases_a_job_that_outlives_the_grace_period(
    project: tuple[Path, dict[str, str], Loopml],
) -> None:
    root, env, lm = project
    out = root / "out"
    job = lm.jobs.enqueue("crashtest.slow", {"out": str(out), "seconds": 30})
    proc = _start_worker(root, env, "--grace-seconds", "0.3")
    try:
        _wait(lambda: (out / "starts.log").exists(), 30, "the job to start")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
    finally:
        _stop(proc)
    released = lm.jobs.get(job.id)
    assert (released.status, released.attempts, released.worker_id) == ("queued", 0, None)
    assert not (out / f"effect-{job.id}").exists()
