"""The one feature definition of the demand app, used for training rows and forecast rows alike.

Forecasts are made on Tuesday for the shift week starting six days later, from data that ends the
Sunday before (two days old). The last forecast day is therefore 14 days after the newest observed
day, and every value-based feature below looks at least ``HORIZON[grain]`` steps back from the
target: a training row then sees exactly what a forecast row will see, and features computed once on
the whole history stay valid for every backtest origin (the backtest relies on that).

Outliers: spikes (a broken door counter, a x10 data error) would poison lags and means, so every
value feature reads a *robust copy* of the series in which each value is capped at
``CAP_FACTOR`` x the trailing median of the last ``CAP_WINDOW`` steps (the trailing window ends at
the value itself, so the cap never looks into the future). The same cap (``robust_cap``) bounds
the training target; scoring always uses the raw actuals.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable

import numpy as np
import pandas as pd

from loopml.errors import ValidationError

GRAINS = ("day", "week", "month")
#: Input frequency -> model grain. Hourly data is modelled per day and spread over hours top-down.
FREQ_GRAIN = {"h": "day", "D": "day", "W": "week", "MS": "month"}
#: Minimum distance (in grain steps) between a target and the newest value a feature may read.
HORIZON = {"day": 14, "week": 2, "month": 2}
LAGS = {"day": (14, 21, 28, 35, 42, 364), "week": (2, 3, 4, 52), "month": (2, 3, 12)}
#: Rolling windows (grain steps) that end ``HORIZON`` steps before the target: 7/28/91 days.
WINDOWS = {"day": (7, 28, 91), "week": (4, 13), "month": (3, 12)}
#: One seasonal cycle in grain steps (the seasonal-naive baseline repeats it).
SEASON = {"day": 7, "week": 52, "month": 12}
CAP_FACTOR = 4.0
CAP_WINDOW = {"day": 28, "week": 8, "month": 6}
CALENDAR = {
    "day": (
        "dow",
        "dom",
        "doy",
        "woy",
        "month",
        "is_weekend",
        "is_holiday",
        "is_bridge",
        "days_to_holiday",
        "days_since_holiday",
        "holiday_lag_h",
        "holiday_lag_364",
    ),
    "week": ("woy", "month", "holidays_in_period"),
    "month": ("month", "holidays_in_period", "days_in_period"),
}
STORE_FEATURES = ("store_id", "region", "size_m2", "open_hour", "close_hour", "opening_hours", "days_open")
#: Categorical features: LightGBM treats them as categories, not magnitudes. The region code is a
#: hash (sparse integers), so it stays numeric: trees isolate a region with two splits.
CATEGORICAL = ("store_id",)
#: Extra columns ``build_features`` adds that are not model inputs.
AUX = ("robust_cap", "naive_value")
VISIT_COLUMNS = ("store_id", "ts", "visitors")
STORE_COLUMNS = ("store_id", "region", "size_m2", "open_hour", "close_hour", "opened_on")
HOLIDAY_CAP = 30


def _check_grain(grain: str) -> None:
    if grain not in GRAINS:
        raise ValidationError(f"grain {grain!r} is unknown; use one of {', '.join(GRAINS)}", field="grain")


def feature_names(grain: str) -> list[str]:
    """Model input columns for ``grain``, in the order the model is trained on."""
    _check_grain(grain)
    h = HORIZON[grain]
    names = list(STORE_FEATURES) + list(CALENDAR[grain])
    names += [f"lag_{k}" for k in LAGS[grain]]
    if grain == "day":
        names.append("same_wd_mean_4")
    for w in WINDOWS[grain]:
        names += [f"roll_{stat}_{w}" for stat in ("mean", "median", "std", "max")]
    assert all(k >= h for k in LAGS[grain])
    return names


#: The day-grain feature list (hourly and daily data, the default).
FEATURES: list[str] = feature_names("day")


def check_visits(visits: pd.DataFrame, *, what: str = "visits", allow_empty: bool = False) -> pd.DataFrame:
    """A validated copy with ``store_id`` int64, ``ts`` datetime64[ns] and ``visitors`` float64."""
    if not isinstance(visits, pd.DataFrame):
        raise ValidationError(f"{what} must be a pandas DataFrame; got {type(visits).__name__}", field=what)
    missing = [c for c in VISIT_COLUMNS if c not in visits.columns]
    if missing:
        raise ValidationError(
            f"{what} is missing column(s) {', '.join(missing)}; it needs store_id, ts, visitors", field=what
        )
    if visits.empty and not allow_empty:
        raise ValidationError(f"{what} is empty; give at least one row of visits", field=what)
    out = visits.copy()
    out["store_id"] = _int_ids(out["store_id"], what)
    out["ts"] = _timestamps(out["ts"], f"{what}.ts")
    vis = pd.to_numeric(out["visitors"], errors="coerce").astype("float64")
    bad = ~np.isfinite(vis.to_numpy()) | (vis.to_numpy() < 0)
    if bad.any():
        raise ValidationError(
            f"{what}.visitors has {int(bad.sum())} NaN, infinite, negative or non-numeric value(s); "
            "pass the rows through the visits contract (it quarantines them) or drop them",
            field="visitors",
        )
    out["visitors"] = vis
    return out


def _int_ids(series: pd.Series, what: str) -> pd.Series:
    ids = pd.to_numeric(series, errors="coerce")
    if ids.isna().any() or (ids.to_numpy() != np.round(ids.to_numpy())).any() or (ids < 1).any():
        raise ValidationError(f"{what}.store_id must hold integer ids >= 1", field="store_id")
    return ids.astype("int64")


def _timestamps(series: pd.Series, what: str) -> pd.Series:
    try:
        ts = pd.to_datetime(series)
    except (ValueError, TypeError) as exc:
        raise ValidationError(f"{what} must hold timestamps ({exc})", field="ts") from None
    if getattr(ts.dt, "tz", None) is not None:
        ts = ts.dt.tz_localize(None)
    if ts.isna().any():
        raise ValidationError(f"{what} has {int(ts.isna().sum())} missing timestamp(s)", field="ts")
    return ts.astype("datetime64[ns]")


def infer_freq(visits: pd.DataFrame) -> str:
    """Guess the input frequency ("h", "D", "W" or "MS") from the timestamps."""
    ts = pd.DatetimeIndex(check_visits(visits)["ts"].unique()).sort_values()
    if (ts != ts.normalize()).any():
        return "h"
    if len(ts) > 1 and (ts.day_of_week == 0).all() and np.diff(ts.asi8).min() >= 7 * 86_400 * 10**9:
        return "W"
    if len(ts) > 1 and (ts.day == 1).all() and np.diff(ts.asi8).min() >= 28 * 86_400 * 10**9:
        return "MS"
    return "D"


def period_start(ts: pd.Series | pd.DatetimeIndex, grain: str) -> pd.Series:
    """The start of the grain period holding each timestamp (day, Monday, first of month)."""
    s = pd.Series(pd.DatetimeIndex(ts)).dt.normalize()
    if grain == "week":
        s = s - pd.to_timedelta(s.dt.day_of_week, unit="D")
    elif grain == "month":
        s = s.dt.to_period("M").dt.to_timestamp()
    return s.astype("datetime64[ns]")


def to_grain(visits: pd.DataFrame, freq: str | None = None) -> tuple[pd.DataFrame, str]:
    """Visitor totals per store and model period (hourly -> daily), and the grain name.

    Returns ``(frame[store_id, ts, visitors], grain)`` sorted by store and time.
    """
    clean = check_visits(visits)
    freq = freq or infer_freq(clean)
    if freq not in FREQ_GRAIN:
        raise ValidationError(f"freq {freq!r} is unknown; use one of {', '.join(FREQ_GRAIN)}", field="freq")
    grain = FREQ_GRAIN[freq]
    clean["ts"] = period_start(clean["ts"], grain).to_numpy()
    out = clean.groupby(["store_id", "ts"], as_index=False, sort=True)["visitors"].sum()
    return out[list(VISIT_COLUMNS)], grain


def _aligned(history: pd.DataFrame, grain: str) -> pd.DataFrame:
    """``history`` at ``grain``: rows already on period starts pass through, finer data is summed."""
    on_starts = (period_start(history["ts"], grain).to_numpy() == history["ts"].to_numpy()).all()
    if on_starts and not history.duplicated(["store_id", "ts"]).any():
        return history
    clean = history.copy()
    clean["ts"] = period_start(clean["ts"], grain).to_numpy()
    return clean.groupby(["store_id", "ts"], as_index=False, sort=True)["visitors"].sum()


def check_stores(stores: pd.DataFrame, needed: Iterable[int] = ()) -> pd.DataFrame:
    """Stores indexed by id; refuses missing columns and ids the visits need but the table lacks."""
    if not isinstance(stores, pd.DataFrame):
        raise ValidationError(
            f"stores must be a pandas DataFrame; got {type(stores).__name__}", field="stores"
        )
    missing = [c for c in STORE_COLUMNS if c not in stores.columns]
    if missing:
        raise ValidationError(
            f"stores is missing column(s) {', '.join(missing)}; see simulate_stores() for the table",
            field="stores",
        )
    out = stores.copy()
    out["store_id"] = _int_ids(out["store_id"], "stores")
    if out["store_id"].duplicated().any():
        raise ValidationError("stores.store_id has duplicates; keep one row per store", field="store_id")
    unknown = sorted(set(int(i) for i in needed) - set(out["store_id"].tolist()))
    if unknown:
        raise ValidationError(
            f"store id(s) {unknown[:10]} have visits or targets but no row in stores; add them "
            "(default_stores_for(visits) builds a table for user data)",
            field="store_id",
        )
    for col in ("size_m2", "open_hour", "close_hour"):
        vals = pd.to_numeric(out[col], errors="coerce")
        if vals.isna().any() or not np.isfinite(vals.to_numpy(dtype="float64")).all():
            raise ValidationError(f"stores.{col} must be numeric without gaps", field=col)
        out[col] = vals.astype("float64")
    out["opened_on"] = pd.to_datetime(out["opened_on"]).astype("datetime64[ns]")
    return out.set_index("store_id")


def region_code(region: object) -> float:
    """A stable integer code for a region name (the same on every machine and in every run)."""
    return float(zlib.crc32(str(region).encode("utf-8")) % 997)


def _holiday_dates(start: pd.Timestamp, end: pd.Timestamp) -> pd.DatetimeIndex:
    import holidays

    years = range(start.year - 1, end.year + 2)
    kr = holidays.country_holidays("KR", years=list(years))
    return pd.DatetimeIndex(sorted(pd.Timestamp(d) for d in kr))


def _day_calendar(days: pd.DatetimeIndex, h: int) -> dict[str, np.ndarray]:
    """Calendar and Korean-holiday features per day (known in advance, so no horizon applies)."""
    hol = _holiday_dates(days[0] - pd.Timedelta(days=400), days[-1] + pd.Timedelta(days=60))
    span = pd.date_range(days[0] - pd.Timedelta(days=400), days[-1] + pd.Timedelta(days=60), freq="D")
    is_hol = span.isin(hol)
    off = is_hol | (span.day_of_week >= 5)
    prev_off = np.r_[True, off[:-1]]
    next_off = np.r_[off[1:], True]
    near_hol = np.r_[False, is_hol[:-1]] | np.r_[is_hol[1:], False]
    bridge = ~off & prev_off & next_off & near_hol
    pos = np.arange(len(span))
    hol_pos = pos[is_hol]
    nxt = np.searchsorted(hol_pos, pos, side="left")
    prv = np.searchsorted(hol_pos, pos, side="right") - 1
    big = HOLIDAY_CAP
    to_next = np.where(nxt < len(hol_pos), hol_pos[np.minimum(nxt, len(hol_pos) - 1)] - pos, big)
    since = np.where(prv >= 0, pos - hol_pos[np.maximum(prv, 0)], big)
    idx = span.get_indexer(days)
    hol_f = is_hol.astype("float64")
    return {
        "dow": days.day_of_week.to_numpy(dtype="float64"),
        "dom": days.day.to_numpy(dtype="float64"),
        "doy": days.day_of_year.to_numpy(dtype="float64"),
        "woy": days.isocalendar().week.to_numpy(dtype="float64"),
        "month": days.month.to_numpy(dtype="float64"),
        "is_weekend": (days.day_of_week >= 5).astype("float64"),
        "is_holiday": hol_f[idx],
        "is_bridge": bridge[idx].astype("float64"),
        "days_to_holiday": np.minimum(to_next[idx], big).astype("float64"),
        "days_since_holiday": np.minimum(since[idx], big).astype("float64"),
        "holiday_lag_h": hol_f[idx - h],
        "holiday_lag_364": hol_f[idx - 364],
    }


def _period_calendar(periods: pd.DatetimeIndex, grain: str) -> dict[str, np.ndarray]:
    step = pd.offsets.Week(1) if grain == "week" else pd.offsets.MonthBegin(1)
    ends = periods + step
    hol = _holiday_dates(periods[0], ends[-1])
    hol_i8 = hol.asi8
    counts = np.searchsorted(hol_i8, ends.asi8, side="left") - np.searchsorted(hol_i8, periods.asi8, "left")
    out = {"month": periods.month.to_numpy(dtype="float64"), "holidays_in_period": counts.astype("float64")}
    if grain == "week":
        out["woy"] = periods.isocalendar().week.to_numpy(dtype="float64")
    else:
        out["days_in_period"] = periods.days_in_month.to_numpy(dtype="float64")
    return out


def _check_targets(targets: pd.DataFrame, grain: str) -> pd.DataFrame:
    if not isinstance(targets, pd.DataFrame):
        raise ValidationError(
            f"targets must be a pandas DataFrame; got {type(targets).__name__}", field="targets"
        )
    missing = [c for c in ("store_id", "ts") if c not in targets.columns]
    if missing:
        raise ValidationError(f"targets is missing column(s) {', '.join(missing)}", field="targets")
    if targets.empty:
        raise ValidationError(
            "targets is empty; give the store_id/ts rows to build features for", field="targets"
        )
    out = targets.reset_index(drop=True).copy()
    out["store_id"] = _int_ids(out["store_id"], "targets")
    out["ts"] = _timestamps(out["ts"], "targets.ts")
    if (period_start(out["ts"], grain).to_numpy() != out["ts"].to_numpy()).any():
        raise ValidationError(
            f"targets.ts must be {grain} starts (midnight; Mondays for weeks; the 1st for months)", field="ts"
        )
    return out


def _panel(history: pd.DataFrame, index: pd.DatetimeIndex, store_ids: np.ndarray) -> np.ndarray:
    """Dense (time x store) matrix of visitors, NaN where a store has no row."""
    mat = np.full((len(index), len(store_ids)), np.nan)
    t = index.get_indexer(history["ts"])
    s = np.searchsorted(store_ids, history["store_id"].to_numpy())
    keep = t >= 0
    mat[t[keep], s[keep]] = history["visitors"].to_numpy()[keep]
    return mat


def _robust(raw: np.ndarray, grain: str) -> tuple[np.ndarray, np.ndarray]:
    """(capped copy, cap): each value capped at CAP_FACTOR x its trailing median (never the future)."""
    w = CAP_WINDOW[grain]
    med = pd.DataFrame(raw).rolling(w, min_periods=max(2, w // 4)).median().to_numpy()
    cap = CAP_FACTOR * med
    capped = np.where(np.isnan(cap), raw, np.minimum(raw, cap))
    return capped, cap


def _take(mat: np.ndarray, t: np.ndarray, s: np.ndarray) -> np.ndarray:
    """mat[t, s] with NaN where t < 0 (before the panel start)."""
    ok = t >= 0
    out = np.full(len(t), np.nan)
    out[ok] = mat[t[ok], s[ok]]
    return out


def build_features(
    history: pd.DataFrame, stores: pd.DataFrame, targets: pd.DataFrame, *, grain: str
) -> pd.DataFrame:
    """Feature rows for ``targets`` (store_id, ts at ``grain``) from ``history`` and store attributes.

    The same function makes training rows (targets = observed rows, other target columns such as
    ``visitors`` pass through) and forecast rows (targets = future store-periods). Value features read
    only history at least ``HORIZON[grain]`` periods before each target, so a target more than that
    beyond the newest history cannot be served and is refused. Returns the target columns, then
    ``feature_names(grain)``, then ``AUX`` (``robust_cap``: the training-target cap;
    ``naive_value``: the seasonal-naive forecast), in the order of ``targets``.
    """
    _check_grain(grain)
    hist = check_visits(history, what="history")
    hist = _aligned(hist, grain)
    tgt = _check_targets(targets, grain)
    h = HORIZON[grain]
    step = {
        "day": pd.offsets.Day(1),
        "week": pd.offsets.Week(1, weekday=0),
        "month": pd.offsets.MonthBegin(1),
    }
    start, last = hist["ts"].min(), hist["ts"].max()
    if tgt["ts"].min() < start:
        raise ValidationError(
            f"targets start {tgt['ts'].min().date()} before the history ({start.date()}); "
            "drop targets older than the first observed period",
            field="targets",
        )
    end = max(last, tgt["ts"].max())
    index = pd.date_range(start, end, freq=step[grain])
    limit = index[min(index.get_loc(last) + h, len(index) - 1)]
    if tgt["ts"].max() > limit:
        raise ValidationError(
            f"targets reach {tgt['ts'].max().date()} but history ends {last.date()}: features need data "
            f"{h} {grain}(s) before each target, so the latest servable target is {limit.date()}",
            field="targets",
        )
    store_ids = np.union1d(hist["store_id"].unique(), tgt["store_id"].unique())
    st = check_stores(stores, store_ids)
    raw = _panel(hist, index, store_ids)
    capped, cap = _robust(raw, grain)

    t = index.get_indexer(tgt["ts"])
    s = np.searchsorted(store_ids, tgt["store_id"].to_numpy())
    cols: dict[str, np.ndarray] = {}
    attrs = st.loc[tgt["store_id"].to_numpy()]
    cols["region"] = attrs["region"].map(region_code).to_numpy(dtype="float64")
    cols["size_m2"] = attrs["size_m2"].to_numpy(dtype="float64")
    cols["open_hour"] = attrs["open_hour"].to_numpy(dtype="float64")
    cols["close_hour"] = attrs["close_hour"].to_numpy(dtype="float64")
    cols["opening_hours"] = cols["close_hour"] - cols["open_hour"]
    opened = attrs["opened_on"].to_numpy(dtype="datetime64[ns]")
    cols["days_open"] = (tgt["ts"].to_numpy() - opened) / np.timedelta64(1, "D")

    cal = _day_calendar(index, h) if grain == "day" else _period_calendar(index, grain)
    for name in CALENDAR[grain]:
        cols[name] = cal[name][t]
    for k in LAGS[grain]:
        cols[f"lag_{k}"] = _take(capped, t - k, s)
    if grain == "day":
        same = np.column_stack([_take(capped, t - k, s) for k in (14, 21, 28, 35)])
        n = (~np.isnan(same)).sum(axis=1)
        cols["same_wd_mean_4"] = np.where(n > 0, np.nansum(same, axis=1) / np.maximum(n, 1), np.nan)
    frame = pd.DataFrame(capped)
    for w in WINDOWS[grain]:
        roll = frame.rolling(w, min_periods=max(1, w // 4))
        for stat, mat in (
            ("mean", roll.mean()),
            ("median", roll.median()),
            ("std", roll.std()),
            ("max", roll.max()),
        ):
            cols[f"roll_{stat}_{w}"] = _take(mat.to_numpy(), t - h, s)
    cols["robust_cap"] = _take(cap, t, s)
    cols["naive_value"] = _naive(raw, t, s, grain)

    names = [n for n in feature_names(grain) + list(AUX) if n != "store_id"]
    feats = pd.DataFrame({name: cols[name] for name in names})
    keep = [c for c in tgt.columns if c not in feats.columns]
    return pd.concat([tgt[keep], feats], axis=1)


def training_frame(history: pd.DataFrame, stores: pd.DataFrame, *, grain: str) -> pd.DataFrame:
    """``build_features`` for every observed period of ``history`` (the label ``visitors`` included)."""
    _check_grain(grain)
    hist = _aligned(check_visits(history, what="history"), grain)
    return build_features(hist, stores, hist[list(VISIT_COLUMNS)], grain=grain)


def _naive(raw: np.ndarray, t: np.ndarray, s: np.ndarray, grain: str) -> np.ndarray:
    """Seasonal naive: the raw value one (or more) seasons back, the first such lag >= the horizon.

    When that value is missing (a closed day), the mean of the next three seasonal lags that exist;
    when none exists (a new store), 0. See ``SeasonalNaive``.
    """
    season, h = SEASON[grain], HORIZON[grain]
    first = season * int(np.ceil(h / season))
    out = _take(raw, t - first, s)
    back = np.column_stack([_take(raw, t - first - season * i, s) for i in (1, 2, 3)])
    n = (~np.isnan(back)).sum(axis=1)
    fallback = np.where(n > 0, np.nansum(back, axis=1) / np.maximum(n, 1), 0.0)
    return np.where(np.isnan(out), fallback, out)


def hourly_profile(visits: pd.DataFrame, *, weeks: int = 8) -> pd.DataFrame:
    """Share of a day's visitors per store x weekday x hour, from the last ``weeks`` weeks of data.

    Uses the median of each hour across those weeks (a spike in one hour does not move the shape).
    A store-weekday with fewer than 2 observed days falls back to the store's hour shape over all
    weekdays, and a store without data to the global weekday x hour shape. Shares sum to 1 per
    store and weekday. Pass the hourly visits available at the forecast cutoff.
    """
    if isinstance(weeks, bool) or not isinstance(weeks, (int, np.integer)) or weeks < 1:
        raise ValidationError(f"weeks must be a positive integer; got {weeks!r}", field="weeks")
    clean = check_visits(visits)
    since = clean["ts"].max().normalize() - pd.Timedelta(days=7 * int(weeks) - 1)
    recent = clean[clean["ts"] >= since].copy()
    recent["weekday"] = recent["ts"].dt.day_of_week
    recent["hour"] = recent["ts"].dt.hour
    recent["day"] = recent["ts"].dt.normalize()

    def shares(frame: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
        med = frame.groupby([*keys, "hour"], as_index=False)["visitors"].median()
        tot = med.groupby(keys)["visitors"].transform("sum")
        med["share"] = np.where(tot > 0, med["visitors"] / tot.where(tot > 0, 1.0), 0.0)
        return med.drop(columns="visitors")

    days = recent.groupby(["store_id", "weekday"])["day"].nunique().rename("days").reset_index()
    by_wd = shares(recent, ["store_id", "weekday"]).merge(days, on=["store_id", "weekday"])
    by_store = shares(recent, ["store_id"])
    glob = shares(recent, ["weekday"])
    stores = np.sort(clean["store_id"].unique())
    full = pd.MultiIndex.from_product([stores, range(7)], names=["store_id", "weekday"]).to_frame(index=False)
    good = by_wd[by_wd["days"] >= 2].drop(columns="days")
    good_keys = good[["store_id", "weekday"]].drop_duplicates()
    need = full.merge(good_keys, how="left", indicator=True)
    need = need[need["_merge"] == "left_only"].drop(columns="_merge")
    fb_store = need.merge(by_store, on="store_id")
    left = need.merge(fb_store[["store_id", "weekday"]].drop_duplicates(), how="left", indicator=True)
    left = left[left["_merge"] == "left_only"].drop(columns="_merge")
    fb_glob = left.merge(glob, on="weekday")
    out = pd.concat([good, fb_store, fb_glob], ignore_index=True)
    out = out[out["share"] > 0]
    out["store_id"] = out["store_id"].astype("int64")
    out["weekday"] = out["weekday"].astype("int64")
    out["hour"] = out["hour"].astype("int64")
    return out.sort_values(["store_id", "weekday", "hour"]).reset_index(drop=True)[
        ["store_id", "weekday", "hour", "share"]
    ]


def to_hourly(daily: pd.DataFrame, profile: pd.DataFrame) -> pd.DataFrame:
    """Spread daily forecasts (and their interval bounds) over hours with ``hourly_profile`` shares.

    Stores missing from the profile use the average shape of the others.
    """
    need = ["store_id", "ts", "forecast"]
    if not isinstance(daily, pd.DataFrame) or any(c not in daily.columns for c in need):
        raise ValidationError("daily forecast needs columns store_id, ts, forecast", field="daily")
    if not isinstance(profile, pd.DataFrame) or any(
        c not in profile.columns for c in ("store_id", "weekday", "hour", "share")
    ):
        raise ValidationError(
            "profile needs columns store_id, weekday, hour, share (hourly_profile)", field="profile"
        )
    if profile.empty:
        raise ValidationError(
            "profile is empty; build it from hourly visits with hourly_profile()", field="profile"
        )
    day = daily.copy()
    day["ts"] = pd.to_datetime(day["ts"]).dt.normalize().astype("datetime64[ns]")
    day["weekday"] = day["ts"].dt.day_of_week
    known = set(profile["store_id"].unique())
    glob = profile.groupby(["weekday", "hour"], as_index=False)["share"].mean()
    glob["share"] = glob["share"] / glob.groupby("weekday")["share"].transform("sum")
    inside = day[day["store_id"].isin(known)].merge(profile, on=["store_id", "weekday"])
    outside = day[~day["store_id"].isin(known)].merge(glob, on="weekday")
    out = pd.concat([inside, outside], ignore_index=True)
    out["ts"] = out["ts"] + pd.to_timedelta(out["hour"], unit="h")
    for col in ("forecast", "lower", "upper"):
        if col in out.columns:
            out[col] = out[col] * out["share"]
    drop = ["weekday", "hour", "share"]
    return out.drop(columns=drop).sort_values(["store_id", "ts"]).reset_index(drop=True)
