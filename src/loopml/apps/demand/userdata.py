"""Bring your own visits: read a CSV/Parquet file, find its regular frequency, refuse what is not regular.

The app forecasts from a regular series per store (hourly, daily, Monday weeks or months). Gaps are
fine (a missing day is a missing row), but mixed steps are not: a file where one store reports
hourly and another daily, or weeks labelled on different weekdays, would make every lag feature
mean something different per row, so it is refused here with an explanation instead of being
forecast badly. Row-level defects (negative or non-numeric visitors, duplicates) are left for the
visits contract to quarantine, exactly as for simulated data.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from loopml.errors import NotFoundError, ValidationError

EXPECTED_COLUMNS = ("store_id", "timestamp (or ts)", "visitors")
PERIOD_OFFSETS: dict[str, pd.DateOffset | pd.Timedelta] = {
    "h": pd.Timedelta(hours=1),
    "D": pd.Timedelta(days=1),
    "W": pd.Timedelta(days=7),
    "MS": pd.offsets.MonthBegin(1),
}
_ALIASES = {
    "h": "h",
    "H": "h",
    "hour": "h",
    "hourly": "h",
    "D": "D",
    "d": "D",
    "day": "D",
    "daily": "D",
    "W": "W",
    "w": "W",
    "W-MON": "W",
    "W-SUN": "W",
    "week": "W",
    "weekly": "W",
    "MS": "MS",
    "M": "MS",
    "ME": "MS",
    "month": "MS",
    "monthly": "MS",
}
_STEP_FREQ = {pd.Timedelta(hours=1): "h", pd.Timedelta(days=1): "D", pd.Timedelta(days=7): "W"}
#: Placeholder floor area for user stores: the same for all, so a model learns nothing from it.
DEFAULT_SIZE_M2 = 100.0
_NAMES = {"h": "hourly", "D": "daily", "W": "weekly", "MS": "monthly"}


def normalise_freq(freq: Any) -> str:
    """``"H"``, ``"hourly"``, ``"W-SUN"``, ``"M"`` ... -> one of ``h``, ``D``, ``W``, ``MS``."""
    if isinstance(freq, str) and freq.strip() in _ALIASES:
        return _ALIASES[freq.strip()]
    raise ValidationError(
        f"freq={freq!r}: use h (hourly), D (daily), W (weeks from Monday; W-MON/W-SUN accepted) "
        "or MS (months; M accepted).",
        field="freq",
    )


def period_end(ts: pd.DatetimeIndex, freq: str) -> pd.DatetimeIndex:
    """The last calendar day each period covers (a period is complete once that day is over)."""
    days = ts.normalize()
    if freq == "W":
        return days + pd.Timedelta(days=6)
    if freq == "MS":
        return days + pd.offsets.MonthEnd(0)
    return days


def load_user_visits(path_or_frame: Any, *, freq: str | None = None) -> tuple[pd.DataFrame, str]:
    """Read visits (store_id, timestamp|ts, visitors) and return ``(frame[store_id, ts, visitors], freq)``.

    Weeks are re-labelled with their Monday and months with their first day, so the rest of the app
    sees one convention. With ``freq`` given, the data must match it.
    """
    raw = _read(path_or_frame)
    if raw.empty:
        raise ValidationError("the visits file has no rows; give at least one row per store.", field="visits")
    columns = {str(c).strip().lower(): c for c in raw.columns}
    if "timestamp" in columns and "ts" in columns:
        raise ValidationError(
            "the visits file has both 'timestamp' and 'ts' columns; keep one of them.", field="timestamp"
        )
    time_col = "ts" if "ts" in columns else "timestamp"
    for name in ("store_id", time_col, "visitors"):
        if name not in columns:
            shown = "timestamp" if name == time_col else name
            raise ValidationError(
                f"the visits file has no {shown!r} column (it has: {', '.join(map(str, raw.columns))}); "
                f"expected columns: {', '.join(EXPECTED_COLUMNS)}.",
                field=shown,
            )
    frame = pd.DataFrame(
        {
            "store_id": _store_ids(raw[columns["store_id"]]),
            "ts": _timestamps(raw[columns[time_col]], time_col),
            "visitors": pd.to_numeric(raw[columns["visitors"]], errors="coerce").astype("float64"),
        }
    )
    if frame["visitors"].isna().all():
        raise ValidationError(
            "no 'visitors' value is a number; give visitor counts like 42 or 42.0.", field="visitors"
        )
    frame = frame.sort_values(["store_id", "ts"], kind="stable").reset_index(drop=True)
    wanted = normalise_freq(freq) if freq is not None else None
    inferred = infer_freq(frame, required=wanted is None)
    if wanted is not None and inferred is not None and inferred != wanted:
        raise ValidationError(
            f"freq={freq!r} was given but the data is {_NAMES[inferred]} (its usual step is one "
            f"{_NAMES[inferred].removesuffix('ly').replace('dai', 'day')}); pass freq={inferred!r} or fix the file.",
            field="freq",
        )
    final = wanted or inferred
    assert final is not None  # infer_freq(required=True) raised otherwise
    frame["ts"] = _align(frame, final)
    return frame.sort_values(["store_id", "ts"], kind="stable").reset_index(drop=True), final


def infer_freq(visits: pd.DataFrame, *, required: bool = True) -> str | None:
    """The one regular frequency of all stores' series, from each store's most common step.

    Refuses mixed frequencies across stores, timestamps off the grid (e.g. 10:30 in hourly data)
    and weeks or months labelled inconsistently. ``None`` when no store has two rows and not
    ``required``.
    """
    ts = pd.DatetimeIndex(visits["ts"])
    stores = visits["store_id"].to_numpy()
    order = np.lexsort((ts.asi8, stores))
    ts, stores = ts[order], stores[order]
    same = stores[1:] == stores[:-1]
    steps = pd.TimedeltaIndex(ts[1:] - ts[:-1])[same]
    step_store = stores[1:][same]
    keep = steps > pd.Timedelta(0)  # duplicates are the contract's business, not a frequency
    steps, step_store = steps[keep], step_store[keep]
    if len(steps) == 0:
        if required:
            raise ValidationError(
                "cannot infer the frequency: no store has two different timestamps; pass freq= "
                "(h, D, W or MS).",
                field="freq",
            )
        return None
    counts = pd.DataFrame({"store": step_store, "step": steps}).value_counts().reset_index(name="n")
    counts = counts.sort_values(["store", "n", "step"], ascending=[True, False, True], kind="stable")
    modal = counts.drop_duplicates("store").set_index("store")
    totals = counts.groupby("store")["n"].sum()
    per_store = {int(s): _step_to_freq(step) for s, step in modal["step"].items()}
    unknown = {s: modal.loc[s, "step"] for s, f in per_store.items() if f is None}
    if unknown:
        store, step = next(iter(unknown.items()))
        raise ValidationError(
            f"irregular data: store {store} mostly steps by {step}, which is not hourly, daily, weekly or "
            "monthly; resample it to one of h, D, W or MS.",
            field="ts",
        )
    kinds = sorted(set(per_store.values()), key=list(_NAMES).index)
    if len(kinds) > 1:
        examples = "; ".join(
            f"store {next(s for s, f in per_store.items() if f == kind)} is {_NAMES[kind]}" for kind in kinds
        )
        raise ValidationError(
            f"irregular data: stores use mixed frequencies ({examples}); give every store the same frequency.",
            field="ts",
        )
    freq = kinds[0]
    # months step by 28-31 days, so count steps of the frequency's kind rather than the one modal step
    on_grid = counts.loc[[_step_to_freq(step) == freq for step in counts["step"]]]
    share = on_grid.groupby("store")["n"].sum().reindex(totals.index, fill_value=0) / totals
    weak = share[share < 0.5]
    if len(weak):
        raise ValidationError(
            f"irregular data: store {int(weak.index[0])} has mixed steps (its usual {_NAMES[freq]} step is "
            f"only {weak.iloc[0]:.0%} of them); resample it to one regular frequency.",
            field="ts",
        )
    _check_grid(ts, stores, freq)
    return freq


def default_stores_for(
    visits: pd.DataFrame, *, open_hour: int = 10, close_hour: int = 22, closed_after_days: int = 28
) -> pd.DataFrame:
    """A stores table for user data: what the visits themselves tell (first day, hours, a store gone
    silent for ``closed_after_days`` while others report is closed); region and type are 'unknown' and
    the floor area is the same placeholder for every store (``DEFAULT_SIZE_M2``).

    Opening hours come from hourly data; coarser data gets ``open_hour``-``close_hour``.
    """
    if not isinstance(visits, pd.DataFrame) or not {"store_id", "ts"} <= set(visits.columns):
        raise ValidationError("default_stores_for needs a visits frame with store_id and ts.", field="visits")
    if visits.empty:
        raise ValidationError("default_stores_for got no visits; load some rows first.", field="visits")
    if not 0 <= open_hour < close_hour <= 24:
        raise ValidationError(
            f"open_hour={open_hour}, close_hour={close_hour}: need 0 <= open_hour < close_hour <= 24.",
            field="open_hour",
        )
    freq = infer_freq(visits, required=False) or "D"
    ts = pd.DatetimeIndex(visits["ts"])
    groups = pd.DataFrame({"store_id": visits["store_id"].to_numpy(), "ts": ts, "hour": ts.hour})
    agg = groups.groupby("store_id").agg(
        first=("ts", "min"), last=("ts", "max"), lo=("hour", "min"), hi=("hour", "max")
    )
    last_day = period_end(pd.DatetimeIndex(agg["last"]), freq)
    silent = last_day < last_day.max() - pd.Timedelta(days=closed_after_days)
    closed = pd.Series(last_day + pd.Timedelta(days=1), index=agg.index).where(silent)
    hourly = freq == "h"
    return pd.DataFrame(
        {
            "store_id": agg.index.to_numpy(dtype="int64"),
            "region": "unknown",
            "store_type": "unknown",
            "size_m2": DEFAULT_SIZE_M2,
            "open_hour": (agg["lo"] if hourly else pd.Series(open_hour, index=agg.index)).to_numpy(
                dtype="int64"
            ),
            "close_hour": (agg["hi"] + 1 if hourly else pd.Series(close_hour, index=agg.index)).to_numpy(
                dtype="int64"
            ),
            "opened_on": pd.DatetimeIndex(agg["first"]).normalize().to_numpy(dtype="datetime64[ns]"),
            "closed_on": closed.to_numpy(dtype="datetime64[ns]"),
        }
    )


# -- helpers ------------------------------------------------------------------------------------
def _read(source: Any) -> pd.DataFrame:
    if isinstance(source, pd.DataFrame):
        return source
    if not isinstance(source, (str, Path)):
        raise ValidationError(
            f"give a CSV/Parquet path or a DataFrame, not {type(source).__name__}.", field="path_or_frame"
        )
    path = Path(source)
    suffix = path.suffix.lower()
    if suffix not in (".csv", ".parquet", ".pq"):
        raise ValidationError(
            f"{str(path)!r}: unsupported file type {suffix or '(none)'!r}; use a .csv or .parquet file.",
            field="path",
        )
    if not path.is_file():
        raise NotFoundError(f"{str(path)!r} does not exist; check the path.", field="path")
    try:
        if suffix == ".csv":
            return pd.read_csv(path)
        return pd.read_parquet(path)
    except (ValueError, OSError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise ValidationError(
            f"{str(path)!r} could not be read as {suffix[1:].upper()}: {exc}", field="path"
        ) from None


def _store_ids(values: pd.Series) -> pd.Series:
    numbers = pd.to_numeric(values, errors="coerce")
    bad = numbers.isna() | (numbers % 1 != 0) | (numbers < 1)
    if bad.any():
        first = int(np.flatnonzero(bad.to_numpy())[0])
        raise ValidationError(
            f"store_id: {int(bad.sum())} row(s) are not whole numbers >= 1 (e.g. row {first}: "
            f"{values.iloc[first]!r}); map your store codes to numbers 1, 2, 3 ...",
            field="store_id",
        )
    return numbers.astype("int64")


def _timestamps(values: pd.Series, name: str) -> pd.Series:
    if pd.api.types.is_datetime64_any_dtype(values):
        parsed = pd.to_datetime(values)
    elif pd.api.types.is_numeric_dtype(values):
        raise ValidationError(
            f"{name}: the timestamps are numbers; give dates/times as text like '2025-03-04 10:00'.",
            field=name,
        )
    else:
        text = values.astype("string").str.strip()
        parsed = pd.to_datetime(text, errors="coerce", format="ISO8601")
        retry = parsed.isna() & text.notna()
        if retry.any():
            parsed[retry] = pd.to_datetime(text[retry], errors="coerce", format="mixed")
    if getattr(parsed.dt, "tz", None) is not None:
        parsed = parsed.dt.tz_localize(None)  # keep the stores' wall-clock time
    bad = parsed.isna()
    if bad.any():
        first = int(np.flatnonzero(bad.to_numpy())[0])
        raise ValidationError(
            f"{name}: {int(bad.sum())} of {len(values)} timestamp(s) could not be parsed (e.g. row {first}: "
            f"{values.iloc[first]!r}); use ISO text like '2025-03-04' or '2025-03-04 10:00'.",
            field=name,
        )
    return parsed.astype("datetime64[ns]")


def _step_to_freq(step: pd.Timedelta) -> str | None:
    if step in _STEP_FREQ:
        return _STEP_FREQ[step]
    if pd.Timedelta(days=28) <= step <= pd.Timedelta(days=31):
        return "MS"
    return None


def _check_grid(ts: pd.DatetimeIndex, stores: np.ndarray, freq: str) -> None:
    """Every timestamp must sit on the frequency's grid, with one labelling convention per store."""
    off_hour = (ts.minute != 0) | (ts.second != 0) | (ts.nanosecond != 0) | (ts.microsecond != 0)
    off = off_hour if freq == "h" else off_hour | (ts.hour != 0)
    if off.any():
        unit = "on the hour" if freq == "h" else "at midnight"
        raise ValidationError(
            f"irregular data: {int(off.sum())} {_NAMES[freq]} timestamp(s) are not {unit} "
            f"(e.g. {ts[np.flatnonzero(off)[0]]}); align them to the {_NAMES[freq]} grid.",
            field="ts",
        )
    if freq == "W":
        label = pd.Series(ts.day_of_week.to_numpy()).groupby(stores).nunique()
        what = "weekdays"
    elif freq == "MS":
        month_end = np.asarray(ts.is_month_end)
        kind = np.where(ts.day == 1, 0, np.where(month_end, 1, 2))
        if (kind == 2).any():
            raise ValidationError(
                f"irregular data: monthly timestamps must be the first or last day of a month "
                f"(e.g. {ts[np.flatnonzero(kind == 2)[0]].date()}).",
                field="ts",
            )
        label = pd.Series(kind).groupby(stores).nunique()
        what = "month starts and month ends"
    else:
        return
    mixed = label[label > 1]
    if len(mixed):
        raise ValidationError(
            f"irregular data: store {int(mixed.index[0])} labels its periods with mixed {what}; "
            "use one convention per store.",
            field="ts",
        )


def _align(frame: pd.DataFrame, freq: str) -> pd.Series:
    """Weeks -> their Monday, months -> their first day; hours and days stay as they are."""
    ts = frame["ts"]
    if freq == "W":
        return ts.dt.normalize() - pd.to_timedelta(ts.dt.day_of_week, unit="D")
    if freq == "MS":
        return ts.dt.to_period("M").dt.to_timestamp().astype("datetime64[ns]")
    return ts
