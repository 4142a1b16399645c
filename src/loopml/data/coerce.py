"""Turn raw input columns (CSV text, Parquet types, user DataFrames) into the contract's dtypes.

Coercion is vectorised and never raises on a bad value: a value that cannot be converted becomes
null in the output and is flagged in a mask, so the row is quarantined with a ``coerce_dtype``
failure instead of crashing the whole ingest. Canonical pandas dtypes per contract dtype:

=========  ==========================  ==========================================
contract   pandas dtype                accepted input
=========  ==========================  ==========================================
int        ``Int64`` (nullable)        integers, integral floats, numeric text
float      ``float64``                 numbers, numeric text
str        ``string``                  anything (numbers are written as text)
category   ``string``                  anything; ``allowed`` restricts the values
bool       ``boolean`` (nullable)      bools, 0/1, true/false/yes/no/t/f/y/n text
datetime   ``datetime64[us, UTC]``     ISO 8601 text, datetimes (naive = UTC)
date       ``datetime64[us]`` midnight ISO 8601 text, dates, datetimes (time dropped)
=========  ==========================  ==========================================
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from pandas.api import types as ptypes

from loopml.data.contract import Column

_TRUE = ("true", "t", "yes", "y", "1")
_FALSE = ("false", "f", "no", "n", "0")
_BOOL_MAP = {**dict.fromkeys(_TRUE, True), **dict.fromkeys(_FALSE, False)}


def coerce_column(values: pd.Series, column: Column) -> tuple[pd.Series, np.ndarray]:
    """Return ``(converted, failed)``: ``failed[i]`` is True when a non-null input could not be converted."""
    present = values.notna().to_numpy()
    if column.dtype not in ("str", "category"):
        values = _blank_to_null(values)
        present = values.notna().to_numpy()
    converter = _CONVERTERS[column.dtype]
    out = converter(values)
    failed = present & out.isna().to_numpy()
    out.name = column.name
    return out, failed


def _blank_to_null(values: pd.Series) -> pd.Series:
    """Empty or whitespace-only text means "missing" for non-text columns (the CSV convention)."""
    if ptypes.is_string_dtype(values.dtype) or values.dtype == object:
        text = values.astype("string")
        blank = text.str.strip().eq("").fillna(False).to_numpy(dtype=bool)
        if blank.any():
            values = values.mask(blank)
    return values


def _numeric(values: pd.Series) -> pd.Series:
    if ptypes.is_bool_dtype(values.dtype):
        return values.astype("float64")
    if ptypes.is_numeric_dtype(values.dtype):
        return values
    text = values.astype("string").str.strip()
    return pd.to_numeric(text, errors="coerce")


def _to_int(values: pd.Series) -> pd.Series:
    if ptypes.is_integer_dtype(values.dtype):
        return values.astype("Int64")
    num = _numeric(values)
    if ptypes.is_integer_dtype(num.dtype):
        return num.astype("Int64")
    arr = num.astype("float64").to_numpy()
    with np.errstate(invalid="ignore"):
        ok = np.isfinite(arr) & (np.floor(arr) == arr) & (np.abs(arr) < 2**63)
    return pd.Series(pd.array(np.where(ok, arr, 0).astype("int64"), dtype="Int64"), index=values.index).mask(
        ~ok
    )


def _to_float(values: pd.Series) -> pd.Series:
    return _numeric(values).astype("float64")


def _to_string(values: pd.Series) -> pd.Series:
    return values.astype("string")


def _to_bool(values: pd.Series) -> pd.Series:
    if ptypes.is_bool_dtype(values.dtype):
        return values.astype("boolean")
    if ptypes.is_numeric_dtype(values.dtype):
        mapped = values.map({1: True, 0: False})
    else:
        mapped = values.astype("string").str.strip().str.lower().map(_BOOL_MAP)
    return mapped.astype("boolean")


def _to_datetime(values: pd.Series) -> pd.Series:
    if isinstance(values.dtype, pd.DatetimeTZDtype):
        return values.dt.tz_convert("UTC").astype("datetime64[us, UTC]")
    if ptypes.is_datetime64_dtype(values.dtype):
        return values.dt.tz_localize("UTC").astype("datetime64[us, UTC]")
    if ptypes.is_numeric_dtype(values.dtype) or ptypes.is_bool_dtype(values.dtype):
        # Bare numbers are ambiguous (seconds? milliseconds?): refuse them rather than guess.
        return pd.Series(pd.NaT, index=values.index, dtype="datetime64[us, UTC]")
    if values.dtype == object:
        values = values.map(lambda v: v.isoformat() if hasattr(v, "isoformat") else v)
    text = values.astype("string").str.strip()
    parsed = pd.to_datetime(text, errors="coerce", utc=True, format="ISO8601")
    return parsed.astype("datetime64[us, UTC]")


def _to_date(values: pd.Series) -> pd.Series:
    stamps = _to_datetime(values)
    return stamps.dt.tz_convert(None).dt.normalize().astype("datetime64[us]")


_CONVERTERS = {
    "int": _to_int,
    "float": _to_float,
    "str": _to_string,
    "category": _to_string,
    "bool": _to_bool,
    "datetime": _to_datetime,
    "date": _to_date,
}
