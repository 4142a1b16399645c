"""The worker: runs queued jobs with a pool of threads, keeps their leases alive, stops gracefully.

One loop claims jobs in batches sized to the free slots, a fixed set of daemon threads executes them,
and a heartbeat thread extends the leases of everything in flight. When there is nothing to do the
loop sleeps with exponential backoff instead of spinning on the database.

Failure model:
- handler raises -> ``fail`` with the traceback tail, retried with backoff until ``max_attempts``;
- handler raises ``PermanentError`` or the kind has no handler -> dead-lettered at once;
- process killed (SIGKILL, OOM, power) -> its leases expire and another worker claims the jobs again;
- SIGTERM / SIGINT -> stop claiming, let in-flight jobs finish for ``grace_seconds``, release the rest.

Handlers are plain functions ``fn(ctx, job) -> dict | None`` registered with ``@job_handler(kind)``
in any module the worker imports (``settings.pipeline_modules`` plus loopml's built-in ones).
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import queue as queue_mod
import signal
import socket
import sys
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from loopml.context import Context
from loopml.errors import ConfigError, ConflictError, NotFoundError, ValidationError
from loopml.storage.queue import Job, JobQueue

log = logging.getLogger("loopml.worker")

Handler = Callable[[Context, Job], "dict[str, Any] | None"]

#: loopml modules that register handlers for built-in job kinds (``pipeline.run`` ...).
BUILTIN_HANDLER_MODULES = (
    "loopml.pipelines",
    "loopml.notify.jobs",
    "loopml.monitoring.jobs",
    "loopml.monitoring.loop_jobs",
    "loopml.apps.moderation.jobs",
)
TRACEBACK_CHARS = 2000

_handlers: dict[str, Handler] = {}
_handlers_lock = threading.Lock()


def _check_result(handler: Handler, result: Any) -> None:
    """A handler's result is stored as JSON: reject anything else as a permanent error."""
    if result is None:
        return
    if not isinstance(result, dict):
        raise PermanentError(
            f"handler {_qualname(handler)} returned {type(result).__name__}; return a dict or None"
        )
    try:
        json.dumps(result, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise PermanentError(
            f"handler {_qualname(handler)} returned a result that is not JSON ({exc}); return plain values"
        ) from None


class PermanentError(Exception):
    """Raise from a handler when retrying cannot help (bad payload, missing input): dead-letter now."""


def job_handler(kind: str) -> Callable[[Handler], Handler]:
    """Register ``fn(ctx, job) -> dict | None`` as the handler of jobs of ``kind``.

    Registering a different function for a kind that already has one is a ConflictError, because
    the worker would silently run only one of them; re-registering the same function (a module
    imported twice) is allowed.
    """
    if not isinstance(kind, str) or not kind.strip():
        raise ValidationError(f"job_handler(kind={kind!r}): use a non-empty string such as 'pipeline.run'")

    def register(fn: Handler) -> Handler:
        if not callable(fn):
            raise ValidationError(f"@job_handler({kind!r}) must decorate a function, got {type(fn).__name__}")
        with _handlers_lock:
            existing = _handlers.get(kind)
            if existing is not None and _qualname(existing) != _qualname(fn):
                raise ConflictError(
                    f"job kind {kind!r} already has handler {_qualname(existing)}; "
                    f"cannot also register {_qualname(fn)} (pick another kind name)"
                )
            _handlers[kind] = fn
        return fn

    return register


def registered_handlers() -> dict[str, Handler]:
    """A copy of the kind -> handler registry."""
    with _handlers_lock:
        return dict(_handlers)


def _qualname(fn: Callable[..., Any]) -> str:
    return f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', repr(fn))}"


def load_handler_modules(ctx: Context) -> list[str]:
    """Import the modules that register handlers; returns the ones imported.

    Built-in modules are optional (a broken optional part must not stop every other job kind), so
    their import errors are logged. The user's ``pipeline_modules`` are required: a typo there is a
    ConfigError naming the setting. The working directory is put on ``sys.path`` because the
    ``loopml`` console script does not do it and project modules live there.
    """
    cwd = os.getcwd()
    if cwd not in sys.path:
        sys.path.insert(0, cwd)
    loaded = []
    for name in BUILTIN_HANDLER_MODULES:
        try:
            importlib.import_module(name)
            loaded.append(name)
        except Exception as exc:
            log.warning("built-in handler module %s not loaded: %s", name, exc)
    for name in ctx.settings.pipeline_modules:
        try:
            importlib.import_module(name)
        except ImportError as exc:
            raise ConfigError(
                f"pipeline_modules lists {name!r} but it cannot be imported ({exc}); "
                f"fix the name in loopml.toml / LOOPML_PIPELINE_MODULES or run from the project directory ({cwd})"
            ) from None
        loaded.append(name)
    return loaded


@dataclass
class WorkerStats:
    """What one ``Worker.run`` did (returned when it stops)."""

    worker_id: str
    claimed: int = 0
    succeeded: int = 0
    failed: int = 0
    dead: int = 0
    released: int = 0
    lost_leases: int = 0
    #: Database errors survived (claim, heartbeat, ack): should stay 0; "database is locked" would show here.
    db_errors: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class Worker:
    """Claims jobs from ``queues`` and runs up to ``concurrency`` of them at once."""

    def __init__(
        self,
        ctx: Context,
        queues: Sequence[str] = ("default",),
        concurrency: int = 1,
        *,
        lease_seconds: float = 60.0,
        grace_seconds: float = 30.0,
        poll_min: float = 0.05,
        poll_max: float = 2.0,
        worker_id: str | None = None,
        handlers: Mapping[str, Handler] | None = None,
        job_queue: JobQueue | None = None,
    ) -> None:
        if isinstance(concurrency, bool) or not isinstance(concurrency, int) or not 1 <= concurrency <= 256:
            raise ValidationError(f"concurrency={concurrency!r}: use an int between 1 and 256")
        if isinstance(queues, str):
            queues = (queues,)
        if not queues or not all(isinstance(name, str) and name for name in queues):
            raise ValidationError(f"queues={queues!r}: name at least one queue, e.g. ('default',)")
        if not isinstance(lease_seconds, int | float) or lease_seconds < 1:
            raise ValidationError(f"lease_seconds={lease_seconds!r}: use a number >= 1 (default 60)")
        if not isinstance(grace_seconds, int | float) or grace_seconds < 0:
            raise ValidationError(f"grace_seconds={grace_seconds!r}: use a number >= 0 (default 30)")
        self.ctx = ctx
        self.queues = tuple(queues)
        self.concurrency = concurrency
        self.lease_seconds = float(lease_seconds)
        self.grace_seconds = float(grace_seconds)
        self.poll_min = poll_min
        self.poll_max = poll_max
        self.worker_id = worker_id or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.jobs = job_queue or JobQueue(ctx)
        self._handlers = dict(handlers) if handlers is not None else None
        self.stats = WorkerStats(self.worker_id)
        self._inbox: queue_mod.Queue[Job | None] = queue_mod.Queue()
        self._in_flight: dict[int, Job] = {}
        self._lock = threading.Lock()
        self._slot_freed = threading.Event()
        self._ack_lock = threading.Lock()
        self._pending_acks: list[tuple[Job, dict[str, Any] | None]] = []
        self._flushing = False

    # -- public -------------------------------------------------------------------------------
    def run(self, stop: threading.Event) -> WorkerStats:
        """Work until ``stop`` is set, then finish or release in-flight jobs and return the stats."""
        threads = [
            threading.Thread(target=self._execute_loop, name=f"loopml-job-{i}", daemon=True)
            for i in range(self.concurrency)
        ]
        beat = threading.Thread(
            target=self._heartbeat_loop, args=(stop,), name="loopml-heartbeat", daemon=True
        )
        for thread in [*threads, beat]:
            thread.start()
        log.info(
            "worker %s: queues %s, concurrency %d", self.worker_id, ",".join(self.queues), self.concurrency
        )
        try:
            self._claim_loop(stop)
        finally:
            stop.set()
            self._shutdown(threads)
        return self.stats

    # -- claiming -----------------------------------------------------------------------------
    def _claim_loop(self, stop: threading.Event) -> None:
        delay = self.poll_min
        while not stop.is_set():
            with self._lock:
                free = self.concurrency - len(self._in_flight)
            if free <= 0:
                # all slots busy: wake when a job finishes, and check `stop` every 50 ms meanwhile
                while not stop.is_set():
                    if self._slot_freed.wait(0.05):
                        break
                self._slot_freed.clear()
                continue
            try:
                claimed = self.jobs.claim(
                    self.worker_id, queues=self.queues, limit=free, lease_seconds=self.lease_seconds
                )
            except ValidationError:
                raise
            except Exception as exc:  # database restarting or unreachable: back off, do not die
                self.stats.db_errors += 1
                log.warning("claim failed, retrying in %.1fs: %s", self.poll_max, exc)
                stop.wait(self.poll_max)
                continue
            if not claimed:
                stop.wait(delay)
                delay = min(self.poll_max, delay * 2)
                continue
            delay = self.poll_min
            with self._lock:
                for job in claimed:
                    self._in_flight[job.id] = job
                self.stats.claimed += len(claimed)
            for job in claimed:
                self._inbox.put(job)

    # -- executing ----------------------------------------------------------------------------
    def _execute_loop(self) -> None:
        while True:
            job = self._inbox.get()
            if job is None:
                return
            ack_pending = False
            try:
                ack_pending = self._execute(job)
            except Exception:  # the database failed while recording the outcome; the lease will expire
                self.stats.db_errors += 1
                log.exception(
                    "job %d: could not record its outcome; it runs again after its lease ends", job.id
                )
            finally:
                if not ack_pending:
                    self._done(job.id)

    def _done(self, job_id: int) -> None:
        """Free the job's slot (and stop heartbeating it)."""
        with self._lock:
            self._in_flight.pop(job_id, None)
        self._slot_freed.set()

    def _handler_for(self, kind: str) -> Handler | None:
        handlers = self._handlers if self._handlers is not None else registered_handlers()
        return handlers.get(kind)

    def _execute(self, job: Job) -> bool:
        """Run one job; True when its ack was queued (the ack flusher frees the slot then)."""
        handler = self._handler_for(job.kind)
        if handler is None:
            known = sorted(self._handlers if self._handlers is not None else registered_handlers())
            self._finish_failed(
                job,
                f"no handler for job kind {job.kind!r} in worker {self.worker_id} "
                f"(known: {', '.join(known) or 'none'}); "
                "register one with @loopml.worker.job_handler(kind) in a module listed in pipeline_modules",
                retry=False,
            )
            return False
        try:
            result = handler(self.ctx, job)
            _check_result(handler, result)
        except PermanentError as exc:
            self._finish_failed(job, f"PermanentError: {exc}", retry=False)
            return False
        except Exception:  # any handler error is recorded on the job, the worker goes on
            self._finish_failed(job, traceback.format_exc()[-TRACEBACK_CHARS:], retry=True)
            return False
        self._queue_ack(job, result)
        return True

    def _queue_ack(self, job: Job, result: dict[str, Any] | None) -> None:
        """Ack through a shared batch: the first thread to arrive flushes for everyone waiting.

        Jobs that finish together are committed in one transaction (``JobQueue.ack_many``); the
        flag is read and the list emptied under one lock, so no ack is ever left behind.
        """
        with self._ack_lock:
            self._pending_acks.append((job, result))
            if self._flushing:
                return
            self._flushing = True
        while True:
            with self._ack_lock:
                batch, self._pending_acks = self._pending_acks, []
                if not batch:
                    self._flushing = False
                    return
            self._flush_acks(batch)

    def _flush_acks(self, batch: list[tuple[Job, dict[str, Any] | None]]) -> None:
        try:
            acked = set(self.jobs.ack_many(self.worker_id, [(job.id, result) for job, result in batch]))
        except Exception as exc:  # database down: the jobs run again after their leases end
            acked = set()
            self.stats.db_errors += 1
            log.warning("could not ack %d finished jobs: %s", len(batch), exc)
        for job, _ in batch:
            if job.id in acked:
                self.stats.succeeded += 1
            else:
                self.stats.lost_leases += 1
                log.warning("job %d finished but was not acked: its lease was lost to another worker", job.id)
            self._done(job.id)

    def _finish_failed(self, job: Job, error: str, *, retry: bool) -> None:
        try:
            updated = self.jobs.fail(job.id, self.worker_id, error, retry=retry)
        except (ConflictError, NotFoundError) as exc:
            self.stats.lost_leases += 1
            log.warning("job %d failed but the failure was not recorded: %s", job.id, exc)
            return
        self.stats.failed += 1
        if updated.status == "dead":
            self.stats.dead += 1
        log.warning(
            "job %d (%s) attempt %d failed -> %s: %s",
            job.id,
            job.kind,
            job.attempts,
            updated.status,
            error.strip().splitlines()[-1] if error.strip() else error,
        )

    # -- leases -------------------------------------------------------------------------------
    def _heartbeat_loop(self, stop: threading.Event) -> None:
        interval = self.lease_seconds / 3
        while True:
            with self._lock:
                ids = list(self._in_flight)
            for job_id in ids:
                try:
                    if not self.jobs.heartbeat(job_id, self.worker_id, self.lease_seconds):
                        with self._lock:
                            still_running = job_id in self._in_flight
                        if still_running:
                            log.warning("job %d: lease lost (another worker may run it now)", job_id)
                except Exception as exc:  # next beat retries; the lease covers a few misses
                    self.stats.db_errors += 1
                    log.warning("heartbeat for job %d failed: %s", job_id, exc)
            if stop.is_set() and not ids:
                return
            time.sleep(interval) if stop.is_set() else stop.wait(interval)

    # -- stopping -----------------------------------------------------------------------------
    def _shutdown(self, threads: list[threading.Thread]) -> None:
        # Jobs claimed but not yet started are released at once; running ones get the grace period.
        while True:
            try:
                pending = self._inbox.get_nowait()
            except queue_mod.Empty:
                break
            if pending is not None:
                self._release(pending)
                with self._lock:
                    self._in_flight.pop(pending.id, None)
        for _ in threads:
            self._inbox.put(None)
        started = time.monotonic()
        # grace_seconds is re-read each round: a second signal sets it to 0 to cut the wait short.
        while any(t.is_alive() for t in threads) and time.monotonic() - started < self.grace_seconds:
            for thread in threads:
                thread.join(0.05)
        with self._lock:
            leftovers = list(self._in_flight.values())
            self._in_flight.clear()
        for job in leftovers:
            self._release(job)
        log.info("worker %s stopped: %s", self.worker_id, self.stats.to_dict())

    def _release(self, job: Job) -> None:
        try:
            self.jobs.release(job.id, self.worker_id)
            self.stats.released += 1
            log.info("released job %d (%s) back to queue %s", job.id, job.kind, job.queue)
        except (ConflictError, NotFoundError) as exc:
            log.warning("could not release job %d: %s", job.id, exc)


def run_worker(
    ctx: Context,
    concurrency: int = 1,
    queues: Sequence[str] = ("default",),
    *,
    lease_seconds: float = 60.0,
    grace_seconds: float = 30.0,
    stop: threading.Event | None = None,
) -> WorkerStats:
    """Load handler modules, install SIGTERM/SIGINT handling and run a ``Worker`` until signalled.

    The first signal stops claiming and starts the graceful shutdown (finish within
    ``grace_seconds``, release the rest); a second one cuts the grace period short.
    """
    load_handler_modules(ctx)
    worker = Worker(ctx, queues, concurrency, lease_seconds=lease_seconds, grace_seconds=grace_seconds)
    stop = stop or threading.Event()
    previous: dict[int, Any] = {}
    if threading.current_thread() is threading.main_thread():

        def on_signal(signum: int, _frame: Any) -> None:
            if stop.is_set():
                log.warning("second %s: releasing in-flight jobs now", signal.Signals(signum).name)
                worker.grace_seconds = 0
            else:
                log.info(
                    "%s: finishing in-flight jobs (up to %.0fs), then exiting",
                    signal.Signals(signum).name,
                    worker.grace_seconds,
                )
            stop.set()

        for sig in (signal.SIGTERM, signal.SIGINT):
            previous[sig] = signal.signal(sig, on_signal)
    try:
        return worker.run(stop)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
