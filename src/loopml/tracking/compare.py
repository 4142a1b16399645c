"""Comparing runs: which params differ, and each metric's final and best value side by side.

"Best" needs a direction. Unless the caller says (``goals={"auc": "max"}``), it is inferred from
the key: names that measure an error or a cost (loss, error, rmse, mae, latency ...) are minimised,
everything else (accuracy, auc, f1, recall ...) is maximised.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

from loopml.errors import ValidationError
from loopml.tracking.models import MetricComparison, Run, RunComparison

_MINIMISE = re.compile(
    r"(loss|err|error|rmse|mse|mae|mape|smape|logloss|perplexity|latency|duration|time|seconds|ms|cost|"
    r"brier|wer|cer|fpr|fnr|fp|fn|regret|psi|drift)",
    re.IGNORECASE,
)
GOALS = ("min", "max")


def infer_goal(key: str) -> str:
    """``min`` for error/cost-like metric names, ``max`` otherwise."""
    tokens = re.split(r"[^A-Za-z0-9]+|(?<=[a-z])(?=[A-Z])", key)
    return "min" if any(_MINIMISE.fullmatch(tok) for tok in tokens if tok) else "max"


def check_goals(goals: Mapping[str, Any] | None) -> dict[str, str]:
    out: dict[str, str] = {}
    for key, goal in (goals or {}).items():
        if goal not in GOALS:
            raise ValidationError(f"goals[{key!r}] = {goal!r}; use 'min' or 'max'.")
        out[key] = goal
    return out


def compare_runs(
    runs: Sequence[Run], best: Mapping[str, Mapping[str, float | None]], goals: Mapping[str, str]
) -> RunComparison:
    """Build the comparison from loaded runs and, per run and key, the best value under its goal."""
    ids = tuple(r.id for r in runs)
    all_keys = sorted({k for r in runs for k in r.params})
    differ: dict[str, tuple[str | None, ...]] = {}
    same: dict[str, str] = {}
    for key in all_keys:
        values = tuple(r.params.get(key) for r in runs)
        if len(set(values)) == 1 and values[0] is not None:
            same[key] = values[0]
        else:
            differ[key] = values
    metric_keys = sorted({k for r in runs for k in r.metrics})
    metrics = []
    for key in metric_keys:
        goal = goals.get(key) or infer_goal(key)
        final = tuple(_final(r, key) for r in runs)
        bests = tuple(best.get(r.id, {}).get(key) for r in runs)
        metrics.append(
            MetricComparison(key=key, goal=goal, final=final, best=bests, best_run=_winner(ids, bests, goal))
        )
    return RunComparison(
        run_ids=ids,
        names=tuple(r.name for r in runs),
        params_differ=differ,
        params_same=same,
        metrics=tuple(metrics),
    )


def _final(run: Run, key: str) -> float | None:
    summary = run.metrics.get(key)
    return None if summary is None else summary.last


def _winner(ids: Sequence[str], values: Sequence[float | None], goal: str) -> str | None:
    scored = [(v, rid) for rid, v in zip(ids, values, strict=True) if v is not None and not math.isnan(v)]
    if not scored:
        return None
    pick = min if goal == "min" else max
    return pick(scored, key=lambda pair: pair[0])[1]
