"""A seeded chain of Korean stores and their hourly visitors, with the defects real counters produce.

The signal a forecaster can learn (hour of day, weekday, season, public holidays whose direction
depends on the kind of location, per-store trends, new-store ramp-up) is mixed with what nobody can
forecast a week ahead (regional weather shocks, store promotions, daily noise, count noise), plus
what a data platform must survive: missing days, outliers and a few hostile rows (negative or
absurd counts) that the visits contract quarantines.

Every random component draws from its own generator keyed by (seed, component, store or region),
in time order, so the rows up to a day do not depend on how far the simulation runs (``until``):
the warehouse's history never changes when a demo simulates more weeks.
"""

from __future__ import annotations

import zlib
from pathlib import Path
from typing import Any

import holidays
import numpy as np
import pandas as pd

from loopml.apps.demand.config import DemandConfig
from loopml.apps.demand.userdata import (
    PERIOD_OFFSETS,
    default_stores_for,
    infer_freq,
    load_user_visits,
    period_end,
)
from loopml.errors import ValidationError

__all__ = [
    "REGIONS",
    "Warehouse",
    "default_stores_for",
    "load_user_visits",
    "simulate_stores",
    "simulate_visits",
    "write_sample_csv",
]

REGIONS = ("Seoul", "Gyeonggi", "Busan", "Daegu", "Incheon", "Gwangju")
_REGION_WEIGHTS = (0.34, 0.26, 0.13, 0.10, 0.10, 0.07)
_TYPES = ("mall", "office", "residential", "transit")
_TYPE_WEIGHTS = (0.30, 0.25, 0.30, 0.15)
_HOURS = {
    "mall": ((10, 22), (10, 21), (10, 22)),
    "office": ((7, 21), (8, 20), (7, 20)),
    "residential": ((9, 21), (10, 22), (7, 23)),
    "transit": ((7, 23), (6, 23), (7, 22)),
}
#: visitors per m2 per day by location kind (before the per-store factor)
_DENSITY = {"mall": 4.0, "office": 5.5, "residential": 4.5, "transit": 6.5}
_WEEKDAY = {  # Mon..Sun multipliers
    "mall": (0.85, 0.85, 0.88, 0.92, 1.05, 1.45, 1.40),
    "office": (1.05, 1.08, 1.08, 1.05, 1.00, 0.45, 0.35),
    "residential": (0.95, 0.95, 0.97, 1.00, 1.08, 1.20, 1.10),
    "transit": (1.05, 1.05, 1.05, 1.07, 1.15, 0.80, 0.70),
}
# (regular public holiday, Seollal/Chuseok, the shopping days just before those) multipliers:
# malls fill up when people are off, office districts empty out.
_HOLIDAY = {
    "mall": (1.40, 1.30, 1.25),
    "office": (0.40, 0.25, 0.90),
    "residential": (1.15, 0.70, 1.15),
    "transit": (0.70, 0.55, 1.10),
}
_SEASON = {  # (amplitude of log visitors, day of year of the peak)
    "mall": (0.12, 350),
    "office": (0.06, 100),
    "residential": (0.08, 200),
    "transit": (0.05, 130),
}
_RAIN_EFFECT = {"mall": 0.08, "office": -0.12, "residential": -0.22, "transit": -0.18}
_NB_SHAPE = 40.0  # gamma-Poisson shape: hourly counts are over-dispersed, as real footfall is
_DAILY_NOISE = 0.07
_MISSING_DAY_SHARE = 0.005
_OUTLIER_SHARE = 0.0005
_HOSTILE_SHARE = 1e-4
_HOSTILE_SHARE_AGGREGATED = 1e-3  # fewer rows at day/week/month grain; keep a few bad ones to quarantine
_STORE_COLUMNS = ("store_id", "region", "size_m2", "open_hour", "close_hour", "opened_on", "closed_on")
_KINDS = {
    "stores": 1,
    "store": 2,
    "promo": 3,
    "noise": 4,
    "missing": 5,
    "gamma": 6,
    "poisson": 7,
    "outlier": 8,
    "hostile": 9,
    "shock": 10,
    "rain": 11,
}


def _rng(seed: int, kind: str, key: int = 0) -> np.random.Generator:
    return np.random.default_rng([seed, _KINDS[kind], key])


# -- stores -------------------------------------------------------------------------------------
def simulate_stores(cfg: DemandConfig) -> pd.DataFrame:
    """The store master table: most stores predate the window, a few open or close inside it."""
    _check_cfg(cfg)
    rng = _rng(cfg.seed, "stores")
    n = cfg.stores
    start, end = cfg.start_ts, cfg.end_ts
    window = (end - start).days
    kinds = rng.choice(len(_TYPES), n, p=_TYPE_WEIGHTS)
    regions = rng.choice(len(REGIONS), n, p=_REGION_WEIGHTS)
    size = np.clip(np.round(rng.lognormal(np.log(150.0), 0.4, n)), 40, 800).astype(float)
    pick = rng.integers(0, 3, n)
    hours = np.array([_HOURS[_TYPES[k]][p] for k, p in zip(kinds, pick, strict=True)], dtype=int)
    opened = start - pd.to_timedelta(rng.integers(60, 3650, n), unit="D")
    closed = pd.Series(pd.NaT, index=range(n), dtype="datetime64[ns]")
    order = rng.permutation(n)
    n_new = max(1, round(0.08 * n)) if n >= 4 else 0
    n_closing = max(1, round(0.04 * n)) if n >= 4 else 0
    latest_open = max(31, window - 120)
    opened = pd.Series(opened)
    for i in order[:n_new]:
        opened[i] = start + pd.Timedelta(days=int(rng.integers(30, latest_open)))
    for i in order[n_new : n_new + n_closing]:
        first, last = 120, window - 30
        if last > first:
            closed[i] = start + pd.Timedelta(days=int(rng.integers(first, last)))
    return pd.DataFrame(
        {
            "store_id": np.arange(1, n + 1, dtype="int64"),
            "region": [REGIONS[r] for r in regions],
            "store_type": [_TYPES[k] for k in kinds],
            "size_m2": size,
            "open_hour": hours[:, 0].astype("int64"),
            "close_hour": hours[:, 1].astype("int64"),
            "opened_on": opened.dt.normalize().astype("datetime64[ns]").to_numpy(),
            "closed_on": closed.astype("datetime64[ns]").to_numpy(),
        }
    )


# -- visits -------------------------------------------------------------------------------------
def simulate_visits(stores: pd.DataFrame, cfg: DemandConfig, *, until: Any = None) -> pd.DataFrame:
    """Visitors per store and period from ``cfg.start`` to ``until`` (inclusive; default: the end of
    ``cfg.years``), at ``cfg.freq``; hourly rows exist only inside opening hours and while the store
    is open. Rows up to a day are the same whatever ``until`` is."""
    _check_cfg(cfg)
    stores = _check_stores(stores)
    start = cfg.start_ts
    end = cfg.end_ts if until is None else _until(until, start)
    days = pd.date_range(start, end - pd.Timedelta(days=1), freq="D")
    cal = _Calendar(days, cfg.seed)
    parts = []
    for row in stores.itertuples(index=False):
        frame = _store_visits(row, cal, cfg)
        if frame is not None and len(frame):
            parts.append(frame)
    if not parts:
        return pd.DataFrame(
            {
                "store_id": pd.Series(dtype="int64"),
                "ts": pd.Series(dtype="datetime64[ns]"),
                "visitors": pd.Series(dtype="float64"),
            }
        )
    return pd.concat(parts, ignore_index=True)


class _Calendar:
    """Day-level arrays shared by all stores: weekday, season phase, holidays, regional weather."""

    def __init__(self, days: pd.DatetimeIndex, seed: int) -> None:
        self.days = days
        self.day_ns = days.to_numpy(dtype="datetime64[ns]").astype("int64")
        self.dow = days.day_of_week.to_numpy()
        self.doy = days.day_of_year.to_numpy().astype(float)
        self.years = (days - days[0]).days.to_numpy() / 365.25
        self.seed = seed
        kr = holidays.country_holidays("KR", years=range(days[0].year, days[-1].year + 1), language="en_US")
        names = pd.Series([kr.get(d.date(), "") for d in days])
        big = names.str.contains("Korean New Year|Chuseok", regex=True).to_numpy()
        self.holiday = (names != "").to_numpy() & ~big
        self.big = big
        pre = np.zeros(len(days), dtype=bool)
        for lead in (1, 2):  # the shopping days right before Seollal/Chuseok
            pre[:-lead] |= big[lead:]
        self.pre_big = pre & ~big & ~self.holiday
        self.weekend = (self.dow >= 5) | self.holiday | big
        self._shocks: dict[str, tuple[np.ndarray, np.ndarray]] = {}

    def shocks(self, region: str) -> tuple[np.ndarray, np.ndarray]:
        """(AR(1) log shock, heavy-rain indicator) per day for a region, drawn once per region."""
        if region not in self._shocks:
            key = zlib.crc32(region.encode())
            n = len(self.days)
            eps = _rng(self.seed, "shock", key).normal(0.0, 0.05, n)
            ar = np.empty(n)
            level = 0.0
            for t in range(n):  # a few thousand steps per region: cheap, and keeps time order
                level = 0.7 * level + eps[t]
                ar[t] = level
            month = self.days.month.to_numpy()
            p = np.where((month == 7) | (month == 8), 0.06, np.where((month == 6) | (month == 9), 0.03, 0.01))
            u = _rng(self.seed, "rain", key).random(n)
            rain = np.zeros(n, dtype=bool)
            for t in np.flatnonzero(u < p):
                length = 1 + int(u[t] / p[t] * 3)  # 1-3 days, from the same draw (stays time-ordered)
                rain[t : t + length] = True
            self._shocks[region] = (ar, rain)
        return self._shocks[region]


def _store_visits(row: Any, cal: _Calendar, cfg: DemandConfig) -> pd.DataFrame | None:
    sid = int(row.store_id)
    kind = row.store_type if row.store_type in _TYPES else "residential"
    n_days = len(cal.days)
    active = np.asarray(cal.days >= row.opened_on)
    if not pd.isna(row.closed_on):
        active &= np.asarray(cal.days < row.closed_on)
    missing = _rng(cfg.seed, "missing", sid).random(n_days) < _MISSING_DAY_SHARE
    keep_day = active & ~missing
    if not keep_day.any():
        return None

    params = _rng(cfg.seed, "store", sid)
    size = row.size_m2 if np.isfinite(row.size_m2) else 150.0
    base = size * _DENSITY[kind] * params.lognormal(0.0, 0.25)
    trend = params.normal(0.0, 0.08)
    amp, peak = _SEASON[kind]
    amp *= params.uniform(0.7, 1.3)
    peak += params.normal(0.0, 10.0)
    weekday = np.log(_WEEKDAY[kind]) + params.normal(0.0, 0.03, 7)
    hol, big, pre = np.log(_HOLIDAY[kind]) + params.normal(0.0, 0.05, 3)
    profile = _hour_profile(kind, int(row.open_hour), int(row.close_hour), params)

    ar, rain = cal.shocks(str(row.region))
    log_mu = (
        np.log(base)
        + trend * cal.years
        + amp * np.cos(2 * np.pi * (cal.doy - peak) / 365.25)
        + np.where(cal.holiday, hol, np.where(cal.big, big, weekday[cal.dow]))
        + np.where(cal.pre_big, pre, 0.0)
        + ar
        + np.where(rain, _RAIN_EFFECT[kind], 0.0)
        + _promotions(cfg.seed, sid, n_days)
        + _rng(cfg.seed, "noise", sid).normal(0.0, _DAILY_NOISE, n_days)
    )
    age = (cal.days - row.opened_on).days.to_numpy().astype(float)
    ramp = 0.55 + 0.45 * (1.0 - np.exp(-np.clip(age, 0, None) / 21.0))  # new stores take weeks to fill up
    mu_day = np.exp(log_mu) * ramp

    hours = np.arange(int(row.open_hour), int(row.close_hour))
    day_idx = np.flatnonzero(keep_day)
    mu = mu_day[day_idx, None] * profile[cal.weekend[day_idx].astype(int)]
    mu = mu.ravel()
    lam = _rng(cfg.seed, "gamma", sid).gamma(_NB_SHAPE, mu / _NB_SHAPE)
    counts = _rng(cfg.seed, "poisson", sid).poisson(lam).astype(float)
    u = _rng(cfg.seed, "outlier", sid).random(counts.size)
    spike = u < _OUTLIER_SHARE
    counts[spike] = np.round((counts[spike] + 1.0) * (3.0 + 7.0 * u[spike] / _OUTLIER_SHARE))
    ts = (cal.day_ns[day_idx, None] + hours[None, :] * 3_600_000_000_000).ravel()
    if cfg.freq != "h":
        ts, counts = _aggregate(ts, counts, cfg.freq, cal)
        if counts.size == 0:
            return None
    share = _HOSTILE_SHARE if cfg.freq == "h" else _HOSTILE_SHARE_AGGREGATED
    _inject_hostile(counts, _rng(cfg.seed, "hostile", sid).random(counts.size), share)
    return pd.DataFrame(
        {
            "store_id": np.full(counts.size, sid, dtype="int64"),
            "ts": ts.astype("datetime64[ns]"),
            "visitors": counts,
        }
    )


def _hour_profile(kind: str, open_hour: int, close_hour: int, rng: np.random.Generator) -> np.ndarray:
    """Shares of the day's visitors per open hour, [weekday profile, weekend/holiday profile]."""
    peaks = {  # (hour, width, weight) bumps on a flat floor: lunch and evening, commute for office/transit
        "mall": ([(13, 1.5, 1.0), (19, 2.0, 1.8)], [(14, 2.5, 1.5), (18.5, 2.0, 1.5)]),
        "office": ([(8, 1.0, 1.5), (12.5, 1.0, 2.5), (18, 1.2, 1.0)], [(13, 2.0, 1.0)]),
        "residential": ([(12, 1.5, 0.8), (19.5, 1.8, 2.0)], [(12, 2.0, 1.2), (18, 2.5, 1.6)]),
        "transit": ([(8, 1.0, 2.0), (12.5, 1.0, 1.0), (18.5, 1.2, 2.2)], [(14, 3.0, 1.2)]),
    }[kind]
    hours = np.arange(open_hour, close_hour) + 0.5
    out = np.empty((2, hours.size))
    for i, bumps in enumerate(peaks):
        curve = np.full(hours.size, 0.3 + 0.2 * i)
        for centre, width, weight in bumps:
            curve += weight * rng.uniform(0.8, 1.2) * np.exp(-0.5 * ((hours - centre) / width) ** 2)
        out[i] = curve / curve.sum()
    return out


def _promotions(seed: int, sid: int, n_days: int) -> np.ndarray:
    """Log uplift of week-long store promotions, roughly every six to eleven weeks."""
    rng = _rng(seed, "promo", sid)
    out = np.zeros(n_days)
    day = int(rng.integers(0, 60))
    while day < n_days:
        out[day : day + 7] = rng.normal(np.log(1.3), 0.08)
        day += 7 + 35 + int(rng.exponential(30.0))
    return out


def _aggregate(
    ts: np.ndarray, counts: np.ndarray, freq: str, cal: _Calendar
) -> tuple[np.ndarray, np.ndarray]:
    """Sum hourly counts into complete days, Monday weeks or calendar months."""
    stamps = pd.DatetimeIndex(ts.astype("datetime64[ns]"))
    if freq == "D":
        key = stamps.normalize()
    elif freq == "W":
        key = stamps.normalize() - pd.to_timedelta(stamps.day_of_week, unit="D")
    else:
        key = stamps.to_period("M").to_timestamp()
    sums = pd.Series(counts).groupby(key.to_numpy()).sum()
    first, last = cal.days[0], cal.days[-1]
    ends = period_end(pd.DatetimeIndex(sums.index), freq)
    complete = (sums.index >= first) & (ends <= last)  # a half-simulated week is not a week of data
    sums = sums[complete]
    return sums.index.to_numpy(dtype="datetime64[ns]").astype("int64"), np.array(sums, dtype=float)


def _inject_hostile(counts: np.ndarray, u: np.ndarray, share: float) -> None:
    bad = np.flatnonzero(u < share)
    negative = u[bad] < share / 2
    counts[bad[negative]] = -(counts[bad[negative]] + 1.0)
    counts[bad[~negative]] = 1e9


# -- the warehouse ------------------------------------------------------------------------------
class Warehouse:
    """The chain's data warehouse: counts land daily, and a Tuesday run sees up to the Sunday before.

    A period is available once it is complete: an hour or day on its date, a week after its Sunday, a
    month after its last day. Rows are kept sorted by time so each cut is a slice, not a scan.
    """

    LAG_DAYS = 2

    def __init__(self, stores: pd.DataFrame, visits: pd.DataFrame, *, freq: str | None = None) -> None:
        if not isinstance(visits, pd.DataFrame) or not {"store_id", "ts", "visitors"} <= set(visits.columns):
            raise ValidationError(
                "Warehouse visits must be a DataFrame with store_id, ts and visitors.", field="visits"
            )
        if not isinstance(stores, pd.DataFrame) or "store_id" not in stores.columns:
            raise ValidationError(
                "Warehouse stores must be a DataFrame with a store_id column.", field="stores"
            )
        if not pd.api.types.is_datetime64_any_dtype(visits["ts"]):
            raise ValidationError("Warehouse visits.ts must be a datetime column.", field="ts")
        self.stores = stores.reset_index(drop=True)
        self.freq = freq or (infer_freq(visits) if len(visits) else "h")
        if self.freq not in PERIOD_OFFSETS:
            raise ValidationError(f"Warehouse freq={self.freq!r}: use one of h, D, W, MS.", field="freq")
        order = np.lexsort((visits["store_id"].to_numpy(), visits["ts"].to_numpy()))
        self.visits = visits.iloc[order].reset_index(drop=True)
        ends = period_end(pd.DatetimeIndex(self.visits["ts"]), self.freq)
        self._day = ends.normalize().to_numpy()  # date each row becomes complete
        self._order = np.argsort(self._day, kind="stable")
        self._sorted_day = self._day[self._order]

    def cutoff(self, run_date: Any) -> pd.Timestamp:
        """The last complete day a run on ``run_date`` can see."""
        return _day(run_date, "run_date") - pd.Timedelta(days=self.LAG_DAYS)

    def available(self, run_date: Any) -> pd.DataFrame:
        """Everything a run on ``run_date`` may use: rows complete by ``run_date - 2 days``."""
        last = self.cutoff(run_date)
        stop = np.searchsorted(self._sorted_day, last.to_datetime64(), side="right")
        return self.visits.iloc[np.sort(self._order[:stop])].reset_index(drop=True)

    def delivery(self, day: Any) -> pd.DataFrame:
        """The rows that land with ``day``'s daily delivery (the periods completed on that day)."""
        target = _day(day, "day").to_datetime64()
        lo = np.searchsorted(self._sorted_day, target, side="left")
        hi = np.searchsorted(self._sorted_day, target, side="right")
        return self.visits.iloc[np.sort(self._order[lo:hi])].reset_index(drop=True)

    def days(self, start: Any, end: Any) -> list[pd.Timestamp]:
        """Calendar days from ``start`` to ``end`` inclusive: one delivery each (some may be empty)."""
        first, last = _day(start, "start"), _day(end, "end")
        if last < first:
            raise ValidationError(
                f"Warehouse.days: end {last.date()} is before start {first.date()}.", field="end"
            )
        return list(pd.date_range(first, last, freq="D"))

    @property
    def first_day(self) -> pd.Timestamp | None:
        return pd.Timestamp(self._sorted_day[0]) if len(self._sorted_day) else None

    @property
    def last_day(self) -> pd.Timestamp | None:
        return pd.Timestamp(self._sorted_day[-1]) if len(self._sorted_day) else None


# -- user-facing sample -------------------------------------------------------------------------
def write_sample_csv(path: str | Path, cfg: DemandConfig | None = None) -> Path:
    """Write simulated visits as a user would bring them (store_id, timestamp, visitors) at ``cfg.freq``,
    so the documentation's user-data example runs as written. Hostile rows stay in: they show the
    contract's quarantine."""
    cfg = cfg or DemandConfig.small()
    _check_cfg(cfg)
    path = Path(path)
    if path.suffix.lower() != ".csv":
        raise ValidationError(f"write_sample_csv path {str(path)!r}: use a .csv file name.", field="path")
    visits = simulate_visits(simulate_stores(cfg), cfg)
    out = visits.rename(columns={"ts": "timestamp"})
    fmt = "%Y-%m-%d %H:%M:%S" if cfg.freq == "h" else "%Y-%m-%d"
    out["timestamp"] = out["timestamp"].dt.strftime(fmt)
    path.parent.mkdir(parents=True, exist_ok=True)
    out.to_csv(path, index=False)
    return path


# -- input checks -------------------------------------------------------------------------------
def _check_cfg(cfg: Any) -> None:
    if not isinstance(cfg, DemandConfig):
        raise ValidationError(
            f"cfg must be a DemandConfig (e.g. DemandConfig.small()), not {type(cfg).__name__}.", field="cfg"
        )


def _check_stores(stores: Any) -> pd.DataFrame:
    if not isinstance(stores, pd.DataFrame):
        raise ValidationError(
            f"stores must be a DataFrame from simulate_stores(), not {type(stores).__name__}.", field="stores"
        )
    missing = [c for c in _STORE_COLUMNS if c not in stores.columns]
    if missing:
        raise ValidationError(
            f"stores is missing column(s) {', '.join(missing)}; expected {', '.join(_STORE_COLUMNS)}.",
            field=missing[0],
        )
    if stores.empty:
        raise ValidationError("stores is empty; simulate at least one store.", field="stores")
    out = stores.copy()
    if "store_type" not in out.columns:
        out["store_type"] = "residential"
    ids = out["store_id"]
    if not pd.api.types.is_integer_dtype(ids) or (ids < 1).any() or ids.duplicated().any():
        raise ValidationError("stores.store_id must be unique whole numbers >= 1.", field="store_id")
    open_h, close_h = out["open_hour"], out["close_hour"]
    if (
        not pd.api.types.is_integer_dtype(open_h)
        or not pd.api.types.is_integer_dtype(close_h)
        or (open_h < 0).any()
        or (close_h > 24).any()
        or (close_h <= open_h).any()
    ):
        raise ValidationError(
            "stores open_hour/close_hour must be whole hours with 0 <= open_hour < close_hour <= 24.",
            field="open_hour",
        )
    for col in ("opened_on", "closed_on"):
        out[col] = pd.to_datetime(out[col]).astype("datetime64[ns]")
    if out["opened_on"].isna().any():
        raise ValidationError("stores.opened_on must be set for every store.", field="opened_on")
    size = pd.to_numeric(out["size_m2"], errors="coerce").astype(float)
    if (size <= 0).any():
        raise ValidationError("stores.size_m2 must be positive (or empty when unknown).", field="size_m2")
    out["size_m2"] = size
    return out


def _until(value: Any, start: pd.Timestamp) -> pd.Timestamp:
    day = _day(value, "until")
    if day < start:
        raise ValidationError(
            f"until={day.date()} is before the simulation start {start.date()}; give a later date.",
            field="until",
        )
    return day + pd.Timedelta(days=1)


def _day(value: Any, name: str) -> pd.Timestamp:
    try:
        ts = pd.Timestamp(value)
    except (TypeError, ValueError):
        ts = pd.NaT
    if value is None or pd.isna(ts):
        raise ValidationError(f"{name}={value!r}: give a date like '2025-03-04'.", field=name)
    if ts.tzinfo is not None:
        ts = ts.tz_localize(None)
    return ts.normalize()
