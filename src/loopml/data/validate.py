"""Check a frame against a contract and say, row by row, which checks failed.

Three passes, all vectorised:

1. **coercion** (``loopml.data.coerce``): values that cannot become the declared dtype fail
   ``coerce_dtype('<dtype>')``;
2. **pandera** (lazy): nullability, ranges, allowed values. Its ``failure_cases`` give the row
   index of each failure, so quarantine is row-exact;
3. **uniqueness**, over the rows that passed 1-2: every repeat of a unique key after its first
   valid occurrence fails ``unique(<key>)``. Checking uniqueness last means a broken first copy
   does not take a good later copy down with it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import pandera.pandas as pa

from loopml.data.coerce import coerce_column
from loopml.data.contract import Column, Contract
from loopml.errors import ValidationError

FAILURE_COLUMNS = ["row", "column", "check", "value"]


@dataclass
class Validation:
    """The outcome of validating one input frame (internal; the store turns it into a report)."""

    #: every input row, converted to the contract's dtypes, in contract column order
    frame: pd.DataFrame
    #: one row per failed check: row position, column, check name, offending value
    failures: pd.DataFrame
    #: input columns the contract does not declare (dropped)
    extra_columns: list[str]

    @property
    def bad_rows(self) -> np.ndarray:
        return np.unique(self.failures["row"].to_numpy(dtype="int64"))

    def good_frame(self) -> pd.DataFrame:
        keep = np.ones(len(self.frame), dtype=bool)
        keep[self.bad_rows] = False
        return self.frame.loc[keep].reset_index(drop=True)


def validate_frame(raw: pd.DataFrame, contract: Contract) -> Validation:
    """Coerce and check ``raw``; never raises for bad rows, only for a frame that cannot be checked at all."""
    if not isinstance(raw, pd.DataFrame):
        raise ValidationError(
            f"ingest source must be a pandas DataFrame or a CSV/Parquet path, not {type(raw).__name__}."
        )
    raw_columns = [str(c) for c in raw.columns]
    if len(set(raw_columns)) != len(raw_columns):
        dupes = sorted({c for c in raw_columns if raw_columns.count(c) > 1})
        raise ValidationError(
            f"input has duplicate column names {dupes}; rename them so each column is unique."
        )
    missing = [c for c in contract.names if c not in raw_columns]
    if missing:
        raise ValidationError(
            f"input is missing contract column(s) {', '.join(missing)} (input has: {', '.join(raw_columns) or 'none'}). "
            "Add them to the source, or change the contract with define()."
        )
    raw = raw.reset_index(drop=True)
    raw.columns = raw_columns
    converted: dict[str, pd.Series] = {}
    parts: list[pd.DataFrame] = []
    coerce_failed: dict[str, np.ndarray] = {}
    for col in contract.columns:
        series, failed = coerce_column(raw[col.name], col)
        converted[col.name] = series
        if failed.any():
            rows = np.flatnonzero(failed)
            coerce_failed[col.name] = failed
            parts.append(
                _failures(rows, col.name, f"coerce_dtype('{col.dtype}')", raw[col.name].to_numpy()[rows])
            )
    frame = pd.DataFrame(converted)
    parts.append(_pandera_failures(frame, contract, coerce_failed))
    failures = _concat(parts)
    parts = [failures, _uniqueness_failures(frame, contract, failures)]
    failures = _concat(parts).sort_values(["row", "column"], kind="stable").reset_index(drop=True)
    extra = [c for c in raw_columns if c not in contract.names]
    return Validation(frame=frame, failures=failures, extra_columns=extra)


def build_schema(contract: Contract) -> pa.DataFrameSchema:
    """The pandera schema for the checks that look at one value at a time."""
    return pa.DataFrameSchema(
        {
            col.name: pa.Column(None, checks=_checks(col), nullable=col.nullable, coerce=False)
            for col in contract.columns
        },
        strict=False,
        ordered=False,
    )


def _checks(col: Column) -> list[pa.Check]:
    low, high = _bound(col, col.min), _bound(col, col.max)
    checks: list[pa.Check] = []
    if low is not None and high is not None:
        checks.append(pa.Check.in_range(low, high))
    elif low is not None:
        checks.append(pa.Check.ge(low))
    elif high is not None:
        checks.append(pa.Check.le(high))
    if col.allowed is not None:
        allowed = list(col.allowed)
        if col.dtype in ("str", "category"):
            allowed = [str(v) for v in allowed]
        checks.append(pa.Check.isin(allowed))
    return checks


def _bound(col: Column, value: Any) -> Any:
    if value is None:
        return None
    if col.dtype == "datetime":
        ts = pd.Timestamp(value)
        return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
    if col.dtype == "date":
        ts = pd.Timestamp(value)
        return (ts.tz_convert("UTC").tz_localize(None) if ts.tzinfo else ts).normalize()
    return value


def _pandera_failures(
    frame: pd.DataFrame, contract: Contract, coerce_failed: dict[str, np.ndarray]
) -> pd.DataFrame:
    try:
        build_schema(contract).validate(frame, lazy=True, inplace=True)
    except pa.errors.SchemaErrors as exc:
        cases = exc.failure_cases
    else:
        return _empty()
    cases = cases[cases["index"].notna()]
    if cases.empty:
        return _empty()
    out = pd.DataFrame(
        {
            "row": cases["index"].to_numpy(dtype="int64"),
            "column": cases["column"].astype(str).to_numpy(),
            "check": cases["check"].astype(str).to_numpy(),
            "value": cases["failure_case"].to_numpy(dtype=object),
        }
    )
    # A value that failed coercion is null afterwards; its not_nullable failure would say the same twice.
    redundant = np.zeros(len(out), dtype=bool)
    for name, failed in coerce_failed.items():
        sel = (out["column"].to_numpy() == name) & (out["check"].to_numpy() == "not_nullable")
        if sel.any():
            redundant |= sel & failed[out["row"].to_numpy()]
    return out.loc[~redundant]


def _uniqueness_failures(frame: pd.DataFrame, contract: Contract, failures: pd.DataFrame) -> pd.DataFrame:
    keys = contract.unique_keys()
    if not keys:
        return _empty()
    eligible = np.ones(len(frame), dtype=bool)
    eligible[failures["row"].to_numpy(dtype="int64")] = False
    parts = []
    for key in keys:
        subset = frame.loc[:, list(key)]
        candidates = (
            eligible & subset.notna().all(axis=1).to_numpy()
        )  # null keys are not duplicates (SQL rule)
        positions = np.flatnonzero(candidates)
        dup = subset.iloc[positions].duplicated(keep="first").to_numpy()
        rows = positions[dup]
        if rows.size:
            if len(key) == 1:
                values = subset[key[0]].to_numpy(dtype=object)[rows]
            else:
                values = np.empty(rows.size, dtype=object)
                values[:] = [
                    dict(zip(key, vals, strict=True)) for vals in subset.iloc[rows].itertuples(index=False)
                ]
            parts.append(_failures(rows, ",".join(key), f"unique({', '.join(key)})", values))
    return _concat(parts)


def _failures(rows: np.ndarray, column: str, check: str, values: np.ndarray) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "row": rows.astype("int64"),
            "column": column,
            "check": check,
            "value": np.asarray(values, dtype=object),
        }
    )


def _empty() -> pd.DataFrame:
    return pd.DataFrame({"row": np.array([], dtype="int64"), "column": [], "check": [], "value": []})


def _concat(parts: list[pd.DataFrame]) -> pd.DataFrame:
    parts = [p for p in parts if not p.empty]
    if not parts:
        return _empty()
    return pd.concat(parts, ignore_index=True)[FAILURE_COLUMNS]
