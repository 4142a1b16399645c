"""When a shift week's actual visits land: how wrong was each forecast, and what did it cost in KRW?

``evaluate_week`` scores every model that forecast the week (the champion, the challenger shadowing it,
the seasonal-naive baseline) per store, at the grain of the data (hourly when hourly actuals exist),
and prices three staff plans against the actuals with the cost model of ``staffing``: the plan each
model implies (for the model a store actually used: the published plan), the naive "fixed" plan and
the seasonal-naive plan. ``summary`` rolls the table up into the figures a finance or operations
manager asks for: error of the used forecasts vs the naive one, and money saved.

Naive plans are rebuilt from the history as it was known at run time (data up to the Sunday 8 days
before the shift week), so handing in a history that already contains the week cannot leak.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from loopml.apps.demand.abtest import CHALLENGER, CHAMPION, DEFAULT_SALT, abs_errors, pooled_wape, used_mask
from loopml.apps.demand.config import DemandConfig
from loopml.apps.demand.staffing import (
    check_amounts,
    check_frame,
    check_ids,
    check_times,
    fixed_plan,
    normalise_grain,
    plan_staff,
    seasonal_naive_forecast,
    staffing_cost,
)
from loopml.errors import ValidationError

BASELINE = "baseline"
SNAIVE_MODEL = "seasonal_naive"
#: The published ``demand_evaluation`` columns (contracts.EVALUATION) plus ``used``: true on the row of
#: the model whose forecast the store's A/B arm published.
EVALUATION_COLUMNS = [
    "store_id",
    "week",
    "arm",
    "model",
    "model_version",
    "mae",
    "rmse",
    "wape",
    "actual",
    "forecast",
    "staff_hours_planned",
    "staff_hours_needed",
    "over_hours",
    "under_hours",
    "cost_over",
    "cost_under",
    "cost_total",
    "naive_fixed_cost",
    "naive_snaive_cost",
    "used",
]
_PERIOD = {"hour": pd.Timedelta(hours=1), "day": pd.Timedelta(days=1), "week": pd.Timedelta(days=7)}


def parse_week(week: Any) -> pd.Timestamp:
    """A week id ("2026-12-07", a date or Timestamp) -> that Monday at 00:00; anything else is refused."""
    try:
        ts = pd.Timestamp(week)
    except (TypeError, ValueError):
        ts = pd.NaT
    if isinstance(week, bool) or pd.isna(ts):
        raise ValidationError(
            f"week must be the ISO date of a Monday like '2026-12-07', got {week!r}", field="week"
        )
    if ts.tzinfo is not None:
        ts = ts.tz_localize(None)
    if ts != ts.normalize() or ts.weekday() != 0:
        raise ValidationError(
            f"week {week!r} is not a Monday at 00:00; shift weeks start on Monday (e.g. "
            f"{(ts.normalize() - pd.Timedelta(days=ts.weekday())).date().isoformat()})",
            field="week",
        )
    return ts


def _period_end(ts: pd.Series, grain: str) -> pd.Series:
    if grain == "month":
        return ts + pd.offsets.MonthBegin(1)
    return ts + _PERIOD[grain]


def _infer_grain(actuals: pd.Series) -> str:
    return "hour" if bool((actuals != actuals.dt.normalize()).any()) else "day"


def _week_forecasts(forecasts: pd.DataFrame, start: pd.Timestamp, grain: str) -> pd.DataFrame:
    """The week's forecast rows at the data grain, typed and with roles and used flags."""
    check_frame(forecasts, "forecasts", ["store_id", "ts", "forecast", "model", "model_version", "arm"])
    forecasts = forecasts.reset_index(drop=True)
    fc = pd.DataFrame(
        {
            "store_id": check_ids(forecasts, "forecasts"),
            "ts": check_times(forecasts, "forecasts"),
            "forecast": check_amounts(forecasts, "forecasts", "forecast"),
            "model": forecasts["model"].astype(str),
            "model_version": forecasts["model_version"],
            "arm": forecasts["arm"].astype(str),
        }
    )
    if fc.model_version.isna().any() or not pd.api.types.is_numeric_dtype(fc.model_version):
        raise ValidationError(
            "forecasts.model_version must be integers (0 for baselines)", field="model_version"
        )
    fc["model_version"] = fc.model_version.astype("int64")
    unknown = sorted(set(fc.arm) - {CHAMPION, CHALLENGER, BASELINE})
    if unknown:
        raise ValidationError(
            f"forecasts.arm has unknown value(s) {unknown}; use champion, challenger or baseline", field="arm"
        )
    if "used" in forecasts.columns:
        if forecasts["used"].isna().any():
            raise ValidationError("forecasts.used has missing values; it must be true/false", field="used")
        fc["used"] = forecasts["used"].astype(bool).to_numpy()
    if "week" in forecasts.columns:
        weeks = check_times(forecasts, "forecasts", "week").dt.normalize()
        fc = fc[(weeks == start).to_numpy()]
    else:
        fc = fc[(fc.ts >= start) & (fc.ts < start + pd.Timedelta(days=7))]
    if "grain" in forecasts.columns:
        names = forecasts.loc[fc.index, "grain"].astype(str)
        fc = fc[names.map({g: normalise_grain(g) for g in names.unique()}).to_numpy() == grain]
    if fc.empty:
        raise ValidationError(
            f"forecasts has no {grain}-grain rows for week {start.date().isoformat()}; evaluate the week that "
            "was forecast, at the grain of the actuals",
            field="forecasts",
        )
    dup = fc.duplicated(["store_id", "ts", "arm", "model"])
    if dup.any():
        raise ValidationError(
            f"forecasts has {int(dup.sum())} duplicate store/ts/arm/model row(s); keep one forecast per period",
            field="forecasts",
        )
    return fc.reset_index(drop=True)


def _store_arms(fc: pd.DataFrame, staffing: pd.DataFrame) -> pd.Series:
    """Each store's A/B arm: the arm of its published staffing plan, else of its ``used`` forecast."""
    arms = (
        staffing.groupby("store_id")["arm"].agg(lambda s: s.iloc[-1])
        if len(staffing)
        else pd.Series(dtype=object)
    )
    if "used" in fc.columns:
        from_fc = fc[fc.used].groupby("store_id")["arm"].agg(lambda s: s.iloc[-1])
        arms = arms.combine_first(from_fc)
    return arms


def _metrics(fc: pd.DataFrame, actual: pd.DataFrame) -> pd.DataFrame:
    """Per model and store: MAE, RMSE, WAPE, sums, over the periods that have both forecast and actual."""
    joined = fc.merge(actual, on=["store_id", "ts"], how="inner")
    err = joined.forecast - joined.visitors
    joined = joined.assign(abs_err=err.abs(), sq_err=err**2)
    out = joined.groupby(["arm", "model", "model_version", "store_id"], as_index=False).agg(
        n=("ts", "size"),
        abs_error=("abs_err", "sum"),
        sq_error=("sq_err", "sum"),
        actual=("visitors", "sum"),
        forecast=("forecast", "sum"),
    )
    out["mae"] = out.abs_error / out.n
    out["rmse"] = np.sqrt(out.sq_error / out.n)
    out["wape"] = np.where(out.actual > 0, out.abs_error / out.actual.where(out.actual > 0, 1.0), np.nan)
    return out


def evaluate_week(
    forecasts: pd.DataFrame,
    staffing: pd.DataFrame,
    actuals: pd.DataFrame,
    history: pd.DataFrame,
    cfg: DemandConfig,
    *,
    week: Any,
    stores: pd.DataFrame | None = None,
    grain: str | None = None,
) -> pd.DataFrame:
    """One row per store x model that forecast ``week``: errors, staff-hours and costs (EVALUATION schema).

    ``forecasts``: the week's ``demand_forecasts`` rows (``arm`` = role of the model; ``used`` optional);
    ``staffing``: the published ``demand_staffing`` plan; ``actuals``: visits of the week
    (``store_id, ts, visitors``); ``history``: visits known before the run; ``grain``: the grain of the
    visits (inferred hour/day when None; weekly/monthly data must say so and pass ``stores``).
    Seasonal-naive rows are added when the forecasts hold no baseline.
    """
    start = parse_week(week)
    check_frame(actuals, "actuals", ["store_id", "ts", "visitors"])
    check_frame(history, "history", ["store_id", "ts", "visitors"])
    check_frame(staffing, "staffing", ["store_id", "ts", "staff", "arm"], allow_empty=True)
    act = pd.DataFrame(
        {
            "store_id": check_ids(actuals, "actuals"),
            "ts": check_times(actuals, "actuals"),
            "visitors": check_amounts(actuals, "actuals", "visitors"),
        }
    )
    grain = normalise_grain(grain) if grain is not None else _infer_grain(act.ts)
    fc = _week_forecasts(forecasts, start, grain)

    # Only the periods the forecasts cover are scored; actual duplicates (re-deliveries) count once.
    span_start, span_end = fc.ts.min(), _period_end(fc.ts, grain).max()
    act = act[(act.ts >= span_start) & (act.ts < span_end)].drop_duplicates(["store_id", "ts"], keep="last")
    act = act[act.store_id.isin(fc.store_id.unique())]
    if act.empty:
        raise ValidationError(
            f"actuals has no rows for the stores and periods of week {start.date().isoformat()}; evaluate the "
            "week once its visits have landed",
            field="actuals",
        )
    known = history[check_times(history, "history") < start - pd.Timedelta(days=7)]
    if known.empty:
        raise ValidationError(
            "history has no visits before the run of this week; the naive plans need at least two weeks of "
            "earlier visits",
            field="history",
        )

    stf = staffing.copy()
    if len(stf):
        stf["store_id"] = check_ids(stf, "staffing")
        stf["ts"] = check_times(stf, "staffing")
        stf["arm"] = stf["arm"].astype(str)
    arms = _store_arms(fc, stf)
    if "used" not in fc.columns:
        fc["used"] = fc.arm.to_numpy() == fc.store_id.map(arms).to_numpy()

    targets = fc[["store_id", "ts"]].drop_duplicates().sort_values(["store_id", "ts"])
    snaive = seasonal_naive_forecast(known, targets, grain=grain)
    if not (fc.arm == BASELINE).any():
        fc = pd.concat(
            [
                fc,
                snaive.assign(model=SNAIVE_MODEL, model_version=0, arm=BASELINE, used=False),
            ],
            ignore_index=True,
        )
    metrics = _metrics(fc, act)

    def cost(plan: pd.DataFrame) -> pd.DataFrame:
        scored = act[act.store_id.isin(plan.store_id.unique())]
        return staffing_cost(plan, scored, cfg, grain=grain, stores=stores)

    base = fc[fc.arm == BASELINE]
    base = base[base.model == (SNAIVE_MODEL if (base.model == SNAIVE_MODEL).any() else base.model.iloc[0])]
    snaive_plan = plan_staff(base, cfg, grain=grain, stores=stores)
    fixed_cost = cost(fixed_plan(known, targets, cfg, grain=grain, stores=stores))
    snaive_cost = cost(snaive_plan)

    cost_frames = []
    for (arm, model, version), rows in fc.groupby(["arm", "model", "model_version"], sort=False):
        plan = plan_staff(rows, cfg, grain=grain, stores=stores)
        used_stores = rows.loc[rows.used, "store_id"].unique()
        if len(stf) and len(used_stores):
            published = stf[stf.store_id.isin(used_stores)][["store_id", "ts", "staff"]]
            plan = pd.concat(
                [plan[~plan.store_id.isin(published.store_id.unique())], published], ignore_index=True
            )
        cost_frames.append(cost(plan).assign(arm=arm, model=model, model_version=version))
    costs = pd.concat(cost_frames, ignore_index=True)

    out = metrics.merge(costs, on=["arm", "model", "model_version", "store_id"], how="inner")
    naive = fixed_cost[["store_id", "cost_total"]].rename(columns={"cost_total": "naive_fixed_cost"})
    naive = naive.merge(
        snaive_cost[["store_id", "cost_total"]].rename(columns={"cost_total": "naive_snaive_cost"}),
        on="store_id",
        how="outer",
    )
    out = out.merge(naive, on="store_id", how="left")
    used = fc.groupby(["arm", "model", "store_id"])["used"].any().rename("used").reset_index()
    out = out.merge(used, on=["arm", "model", "store_id"], how="left")
    out["week"] = start
    for col in ("staff_hours_planned", "staff_hours_needed", "over_hours", "under_hours"):
        out[col] = out[col].astype("float64")
    out["used"] = out["used"].fillna(False).astype(bool)
    out = out.sort_values(["store_id", "arm", "model"]).reset_index(drop=True)
    return out[EVALUATION_COLUMNS]


def _num(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


def summary(
    evaluation: pd.DataFrame, *, salt: str = DEFAULT_SALT, challenger_share: float = 0.5
) -> dict[str, Any]:
    """The business roll-up of one or more evaluated weeks (money in KRW).

    WAPEs are pooled (sum |error| / sum actual) over the store-weeks the used forecasts cover; the
    seasonal-naive WAPE is on the same store-weeks. Costs: the used plans vs the naive plans, with the
    amount and share saved (positive = the model's plan was cheaper).
    """
    check_frame(
        evaluation,
        "evaluation",
        [
            "store_id",
            "week",
            "arm",
            "wape",
            "actual",
            "cost_total",
            "cost_over",
            "cost_under",
            "naive_fixed_cost",
            "naive_snaive_cost",
            "staff_hours_planned",
            "staff_hours_needed",
            "over_hours",
            "under_hours",
        ],
    )
    ev = evaluation.copy()
    ev["abs_error"] = abs_errors(ev)
    ev["used"] = used_mask(ev, salt=salt, challenger_share=challenger_share)
    used = ev[ev.used & ev.arm.isin([CHAMPION, CHALLENGER])].drop_duplicates(["store_id", "week"])
    if used.empty:
        raise ValidationError(
            "evaluation has no row of a forecast a store published (used = true); pass evaluate_week output",
            field="used",
        )
    keys = used[["store_id", "week"]]
    base = ev[ev.arm == BASELINE].drop_duplicates(["store_id", "week"]).merge(keys, on=["store_id", "week"])

    def roll(model: pd.DataFrame, naive: pd.DataFrame) -> dict[str, Any]:
        cost_model = float(model.cost_total.sum())
        cost_fixed = float(model.naive_fixed_cost.sum())
        cost_snaive = float(model.naive_snaive_cost.sum())
        wape_model = pooled_wape(model.abs_error.to_numpy(), model.actual.to_numpy())
        wape_naive = pooled_wape(naive.abs_error.to_numpy(), naive.actual.to_numpy())
        return {
            "wape_model": _num(wape_model),
            "wape_seasonal_naive": _num(wape_naive),
            "wape_improvement": _num(1 - wape_model / wape_naive) if wape_naive and wape_naive > 0 else None,
            "cost_model": cost_model,
            "cost_fixed": cost_fixed,
            "cost_seasonal_naive": cost_snaive,
            "saved_vs_fixed": cost_fixed - cost_model,
            "saved_vs_fixed_share": _num((cost_fixed - cost_model) / cost_fixed) if cost_fixed > 0 else None,
            "saved_vs_seasonal_naive": cost_snaive - cost_model,
            "saved_vs_seasonal_naive_share": (
                _num((cost_snaive - cost_model) / cost_snaive) if cost_snaive > 0 else None
            ),
        }

    weeks = sorted(pd.to_datetime(used.week).dt.normalize().unique())
    per_week = []
    for wk in weeks:
        m = used[pd.to_datetime(used.week).dt.normalize() == wk]
        n = base[pd.to_datetime(base.week).dt.normalize() == wk]
        per_week.append(
            {"week": pd.Timestamp(wk).date().isoformat(), "stores": int(m.store_id.nunique()), **roll(m, n)}
        )
    return {
        "currency": "KRW",
        "weeks": len(weeks),
        "stores": int(used.store_id.nunique()),
        "store_weeks": len(used),
        **roll(used, base),
        "staff_hours_planned": float(used.staff_hours_planned.sum()),
        "staff_hours_needed": float(used.staff_hours_needed.sum()),
        "over_hours": float(used.over_hours.sum()),
        "under_hours": float(used.under_hours.sum()),
        "cost_over": float(used.cost_over.sum()),
        "cost_under": float(used.cost_under.sum()),
        "per_week": per_week,
    }
