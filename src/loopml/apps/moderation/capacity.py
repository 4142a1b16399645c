"""How many screening workers to run, and what they cost: the moderation autoscaler and cost model.

Why this shape: the seeds give an SLO (notified within 1 hour), a load (2x peak for 2 hours) and a
budget (about 1.5 M KRW a month, so CPU, not GPU). The autoscaler turns the two signals an operator
can actually see - queue depth and the recent arrival rate - plus the *measured* throughput of one
worker into a worker count, by Little's law:

    workers = ceil( arrival_rate / (throughput * utilisation)  +  backlog / (throughput * target_wait) )

The first term serves the arrivals with headroom (at 100 % utilisation a queue never drains); the
second drains what is already waiting within ``target_wait_seconds``. The count is then capped by
``max_workers`` and by the budget (the workers the remaining budget can pay for until the month
ends). Scaling up is immediate (the SLO is at stake); scaling down waits until fewer workers have
been enough for ``scale_down_after_seconds`` and then drops ``step_down`` at a time, so a queue
that empties for a minute between bursts does not make the pool flap.

Pure: no clock, no database. The caller passes ``now`` and the signals, so the benchmark can drive
it through a simulated week and a worker manager through real time alike.

Price (an assumption to re-check against the current price list): AWS EC2 ``c6i.large``
(2 vCPU, on-demand, Seoul ap-northeast-2) about USD 0.096 an hour = USD 0.048 per vCPU-hour; at
~1,400 KRW/USD that is ~67 KRW, rounded up to **70 KRW per vCPU-hour** for disk and traffic. One
worker process uses one vCPU (the screening models are single-threaded per image).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from loopml.checks import check_number
from loopml.errors import ValidationError

#: Hours in an average month (365 * 24 / 12).
HOURS_PER_MONTH = 730.0
#: KRW per vCPU-hour (see the module docstring for the source).
KRW_PER_CORE_HOUR = 70.0
#: The issue's monthly budget.
BUDGET_KRW_PER_MONTH = 1_500_000.0


@dataclass(frozen=True)
class Decision:
    """One autoscaler answer: ``workers`` to run now, ``needed`` by Little's law before caps and
    hysteresis, ``capped_by`` (``max_workers``/``budget``/None) and a human-readable ``reason``."""

    workers: int
    needed: int
    capped_by: str | None
    reason: str


class Autoscaler:
    """Worker count from queue depth and measured throughput (see the module docstring)."""

    def __init__(
        self,
        min_workers: int = 1,
        max_workers: int = 16,
        target_wait_seconds: float = 900.0,
        images_per_second_per_worker: float = 4.0,
        budget_krw_per_month: float = BUDGET_KRW_PER_MONTH,
        krw_per_core_hour: float = KRW_PER_CORE_HOUR,
        *,
        cores_per_worker: float = 1.0,
        utilisation: float = 0.8,
        scale_down_after_seconds: float = 600.0,
        step_down: int = 1,
    ) -> None:
        check_number(min_workers, "min_workers", low=0, high=10_000, integer=True)
        check_number(max_workers, "max_workers", low=1, high=10_000, integer=True)
        if max_workers < min_workers:
            raise ValidationError(
                f"max_workers ({max_workers}) is below min_workers ({min_workers}); raise max_workers",
                field="max_workers",
            )
        check_number(target_wait_seconds, "target_wait_seconds", low=1, high=86_400)
        check_number(
            images_per_second_per_worker,
            "images_per_second_per_worker",
            low=0,
            low_open=True,
            hint="measure it with `loopml bench moderation`",
        )
        check_number(budget_krw_per_month, "budget_krw_per_month", low=0, low_open=True)
        check_number(krw_per_core_hour, "krw_per_core_hour", low=0, low_open=True)
        check_number(cores_per_worker, "cores_per_worker", low=0, low_open=True, high=256)
        check_number(utilisation, "utilisation", low=0.05, high=1.0)
        check_number(scale_down_after_seconds, "scale_down_after_seconds", low=0, high=86_400)
        check_number(step_down, "step_down", low=1, high=10_000, integer=True)
        self.min_workers = int(min_workers)
        self.max_workers = int(max_workers)
        self.target_wait_seconds = float(target_wait_seconds)
        self.throughput = float(images_per_second_per_worker)
        self.budget = float(budget_krw_per_month)
        self.krw_per_core_hour = float(krw_per_core_hour)
        self.cores_per_worker = float(cores_per_worker)
        self.utilisation = float(utilisation)
        self.scale_down_after = float(scale_down_after_seconds)
        self.step_down = int(step_down)
        floor_cost = self.cost(self.min_workers * HOURS_PER_MONTH)
        if floor_cost > self.budget:
            raise ValidationError(
                f"min_workers={self.min_workers} alone cost {floor_cost:,.0f} KRW a month, over the "
                f"{self.budget:,.0f} KRW budget; lower min_workers or raise the budget",
                field="min_workers",
            )
        self._low_since: float | None = None

    # ------------------------------------------------------------------ cost
    @property
    def krw_per_worker_hour(self) -> float:
        return self.krw_per_core_hour * self.cores_per_worker

    def cost(self, worker_hours: float) -> float:
        """KRW for ``worker_hours`` of workers (vCPU-hours x price)."""
        check_number(worker_hours, "worker_hours", low=0)
        return float(worker_hours) * self.krw_per_worker_hour

    def monthly_cost(self, worker_hours_per_week: float) -> float:
        """KRW a month when every week needs ``worker_hours_per_week`` (730 h / 168 h weeks a month)."""
        check_number(worker_hours_per_week, "worker_hours_per_week", low=0)
        return self.cost(worker_hours_per_week * HOURS_PER_MONTH / 168.0)

    def budget_workers(self, spent_krw: float = 0.0, hours_left: float = HOURS_PER_MONTH) -> int:
        """Workers the rest of the budget pays for if they ran until the month ends (never below
        ``min_workers``: the service must keep screening)."""
        check_number(spent_krw, "spent_krw", low=0)
        check_number(hours_left, "hours_left", low=0, low_open=True, high=HOURS_PER_MONTH)
        left = max(0.0, self.budget - float(spent_krw))
        return max(self.min_workers, math.floor(left / (self.krw_per_worker_hour * float(hours_left))))

    # ------------------------------------------------------------------ scaling
    def needed(self, queue_depth: float, arrival_rate: float) -> int:
        """Little's law, before caps and hysteresis (see the module docstring)."""
        check_number(queue_depth, "queue_depth", low=0)
        check_number(arrival_rate, "arrival_rate", low=0)
        serve = float(arrival_rate) / (self.throughput * self.utilisation)
        drain = float(queue_depth) / (self.throughput * self.target_wait_seconds)
        return math.ceil(serve + drain - 1e-9)

    def decide(
        self,
        *,
        current: int,
        queue_depth: float,
        arrival_rate: float,
        now: float,
        spent_krw: float = 0.0,
        hours_left: float = HOURS_PER_MONTH,
    ) -> Decision:
        """The worker count to run from ``now`` (seconds, any monotonic clock) on.

        ``current`` is the number running; ``queue_depth`` the jobs waiting; ``arrival_rate`` the
        uploads per second over the last few minutes; ``spent_krw``/``hours_left`` the month so far.
        """
        check_number(current, "current", low=0, high=100_000, integer=True)
        check_number(now, "now")
        raw = self.needed(queue_depth, arrival_rate)
        target, capped = max(raw, self.min_workers), None
        budget_cap = self.budget_workers(spent_krw, hours_left)
        if target > self.max_workers:
            target, capped = self.max_workers, "max_workers"
        if target > budget_cap:
            target, capped = budget_cap, "budget"
        if target >= current:
            self._low_since = None
            why = "scale up" if target > current else "hold"
            return Decision(target, raw, capped, self._reason(why, raw, queue_depth, arrival_rate))
        # fewer would do: only after it stayed so for scale_down_after seconds, one step at a time
        if self._low_since is None:
            self._low_since = float(now)
        if float(now) - self._low_since < self.scale_down_after:
            waited = float(now) - self._low_since
            return Decision(
                current,
                raw,
                capped,
                f"hold: {target} would do, waiting {self.scale_down_after - waited:.0f} s more before scaling down",
            )
        self._low_since = float(now)  # the next step waits a full period again
        workers = max(target, current - self.step_down)
        return Decision(workers, raw, capped, self._reason("scale down", raw, queue_depth, arrival_rate))

    def _reason(self, what: str, raw: int, depth: float, rate: float) -> str:
        return (
            f"{what}: {rate:.2f} uploads/s and {depth:.0f} waiting need {raw} worker(s) at "
            f"{self.throughput:.2f} images/s each (utilisation {self.utilisation:.0%}, drain within "
            f"{self.target_wait_seconds:.0f} s)"
        )


@dataclass
class Replay:
    """What a simulated replay measured (times in simulated seconds)."""

    waits: list[float]
    arrivals: list[float]
    workers: list[tuple[float, int]]
    worker_hours: float
    decisions: int

    def share_over(self, seconds: float, start: float = 0.0, end: float = float("inf")) -> float:
        """Share of the jobs arriving in ``[start, end)`` that waited longer than ``seconds``."""
        import numpy as np

        arr, wait = np.asarray(self.arrivals), np.asarray(self.waits)
        mask = (arr >= start) & (arr < end)
        return float((wait[mask] > seconds).mean()) if mask.any() else 0.0

    def max_workers(self) -> int:
        return max(n for _, n in self.workers)


def replay(
    arrivals: Sequence[float],
    service_seconds: Sequence[float],
    scaler: Autoscaler,
    *,
    tick_seconds: float = 60.0,
    startup_seconds: float = 90.0,
    rate_window_seconds: float = 300.0,
    initial_workers: int | None = None,
    seed: int = 0,
) -> Replay:
    """Discrete-event replay of a FIFO queue served by an autoscaled worker pool.

    Every ``tick_seconds`` the scaler sees the queue depth and the arrival rate of the last
    ``rate_window_seconds`` (what a real controller can observe) and sets the pool size; a new worker
    serves after ``startup_seconds`` (boot + model load), a removed one finishes its job first. Each
    job's service time is drawn (with replacement, seeded) from ``service_seconds``: the measured
    distribution. Billing counts every worker in the pool, starting ones included.
    """
    import heapq

    import numpy as np

    arr = np.sort(np.asarray(arrivals, dtype=float))
    service = np.asarray(service_seconds, dtype=float)
    if service.size == 0 or (service <= 0).any():
        raise ValidationError("service_seconds needs positive measured durations", field="service_seconds")
    check_number(tick_seconds, "tick_seconds", low=0, low_open=True)
    check_number(startup_seconds, "startup_seconds", low=0)
    draws = np.random.default_rng(seed).choice(service, size=arr.size, replace=True)
    workers = scaler.min_workers if initial_workers is None else int(initial_workers)
    free = [0.0] * workers  # heap of the times each pool worker is next free
    heapq.heapify(free)
    waits = np.zeros(arr.size)
    nxt = 0  # the next job to start (FIFO: jobs start in arrival order)
    timeline: list[tuple[float, int]] = [(0.0, workers)]
    worker_seconds = 0.0
    end = float(arr[-1]) if arr.size else 0.0
    t, decisions = 0.0, 0
    while nxt < arr.size or t <= end:
        t1 = t + tick_seconds
        while nxt < arr.size and free:
            start = max(free[0], arr[nxt])
            if start >= t1:
                break
            heapq.heapreplace(free, start + draws[nxt])
            waits[nxt] = start - arr[nxt]
            nxt += 1
        worker_seconds += len(free) * tick_seconds
        t = t1
        arrived = int(np.searchsorted(arr, t, side="right"))
        recent = arrived - int(np.searchsorted(arr, t - rate_window_seconds, side="right"))
        decision = scaler.decide(
            current=len(free),
            queue_depth=float(arrived - nxt),
            arrival_rate=recent / rate_window_seconds,
            now=t,
        )
        decisions += 1
        if decision.workers > len(free):
            for _ in range(decision.workers - len(free)):
                heapq.heappush(free, t + startup_seconds)
        elif decision.workers < len(free):
            for _ in range(len(free) - decision.workers):  # the soonest free leave; busy ones finish first
                heapq.heappop(free)
        if decision.workers != timeline[-1][1]:
            timeline.append((t, decision.workers))
        if nxt >= arr.size and t > end:
            break
    return Replay(waits.tolist(), arr.tolist(), timeline, worker_seconds / 3600.0, decisions)
