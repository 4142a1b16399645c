"""``loopml up``: the API, one worker and the scheduler as supervised child processes.

Each role runs in its own interpreter (``python -m loopml.processes ROLE``) so a crash, a leak or
a blocking handler in one cannot take the others down. The supervisor restarts a child that dies
(with exponential backoff so a child that cannot start does not spin), and on Ctrl-C / SIGTERM
asks every child to stop, waits a grace period, then kills what is left. A role whose module is not
installed is reported once and skipped, never restarted in a loop.
"""

from __future__ import annotations

import importlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from loopml.config import Settings, load_settings
from loopml.errors import ConfigError

#: role -> (module, attribute) the child needs; checked before a child is started.
ROLES: dict[str, tuple[str, str]] = {
    "api": ("loopml.serving.app", "app_from_env"),
    "worker": ("loopml.worker", "run_worker"),
    "scheduler": ("loopml.pipelines.scheduler", "run_scheduler"),
}
#: Exit status a child uses for "cannot run here" (missing module, bad settings): do not restart.
EXIT_UNAVAILABLE = 78
#: Longer than the worker's own 30 s grace, so in-flight jobs can finish before a kill.
GRACE_SECONDS = 35.0
MAX_BACKOFF_SECONDS = 30.0
STABLE_SECONDS = 60.0


def role_problem(role: str) -> str | None:
    """Why ``role`` cannot run in this install, or ``None`` when its entry point imports."""
    if role not in ROLES:
        return f"unknown role {role!r}; use one of: {', '.join(ROLES)}"
    module_name, attribute = ROLES[role]
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        return f"{module_name} cannot be imported ({exc})"
    if not hasattr(module, attribute):
        return f"{module_name} has no {attribute}()"
    return None


@dataclass
class Child:
    """One supervised role: its command, process and restart bookkeeping."""

    role: str
    command: list[str]
    process: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    restarts: int = 0
    next_start: float = 0.0
    exit_codes: list[int] = field(default_factory=list)

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None


class Supervisor:
    """Start, watch, restart and stop the children of ``loopml up``."""

    def __init__(
        self,
        roles: dict[str, list[str]],
        *,
        on_event: Callable[[str], None] = print,
        grace_seconds: float = GRACE_SECONDS,
        env: dict[str, str] | None = None,
    ) -> None:
        self.children = [Child(role, command) for role, command in roles.items()]
        self.on_event = on_event
        self.grace_seconds = grace_seconds
        self.env = env
        self.stop_event = threading.Event()

    def start(self) -> None:
        for child in self.children:
            self._spawn(child)

    def _spawn(self, child: Child) -> None:
        child.process = subprocess.Popen(child.command, env=self.env)
        child.started_at = time.monotonic()
        self.on_event(f"started {child.role} (pid {child.pid})")

    def poll(self) -> None:
        """Restart children that exited; a child marked unavailable is dropped instead."""
        now = time.monotonic()
        for child in list(self.children):
            if child.process is None:
                if now >= child.next_start:
                    self._spawn(child)
                continue
            code = child.process.poll()
            if code is None:
                continue
            child.exit_codes.append(code)
            if code == EXIT_UNAVAILABLE:
                self.on_event(f"{child.role} cannot run here (exit {code}); not restarting it")
                self.children.remove(child)
                continue
            ran_for = now - child.started_at
            if ran_for >= STABLE_SECONDS:
                child.restarts = 0
            delay = min(MAX_BACKOFF_SECONDS, 0.5 * 2**child.restarts)
            child.restarts += 1
            child.process = None
            child.next_start = now + delay
            self.on_event(
                f"{child.role} exited with status {code} after {ran_for:.1f}s; restarting in {delay:.1f}s"
            )

    def run(self, interval: float = 0.25) -> int:
        """Supervise until ``stop_event`` is set (by a signal handler or a caller), then stop all."""
        self.start()
        try:
            while not self.stop_event.wait(interval):
                self.poll()
                if not self.children:
                    self.on_event("no child left to supervise")
                    break
        finally:
            self.stop()
        return 0

    def stop(self) -> None:
        """SIGTERM every child, wait up to the grace period, SIGKILL the rest."""
        running = [c for c in self.children if c.alive()]
        for child in running:
            assert child.process is not None
            child.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + self.grace_seconds
        for child in running:
            assert child.process is not None
            try:
                child.process.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self.on_event(f"{child.role} did not stop within {self.grace_seconds:.0f}s; killing it")
                child.process.kill()
                child.process.wait()
        if running:
            self.on_event("stopped " + ", ".join(c.role for c in running))


def child_command(role: str, settings: Settings, *, host: str, port: int, concurrency: int) -> list[str]:
    args = [sys.executable, "-m", "loopml.processes", role]
    if role == "api":
        args += ["--host", host, "--port", str(port)]
    if role == "worker":
        args += ["--concurrency", str(concurrency)]
    return args


def install_stop_signals(stop: threading.Event) -> None:
    """SIGTERM and SIGINT set ``stop`` (the supervisor then stops its children in order)."""

    def handler(signum: int, _frame: Any) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)


# -- child entry points ------------------------------------------------------------------------
def run_api(host: str, port: int) -> None:
    import uvicorn

    settings = load_settings()
    uvicorn.run(
        "loopml.serving.app:app_from_env",
        factory=True,
        host=host,
        port=port,
        http="httptools",
        loop="uvloop",
        log_level=settings.log_level,
    )


#: Queues the worker of ``loopml up`` serves: pipelines and the loop (default), webhook deliveries, async screening.
WORKER_QUEUES = ("default", "notify", "moderation")


def run_worker_role(concurrency: int) -> None:
    from loopml.context import Context
    from loopml.worker import run_worker

    run_worker(Context.from_settings(), concurrency, WORKER_QUEUES)


def run_scheduler_role() -> None:
    from loopml.context import Context
    from loopml.pipelines.scheduler import run_scheduler

    stop = threading.Event()
    install_stop_signals(stop)
    run_scheduler(Context.from_settings(), stop)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m loopml.processes ROLE [options]``: what each child of ``loopml up`` runs."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m loopml.processes", description=main.__doc__)
    parser.add_argument("role", choices=sorted(ROLES))
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--concurrency", type=int, default=1)
    args = parser.parse_args(argv)
    problem = role_problem(args.role)
    if problem:
        print(f"loopml {args.role}: {problem}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    try:
        if args.role == "api":
            run_api(args.host, args.port)
        elif args.role == "worker":
            run_worker_role(args.concurrency)
        else:
            run_scheduler_role()
    except ConfigError as exc:
        print(f"loopml {args.role}: {exc}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    except KeyboardInterrupt:
        return 0
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
