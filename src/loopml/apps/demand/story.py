"""The demand story: several weekly Tuesday runs of ``demand.weekly``, told with their figures.

Each week the simulator's warehouse delivers the days since the last run, the pipeline trains and
gates a candidate, publishes the coming week's forecasts and staff plans, and scores the weeks whose
actuals have landed. After a few weeks there is enough evidence for the numbers a chain asks for:
forecast error against the seasonal-naive baseline, staffing cost saved in KRW, and the store A/B
verdict. One week has a failure injected into a step to show the retry that keeps the plan on time.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

import loopml
from loopml.apps.demand import pipeline as weekly
from loopml.apps.demand.config import DemandConfig
from loopml.errors import LoopmlError, ValidationError

#: The step the demo breaks on purpose (in its second week), to show the retry.
DEMO_FAILURE = "forecast"
#: Progress callback: (description, steps done, steps in total).
Progress = Callable[[str, int, int], None]


@dataclass
class WeekRun:
    """One Tuesday run: what it planned and how it went."""

    run_date: str
    week: str
    run_id: str
    status: str
    seconds: float
    champion: int | None = None
    challenger: int | None = None
    events: list[str] = field(default_factory=list)
    evaluated: list[str] = field(default_factory=list)
    injected: str = ""
    retried_steps: list[str] = field(default_factory=list)


@dataclass
class DemandStoryResult:
    """The figures of the demo, for the CLI table and for tests."""

    config: dict[str, Any]
    weeks: list[WeekRun] = field(default_factory=list)
    #: backtest WAPE per model and grain, e.g. {"seasonal_naive": {"day": 0.21, "hour": 0.3}, "lightgbm": ...}
    backtest_wape: dict[str, dict[str, float | None]] = field(default_factory=dict)
    backtest_improvement: float | None = None
    #: evaluation.summary() over every evaluated week (WAPE used vs naive, KRW saved)
    evaluation: dict[str, Any] = field(default_factory=dict)
    evaluated_weeks: list[str] = field(default_factory=list)
    ab: dict[str, Any] | None = None
    failure_survived: bool = False
    failure_step: str = ""
    deadline: dict[str, Any] = field(default_factory=dict)
    champion: int | None = None
    seconds: float = 0.0

    @property
    def week_seconds(self) -> list[float]:
        return [w.seconds for w in self.weeks]


def demo_config(fast: bool = False) -> DemandConfig:
    """The demo's chain: tiny for ``--fast``; otherwise 60 stores x 3 years hourly with the defaults.

    300 stores is the benchmark size (``docs/benchmarks.md``); the demo uses fewer stores so that its
    seven weekly cycles, each retraining and backtesting (8 origins on the first run), fit in a few
    minutes on 2 cores.
    """
    if fast:
        return DemandConfig.small(
            stores=6, backtest_weeks=2, lgb_params={"n_estimators": 60, "num_leaves": 15, "n_jobs": 1}
        )
    return DemandConfig(stores=60)


def demo_weeks(fast: bool = False) -> int:
    """Weekly runs in the demo: enough for a challenger's A/B to collect ``ab_min_weeks`` evaluated weeks."""
    return 4 if fast else 7


def default_first_run_date(cfg: DemandConfig) -> pd.Timestamp:
    """The first Tuesday on or after the end of the simulated history (``start + years``)."""
    end = cfg.end_ts
    return end + pd.Timedelta(days=(1 - end.weekday()) % 7)


def run_weeks(
    lm: loopml.Loopml,
    cfg: DemandConfig,
    *,
    weeks: int = 6,
    first_run_date: Any = None,
    say: Callable[[str], None] = print,
    progress: Progress | None = None,
    inject_failure: str = DEMO_FAILURE,
) -> DemandStoryResult:
    """Run ``demand.weekly`` for ``weeks`` consecutive Tuesdays (trigger manual) and collect the figures.

    ``inject_failure`` names the step that fails once in the second week (``""`` for none). Raises
    ``LoopmlError`` naming the run when a week fails for real, since later weeks depend on it.
    """
    if not isinstance(cfg, DemandConfig):
        raise ValidationError(f"cfg must be a DemandConfig, got {type(cfg).__name__}", field="cfg")
    if isinstance(weeks, bool) or not isinstance(weeks, int) or not 1 <= weeks <= 104:
        raise ValidationError(
            f"weeks={weeks!r}: give a whole number of weeks between 1 and 104", field="weeks"
        )
    if inject_failure and inject_failure not in weekly.STEPS:
        raise ValidationError(
            f"inject_failure={inject_failure!r} is not a step; use one of {', '.join(weekly.STEPS)}",
            field="inject_failure",
        )
    first = weekly.parse_run_date(
        first_run_date if first_run_date is not None else default_first_run_date(cfg)
    )
    started = time.perf_counter()
    out = DemandStoryResult(config=cfg.to_dict())
    total_steps = weeks * len(weekly.STEPS)
    for index in range(weeks):
        run_date = first + pd.Timedelta(days=7 * index)
        injected = inject_failure if index == 1 else ""
        week = _run_one(lm, cfg, run_date, injected, index, total_steps, progress)
        out.weeks.append(week)
        _tell_week(week, say)
    last = out.weeks[-1]
    backtest = lm.pipelines.output(last.run_id, "backtest")
    for key, scores in backtest["scores"].items():
        model, _, grain = key.partition("@")
        out.backtest_wape.setdefault(model, {})[grain] = scores.get("wape")
    out.backtest_improvement = backtest.get("improvement")
    evaluated = lm.pipelines.output(last.run_id, "evaluate")
    out.evaluation = evaluated.get("summary") or {}
    out.ab = evaluated.get("ab")
    out.evaluated_weeks = [w for run in out.weeks for w in run.evaluated]
    release = lm.pipelines.output(last.run_id, "release")
    out.champion = release["champion"]
    failed = [w for w in out.weeks if w.injected]
    out.failure_step = failed[0].injected if failed else ""
    out.failure_survived = bool(failed) and all(
        w.status == "succeeded" and w.injected in w.retried_steps for w in failed
    )
    # The deadline watch right after the last run: the coming week is published, so nothing is open.
    deadline_at = (pd.Timestamp(last.week) - pd.Timedelta(days=4)).replace(hour=18, minute=30)
    out.deadline = weekly.check_deadline(lm, now=deadline_at.to_pydatetime(), config=cfg)
    out.seconds = time.perf_counter() - started
    return out


def _run_one(
    lm: loopml.Loopml,
    cfg: DemandConfig,
    run_date: pd.Timestamp,
    injected: str,
    index: int,
    total_steps: int,
    progress: Progress | None,
) -> WeekRun:
    params = weekly.weekly_params(run_date, cfg, inject_failure=injected)
    done: set[str] = set()
    base = index * len(weekly.STEPS)

    def on_step(state: Any) -> None:
        if progress is None:
            return
        if state.status in ("succeeded", "skipped", "failed", "upstream_failed"):
            done.add(state.step)
        label = f"run {run_date.date()}: {state.step} {state.status}"
        progress(label, base + len(done), total_steps)

    t0 = time.perf_counter()
    run = lm.pipelines.run(weekly.WEEKLY, params, trigger="manual", on_step=on_step)
    seconds = time.perf_counter() - t0
    if run.status != "succeeded":
        failed = [s for s in run.steps if s.status == "failed"]
        detail = failed[0].error.strip().splitlines()[-1] if failed and failed[0].error else run.error
        raise LoopmlError(
            f"the weekly run of {run_date.date()} failed (run {run.id}): {detail}. "
            f"See `loopml pipelines show {run.id} --logs`."
        )
    release = lm.pipelines.output(run.id, "release")
    evaluated = lm.pipelines.output(run.id, "evaluate")
    return WeekRun(
        run_date=run_date.date().isoformat(),
        week=weekly.week_id(weekly.shift_week(run_date)),
        run_id=run.id,
        status=run.status,
        seconds=seconds,
        champion=release["champion"],
        challenger=release.get("challenger"),
        events=list(release.get("events") or []),
        evaluated=list(evaluated.get("evaluated") or []),
        injected=injected,
        retried_steps=[s.step for s in run.steps if (s.attempts or 0) > 1],
    )


def _tell_week(week: WeekRun, say: Callable[[str], None]) -> None:
    arms = f"champion demand/{week.champion}" + (
        f", challenger demand/{week.challenger}" if week.challenger else ""
    )
    say(f"run {week.run_date} -> week {week.week}: {arms} ({week.seconds:.1f} s, run {week.run_id[:8]})")
    for line in week.events:
        say(f"    {line}")
    if week.evaluated:
        say(f"    evaluated week(s) {', '.join(week.evaluated)} (actuals landed)")
    if week.injected:
        outcome = "retried and succeeded" if week.injected in week.retried_steps else "did not fail?"
        say(f"    injected failure in step {week.injected!r}: {outcome}")
