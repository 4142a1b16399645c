"""The published tables of the demand app: write once per shift week, read by week and store.

Forecasts and staffing plans are partitioned by week id (the ISO date of the Monday), so publishing a
week again replaces only that week (a re-run after a failure gives the same bytes and no new version)
and every read for one week touches one partition, however many weeks the chain has published.
The HTTP API, the dashboard and the CSV export all read through the functions here.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from datetime import date, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd

from loopml import Loopml
from loopml.apps.demand.contracts import DATASETS, EVALUATION, FORECASTS, STAFFING
from loopml.data import Column, Contract
from loopml.errors import NotFoundError, ValidationError

#: Name of the A/B analysis table (one row per analysed week, newest last).
AB_DATASET = "demand_ab"
AB = Contract(
    columns=[
        Column("week", "date", description="last evaluated shift week the analysis covers"),
        Column("weeks", "int", min=0),
        Column("stores", "int", min=0),
        Column("champion_wape", "float", nullable=True),
        Column("challenger_wape", "float", nullable=True),
        Column(
            "diff",
            "float",
            nullable=True,
            description="mean over stores of champion WAPE minus challenger WAPE (> 0: challenger better)",
        ),
        Column("ci_low", "float", nullable=True),
        Column("ci_high", "float", nullable=True),
        Column("verdict", "str"),
        Column("explanation", "str"),
    ],
    unique_key=("week",),
)
EXAMPLE_WEEK = "2026-12-07"
RUN_HINT = (
    "run the weekly pipeline first (`loopml demo demand --fast`, or `loopml pipelines run demand.weekly`)"
)
_FORECAST_KEY = ["store_id", "ts", "grain", "model"]
_STAFFING_KEY = ["store_id", "ts"]
_SUBDAY_GRAINS = ("hour", "day")


# -- week ids ---------------------------------------------------------------------------------------
def parse_week(value: Any, field: str = "week") -> str:
    """A week id (``"2026-12-07"``): the ISO date of a Monday. Dates and timestamps are accepted too."""
    if isinstance(value, datetime | pd.Timestamp):
        day = value.date() if value == value.normalize() else None
        if day is None:
            raise ValidationError(
                f"{field}={value!s} has a time of day; give the Monday's date, e.g. {EXAMPLE_WEEK}."
            )
    elif isinstance(value, date):
        day = value
    elif isinstance(value, str):
        try:
            day = date.fromisoformat(value.strip())
        except ValueError:
            raise ValidationError(
                f"{field}={value!r} is not an ISO date; give the Monday of the shift week, e.g. {EXAMPLE_WEEK}."
            ) from None
    else:
        raise ValidationError(
            f"{field}={value!r} ({type(value).__name__}): give the Monday's ISO date as text, e.g. {EXAMPLE_WEEK}."
        )
    if day.weekday() != 0:
        monday = day - timedelta(days=day.weekday())
        raise ValidationError(
            f"{field}={day.isoformat()} is a {day:%A}; weeks are named by their Monday, e.g. {monday.isoformat()}."
        )
    return day.isoformat()


def week_of(ts: Any) -> str:
    """The week id of the shift week a timestamp falls in."""
    day = pd.Timestamp(ts).normalize()
    return (day - pd.Timedelta(days=day.weekday())).date().isoformat()


def week_range(weeks_known: list[str]) -> str:
    """``"2026-11-02 .. 2026-12-07 (6 weeks)"``: the range a 404 message names."""
    if not weeks_known:
        return "none yet"
    if len(weeks_known) == 1:
        return weeks_known[0]
    return f"{weeks_known[0]} .. {weeks_known[-1]} ({len(weeks_known)} weeks)"


# -- write ----------------------------------------------------------------------------------------
def publish(
    lm: Loopml, week: Any, forecasts: pd.DataFrame, staffing: pd.DataFrame, *, actor: str = "demand"
) -> dict[str, Any]:
    """Publish one week's forecasts and staffing plan (idempotent: the partition is the week id).

    Both frames are checked before anything is written, so a bad frame never leaves a week with
    forecasts but no plan; publishing the same rows again creates no new dataset version.
    """
    week_id = parse_week(week)
    fc = _prepare(forecasts, FORECASTS, week_id, "forecasts", _FORECAST_KEY)
    st = _prepare(staffing, STAFFING, week_id, "staffing", _STAFFING_KEY)
    _check_forecasts(fc, week_id)
    _check_staffing(st, week_id)
    out: dict[str, Any] = {"week": week_id}
    for key, name, frame, contract in (
        ("forecasts", DATASETS["forecasts"], fc, FORECASTS),
        ("staffing", DATASETS["staffing"], st, STAFFING),
    ):
        result = lm.datasets.ingest(name, frame, contract=contract, partition=week_id, actor=actor)
        out[key] = _ingest_summary(result)
    return out


def publish_evaluation(
    lm: Loopml, week: Any, evaluation: pd.DataFrame, *, actor: str = "demand"
) -> dict[str, Any]:
    """Store one week's evaluation (written when the week's actuals have landed), partitioned by week."""
    week_id = parse_week(week)
    frame = _prepare(evaluation, EVALUATION, week_id, "evaluation", ["store_id", "model"])
    _check_finite(frame, ["mae", "rmse", "actual", "forecast"], "evaluation")
    result = lm.datasets.ingest(
        DATASETS["evaluation"], frame, contract=EVALUATION, partition=week_id, actor=actor
    )
    return {"week": week_id, "evaluation": _ingest_summary(result)}


def publish_ab(lm: Loopml, week: Any, result: Any, *, actor: str = "demand") -> dict[str, Any]:
    """Append (or replace) the A/B analysis made after ``week``'s evaluation: one row per analysis."""
    week_id = parse_week(week)
    fields = ("weeks", "stores", "champion_wape", "challenger_wape", "diff", "ci_low", "ci_high")
    data = (
        result.to_dict()
        if hasattr(result, "to_dict")
        else dict(vars(result))
        if hasattr(result, "__dict__")
        else result
    )
    if not isinstance(data, dict):
        raise ValidationError(f"result={result!r}: pass the AbResult returned by abtest.analyse().")
    missing = [f for f in (*fields, "verdict", "explanation") if f not in data]
    if missing:
        raise ValidationError(
            f"result is missing {', '.join(missing)}; pass the AbResult from abtest.analyse()."
        )
    row = {"week": pd.Timestamp(week_id)} | {f: data[f] for f in fields}
    row |= {"verdict": str(data["verdict"]), "explanation": str(data["explanation"])}
    try:
        previous = lm.datasets.read(AB_DATASET)
        previous = previous[pd.to_datetime(previous["week"]) != pd.Timestamp(week_id)]
    except NotFoundError:
        previous = pd.DataFrame()
    frame = pd.concat([previous, pd.DataFrame([row])], ignore_index=True)
    frame["week"] = pd.to_datetime(frame["week"])
    frame = frame.sort_values("week").reset_index(drop=True)
    ingest = lm.datasets.ingest(AB_DATASET, frame[AB.names], contract=AB, actor=actor)
    return {"week": week_id, "ab": _ingest_summary(ingest)}


# -- read -----------------------------------------------------------------------------------------
def weeks(lm: Loopml, table: str = "forecasts") -> list[str]:
    """Week ids published in ``table`` (``forecasts``, ``staffing`` or ``evaluation``), oldest first."""
    if table not in ("forecasts", "staffing", "evaluation"):
        raise ValidationError(f"table={table!r}: use 'forecasts', 'staffing' or 'evaluation'.")
    try:
        parts = lm.datasets.partitions(DATASETS[table])
    except NotFoundError:
        return []
    return sorted(str(p.key) for p in parts)


def latest_week(lm: Loopml, table: str = "forecasts") -> str:
    """The newest published week of ``table``, or NotFoundError with the hint to run the pipeline."""
    known = weeks(lm, table)
    if not known:
        raise NotFoundError(f"no demand {table} have been published yet; {RUN_HINT}.")
    return known[-1]


def read_forecasts(
    lm: Loopml,
    *,
    store: int | None = None,
    week: Any = None,
    grain: str | None = None,
    used_only: bool = False,
) -> pd.DataFrame:
    """Forecast rows (all weeks when ``week`` is None), optionally one store, one grain, the used arm only."""
    if grain is not None and grain not in ("hour", "day", "week", "month"):
        raise ValidationError(
            f"grain={grain!r}: use 'hour' or 'day' ('week'/'month' for weekly/monthly data)."
        )
    frame = _read(lm, "forecasts", store=store, week=week)
    if grain is not None:
        frame = frame[frame["grain"] == grain]
    if used_only and "used" in frame:
        frame = frame[frame["used"].astype(bool)]
    return frame.sort_values(["store_id", "grain", "ts", "model"]).reset_index(drop=True)


def read_staffing(lm: Loopml, *, store: int | None = None, week: Any = None) -> pd.DataFrame:
    """Staffing plan rows (store, hour, staff), optionally one store and one week."""
    frame = _read(lm, "staffing", store=store, week=week)
    return frame.sort_values(["store_id", "ts"]).reset_index(drop=True)


def read_evaluation(lm: Loopml, *, week: Any = None, store: int | None = None) -> pd.DataFrame:
    """Evaluation rows (error and staffing cost per store, week and model); empty before any actuals."""
    if not weeks(lm, "evaluation") and week is None:
        return pd.DataFrame(columns=EVALUATION.names)
    frame = _read(lm, "evaluation", store=store, week=week)
    return frame.sort_values(["week", "store_id", "model"]).reset_index(drop=True)


def read_ab(lm: Loopml) -> pd.DataFrame:
    """Every stored A/B analysis, oldest first; NotFoundError (with the hint) when there is none."""
    try:
        frame = normalise_times(lm.datasets.read(AB_DATASET))
    except NotFoundError:
        raise NotFoundError(f"no A/B analysis is stored yet (dataset {AB_DATASET!r}); {RUN_HINT}.") from None
    if frame.empty:
        raise NotFoundError(f"the A/B table {AB_DATASET!r} is empty; {RUN_HINT}.")
    order = next((c for c in ("week", "analysed_at", "created_at", "run_date") if c in frame), None)
    return frame.sort_values(order, kind="stable").reset_index(drop=True) if order else frame


def to_csv(frame: pd.DataFrame) -> str:
    """CSV text for spreadsheets: ISO timestamps, no index, week ids as plain dates."""
    return _as_text_times(frame).to_csv(index=False, lineterminator="\n")


def to_records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """JSON-ready rows: ISO times, week ids as dates, native numbers, NaN as None."""
    out = _as_text_times(frame).astype(object)
    out = out.where(out.notna(), None)
    rows = out.to_dict(orient="records")
    for row in rows:
        for key, value in row.items():
            if isinstance(value, np.generic):
                row[key] = value.item()
            if isinstance(row[key], float) and not math.isfinite(row[key]):
                row[key] = None
    return rows


def _as_text_times(frame: Any) -> pd.DataFrame:
    if not isinstance(frame, pd.DataFrame):
        raise ValidationError(f"frame: expected a pandas DataFrame, got {type(frame).__name__}.")
    out = frame.copy()
    for column in out.columns:
        values = out[column]
        if pd.api.types.is_datetime64_any_dtype(values):
            if isinstance(values.dtype, pd.DatetimeTZDtype):
                values = values.dt.tz_localize(None)
            fmt = "%Y-%m-%d" if column in ("week", "opened_on", "closed_on") else "%Y-%m-%dT%H:%M:%S"
            out[column] = values.dt.strftime(fmt)
        elif (
            values.dtype == object
            and len(values)
            and isinstance(values.dropna().iloc[0] if values.notna().any() else None, date)
        ):
            out[column] = values.map(lambda v: v.isoformat() if isinstance(v, date) else v)
    return out


# -- helpers --------------------------------------------------------------------------------------
def _read(lm: Loopml, table: str, *, store: int | None, week: Any) -> pd.DataFrame:
    name = DATASETS[table]
    store_id = _check_store(store)
    known = weeks(lm, table)
    if not known:
        raise NotFoundError(f"no demand {table} have been published yet; {RUN_HINT}.")
    if week is None:
        frame = lm.datasets.read(name)
    else:
        week_id = parse_week(week)
        if week_id not in known:
            raise NotFoundError(
                f"week={week_id} has no published {table}; published weeks: {week_range(known)}."
            )
        frame = lm.datasets.read(name, partitions=[week_id])
    frame = normalise_times(frame)
    if store_id is not None:
        stores = frame["store_id"]
        if not (stores == store_id).any():
            where = f"in week {parse_week(week)}" if week is not None else "in any week"
            raise NotFoundError(
                f"store={store_id} has no {table} {where}; stores are {_id_range(stores.unique())}."
            )
        frame = frame[stores == store_id]
    return frame


def normalise_times(frame: pd.DataFrame) -> pd.DataFrame:
    """Stored datetimes come back UTC-labelled: drop the label to get store wall-clock time back."""
    out = frame.copy()
    for column in out.columns:
        values = out[column]
        if isinstance(values.dtype, pd.DatetimeTZDtype):
            out[column] = values.dt.tz_localize(None)
        elif column == "week" and not pd.api.types.is_datetime64_any_dtype(values):
            out[column] = pd.to_datetime(values)
    return out


def _check_store(store: Any) -> int | None:
    if store is None:
        return None
    if isinstance(store, bool) or not isinstance(store, int | np.integer):
        raise ValidationError(f"store={store!r}: give a store id as a positive integer, e.g. 12.")
    if store < 1:
        raise ValidationError(f"store={store}: store ids start at 1.")
    return int(store)


def _id_range(ids: Iterable[Any]) -> str:
    values = sorted(int(v) for v in ids)
    if not values:
        return "none"
    return f"{values[0]}..{values[-1]} ({len(values)} stores)"


def _prepare(frame: Any, contract: Contract, week_id: str, what: str, key: list[str]) -> pd.DataFrame:
    if not isinstance(frame, pd.DataFrame):
        raise ValidationError(f"{what}: expected a pandas DataFrame, got {type(frame).__name__}.")
    if frame.empty:
        raise ValidationError(
            f"{what}: the frame has no rows; there is nothing to publish for week {week_id}."
        )
    out = frame.copy()
    monday = pd.Timestamp(week_id)
    if "week" in out:
        weeks_in = pd.to_datetime(out["week"], errors="coerce")
        if weeks_in.isna().any() or (weeks_in != monday).any():
            bad = sorted({str(v) for v in out["week"][weeks_in.isna() | (weeks_in != monday)]})[:3]
            raise ValidationError(
                f"{what}.week has {', '.join(bad)}; every row must belong to week {week_id}."
            )
    out["week"] = monday
    missing = [c for c in contract.names if c not in out]
    if missing:
        raise ValidationError(
            f"{what} is missing column(s) {', '.join(missing)}; the {what} table needs {', '.join(contract.names)}."
        )
    key = [c for c in key if c in out]
    dupes = out.duplicated(key)
    if dupes.any():
        first = out.loc[dupes, key].iloc[0].to_dict()
        raise ValidationError(
            f"{what} has {int(dupes.sum())} duplicate row(s) on {key}, e.g. {first}; drop them."
        )
    # Deterministic row order and columns: the same plan gives the same Parquet bytes (no new version).
    return out[contract.names].sort_values(key, kind="stable").reset_index(drop=True)


def _check_finite(frame: pd.DataFrame, columns: list[str], what: str) -> None:
    for column in columns:
        if column not in frame:
            continue
        values = pd.to_numeric(frame[column], errors="coerce")
        bad = values.isna() | ~np.isfinite(values.fillna(0.0))
        if bad.any():
            raise ValidationError(
                f"{what}.{column} has {int(bad.sum())} missing, NaN or infinite value(s) "
                f"(first at row {int(np.flatnonzero(bad.to_numpy())[0])}); fix the model output before publishing."
            )


def _in_week(ts: pd.Series, week_id: str) -> pd.Series:
    start = pd.Timestamp(week_id)
    return (ts >= start) & (ts < start + pd.Timedelta(days=7))


def _check_forecasts(frame: pd.DataFrame, week_id: str) -> None:
    _check_finite(frame, ["forecast", "lower", "upper"], "forecasts")
    if (frame["forecast"] < 0).any():
        raise ValidationError(
            "forecasts.forecast has negative values; visitor forecasts must be >= 0 (clip them)."
        )
    if (frame["lower"] > frame["upper"]).any():
        raise ValidationError("forecasts: some rows have lower > upper; the interval bounds are swapped.")
    ts = pd.to_datetime(frame["ts"])
    sub_day = frame["grain"].isin(_SUBDAY_GRAINS)
    outside = sub_day & ~_in_week(ts, week_id)
    if outside.any():
        raise ValidationError(
            f"forecasts.ts has {int(outside.sum())} hour/day row(s) outside week {week_id} "
            f"(e.g. {ts[outside].iloc[0]}); publish each shift week separately."
        )


def _check_staffing(frame: pd.DataFrame, week_id: str) -> None:
    _check_finite(frame, ["visitors_forecast", "staff"], "staffing")
    staff = pd.to_numeric(frame["staff"])
    if (staff < 0).any() or not np.allclose(staff, np.round(staff)):
        raise ValidationError("staffing.staff must be whole, non-negative numbers of people.")
    ts = pd.to_datetime(frame["ts"])
    outside = ~_in_week(ts, week_id)
    if outside.any():
        raise ValidationError(
            f"staffing.ts has {int(outside.sum())} row(s) outside week {week_id} (e.g. {ts[outside].iloc[0]})."
        )


def _ingest_summary(result: Any) -> dict[str, Any]:
    version = result.version
    return {
        "dataset": version.dataset,
        "version": version.number,
        "rows": int(result.rows_ok),
        "rows_quarantined": int(result.rows_quarantined),
        "new_version": bool(getattr(result.report, "new_version", True)),
    }


def finite_or_none(value: Any) -> float | None:
    """A float for JSON and templates, None for missing/NaN/inf."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None
