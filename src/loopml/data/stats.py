"""Column statistics stored on every version, and the diff between two versions' statistics.

Statistics are computed once at ingest (vectorised pandas) and kept as JSON on the version row, so
listing, diffing and freshness checks never re-read the Parquet data.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd

TOP_VALUES = 10
#: category columns keep their full value counts (up to this many) so diffs can name new/missing values
MAX_CATEGORY_VALUES = 1000


def column_stats(frame: pd.DataFrame, dtypes: dict[str, str]) -> dict[str, dict[str, Any]]:
    """Per column: dtype, count, nulls, distinct; numeric min/max/mean/std; temporal min/max; top values."""
    out: dict[str, dict[str, Any]] = {}
    for name in frame.columns:
        series = frame[name]
        dtype = dtypes.get(name, str(series.dtype))
        nulls = int(series.isna().sum())
        present = series.dropna()
        stats: dict[str, Any] = {
            "dtype": dtype,
            "count": len(series),
            "nulls": nulls,
            "distinct": int(present.nunique()),
        }
        if dtype in ("int", "float") and len(present):
            values = present.astype("float64")
            low, high = (present.min(), present.max()) if dtype == "int" else (values.min(), values.max())
            stats.update(
                min=int(low) if dtype == "int" else _num(low),
                max=int(high) if dtype == "int" else _num(high),
                mean=_num(values.mean()),
                std=_num(values.std(ddof=1)) if len(values) > 1 else 0.0,
            )
        elif dtype in ("datetime", "date") and len(present):
            stats.update(min=_iso(present.min(), dtype), max=_iso(present.max(), dtype))
        elif dtype in ("str", "category", "bool") and len(present):
            limit = MAX_CATEGORY_VALUES if dtype in ("category", "bool") else TOP_VALUES
            counts = present.value_counts(sort=True)
            stats["top"] = [[_plain(v), int(c)] for v, c in counts.head(limit).items()]
            stats["top_complete"] = len(counts) <= limit
        out[str(name)] = stats
    return out


@dataclass(frozen=True)
class ColumnDiff:
    """How one column's statistics changed from version ``a`` to version ``b``."""

    column: str
    status: str  # "changed", "unchanged", "added", "removed"
    dtype_a: str | None
    dtype_b: str | None
    null_share_a: float | None
    null_share_b: float | None
    mean_a: float | None = None
    mean_b: float | None = None
    min_a: Any = None
    min_b: Any = None
    max_a: Any = None
    max_b: Any = None
    distinct_a: int | None = None
    distinct_b: int | None = None
    new_values: list[Any] = field(default_factory=list)
    missing_values: list[Any] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def mean_change(self) -> float | None:
        if self.mean_a is None or self.mean_b is None:
            return None
        return self.mean_b - self.mean_a

    @property
    def null_share_change(self) -> float | None:
        if self.null_share_a is None or self.null_share_b is None:
            return None
        return self.null_share_b - self.null_share_a


@dataclass(frozen=True)
class StatsDiff:
    """Statistics diff between two versions of one dataset (what drifted between loads)."""

    dataset: str
    a: int
    b: int
    rows_a: int
    rows_b: int
    columns: list[ColumnDiff]
    #: partitioned datasets: ``{"added": [...], "removed": [...], "changed": [...]}`` keys from a to b.
    #: Column statistics of a partitioned version cover the partitions its ingest delivered.
    partitions: dict[str, list[str]] | None = None

    @property
    def row_change(self) -> int:
        return self.rows_b - self.rows_a

    def column(self, name: str) -> ColumnDiff:
        for col in self.columns:
            if col.column == name:
                return col
        raise KeyError(name)

    def to_dict(self) -> dict[str, Any]:
        return {
            "dataset": self.dataset,
            "a": self.a,
            "b": self.b,
            "rows_a": self.rows_a,
            "rows_b": self.rows_b,
            "row_change": self.row_change,
            "columns": [c.to_dict() for c in self.columns],
        } | ({} if self.partitions is None else {"partitions": self.partitions})


def diff_stats(
    dataset: str,
    a: int,
    b: int,
    stats_a: dict,
    stats_b: dict,
    rows_a: int,
    rows_b: int,
    *,
    partitions: dict[str, list[str]] | None = None,
) -> StatsDiff:
    """Compare two versions' stored statistics column by column (columns of ``a`` first, then new ones)."""
    names = list(stats_a) + [n for n in stats_b if n not in stats_a]
    columns = [_column_diff(n, stats_a.get(n), stats_b.get(n)) for n in names]
    return StatsDiff(
        dataset=dataset, a=a, b=b, rows_a=rows_a, rows_b=rows_b, columns=columns, partitions=partitions
    )


def _column_diff(name: str, sa: dict | None, sb: dict | None) -> ColumnDiff:
    if sa is None or sb is None:
        present = sa or sb or {}
        return ColumnDiff(
            column=name,
            status="added" if sa is None else "removed",
            dtype_a=sa and sa.get("dtype"),
            dtype_b=sb and sb.get("dtype"),
            null_share_a=_null_share(sa),
            null_share_b=_null_share(sb),
            distinct_a=sa and sa.get("distinct"),
            distinct_b=sb and sb.get("distinct"),
            min_a=sa and sa.get("min"),
            min_b=sb and sb.get("min"),
            max_a=sa and sa.get("max"),
            max_b=sb and sb.get("max"),
            mean_a=sa and sa.get("mean"),
            mean_b=sb and sb.get("mean"),
            new_values=[v for v, _ in present.get("top", [])] if sa is None else [],
            missing_values=[v for v, _ in present.get("top", [])] if sb is None else [],
        )
    new_values: list[Any] = []
    missing_values: list[Any] = []
    if "top" in sa or "top" in sb:
        values_a = [v for v, _ in sa.get("top", [])]
        values_b = [v for v, _ in sb.get("top", [])]
        # Only a complete value list proves a value is absent; a top-10 list only proves it is rarer.
        if sa.get("top_complete", False):
            new_values = [v for v in values_b if v not in set(values_a)]
        if sb.get("top_complete", False):
            missing_values = [v for v in values_a if v not in set(values_b)]
    diff = ColumnDiff(
        column=name,
        status="changed",
        dtype_a=sa.get("dtype"),
        dtype_b=sb.get("dtype"),
        null_share_a=_null_share(sa),
        null_share_b=_null_share(sb),
        mean_a=sa.get("mean"),
        mean_b=sb.get("mean"),
        min_a=sa.get("min"),
        min_b=sb.get("min"),
        max_a=sa.get("max"),
        max_b=sb.get("max"),
        distinct_a=sa.get("distinct"),
        distinct_b=sb.get("distinct"),
        new_values=new_values,
        missing_values=missing_values,
    )
    unchanged = (
        diff.dtype_a == diff.dtype_b
        and diff.null_share_a == diff.null_share_b
        and diff.mean_a == diff.mean_b
        and diff.min_a == diff.min_b
        and diff.max_a == diff.max_b
        and diff.distinct_a == diff.distinct_b
        and not new_values
        and not missing_values
    )
    if unchanged:
        return ColumnDiff(**{**diff.to_dict(), "status": "unchanged"})
    return diff


def _null_share(stats: dict | None) -> float | None:
    if not stats:
        return None
    count = stats.get("count") or 0
    return round(stats.get("nulls", 0) / count, 6) if count else 0.0


def _num(value: Any) -> float | None:
    value = float(value)
    return None if math.isnan(value) or math.isinf(value) else value


def _iso(value: Any, dtype: str) -> str:
    ts = pd.Timestamp(value)
    return ts.date().isoformat() if dtype == "date" else ts.isoformat()


def _plain(value: Any) -> Any:
    """JSON-friendly scalar (numpy/pandas scalars -> Python)."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, pd.Timestamp):
        return value.isoformat()
    return value
