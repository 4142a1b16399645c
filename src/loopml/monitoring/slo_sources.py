"""What each SLO kind measures, and the error-budget arithmetic.

One function per kind turns a target into a ``Measurement`` at time ``now``: the value compared
with the objective, plus the good/bad *request* counts for the kinds whose budget is counted in
requests (latency, error_rate). Kinds without requests (queue age, freshness, schedule) spend
their budget in evaluations: each evaluation that misses the objective is one bad event.

Budget (both flavours), over the last ``period_days``::

    allowed          = (1 - good_ratio) * total_events
    budget_remaining = 1 - bad_events / allowed        (1.0 untouched, 0 spent, < 0 overspent)
    burn_rate        = (bad / total in the last window) / (1 - good_ratio)

A burn rate of 1 spends the budget exactly over the period; 14.4 spends a 28-day budget in
about two days, the usual "page someone" level.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from loopml.context import Context
from loopml.errors import NotFoundError, did_you_mean
from loopml.storage.metadata import async_requests as aq
from loopml.storage.metadata import jobs as jq
from loopml.storage.metadata import monitoring_rules as q

#: Default lateness allowed for a scheduled run before its tick counts as missed.
DEFAULT_GRACE_SECONDS = 300
#: The async-request status that means "still waiting for the screener" (queue_age with async_kind).
ASYNC_STATUS = "screening"
#: Ticks a schedule SLO examines at most per evaluation (a per-minute cron over a day is 1440).
MAX_TICKS = 10_000


@dataclass(frozen=True)
class Measurement:
    """One reading: ``value`` (None = nothing to measure), and request counts when budgeted by request."""

    value: float | None
    requests: int | None = None
    bad_requests: int | None = None
    data: dict[str, Any] = field(default_factory=dict)


def measure(
    ctx: Context, kind: str, target: dict[str, Any], objective: float, window: timedelta, now: datetime
) -> Measurement:
    """The current value of an SLO of ``kind`` (validated spec) over ``(now - window, now]``."""
    return _MEASURES[kind](ctx, target, objective, window, now)


def request_budget(
    ctx: Context, kind: str, target: dict[str, Any], objective: float, *, since: datetime, until: datetime
) -> tuple[int, int]:
    """(requests, bad requests) over a budget period, for the request-counted kinds."""
    with ctx.db.session() as session:
        total, errors, slow = q.request_counts(
            session,
            target["endpoint"],
            since=since,
            until=until,
            slower_than=objective if kind == "latency" else None,
        )
    return total, slow if kind == "latency" else errors


def budget_remaining(total: int, bad: int, good_ratio: float) -> float:
    """``1 - bad / ((1 - good_ratio) * total)``; 1.0 when nothing happened yet."""
    if total <= 0:
        return 1.0
    return 1.0 - bad / ((1.0 - good_ratio) * total)


def burn_rate(total: int, bad: int, good_ratio: float) -> float | None:
    """How fast the budget burns right now (1.0 = exactly on budget); None without events."""
    if total <= 0:
        return None
    return (bad / total) / (1.0 - good_ratio)


# -- kinds -------------------------------------------------------------------------------------
def _latency(
    ctx: Context, target: dict[str, Any], objective: float, window: timedelta, now: datetime
) -> Measurement:
    since = now - window
    pct = float(target.get("percentile", 99))
    with ctx.db.session() as session:
        total, _, slow = q.request_counts(
            session, target["endpoint"], since=since, until=now, slower_than=objective
        )
        value = q.latency_percentile(
            session, target["endpoint"], since=since, until=now, pct=pct, count=total
        )
    return Measurement(value, total, slow, {"requests": total, "slow_requests": slow, "percentile": pct})


def _error_rate(
    ctx: Context, target: dict[str, Any], objective: float, window: timedelta, now: datetime
) -> Measurement:
    with ctx.db.session() as session:
        total, errors, _ = q.request_counts(session, target["endpoint"], since=now - window, until=now)
    value = errors / total if total else None
    return Measurement(value, total, errors, {"requests": total, "errors": errors})


def _queue_age(
    ctx: Context, target: dict[str, Any], objective: float, window: timedelta, now: datetime
) -> Measurement:
    if "queue" in target:
        with ctx.db.session() as session:
            since = jq.oldest_waiting_since(session, target["queue"], jq.QUEUED, now)
        age = 0.0 if since is None else max(0.0, (now - since).total_seconds())
        return Measurement(age, data={"queue": target["queue"], "empty": since is None})
    kind, status = target["async_kind"], target.get("status", ASYNC_STATUS)
    with ctx.db.session() as session:
        since = aq.oldest_created(session, kind, status)
    age = 0.0 if since is None else max(0.0, (now - since).total_seconds())
    return Measurement(age, data={"async_kind": kind, "status": status, "empty": since is None})


def _freshness(
    ctx: Context, target: dict[str, Any], objective: float, window: timedelta, now: datetime
) -> Measurement:
    if "feature_view" in target:
        view = target["feature_view"]
        with ctx.db.session() as session:
            exists, at = q.last_materialised_at(session, view)
            known = [] if exists else q.feature_view_names(session)
        if not exists:
            raise NotFoundError(
                f"target.feature_view={view!r} does not exist." + did_you_mean(view, known),
                field="target.feature_view",
            )
        age = None if at is None else (now - at).total_seconds()
        return Measurement(age, data={"feature_view": view, "last_materialised_at": _iso(at)})
    from loopml.data import DatasetStore

    name = target["dataset"]
    store = DatasetStore(ctx)
    contract = store.contract(name)  # NotFoundError names the dataset
    if contract.freshness_column:
        fresh = store.freshness(name, now=now)
        return Measurement(
            fresh.age_seconds,
            data={
                "dataset": name,
                "column": fresh.column,
                "newest": _iso(fresh.newest),
                "version": fresh.version,
            },
        )
    try:
        latest = store.version(name)
    except NotFoundError:
        return Measurement(None, data={"dataset": name, "version": None})
    age = (now - latest.created_at).total_seconds()
    return Measurement(
        age, data={"dataset": name, "version": latest.number, "newest": latest.created_at.isoformat()}
    )


def _schedule(
    ctx: Context, target: dict[str, Any], objective: float, window: timedelta, now: datetime
) -> Measurement:
    from croniter import croniter

    pipeline = target["pipeline"]
    grace = timedelta(seconds=float(target.get("grace_seconds", DEFAULT_GRACE_SECONDS)))
    with ctx.db.session() as session:
        schedule = q.get_schedule(session, pipeline)
        known = [] if schedule else q.schedule_names(session)
    if schedule is None:
        raise NotFoundError(
            f"target.pipeline={pipeline!r} has no schedule (a schedule row appears once `loopml up` or the "
            "scheduler has seen the pipeline's cron)." + did_you_mean(pipeline, known),
            field="target.pipeline",
        )
    cron, enabled = schedule
    if not enabled:
        return Measurement(0.0, data={"pipeline": pipeline, "cron": cron, "paused": True, "ticks": 0})
    # Ticks due in the window whose grace has passed: each needs a run started in [tick, tick + grace].
    start, deadline = now - window, now - grace
    ticks: list[datetime] = []
    it = croniter(cron, start - timedelta(microseconds=1))
    while len(ticks) < MAX_TICKS:
        tick = it.get_next(datetime)
        if tick > deadline:
            break
        ticks.append(tick)
    starts: list[datetime] = []
    if ticks:
        with ctx.db.session() as session:
            starts = q.run_starts(session, pipeline, since=ticks[0], until=ticks[-1] + grace)
    missed = [t for t in ticks if not any(t <= s <= t + grace for s in starts)]
    return Measurement(
        float(len(missed)),
        data={
            "pipeline": pipeline,
            "cron": cron,
            "ticks": len(ticks),
            "missed": [t.isoformat() for t in missed[:20]],
            "grace_seconds": grace.total_seconds(),
        },
    )


def _iso(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return (value if value.tzinfo else value.replace(tzinfo=UTC)).isoformat()
    return str(value)


_MEASURES = {
    "latency": _latency,
    "error_rate": _error_rate,
    "queue_age": _queue_age,
    "freshness": _freshness,
    "schedule": _schedule,
}
#: Kinds whose budget counts requests; the others count evaluations.
REQUEST_KINDS = ("latency", "error_rate")
KINDS = tuple(_MEASURES)
