"""``loopml up`` on loopback: starts API + worker + scheduler, restarts a crashed child, stops on SIGTERM."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil
import pytest

from loopml.processes import EXIT_UNAVAILABLE, Supervisor, main, role_problem

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_healthy(url: str, timeout: float = 30.0) -> httpx.Response:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            response = httpx.get(url, timeout=2)
            if response.status_code == 200:
                return response
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"{url} did not answer 200 within {timeout}s")


def child_roles(parent: psutil.Process) -> dict[str, int]:
    roles = {}
    for child in parent.children():
        try:
            cmd = child.cmdline()
        except psutil.Error:  # a zombie between its death and the supervisor's reap
            continue
        if "loopml.processes" in cmd:
            roles[cmd[cmd.index("loopml.processes") + 1]] = child.pid
    return roles


def test_up_starts_restarts_and_stops_cleanly(tmp_path: Path) -> None:
    port = free_port()
    env = {
        **os.environ,
        "LOOPML_HOME": str(tmp_path / "home"),
        "LOOPML_PORT": str(port),
        "LOOPML_HOST": "127.0.0.1",
    }
    env.pop("LOOPML_METADATA_URL", None)
    log = (tmp_path / "up.log").open("w")  # a file, not a pipe: children inherit it and never block on it
    proc = subprocess.Popen(
        [sys.executable, "-m", "loopml.cli.main", "up", "--grace", "10"],
        cwd=tmp_path,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        health = wait_healthy(f"http://127.0.0.1:{port}/healthz").json()
        assert health["backends"]["metadata"]["ok"] is True
        parent = psutil.Process(proc.pid)
        deadline = time.monotonic() + 15
        while set(child_roles(parent)) != {"api", "worker", "scheduler"} and time.monotonic() < deadline:
            time.sleep(0.2)
        roles = child_roles(parent)
        assert set(roles) == {"api", "worker", "scheduler"}

        os.kill(roles["api"], signal.SIGKILL)  # a crash: the supervisor must bring the API back
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and child_roles(parent).get("api") in (None, roles["api"]):
            time.sleep(0.2)
        assert child_roles(parent).get("api") not in (None, roles["api"])
        wait_healthy(f"http://127.0.0.1:{port}/healthz")
        children = [psutil.Process(pid) for pid in child_roles(parent).values()]

        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            for child in psutil.Process(proc.pid).children(recursive=True):
                child.kill()
            proc.kill()
            proc.wait()
        log.close()
    output = (tmp_path / "up.log").read_text()
    assert proc.returncode == 0, output
    assert f"http://127.0.0.1:{port}/ui/" in output
    assert "api exited with status" in output and "restarting" in output
    assert not [c for c in children if c.is_running() and c.status() != psutil.STATUS_ZOMBIE]


def test_supervisor_drops_a_child_that_cannot_run(tmp_path: Path) -> None:
    events: list[str] = []
    unavailable = [sys.executable, "-c", f"import sys; sys.exit({EXIT_UNAVAILABLE})"]
    sleeper = [sys.executable, "-c", "import time; time.sleep(60)"]
    supervisor = Supervisor(
        {"broken": unavailable, "sleeper": sleeper}, on_event=events.append, grace_seconds=5
    )
    supervisor.start()
    deadline = time.monotonic() + 10
    while len(supervisor.children) == 2 and time.monotonic() < deadline:
        time.sleep(0.1)
        supervisor.poll()
    assert [c.role for c in supervisor.children] == ["sleeper"]
    assert any("broken cannot run here" in e for e in events)
    supervisor.stop()
    assert not supervisor.children[0].alive()


def test_role_checks_and_bad_roles() -> None:
    assert role_problem("api") is None
    assert "unknown role" in (role_problem("nope") or "")
    with pytest.raises(SystemExit):
        main(["nope"])


def test_serve_and_up_reject_a_bad_port(tmp_path: Path) -> None:
    for command in (["serve", "--port", "70000"], ["up", "--port", "0"]):
        result = subprocess.run(
            [sys.executable, "-m", "loopml.cli.main", *command],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 1
        assert "--port" in result.stderr and "65535" in result.stderr
