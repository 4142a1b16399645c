"""What the demand pages show, computed from the published tables: summaries, trust figures, charts.

Pure functions of ``lm`` (read through ``results``) that return plain dicts and Plotly figures
(``{"data": [...], "layout": {...}}``), so the routes stay thin and the numbers are testable without a
browser. A figure is JSON-ready: times as ISO text, NaN as None.
"""

from __future__ import annotations

import math
from datetime import date, timedelta
from typing import Any

import numpy as np
import pandas as pd

from loopml import Loopml
from loopml.apps.demand import results
from loopml.apps.demand.contracts import DATASETS
from loopml.errors import LoopmlError, NotFoundError

WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
COLORS = {"published": "#2b8a3e", "champion": "#3b5bdb", "challenger": "#e8590c", "baseline": "#868e96"}
#: Evaluated weeks the interval-coverage figure looks back over (each costs one read of a week of visits).
COVERAGE_WEEKS = 4
TOP_STORES = 15


# -- numbers ----------------------------------------------------------------------------------------
def pooled_wape(frame: pd.DataFrame) -> float | None:
    """WAPE over many store-weeks: sum |error| / sum actual (``wape * actual`` is a row's |error| sum)."""
    if frame.empty or "wape" not in frame:
        return None
    rows = frame[frame["actual"] > 0]
    total = float(rows["actual"].sum())
    if total <= 0:
        return None
    return float((rows["wape"].fillna(0.0) * rows["actual"]).sum() / total)


def published_arms(lm: Loopml, evaluation: pd.DataFrame) -> pd.DataFrame:
    """(store_id, week, arm) whose plan was actually published, from the staffing table of those weeks."""
    empty = pd.DataFrame(columns=["store_id", "week", "arm"])
    if evaluation.empty or ("used" in evaluation and evaluation["used"].astype(bool).any()):
        return empty  # nothing to look up: the rows say themselves which forecast was published
    have = set(results.weeks(lm, "staffing"))
    wanted = sorted({results.week_of(w) for w in evaluation["week"]} & have)
    if not wanted:
        return empty
    frame = lm.datasets.read(DATASETS["staffing"], columns=["store_id", "week", "arm"], partitions=wanted)
    frame = results.normalise_times(frame)
    return frame.drop_duplicates(["store_id", "week"]).reset_index(drop=True)


def _published_rows(evaluation: pd.DataFrame, published: pd.DataFrame) -> pd.DataFrame:
    """The evaluation rows of the forecasts stores actually published (``used``, else the staffing arm)."""
    if evaluation.empty:
        return evaluation
    if "used" in evaluation and evaluation["used"].astype(bool).any():
        return evaluation[evaluation["used"].astype(bool)]
    if not published.empty:
        keys = published.assign(week=pd.to_datetime(published["week"]))
        rows = evaluation.merge(keys, on=["store_id", "week", "arm"], how="inner")
        if not rows.empty:
            return rows
    return evaluation[evaluation["arm"] == "champion"]  # before any plan was stored: the champion's rows


def evaluation_summary(evaluation: pd.DataFrame, published: pd.DataFrame) -> dict[str, Any]:
    """Headline figures: WAPE of the published plan vs each arm, and the staffing cost vs the naive plans."""
    if evaluation.empty:
        return {"weeks": 0, "stores": 0, "published_wape": None, "wape_by_arm": {}}
    used = _published_rows(evaluation, published)
    by_arm = {str(arm): pooled_wape(rows) for arm, rows in evaluation.groupby("arm")}
    cost = float(used["cost_total"].sum())
    fixed = float(used["naive_fixed_cost"].sum())
    snaive = float(used["naive_snaive_cost"].sum())
    return {
        "weeks": int(evaluation["week"].nunique()),
        "stores": int(evaluation["store_id"].nunique()),
        "published_wape": pooled_wape(used),
        "naive_wape": by_arm.get("baseline"),
        "wape_by_arm": by_arm,
        "cost_total": cost,
        "naive_fixed_cost": fixed,
        "naive_snaive_cost": snaive,
        "saved_vs_fixed": fixed - cost,
        "saved_vs_snaive": snaive - cost,
        "staff_hours_planned": float(used["staff_hours_planned"].sum()),
        "staff_hours_needed": float(used["staff_hours_needed"].sum()),
        "over_hours": float(used["over_hours"].sum()),
        "under_hours": float(used["under_hours"].sum()),
    }


def weekly_errors(evaluation: pd.DataFrame, published: pd.DataFrame) -> pd.DataFrame:
    """One row per (week, series): pooled WAPE of the published plan and of each arm's model."""
    if evaluation.empty:
        return pd.DataFrame(columns=["week", "series", "wape"])
    used = _published_rows(evaluation, published)
    parts = [used.groupby("week").apply(pooled_wape, include_groups=False).rename("wape").reset_index()]
    parts[0]["series"] = "published"
    for arm, rows in evaluation.groupby("arm"):
        part = rows.groupby("week").apply(pooled_wape, include_groups=False).rename("wape").reset_index()
        part["series"] = str(arm)
        parts.append(part)
    return pd.concat(parts, ignore_index=True).sort_values(["series", "week"]).reset_index(drop=True)


def weekly_costs(evaluation: pd.DataFrame, published: pd.DataFrame) -> pd.DataFrame:
    """Staffing cost per week of the published plan vs the fixed and the seasonal-naive plans (KRW)."""
    used = _published_rows(evaluation, published)
    if used.empty:
        return pd.DataFrame(columns=["week", "cost_total", "naive_fixed_cost", "naive_snaive_cost"])
    cols = ["cost_total", "naive_fixed_cost", "naive_snaive_cost"]
    return used.groupby("week")[cols].sum().reset_index()


def backtest_overall(lm: Loopml) -> list[dict[str, Any]]:
    """The latest rolling-origin backtest, all stores together (``store_id == 0``), best WAPE first."""
    try:
        frame = lm.datasets.read(DATASETS["backtest"])
    except LoopmlError:
        return []
    if frame.empty or "store_id" not in frame:
        return []
    rows = frame[frame["store_id"] == 0].sort_values("wape", na_position="last")
    return results.to_records(rows[["model", "mae", "rmse", "wape"]])


def backtest_store(lm: Loopml, store: int) -> list[dict[str, Any]]:
    try:
        frame = lm.datasets.read(DATASETS["backtest"])
    except LoopmlError:
        return []
    if frame.empty or "store_id" not in frame:
        return []
    return results.to_records(
        frame[frame["store_id"] == store].sort_values("wape")[["model", "mae", "rmse", "wape"]]
    )


def actuals(lm: Loopml, week: str, *, store: int | None = None) -> pd.DataFrame:
    """Observed visitors in ``week`` at every grain the forecasts use (hour, day, week); empty before they land.

    Visits are partitioned by day, so this reads at most the week's seven day partitions.
    """
    cols = ["store_id", "grain", "ts", "actual"]
    try:
        keys = {str(p.key) for p in lm.datasets.partitions(DATASETS["visits"])}
    except LoopmlError:
        return pd.DataFrame(columns=cols)
    start = date.fromisoformat(week)
    days = [(start + timedelta(days=i)).isoformat() for i in range(7)]
    present = [d for d in days if d in keys]
    if not present:
        return pd.DataFrame(columns=cols)
    visits = results.normalise_times(lm.datasets.read(DATASETS["visits"], partitions=present))
    if store is not None:
        visits = visits[visits["store_id"] == store]
    if visits.empty:
        return pd.DataFrame(columns=cols)
    ts = visits["ts"]
    frames = []
    for grain, key in (("hour", ts.dt.floor("h")), ("day", ts.dt.normalize()), ("week", ts.dt.normalize())):
        if grain == "week":
            key = key - pd.to_timedelta(key.dt.day_of_week, unit="D")
        agg = visits.assign(ts=key).groupby(["store_id", "ts"], as_index=False)["visitors"].sum()
        frames.append(agg.rename(columns={"visitors": "actual"}).assign(grain=grain))
    out = pd.concat(frames, ignore_index=True)[cols]
    out.attrs["complete"] = len(present) == 7
    return out


def with_actuals(forecasts: pd.DataFrame, observed: pd.DataFrame) -> pd.DataFrame:
    """Forecast rows with an ``actual`` column (NaN where the period has not been observed)."""
    if observed.empty:
        return forecasts.assign(actual=np.nan)
    return forecasts.merge(observed, on=["store_id", "grain", "ts"], how="left")


def coverage(lm: Loopml, weeks_evaluated: list[str], *, store: int | None = None) -> dict[str, Any]:
    """Share of published daily actuals inside the forecast interval, over the last evaluated weeks."""
    inside = total = 0
    used_weeks = []
    published = set(results.weeks(lm, "forecasts"))
    for week in [w for w in weeks_evaluated if w in published][-COVERAGE_WEEKS:]:
        try:
            fc = results.read_forecasts(lm, week=week, store=store, grain="day", used_only=True)
        except NotFoundError:
            continue
        joined = with_actuals(fc, actuals(lm, week, store=store)).dropna(subset=["actual"])
        if joined.empty:
            continue
        hit = (joined["actual"] >= joined["lower"]) & (joined["actual"] <= joined["upper"])
        inside += int(hit.sum())
        total += len(joined)
        used_weeks.append(week)
    return {"coverage": inside / total if total else None, "days": total, "weeks": used_weeks}


def plan_summary(staffing: pd.DataFrame) -> pd.DataFrame:
    """Per store: staff-hours, peak and lowest hourly staff, visitors planned for; most staff-hours first."""
    if staffing.empty:
        return pd.DataFrame(columns=["store_id", "staff_hours", "peak_staff", "min_staff", "visitors", "arm"])
    grouped = staffing.groupby("store_id")
    out = pd.DataFrame(
        {
            "staff_hours": grouped["staff"].sum(),
            "peak_staff": grouped["staff"].max(),
            "min_staff": grouped["staff"].min(),
            "visitors": grouped["visitors_forecast"].sum(),
            "arm": grouped["arm"].first(),
            "model_version": grouped["model_version"].first(),
        }
    ).reset_index()
    return out.sort_values(["staff_hours", "store_id"], ascending=[False, True]).reset_index(drop=True)


# -- figures --------------------------------------------------------------------------------------
def _values(series: pd.Series) -> list[Any]:
    if pd.api.types.is_datetime64_any_dtype(series):
        return [None if pd.isna(v) else v.strftime("%Y-%m-%dT%H:%M:%S") for v in series]
    out = []
    for value in series.tolist():
        if isinstance(value, float) and not math.isfinite(value):
            value = None
        out.append(value)
    return out


def _layout(title: str, *, y: str = "", x: str = "", **extra: Any) -> dict[str, Any]:
    layout = {
        "title": {"text": title, "font": {"size": 14}},
        "xaxis": {"title": {"text": x}},
        "yaxis": {"title": {"text": y}, "rangemode": "tozero"},
        "legend": {"orientation": "h", "y": -0.3},
    }
    layout.update(extra)
    return layout


def error_figure(errors: pd.DataFrame, title: str = "WAPE by week (lower is better)") -> dict[str, Any]:
    data = []
    for series, rows in errors.groupby("series", sort=False):
        rows = rows.sort_values("week")
        dash = "solid" if series in ("published", "champion") else "dot" if series == "baseline" else "dash"
        data.append(
            {
                "type": "scatter",
                "mode": "lines+markers",
                "name": "naive (seasonal)" if series == "baseline" else str(series),
                "x": [w.strftime("%Y-%m-%d") for w in pd.to_datetime(rows["week"])],
                "y": _values(rows["wape"]),
                "line": {
                    "color": COLORS.get(str(series), "#2b8a3e"),
                    "dash": dash,
                    "width": 3 if series == "published" else 2,
                },
            }
        )
    return {
        "data": data,
        "layout": _layout(
            title,
            xaxis={"type": "category", "title": {"text": "shift week"}},
            yaxis={"title": {"text": "WAPE"}, "tickformat": ".0%", "rangemode": "tozero"},
        ),
    }


def cost_figure(costs: pd.DataFrame) -> dict[str, Any]:
    x = [w.strftime("%Y-%m-%d") for w in pd.to_datetime(costs["week"])]
    names = {
        "cost_total": "forecast plan",
        "naive_fixed_cost": "fixed staffing",
        "naive_snaive_cost": "seasonal-naive plan",
    }
    data = [
        {"type": "bar", "name": label, "x": x, "y": _values(costs[col]), "marker": {"color": color}}
        for (col, label), color in zip(names.items(), ("#3b5bdb", "#adb5bd", "#ced4da"), strict=True)
    ]
    return {
        "data": data,
        "layout": _layout(
            "Cost of over- and under-staffing (KRW)",
            y="KRW",
            barmode="group",
            xaxis={"type": "category", "title": {"text": "shift week"}},
        ),
    }


def forecast_figure(frame: pd.DataFrame, grain: str, title: str) -> dict[str, Any]:
    """Actual vs the published forecast with its interval band, plus the shadow arm's forecast."""
    rows = frame[frame["grain"] == grain].sort_values("ts")
    used = rows[rows["used"].astype(bool)] if "used" in rows else rows
    data: list[dict[str, Any]] = []
    if not used.empty:
        x = _values(used["ts"])
        data.append(
            {
                "type": "scatter",
                "mode": "lines",
                "x": x,
                "y": _values(used["upper"]),
                "line": {"width": 0},
                "showlegend": False,
                "hoverinfo": "skip",
                "name": "upper",
            }
        )
        data.append(
            {
                "type": "scatter",
                "mode": "lines",
                "x": x,
                "y": _values(used["lower"]),
                "fill": "tonexty",
                "fillcolor": "rgba(59,91,219,0.15)",
                "line": {"width": 0},
                "name": "interval",
            }
        )
        label = f"forecast ({used['model'].iloc[0]})"
        data.append(
            {
                "type": "scatter",
                "mode": "lines+markers" if grain == "day" else "lines",
                "x": x,
                "y": _values(used["forecast"]),
                "name": label,
                "line": {"color": "#3b5bdb", "width": 2},
            }
        )
    shadow = rows[~rows["used"].astype(bool)] if "used" in rows else rows.iloc[0:0]
    for model, part in shadow.groupby("model"):
        data.append(
            {
                "type": "scatter",
                "mode": "lines",
                "x": _values(part["ts"]),
                "y": _values(part["forecast"]),
                "name": f"shadow ({model})",
                "line": {"dash": "dot", "color": COLORS.get(str(part["arm"].iloc[0]), "#2b8a3e")},
            }
        )
    if "actual" in rows and rows["actual"].notna().any():
        actual = used if not used.empty else rows.drop_duplicates("ts")
        data.append(
            {
                "type": "scatter",
                "mode": "markers" if grain == "day" else "lines",
                "x": _values(actual["ts"]),
                "y": _values(actual["actual"]),
                "name": "actual",
                "line": {"color": "#1d2330"},
                "marker": {"color": "#1d2330", "size": 7},
            }
        )
    return {"data": data, "layout": _layout(title, y="visitors")}


def staff_heatmap(staffing: pd.DataFrame, title: str) -> dict[str, Any]:
    """Weekday x hour of the day, staff per hour (summed over the stores given)."""
    if staffing.empty:
        return {"data": [], "layout": _layout(title)}
    frame = staffing.assign(weekday=staffing["ts"].dt.day_of_week, hour=staffing["ts"].dt.hour)
    grid = frame.groupby(["weekday", "hour"])["staff"].sum().unstack("hour")
    grid = grid.reindex(range(7))
    z = [[None if pd.isna(v) else int(v) for v in row] for row in grid.to_numpy()]
    trace = {
        "type": "heatmap",
        "z": z,
        "x": [f"{h:02d}:00" for h in grid.columns],
        "y": list(WEEKDAYS),
        "colorscale": "Blues",
        "reversescale": True,
        "text": z,
        "texttemplate": "%{text}",
        "hovertemplate": "%{y} %{x}: %{z} staff<extra></extra>",
        "colorbar": {"title": {"text": "staff"}},
    }
    return {"data": [trace], "layout": _layout(title, x="hour", yaxis={"autorange": "reversed"}, height=340)}


def stores_heatmap(staffing: pd.DataFrame, order: list[int], title: str) -> dict[str, Any]:
    """Stores (rows, most staff-hours on top) x every opening hour of the week, staff per hour."""
    if staffing.empty:
        return {"data": [], "layout": _layout(title)}
    frame = staffing.assign(slot=staffing["ts"].dt.strftime("%a %H"))
    slots = frame.sort_values("ts").drop_duplicates("slot")["slot"].tolist()
    grid = frame.pivot_table(index="store_id", columns="slot", values="staff", aggfunc="sum").reindex(
        index=order, columns=slots
    )
    z = [[None if pd.isna(v) else int(v) for v in row] for row in grid.to_numpy()]
    trace = {
        "type": "heatmap",
        "z": z,
        "x": slots,
        "y": [f"store {s}" for s in order],
        "colorscale": "Blues",
        "reversescale": True,
        "hovertemplate": "%{y}, %{x}:00: %{z} staff<extra></extra>",
        "colorbar": {"title": {"text": "staff"}},
    }
    height = max(320, 18 * len(order) + 120)
    day_starts = [slot for i, slot in enumerate(slots) if i == 0 or slot[:3] != slots[i - 1][:3]]
    xaxis = {"type": "category", "tickvals": day_starts, "ticktext": [slot[:3] for slot in day_starts]}
    layout = _layout(title, xaxis=xaxis, yaxis={"autorange": "reversed"}, height=height)
    return {"data": [trace], "layout": layout}


def ab_figure(history: pd.DataFrame) -> dict[str, Any]:
    """Challenger minus champion WAPE per analysis, with its bootstrap confidence interval."""
    rows = history.dropna(subset=["diff"]) if "diff" in history else history.iloc[0:0]
    x = (
        [w.strftime("%Y-%m-%d") for w in pd.to_datetime(rows["week"])]
        if "week" in rows
        else list(range(len(rows)))
    )
    diff = np.asarray(rows["diff"], dtype=float) if len(rows) else np.array([])
    hi = np.asarray(rows["ci_high"], dtype=float) - diff if len(rows) else diff
    lo = diff - np.asarray(rows["ci_low"], dtype=float) if len(rows) else diff
    trace = {
        "type": "scatter",
        "mode": "markers+lines",
        "x": x,
        "y": _values(pd.Series(diff)),
        "name": "champion - challenger",
        "error_y": {
            "type": "data",
            "symmetric": False,
            "array": _values(pd.Series(hi)),
            "arrayminus": _values(pd.Series(lo)),
        },
        "marker": {"color": "#e8590c", "size": 8},
    }
    layout = _layout(
        "WAPE gain of the challenger: champion - challenger (above 0: challenger better)",
        y="WAPE difference",
        xaxis={"type": "category", "title": {"text": "analysed after week"}},
        yaxis={
            "title": {"text": "WAPE difference"},
            "zeroline": True,
            "zerolinewidth": 2,
            "tickformat": ".1%",
        },
    )
    return {"data": [trace], "layout": layout}
