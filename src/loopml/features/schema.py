"""Checks that a frame has the columns and types a definition declares (transform outputs, pushes, keys).

A transformation that silently returns strings where floats were declared would poison training and
serving differently (Parquet keeps the strings, JSON does not), so mismatches fail loudly, naming the
column, the declared type and the fix.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
from pandas.api import types as pdt

from loopml.errors import ValidationError


def _fits(series: pd.Series, dtype: str) -> bool:
    if dtype == "float":
        return pdt.is_float_dtype(series) or pdt.is_integer_dtype(series) or series.isna().all()
    if dtype == "int":
        if pdt.is_integer_dtype(series) and not pdt.is_bool_dtype(series):
            return True
        # Integers with missing values arrive as floats: accept when every present value is whole.
        if pdt.is_float_dtype(series):
            present = series.dropna()
            return bool((present == np.floor(present)).all())
        return series.isna().all()
    if dtype == "bool":
        return pdt.is_bool_dtype(series) or series.isna().all()
    if dtype == "datetime":
        return pdt.is_datetime64_any_dtype(series) or series.isna().all()
    if dtype == "str":
        if pdt.is_string_dtype(series) or isinstance(series.dtype, pd.CategoricalDtype):
            return bool(series.dropna().map(lambda v: isinstance(v, str)).all())
        return series.isna().all()
    return False


def check_frame(
    frame: Any,
    *,
    owner: str,
    columns: Mapping[str, str],
    key: tuple[str, str] | None = None,
    time_column: str | None = None,
    fix: str = "",
) -> pd.DataFrame:
    """Validate and return ``frame`` restricted to key, time and declared columns (in that order)."""
    if not isinstance(frame, pd.DataFrame):
        raise ValidationError(
            f"{owner} must be a pandas DataFrame, got {type(frame).__name__}. {fix}".strip()
        )
    wanted: dict[str, str] = {}
    if key is not None:
        wanted[key[0]] = key[1]
    if time_column is not None:
        wanted[time_column] = "datetime"
    wanted.update(columns)
    missing = [c for c in wanted if c not in frame.columns]
    if missing:
        raise ValidationError(
            f"{owner} is missing column(s) {missing}; it has {list(frame.columns)[:20]}. {fix}".strip()
        )
    wrong = [
        f"{c!r} is {frame[c].dtype} but declared {t}"
        for c, t in wanted.items()
        if not _fits(frame[c], "int" if (key is not None and c == key[0] and t == "int") else t)
    ]
    if wrong:
        raise ValidationError(f"{owner} has wrongly typed column(s): {'; '.join(wrong)}. {fix}".strip())
    if key is not None and frame[key[0]].isna().any():
        raise ValidationError(f"{owner}: key column {key[0]!r} has missing values; every row needs a key")
    out = frame[list(wanted)].copy()
    if time_column is not None:
        out[time_column] = pd.to_datetime(out[time_column], utc=True)
    for c, t in columns.items():
        if t == "int" and pdt.is_float_dtype(out[c]):
            out[c] = out[c].astype("Int64")
    return out


def check_key_values(values: list[Any], *, column: str, dtype: str, entity: str) -> list[str]:
    """Entity keys as the text the online store is keyed by; wrong types are an error, not a miss."""
    out: list[str] = []
    for v in values:
        if dtype == "int":
            if isinstance(v, bool) or not isinstance(v, int | np.integer):
                raise ValidationError(
                    f"key {column}={v!r} is {type(v).__name__}; entity {entity!r} has int keys (pass e.g. {column}=42)"
                )
            out.append(str(int(v)))
        else:
            if not isinstance(v, str):
                raise ValidationError(
                    f"key {column}={v!r} is {type(v).__name__}; entity {entity!r} has str keys (pass e.g. {column}='a1')"
                )
            out.append(v)
    return out
