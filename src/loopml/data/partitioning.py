"""Partition keys: what a valid key is, and how ``partition_by`` turns a column into one key per row.

Keys end up in manifests, file listings, URLs (``/v1/datasets/{name}/partitions``) and CLI output,
so they are restricted to a small, safe alphabet. A ``partition_by`` column is mapped to keys
vectorised (one factorisation of the column, then one string per *distinct* value), so splitting
4.5M rows into 1,100 daily partitions costs about as much as one pass over the column.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from loopml.data.contract import Contract
from loopml.errors import ValidationError

KEY_RE = re.compile(r"^[A-Za-z0-9_.:=-]{1,64}$")
KEY_RULE = "1-64 characters from letters, digits and _ . : = -"
#: column dtypes a dataset can be split by, and how their values become keys
PARTITION_DTYPES = ("datetime", "date", "int", "str", "category", "bool")


def check_key(key: object, *, field: str = "partition") -> str:
    """Return ``key`` if it is a valid partition key, else raise a ValidationError naming ``field``."""
    if not isinstance(key, str):
        raise ValidationError(
            f"{field}={key!r}: a partition key is a string ({KEY_RULE}), e.g. '2026-11-29'.", field=field
        )
    if not KEY_RE.match(key):
        raise ValidationError(
            f"{field}={key!r} is not a valid partition key: use {KEY_RULE}, e.g. '2026-11-29'.", field=field
        )
    return key


def check_keys(keys: object, *, field: str = "partitions") -> list[str]:
    """A non-empty list of valid keys, duplicates removed, in the caller's order."""
    if isinstance(keys, str) or not isinstance(keys, Sequence):
        raise ValidationError(
            f"{field}={keys!r}: give a list of partition keys, e.g. ['2026-11-29', '2026-11-30'].",
            field=field,
        )
    if len(keys) == 0:
        raise ValidationError(
            f"{field}=[]: give at least one partition key, or partitions=None for all of them.", field=field
        )
    return list(dict.fromkeys(check_key(k, field=field) for k in keys))


def check_partition_by(column: object, contract: Contract) -> str:
    """The ``partition_by`` column must be a contract column of a dtype that has natural keys."""
    if not isinstance(column, str) or column not in contract.names:
        raise ValidationError(
            f"partition_by={column!r}: name a contract column ({', '.join(contract.names)}).",
            field="partition_by",
        )
    dtype = contract.column(column).dtype
    if dtype not in PARTITION_DTYPES:
        raise ValidationError(
            f"partition_by={column!r} is a {dtype} column; partition by a {', '.join(PARTITION_DTYPES)} "
            "column (a datetime column is split by day).",
            field="partition_by",
        )
    return column


@dataclass(frozen=True)
class RowKeys:
    """Each row's partition as an index into ``keys`` (-1: no valid key, the row is quarantined)."""

    codes: np.ndarray
    keys: list[str]
    #: the offending value for each row whose key is missing or invalid (for the quarantine record)
    bad_values: dict[int, object]


def row_keys(values: pd.Series, dtype: str) -> RowKeys:
    """Map a coerced contract column to partition keys: datetime -> ISO day, date -> ISO date, else str()."""
    if dtype in ("datetime", "date"):
        stamps = values.dt.tz_convert(None) if isinstance(values.dtype, pd.DatetimeTZDtype) else values
        days = stamps.to_numpy().astype("datetime64[D]")
        codes, uniques = pd.factorize(days)
        keys = [str(np.datetime64(day, "D")) for day in uniques]
    else:
        codes, uniques = pd.factorize(values)
        keys = [str(bool(v)).lower() if dtype == "bool" else str(v) for v in uniques]
    codes = np.asarray(codes, dtype="int64").copy()
    valid = np.array([bool(KEY_RE.match(k)) for k in keys], dtype=bool)
    if valid.size and not valid.all():
        codes[np.isin(codes, np.flatnonzero(~valid))] = -1
    missing = np.flatnonzero(codes < 0)
    raw = values.iloc[missing].to_numpy(dtype=object)
    bad_values = {int(i): v for i, v in zip(missing, raw, strict=True)}
    return RowKeys(codes=codes, keys=keys, bad_values=bad_values)
