"""Cron schedules: turn due slots into queued pipeline runs, once per slot, however many schedulers run.

Rules (UTC throughout):
- A schedule first seen is due at its *next* slot: defining a pipeline does not backfill history.
- A tick fires only the **latest** slot that is due. A scheduler that was down for three slots
  runs the pipeline once when it comes back, not three times (a weekly forecast computed three
  times over the same data is waste, and a late run is still wanted).
- Each slot is enqueued with the idempotency key ``schedule:<pipeline>:<slot iso>``, so two
  schedulers (two ``loopml up`` processes) racing on the same slot produce one job and one run.
- The slot is enqueued before the schedule advances: a crash in between re-fires the same slot on
  the next tick, which the idempotency key turns into a no-op.
"""

from __future__ import annotations

import logging
import threading
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from loopml.context import Context
from loopml.errors import LoopmlError, ValidationError
from loopml.pipelines.definition import registered
from loopml.pipelines.service import Pipelines, load_pipeline_modules
from loopml.storage.metadata import pipelines as m
from loopml.storage.metadata.base import utcnow

if TYPE_CHECKING:
    from loopml.storage.queue import Job

log = logging.getLogger("loopml.scheduler")

DEFAULT_INTERVAL = 30.0


def next_slot(cron: str, after: datetime) -> datetime:
    """The first slot strictly after ``after``."""
    from croniter import croniter

    return croniter(cron, _aware(after)).get_next(datetime)


def latest_slot(cron: str, now: datetime) -> datetime:
    """The newest slot at or before ``now``."""
    from croniter import croniter

    return croniter(cron, _aware(now) + timedelta(seconds=1)).get_prev(datetime)


def slot_key(pipeline: str, slot: datetime) -> str:
    return f"schedule:{pipeline}:{_aware(slot).isoformat()}"


def sync_schedules(ctx: Context, now: datetime | None = None) -> None:
    """Make the ``schedules`` table follow the pipelines defined in this process.

    New schedule -> row due at the next slot; changed cron -> new cron, due at its next slot
    (the paused/enabled flag is kept); schedule removed from the definition -> row deleted.
    Rows of pipelines this process does not define are left alone (another process may).
    """
    now = _aware(now or utcnow())
    defs = registered()
    with ctx.db.session() as session:
        rows = {r.pipeline: r for r in m.list_schedules(session)}
        for name, pipe in defs.items():
            row = rows.get(name)
            if pipe.schedule is None:
                if row is not None:
                    session.delete(row)
                continue
            if row is None:
                m.add_schedule(session, name, pipe.schedule, next_slot(pipe.schedule, now), now)
            elif row.cron != pipe.schedule:
                m.update_schedule(
                    session, name, cron=pipe.schedule, next_due=next_slot(pipe.schedule, now), updated_at=now
                )


def scheduler_tick(ctx: Context, now: datetime | None = None) -> list[Job]:
    """Enqueue one run per schedule that is due at ``now`` (its latest missed slot); returns the jobs."""
    now = _aware(now or utcnow())
    sync_schedules(ctx, now)
    defs = registered()
    with ctx.db.session() as session:
        due = [
            (r.pipeline, r.cron, r.next_due)
            for r in m.list_schedules(session)
            if r.enabled and _aware(r.next_due) <= now
        ]
    service = Pipelines(ctx, load_modules=False)
    jobs: list[Job] = []
    for name, cron, next_due in due:
        pipe = defs.get(name)
        if pipe is None:
            log.warning(
                "schedule for %s is due but the pipeline is not defined in this process; skipped", name
            )
            continue
        slot = latest_slot(cron, now)
        try:
            job = service.submit(
                pipe, idempotency_key=slot_key(name, slot), trigger="schedule", schedule_slot=slot
            )
        except LoopmlError as exc:  # one broken schedule must not stop the others
            log.error("schedule %s slot %s not enqueued: %s", name, slot.isoformat(), exc)
            continue
        with ctx.db.session() as session:
            m.advance_schedule(
                session, name, expected_next_due=next_due, last_slot=slot, next_due=next_slot(cron, now)
            )
        log.info("scheduled run of %s for slot %s: job %s", name, slot.isoformat(), job.id)
        jobs.append(job)
    return jobs


def seconds_until_next_due(ctx: Context, now: datetime | None = None) -> float | None:
    now = _aware(now or utcnow())
    with ctx.db.session() as session:
        dues = [_aware(r.next_due) for r in m.list_schedules(session) if r.enabled]
    if not dues:
        return None
    return max(0.0, (min(dues) - now).total_seconds())


def run_scheduler(ctx: Context, stop: threading.Event, *, interval: float = DEFAULT_INTERVAL) -> int:
    """Tick until ``stop`` is set (what ``loopml up`` runs in a thread); returns the runs enqueued.

    Sleeps until the earliest due slot, but at most ``interval`` seconds, so new definitions and
    paused/resumed schedules are noticed. Database errors are logged and retried, never fatal.
    """
    if isinstance(interval, bool) or not isinstance(interval, int | float) or interval <= 0:
        raise ValidationError(f"interval={interval!r}: use a number of seconds > 0 (default 30)")
    load_pipeline_modules(ctx)
    enqueued = 0
    while not stop.is_set():
        wait = interval
        try:
            enqueued += len(scheduler_tick(ctx))
            until = seconds_until_next_due(ctx)
            if until is not None:
                wait = min(interval, until + 0.01)
        except LoopmlError as exc:
            log.warning("scheduler tick failed, retrying in %.0fs: %s", interval, exc)
        stop.wait(max(0.05, wait))
    return enqueued


def _aware(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
