"""Data contracts: what a dataset's rows must look like before they may become a version.

A contract is plain data (JSON/TOML round-trip) so it can live next to the code that produces the
data, be reviewed like code, and be stored on every version: when a contract changes, each version
still says which rules it was accepted under.
"""

from __future__ import annotations

import json
import math
import re
import tomllib
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

from loopml.errors import NotFoundError, ValidationError

DTYPES = ("int", "float", "str", "bool", "datetime", "date", "category")
ORDERED_DTYPES = ("int", "float", "datetime", "date")
TEMPORAL_DTYPES = ("datetime", "date")
_COLUMN_KEYS = ("name", "dtype", "nullable", "min", "max", "allowed", "unique", "description")
_CONTRACT_KEYS = ("columns", "unique_key", "freshness_column", "max_age", "max_bad_share")
_AGE_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_AGE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")


@dataclass(frozen=True)
class Column:
    """One declared column: its logical dtype and the checks every row's value must pass.

    ``min``/``max`` apply to ``int``, ``float``, ``datetime`` and ``date`` (dates as ISO strings);
    ``allowed`` lists the permitted values (typical for ``category`` and ``str``).
    """

    name: str
    dtype: str
    nullable: bool = False
    min: Any = None
    max: Any = None
    allowed: tuple[Any, ...] | None = None
    unique: bool = False
    description: str = ""

    def __post_init__(self) -> None:
        where = f"contract column {self.name!r}"
        if not isinstance(self.name, str) or not self.name:
            raise ValidationError(f"contract column name {self.name!r}: give a non-empty string.")
        if self.dtype not in DTYPES:
            raise ValidationError(
                f"{where}: dtype {self.dtype!r} is unknown; use one of: {', '.join(DTYPES)}."
            )
        if not isinstance(self.nullable, bool) or not isinstance(self.unique, bool):
            raise ValidationError(f"{where}: 'nullable' and 'unique' must be true or false.")
        if (self.min is not None or self.max is not None) and self.dtype not in ORDERED_DTYPES:
            raise ValidationError(
                f"{where}: min/max only apply to {', '.join(ORDERED_DTYPES)} columns, not {self.dtype!r}; "
                "use 'allowed' to restrict str/category/bool values."
            )
        for bound in ("min", "max"):
            value = getattr(self, bound)
            if isinstance(value, (date, datetime)):  # TOML dates arrive as objects; store ISO text
                object.__setattr__(self, bound, value.isoformat())
            _check_bound(where, bound, getattr(self, bound), self.dtype)
        if (
            self.min is not None
            and self.max is not None
            and _order_key(self.min, self.dtype) > _order_key(self.max, self.dtype)
        ):
            raise ValidationError(f"{where}: min {self.min!r} is greater than max {self.max!r}; swap them.")
        if self.allowed is not None:
            if isinstance(self.allowed, (str, bytes)) or not hasattr(self.allowed, "__iter__"):
                raise ValidationError(f"{where}: 'allowed' must be a list of values, got {self.allowed!r}.")
            values = tuple(self.allowed)
            if not values:
                raise ValidationError(
                    f"{where}: 'allowed' is empty, so no row could pass; list the values or drop it."
                )
            if self.dtype in ("float", "datetime", "date"):
                raise ValidationError(f"{where}: 'allowed' is not supported for {self.dtype!r}; use min/max.")
            object.__setattr__(self, "allowed", values)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "dtype": self.dtype, "nullable": self.nullable}
        for key in ("min", "max"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        if self.allowed is not None:
            out["allowed"] = list(self.allowed)
        if self.unique:
            out["unique"] = True
        if self.description:
            out["description"] = self.description
        return out

    @classmethod
    def from_dict(cls, data: Any, *, position: int | None = None) -> Column:
        where = f"contract column #{position}" if position is not None else "contract column"
        if not isinstance(data, dict):
            raise ValidationError(f"{where}: expected a table/object with 'name' and 'dtype', got {data!r}.")
        unknown = sorted(set(data) - set(_COLUMN_KEYS))
        if unknown:
            raise ValidationError(
                f"{where} ({data.get('name')!r}): unknown key(s) {', '.join(unknown)}; allowed: {', '.join(_COLUMN_KEYS)}."
            )
        for key in ("name", "dtype"):
            if key not in data:
                raise ValidationError(f"{where}: '{key}' is missing; every column needs a name and a dtype.")
        return cls(**data)


@dataclass(frozen=True)
class Contract:
    """The rules a dataset's rows must satisfy, and how many rows may break them.

    ``max_bad_share`` is the largest share of input rows that may be quarantined; above it the whole
    ingest is refused, because at that point the source is broken, not a few rows.
    ``freshness_column`` + ``max_age`` (a timedelta, seconds or ``"36h"``/``"7d"``) make ingest
    warn when the newest row is older than ``max_age``.
    """

    columns: tuple[Column, ...] | list[Column]
    unique_key: tuple[str, ...] | list[str] = ()
    freshness_column: str | None = None
    max_age: timedelta | float | int | str | None = None
    max_bad_share: float = 0.05
    _by_name: dict[str, Column] = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if isinstance(self.columns, (str, bytes, dict)) or not hasattr(self.columns, "__iter__"):
            raise ValidationError("contract 'columns' must be a list of Column(...) entries.")
        columns = tuple(
            c if isinstance(c, Column) else Column.from_dict(c, position=i)
            for i, c in enumerate(self.columns)
        )
        if not columns:
            raise ValidationError("contract 'columns' is empty; declare at least one column.")
        by_name: dict[str, Column] = {}
        for col in columns:
            if col.name in by_name:
                raise ValidationError(
                    f"contract column {col.name!r} is declared twice; keep one declaration."
                )
            by_name[col.name] = col
        object.__setattr__(self, "columns", columns)
        object.__setattr__(self, "_by_name", by_name)
        key = (self.unique_key,) if isinstance(self.unique_key, str) else tuple(self.unique_key or ())
        for name in key:
            if name not in by_name:
                raise ValidationError(
                    f"contract unique_key names {name!r}, which is not a declared column; declared: {', '.join(by_name)}."
                )
        object.__setattr__(self, "unique_key", key)
        if self.freshness_column is not None:
            col = by_name.get(self.freshness_column)
            if col is None:
                raise ValidationError(
                    f"contract freshness_column {self.freshness_column!r} is not a declared column; "
                    f"declared: {', '.join(by_name)}."
                )
            if col.dtype not in TEMPORAL_DTYPES:
                raise ValidationError(
                    f"contract freshness_column {col.name!r} has dtype {col.dtype!r}; it must be datetime or date."
                )
        object.__setattr__(self, "max_age", parse_age(self.max_age))
        if self.max_age is not None and self.freshness_column is None:
            raise ValidationError(
                "contract max_age is set without freshness_column; name the timestamp column to check."
            )
        share = self.max_bad_share
        if (
            isinstance(share, bool)
            or not isinstance(share, (int, float))
            or not 0 <= share <= 1
            or math.isnan(share)
        ):
            raise ValidationError(
                f"contract max_bad_share={share!r}: give a share between 0 and 1 (0.05 allows 5 % bad rows)."
            )
        object.__setattr__(self, "max_bad_share", float(share))

    # -- lookups ------------------------------------------------------------------------------
    @property
    def names(self) -> list[str]:
        return [c.name for c in self.columns]

    def column(self, name: str) -> Column:
        try:
            return self._by_name[name]
        except KeyError:
            raise NotFoundError(
                f"contract has no column {name!r}; declared: {', '.join(self._by_name)}."
            ) from None

    def unique_keys(self) -> list[tuple[str, ...]]:
        """Every key whose duplicates are quarantined: single unique columns, then the composite key."""
        keys = [(c.name,) for c in self.columns if c.unique]
        if self.unique_key and tuple(self.unique_key) not in keys:
            keys.append(tuple(self.unique_key))
        return keys

    # -- (de)serialisation --------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "columns": [c.to_dict() for c in self.columns],
            "max_bad_share": self.max_bad_share,
        }
        if self.unique_key:
            out["unique_key"] = list(self.unique_key)
        if self.freshness_column:
            out["freshness_column"] = self.freshness_column
        if self.max_age is not None:
            out["max_age"] = format_age(self.max_age)  # type: ignore[arg-type]
        return out

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=False)

    @classmethod
    def from_dict(cls, data: Any) -> Contract:
        if isinstance(data, Contract):
            return data
        if not isinstance(data, dict):
            raise ValidationError(f"a contract must be an object with 'columns'; got {type(data).__name__}.")
        unknown = sorted(set(data) - set(_CONTRACT_KEYS))
        if unknown:
            raise ValidationError(
                f"contract: unknown key(s) {', '.join(unknown)}; allowed: {', '.join(_CONTRACT_KEYS)}."
            )
        if "columns" not in data:
            raise ValidationError("contract: 'columns' is missing; list each column with a name and a dtype.")
        columns = data["columns"]
        if isinstance(columns, dict):  # {"age": {"dtype": "int"}} is accepted as a shorthand
            columns = [{"name": name, **(spec or {})} for name, spec in columns.items()]
        if not isinstance(columns, list):
            raise ValidationError("contract 'columns' must be a list of column objects.")
        return cls(
            columns=[Column.from_dict(c, position=i) for i, c in enumerate(columns)],
            unique_key=data.get("unique_key") or (),
            freshness_column=data.get("freshness_column"),
            max_age=data.get("max_age"),
            max_bad_share=data.get("max_bad_share", 0.05),
        )

    @classmethod
    def from_file(cls, path: str | Path) -> Contract:
        """Load a contract from ``.json`` or ``.toml``."""
        path = Path(path)
        if not path.is_file():
            raise NotFoundError(f"contract file {str(path)!r} does not exist; check the path.")
        suffix = path.suffix.lower()
        try:
            text = path.read_text(encoding="utf-8")
            if suffix == ".json":
                data = json.loads(text)
            elif suffix == ".toml":
                data = tomllib.loads(text)
            else:
                raise ValidationError(
                    f"contract file {str(path)!r}: use a .json or .toml file (got {suffix or 'none'!r})."
                )
        except (json.JSONDecodeError, tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ValidationError(
                f"contract file {str(path)!r} is not valid {suffix[1:].upper()}: {exc}."
            ) from None
        try:
            return cls.from_dict(data)
        except ValidationError as exc:
            raise ValidationError(f"contract file {str(path)!r}: {exc}") from None


def parse_age(value: Any) -> timedelta | None:
    """``timedelta``, seconds, or ``"90s"``/``"15m"``/``"36h"``/``"7d"``/``"2w"`` -> timedelta."""
    if value is None or isinstance(value, timedelta):
        if isinstance(value, timedelta) and value.total_seconds() <= 0:
            raise ValidationError("contract max_age must be positive.")
        return value
    if isinstance(value, bool):
        raise ValidationError(f"contract max_age={value!r}: give seconds or a string like '36h' or '7d'.")
    if isinstance(value, (int, float)):
        if value <= 0 or math.isnan(value):
            raise ValidationError(f"contract max_age={value!r}: must be a positive number of seconds.")
        return timedelta(seconds=value)
    if isinstance(value, str):
        match = _AGE_RE.match(value.lower())
        if match and float(match.group(1)) > 0:
            return timedelta(seconds=float(match.group(1)) * _AGE_UNITS[match.group(2)])
    raise ValidationError(f"contract max_age={value!r}: give seconds or a string like '90m', '36h' or '7d'.")


def format_age(age: timedelta) -> str:
    """The shortest exact ``"<n><unit>"`` spelling, so to_dict/from_dict round-trips."""
    seconds = age.total_seconds()
    for unit in ("d", "h", "m", "s"):
        size = _AGE_UNITS[unit]
        if seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds}s"


def _check_bound(where: str, key: str, value: Any, dtype: str) -> None:
    if value is None:
        return
    try:
        _order_key(value, dtype)
    except (TypeError, ValueError):
        kind = "an ISO date/time string like '2024-01-31'" if dtype in TEMPORAL_DTYPES else "a number"
        raise ValidationError(f"{where}: {key}={value!r} is not {kind}.") from None


def _order_key(value: Any, dtype: str) -> Any:
    """Comparable form of a bound (numbers as float, dates/times as UTC timestamps)."""
    if dtype in TEMPORAL_DTYPES:
        import pandas as pd

        if isinstance(value, (bool, int, float)):
            raise TypeError("temporal bound must be a date/time")
        ts = pd.Timestamp(value)
        if pd.isna(ts):
            raise ValueError("not a time")
        return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError("numeric bound must be a number")
    return float(value)
