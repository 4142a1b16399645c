"""Turn visitor forecasts into hourly staff plans, and price a plan against what really happened.

The rule a store manager applies by hand, made explicit: one staff member handles
``cfg.visitors_per_staff`` visitors an hour, and an open store never has fewer than ``cfg.min_staff``
people on the floor (safety, breaks, the till). So ``staff = max(min_staff, ceil(visitors / visitors_per_staff))``.

Cost model (all amounts in KRW), evaluated hour by hour on the hours that have actuals:

| situation | quantity | price |
|---|---|---|
| over-staffed: planned > needed | surplus staff-hours ``planned - needed`` | ``cfg.staff_hour_cost`` each (wages paid for idle staff) |
| under-staffed: actual visitors > capacity | visitors beyond ``planned x visitors_per_staff`` | ``cfg.under_cost_per_visitor`` each (lost margin: those visitors leave unserved) |

``needed`` is the same staffing rule applied to the actual visitors. An hour with actuals but no planned
row counts as 0 staff planned (nobody was scheduled); a planned hour without actuals is not scored,
because a missing actual is usually a data gap, not a closed store.

Data coarser than hourly (daily, weekly, monthly) is spread uniformly over the store's opening hours
(``stores.open_hour <= hour < stores.close_hour``) before the rule is applied: without an hourly profile,
a flat day is the honest assumption.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from loopml.apps.demand.config import DemandConfig
from loopml.checks import check_number
from loopml.errors import ValidationError

GRAINS = ("hour", "day", "week", "month")
_GRAIN_ALIASES = {
    "h": "hour",
    "H": "hour",
    "hour": "hour",
    "D": "day",
    "d": "day",
    "day": "day",
    "W": "week",
    "W-MON": "week",
    "week": "week",
    "MS": "month",
    "M": "month",
    "month": "month",
}
#: Seasonal-naive lags for hour/day/week data: same weekday (and hour), 2 to 9 weeks back. Two weeks is
#: the shortest lag that is always observed at run time (data ends 8 days before the shift week starts).
_WEEKLY_LAGS = tuple(pd.Timedelta(days=7 * k) for k in range(2, 10))
_MONTHLY_LAGS = tuple(pd.DateOffset(months=k) for k in range(1, 13))
#: Weeks of history behind the naive "fixed" staffing level.
FIXED_PLAN_WEEKS = 8
_EPS = 1e-9

PLAN_COLUMNS = ["store_id", "ts", "visitors_forecast", "staff"]
COST_COLUMNS = [
    "store_id",
    "week",
    "hours",
    "visitors",
    "unserved_visitors",
    "staff_hours_planned",
    "staff_hours_needed",
    "over_hours",
    "under_hours",
    "cost_over",
    "cost_under",
    "cost_total",
]


# --------------------------------------------------------------------------------------------- checks


def normalise_grain(grain: str) -> str:
    """Accept both grain names ("hour") and pandas frequency codes ("h"), so callers need not convert."""
    if not isinstance(grain, str) or grain not in _GRAIN_ALIASES:
        raise ValidationError(
            f"grain must be one of {', '.join(GRAINS)} (or a frequency code h, D, W, MS); got {grain!r}",
            field="grain",
        )
    return _GRAIN_ALIASES[grain]


def check_frame(frame: object, name: str, columns: list[str], *, allow_empty: bool = False) -> pd.DataFrame:
    """Fail early with the missing column's name: a KeyError deep inside a merge tells the user nothing."""
    if not isinstance(frame, pd.DataFrame):
        raise ValidationError(f"{name} must be a pandas DataFrame, got {type(frame).__name__}", field=name)
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValidationError(
            f"{name} is missing column(s) {', '.join(missing)}; it needs {', '.join(columns)}",
            field=missing[0],
        )
    if frame.empty and not allow_empty:
        raise ValidationError(f"{name} is empty; pass at least one row", field=name)
    return frame


def check_ids(frame: pd.DataFrame, name: str, column: str = "store_id") -> pd.Series:
    """Store ids are integers everywhere in the app; a float or string id would silently miss every join."""
    ids = frame[column]
    if ids.isna().any():
        raise ValidationError(f"{name}.{column} has missing values; every row needs a store id", field=column)
    if pd.api.types.is_bool_dtype(ids) or not pd.api.types.is_integer_dtype(ids):
        if pd.api.types.is_float_dtype(ids) and bool((ids == np.round(ids)).all()):
            return ids.astype("int64")
        raise ValidationError(f"{name}.{column} must be integers, got dtype {ids.dtype}", field=column)
    return ids.astype("int64")


def check_times(frame: pd.DataFrame, name: str, column: str = "ts") -> pd.Series:
    """Timestamps are naive local store time; parse strings, refuse what cannot be a time."""
    values = frame[column]
    if not pd.api.types.is_datetime64_any_dtype(values):
        try:
            values = pd.to_datetime(values)
        except (ValueError, TypeError) as exc:
            raise ValidationError(
                f"{name}.{column} must be timestamps (datetime64 or ISO strings): {exc}", field=column
            ) from None
    if getattr(values.dt, "tz", None) is not None:
        values = values.dt.tz_localize(None)
    if values.isna().any():
        raise ValidationError(f"{name}.{column} has missing timestamps; drop or fix those rows", field=column)
    return values.astype("datetime64[ns]")


def check_amounts(frame: pd.DataFrame, name: str, column: str) -> pd.Series:
    """Visitor counts and forecasts must be finite and >= 0: a NaN would plan zero staff without a word."""
    values = frame[column]
    if pd.api.types.is_bool_dtype(values) or not pd.api.types.is_numeric_dtype(values):
        raise ValidationError(f"{name}.{column} must be numeric, got dtype {values.dtype}", field=column)
    arr = values.to_numpy(dtype="float64")
    bad = ~np.isfinite(arr)
    if bad.any():
        raise ValidationError(
            f"{name}.{column} has {int(bad.sum())} NaN/infinite value(s); fill or drop them before planning",
            field=column,
        )
    if (arr < 0).any():
        raise ValidationError(
            f"{name}.{column} has {int((arr < 0).sum())} negative value(s); visitor counts cannot be negative",
            field=column,
        )
    return pd.Series(arr, index=frame.index)


def _check_config(cfg: DemandConfig) -> tuple[float, int]:
    """(visitors_per_staff, min_staff); rechecked because ``cfg`` may be any object with those fields."""
    vps = check_number(getattr(cfg, "visitors_per_staff", None), "visitors_per_staff", low=0, low_open=True)
    min_staff = check_number(getattr(cfg, "min_staff", None), "min_staff", low=0, integer=True)
    return vps, min_staff


def _check_costs(cfg: DemandConfig) -> tuple[float, float]:
    """(staff_hour_cost, under_cost_per_visitor) in KRW."""
    return (
        check_number(
            getattr(cfg, "staff_hour_cost", None), "staff_hour_cost", low=0, hint="an amount in KRW"
        ),
        check_number(
            getattr(cfg, "under_cost_per_visitor", None),
            "under_cost_per_visitor",
            low=0,
            hint="an amount in KRW",
        ),
    )


def week_start(ts: pd.Series) -> pd.Series:
    """Monday 00:00 of the shift week containing each timestamp (the tables' ``week`` date column)."""
    day = ts.dt.normalize()
    return (day - pd.to_timedelta(day.dt.day_of_week, unit="D")).astype("datetime64[ns]")


# --------------------------------------------------------------------------------------------- rule


def staff_for(visitors: np.ndarray | pd.Series, cfg: DemandConfig) -> np.ndarray:
    """The staffing rule on an array of hourly visitor counts (the one place the rule is written)."""
    vps, min_staff = _check_config(cfg)
    arr = np.asarray(visitors, dtype="float64")
    # _EPS keeps 24.000000001 / 12 from becoming 3 staff because of float noise in a forecast.
    need = np.ceil(np.maximum(arr / vps - _EPS, 0.0))
    return np.maximum(need, min_staff).astype("int64")


def spread_to_hours(
    frame: pd.DataFrame, stores: pd.DataFrame | None, *, grain: str, column: str
) -> pd.DataFrame:
    """Spread each period's ``column`` uniformly over the store's opening hours of that period.

    Returns ``store_id, ts, <column>`` with one row per open hour. Hourly input is returned as is.
    """
    grain = normalise_grain(grain)
    out = pd.DataFrame(
        {
            "store_id": check_ids(frame, "frame"),
            "ts": check_times(frame, "frame"),
            column: frame[column].astype("float64"),
        }
    )
    if grain == "hour":
        return out.reset_index(drop=True)
    if stores is None:
        raise ValidationError(
            f"{grain}-grain data needs the stores table (store_id, open_hour, close_hour) to spread visitors "
            "over opening hours; pass stores=",
            field="stores",
        )
    check_frame(stores, "stores", ["store_id", "open_hour", "close_hour"])
    hours_tab = pd.DataFrame(
        {
            "store_id": check_ids(stores, "stores"),
            "open_hour": stores["open_hour"].astype("int64"),
            "close_hour": stores["close_hour"].astype("int64"),
        }
    ).drop_duplicates("store_id", keep="last")
    bad = hours_tab[
        (hours_tab.open_hour < 0)
        | (hours_tab.close_hour > 24)
        | (hours_tab.close_hour <= hours_tab.open_hour)
    ]
    if not bad.empty:
        raise ValidationError(
            f"stores open_hour/close_hour must satisfy 0 <= open_hour < close_hour <= 24; store(s) "
            f"{bad.store_id.head(5).tolist()} do not",
            field="open_hour",
        )
    merged = out.merge(hours_tab, on="store_id", how="left")
    unknown = merged.loc[merged.open_hour.isna(), "store_id"].unique()
    if len(unknown):
        raise ValidationError(
            f"stores has no opening hours for store(s) {sorted(unknown.tolist())[:5]}; add them to the stores table",
            field="store_id",
        )
    start = merged.ts.dt.normalize()
    if grain == "day":
        n_days = np.ones(len(merged), dtype="int64")
    elif grain == "week":
        start = start - pd.to_timedelta(start.dt.day_of_week, unit="D")
        n_days = np.full(len(merged), 7, dtype="int64")
    else:
        start = start - pd.to_timedelta(start.dt.day - 1, unit="D")
        n_days = start.dt.days_in_month.to_numpy(dtype="int64")
    open_h = merged.open_hour.to_numpy(dtype="int64")
    per_day = merged.close_hour.to_numpy(dtype="int64") - open_h
    slots = n_days * per_day
    rows = np.repeat(np.arange(len(merged)), slots)
    k = np.arange(len(rows)) - np.repeat(np.cumsum(slots) - slots, slots)
    day_idx = k // per_day[rows]
    hour = open_h[rows] + k % per_day[rows]
    ts = start.to_numpy()[rows] + (day_idx * 24 + hour).astype("timedelta64[h]")
    values = merged[column].to_numpy(dtype="float64")[rows] / slots[rows]
    return pd.DataFrame({"store_id": merged.store_id.to_numpy()[rows], "ts": ts, column: values})


def _hourly_plan(visitors: pd.DataFrame, cfg: DemandConfig, column: str, out_column: str) -> pd.DataFrame:
    frame = visitors.rename(columns={column: out_column})
    frame = frame.drop_duplicates(["store_id", "ts"], keep="last").sort_values(["store_id", "ts"])
    frame["staff"] = staff_for(frame[out_column].to_numpy(), cfg)
    return frame[["store_id", "ts", out_column, "staff"]].reset_index(drop=True)


def plan_staff(
    hourly_forecast: pd.DataFrame,
    cfg: DemandConfig,
    *,
    grain: str = "hour",
    stores: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Staff plan ``store_id, ts, visitors_forecast, staff`` from a forecast ``store_id, ts, forecast``.

    For coarser grains pass ``grain`` and the ``stores`` table; the forecast is spread over opening hours.
    """
    check_frame(hourly_forecast, "hourly_forecast", ["store_id", "ts", "forecast"])
    _check_config(cfg)
    values = check_amounts(hourly_forecast, "hourly_forecast", "forecast")
    frame = hourly_forecast[["store_id", "ts"]].assign(forecast=values)
    hourly = spread_to_hours(frame, stores, grain=grain, column="forecast")
    return _hourly_plan(hourly, cfg, "forecast", "visitors_forecast")


def staff_needed(
    actual_hourly: pd.DataFrame,
    cfg: DemandConfig,
    *,
    grain: str = "hour",
    stores: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """What the rule asks for in hindsight: ``store_id, ts, visitors, staff`` from actual visits."""
    check_frame(actual_hourly, "actual_hourly", ["store_id", "ts", "visitors"])
    _check_config(cfg)
    values = check_amounts(actual_hourly, "actual_hourly", "visitors")
    frame = actual_hourly[["store_id", "ts"]].assign(visitors=values)
    frame = frame.groupby(["store_id", "ts"], as_index=False)["visitors"].sum()
    hourly = spread_to_hours(frame, stores, grain=grain, column="visitors")
    return _hourly_plan(hourly, cfg, "visitors", "visitors")


# --------------------------------------------------------------------------------------------- cost


def hourly_costs(
    plan: pd.DataFrame,
    actual_hourly: pd.DataFrame,
    cfg: DemandConfig,
    *,
    grain: str = "hour",
    stores: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Hour-by-hour comparison of a plan with the actuals (the detail behind ``staffing_cost``)."""
    check_frame(plan, "plan", ["store_id", "ts", "staff"], allow_empty=True)
    vps, _ = _check_config(cfg)
    hour_cost, visitor_cost = _check_costs(cfg)
    staff = plan["staff"]
    if pd.api.types.is_bool_dtype(staff) or not pd.api.types.is_numeric_dtype(staff):
        raise ValidationError(f"plan.staff must be integers, got dtype {staff.dtype}", field="staff")
    staff_arr = staff.to_numpy(dtype="float64")
    if (~np.isfinite(staff_arr)).any() or (staff_arr < 0).any() or (staff_arr != np.round(staff_arr)).any():
        raise ValidationError("plan.staff must be whole numbers >= 0 (people, not fractions)", field="staff")
    planned = pd.DataFrame(
        {
            "store_id": check_ids(plan, "plan") if len(plan) else plan["store_id"].astype("int64"),
            "ts": check_times(plan, "plan") if len(plan) else plan["ts"].astype("datetime64[ns]"),
            "planned": staff_arr.astype("int64"),
        }
    ).drop_duplicates(["store_id", "ts"], keep="last")
    needed = staff_needed(actual_hourly, cfg, grain=grain, stores=stores)
    hours = needed.merge(planned, on=["store_id", "ts"], how="left")
    hours["planned"] = hours["planned"].fillna(0).astype("int64")
    hours = hours.rename(columns={"staff": "needed"})
    capacity = hours.planned.to_numpy(dtype="float64") * vps
    hours["unserved_visitors"] = np.maximum(hours.visitors.to_numpy() - capacity, 0.0)
    diff = hours.planned.to_numpy() - hours.needed.to_numpy()
    hours["over_hours"] = np.maximum(diff, 0)
    hours["under_hours"] = np.maximum(-diff, 0)
    hours["cost_over"] = hours.over_hours * hour_cost
    hours["cost_under"] = hours.unserved_visitors * visitor_cost
    hours["cost_total"] = hours.cost_over + hours.cost_under
    hours["week"] = week_start(hours.ts)
    return hours


def staffing_cost(
    plan: pd.DataFrame,
    actual_hourly: pd.DataFrame,
    cfg: DemandConfig,
    *,
    grain: str = "hour",
    stores: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Price a staff plan against actual visits, per store and shift week (KRW; see the module table).

    Columns: ``store_id, week`` (Monday, datetime64), ``hours, visitors, unserved_visitors, staff_hours_planned, staff_hours_needed,
    over_hours, under_hours, cost_over, cost_under, cost_total``. ``grain`` is the grain of the actuals.
    """
    hours = hourly_costs(plan, actual_hourly, cfg, grain=grain, stores=stores)
    out = (
        hours.groupby(["store_id", "week"], as_index=False)
        .agg(
            hours=("ts", "size"),
            visitors=("visitors", "sum"),
            unserved_visitors=("unserved_visitors", "sum"),
            staff_hours_planned=("planned", "sum"),
            staff_hours_needed=("needed", "sum"),
            over_hours=("over_hours", "sum"),
            under_hours=("under_hours", "sum"),
            cost_over=("cost_over", "sum"),
            cost_under=("cost_under", "sum"),
            cost_total=("cost_total", "sum"),
        )
        .sort_values(["store_id", "week"])
    )
    for col in ("hours", "staff_hours_planned", "staff_hours_needed", "over_hours", "under_hours"):
        out[col] = out[col].astype("int64")
    for col in ("visitors", "unserved_visitors", "cost_over", "cost_under", "cost_total"):
        out[col] = out[col].astype("float64")
    return out[COST_COLUMNS].reset_index(drop=True)


# --------------------------------------------------------------------------------------------- naive plans


def _visits(frame: pd.DataFrame, name: str, *, allow_empty: bool = False) -> pd.DataFrame:
    """Checked ``store_id, ts, visitors`` rows; when a period was delivered twice, the later row wins."""
    check_frame(frame, name, ["store_id", "ts", "visitors"], allow_empty=allow_empty)
    return pd.DataFrame(
        {
            "store_id": check_ids(frame, name),
            "ts": check_times(frame, name),
            "visitors": check_amounts(frame, name, "visitors"),
        }
    ).drop_duplicates(["store_id", "ts"], keep="last")


def seasonal_naive_forecast(
    history: pd.DataFrame, targets: pd.DataFrame, *, grain: str = "hour"
) -> pd.DataFrame:
    """Same weekday (and hour) two weeks back: the newest value that is always known at run time.

    A missing value (a data gap) falls back to 3, 4 ... 9 weeks back, then to the store's mean over
    those 9 weeks, then to 0. Monthly data uses the same month-start 1 .. 12 months back.
    Returns ``store_id, ts, forecast`` in the order of ``targets``.
    """
    grain = normalise_grain(grain)
    check_frame(history, "history", ["store_id", "ts", "visitors"])
    check_frame(targets, "targets", ["store_id", "ts"])
    tgt = pd.DataFrame({"store_id": check_ids(targets, "targets"), "ts": check_times(targets, "targets")})
    lags = _MONTHLY_LAGS if grain == "month" else _WEEKLY_LAGS
    # Only the window the lags can reach is used: 3 years of hourly history would cost seconds.
    window = history[(check_times(history, "history") >= tgt.ts.min() - lags[-1]).to_numpy()]
    hist = _visits(window, "history", allow_empty=True)
    lookup = hist.set_index(["store_id", "ts"])["visitors"]
    forecast = np.full(len(tgt), np.nan)
    for lag in lags:
        todo = np.isnan(forecast)
        if not todo.any():
            break
        keys = pd.MultiIndex.from_arrays([tgt.store_id[todo], tgt.ts[todo] - lag])
        forecast[todo] = lookup.reindex(keys).to_numpy(dtype="float64")
    todo = np.isnan(forecast)
    if todo.any():
        means = hist.groupby("store_id")["visitors"].mean()
        forecast[todo] = tgt.store_id[todo].map(means).fillna(0.0).to_numpy(dtype="float64")
    return pd.DataFrame({"store_id": tgt.store_id.to_numpy(), "ts": tgt.ts.to_numpy(), "forecast": forecast})


def naive_plans(
    history: pd.DataFrame,
    targets: pd.DataFrame,
    cfg: DemandConfig,
    *,
    grain: str = "hour",
    stores: pd.DataFrame | None = None,
) -> dict[str, pd.DataFrame]:
    """The two plans a chain uses without a model, as the yardstick for the model's savings.

    ``"fixed"``: every open hour of a store gets the same staff, ``cfg.fixed_staff`` or, when that is
    None, the store's mean needed staff over the last 8 weeks of history, rounded up (a store without
    recent history uses all its history, then ``min_staff``). ``"seasonal_naive"``: the staffing rule on
    ``seasonal_naive_forecast``. ``targets`` (``store_id, ts`` at the data ``grain``) are the periods
    to plan. Both plans are ``store_id, ts, visitors_forecast, staff`` per hour.
    """
    grain = normalise_grain(grain)
    _check_config(cfg)
    snaive = seasonal_naive_forecast(history, targets, grain=grain)
    seasonal = plan_staff(snaive, cfg, grain=grain, stores=stores)
    fixed = fixed_plan(history, snaive, cfg, grain=grain, stores=stores)
    return {"fixed": fixed, "seasonal_naive": seasonal}


def fixed_plan(
    history: pd.DataFrame,
    targets: pd.DataFrame,
    cfg: DemandConfig,
    *,
    grain: str = "hour",
    stores: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """The "fixed" naive plan of ``naive_plans``: one staff level per store for all its open hours."""
    _, min_staff = _check_config(cfg)
    check_frame(targets, "targets", ["store_id", "ts"])
    slots = spread_to_hours(
        targets[["store_id", "ts"]].assign(forecast=0.0), stores, grain=grain, column="forecast"
    )
    slots = slots.drop_duplicates(["store_id", "ts"]).sort_values(["store_id", "ts"])
    check_frame(history, "history", ["store_id", "ts", "visitors"])
    # Only the last 8 weeks count; stores silent in that window (a long data gap) fall back to all
    # their history, so a full 3-year hourly history is only checked and expanded for those few stores.
    ts = check_times(history, "history")
    ids = check_ids(history, "history")
    recent_rows = (ts > ts.max() - pd.Timedelta(weeks=FIXED_PLAN_WEEKS)).to_numpy()
    stale = ~ids.isin(ids[recent_rows].unique()).to_numpy()
    hist = _visits(history[recent_rows | stale], "history")
    needed = staff_needed(hist, cfg, grain=grain, stores=stores)
    level = needed.groupby("store_id")["staff"].mean()
    visitors = needed.groupby("store_id")["visitors"].mean()
    fixed = getattr(cfg, "fixed_staff", None)
    if fixed is not None:
        check_number(fixed, "fixed_staff", low=0, integer=True, hint="or None for the 8-week mean")
        staff = np.full(len(slots), fixed, dtype="float64")
    else:
        # The small epsilon keeps a mean of exactly 4.0000000001 (float noise) from becoming 5.
        staff = np.ceil(slots.store_id.map(level).fillna(min_staff).to_numpy(dtype="float64") - 1e-9)
    return pd.DataFrame(
        {
            "store_id": slots.store_id.to_numpy(),
            "ts": slots.ts.to_numpy(),
            "visitors_forecast": slots.store_id.map(visitors).fillna(0.0).to_numpy(dtype="float64"),
            "staff": np.maximum(staff, min_staff).astype("int64"),
        }
    )
