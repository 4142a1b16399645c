"""Input signatures: which columns a model takes, of which type, and whether missing values are allowed.

The signature is checked on every predict, including the serving hot path, so the checks are plain
numpy on column arrays (no pandera, no per-row Python loops for numeric columns). A single-row dict
input never builds a DataFrame when the model can take a numpy matrix: that is what keeps the
per-call overhead in the tens of microseconds.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from loopml.errors import ValidationError

DTYPES = ("int", "float", "bool", "str", "category", "datetime")
NUMERIC = ("int", "float", "bool")
MAX_EXAMPLE_CATEGORIES = 10_000


@dataclass(frozen=True)
class ColumnSpec:
    """One input column. ``categories`` fixes the category order a model was trained with."""

    name: str
    dtype: str
    nullable: bool = False
    categories: tuple[Any, ...] | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ValidationError(f"signature column name {self.name!r} must be a non-empty string")
        if self.dtype not in DTYPES:
            raise ValidationError(
                f"signature column {self.name!r}: dtype {self.dtype!r} is unknown; use one of {', '.join(DTYPES)}"
            )
        if self.categories is not None and self.dtype != "category":
            raise ValidationError(
                f"signature column {self.name!r}: categories are only allowed for dtype 'category'"
            )

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "dtype": self.dtype, "nullable": self.nullable}
        if self.categories is not None:
            out["categories"] = list(self.categories)
        return out


@dataclass(frozen=True)
class Signature:
    """The ordered input columns of a model; prediction inputs are normalised to this order."""

    columns: tuple[ColumnSpec, ...]
    _index: dict[str, int] = field(init=False, repr=False, compare=False)
    _names: tuple[str, ...] = field(init=False, repr=False, compare=False)
    _numeric: bool = field(init=False, repr=False, compare=False)
    #: positions of ``int`` columns (whole-number check) and of bool columns (exact type check)
    _int_at: tuple[int, ...] = field(init=False, repr=False, compare=False)
    _bool_at: tuple[int, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.columns:
            raise ValidationError("a signature needs at least one column")
        names = [c.name for c in self.columns]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValidationError(
                f"signature lists column(s) {', '.join(dupes)} more than once; keep one of each"
            )
        object.__setattr__(self, "_index", {n: i for i, n in enumerate(names)})
        object.__setattr__(self, "_names", tuple(names))
        object.__setattr__(self, "_numeric", all(c.dtype in NUMERIC for c in self.columns))
        object.__setattr__(self, "_int_at", tuple(i for i, c in enumerate(self.columns) if c.dtype == "int"))
        object.__setattr__(
            self, "_bool_at", tuple(i for i, c in enumerate(self.columns) if c.dtype == "bool")
        )

    @property
    def names(self) -> list[str]:
        return list(self._names)

    @property
    def all_numeric(self) -> bool:
        """True when every column fits a float matrix (the fast path for LightGBM and ONNX)."""
        return self._numeric

    def to_dict(self) -> dict[str, Any]:
        return {"columns": [c.to_dict() for c in self.columns]}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | Sequence[Mapping[str, Any]]) -> Signature:
        """Build from ``{"columns": [{"name", "dtype", "nullable"}...]}`` or the bare column list."""
        cols = data.get("columns") if isinstance(data, Mapping) else data
        if not isinstance(cols, Sequence) or isinstance(cols, str):
            raise ValidationError(
                "signature must be {'columns': [{'name': ..., 'dtype': ..., 'nullable': ...}, ...]}"
            )
        specs = []
        for i, col in enumerate(cols):
            if not isinstance(col, Mapping) or "name" not in col or "dtype" not in col:
                raise ValidationError(
                    f"signature column #{i} must be a mapping with 'name' and 'dtype'; got {col!r}"
                )
            cats = col.get("categories")
            specs.append(
                ColumnSpec(
                    name=col["name"],
                    dtype=col["dtype"],
                    nullable=bool(col.get("nullable", False)),
                    categories=tuple(cats) if cats is not None else None,
                )
            )
        return cls(tuple(specs))

    @classmethod
    def infer(cls, example: Any) -> Signature:
        """Infer from an input example (DataFrame, dict of scalars or of lists, or list of dicts).

        A column is nullable when the example contains a missing value in it: pass ``signature=`` when
        production data may have gaps the example does not show.
        """
        frame = to_frame(example, what="input_example")
        specs = []
        for name in frame.columns:
            if not isinstance(name, str):
                raise ValidationError(
                    f"input_example column {name!r} must be named by a string; rename the columns"
                )
            series = frame[name]
            dtype = _dtype_of(series)
            categories = None
            if dtype == "category":
                cats = series.cat.categories
                categories = tuple(_py(v) for v in cats)
            specs.append(ColumnSpec(name, dtype, bool(series.isna().any()), categories))
        return cls(tuple(specs))

    # -- checking -------------------------------------------------------------------------------
    def prepare(self, data: Any, *, strict: bool = True, as_numpy: bool = False) -> pd.DataFrame | np.ndarray:
        """Check ``data`` against the signature and return it in signature column order.

        ``strict=False`` drops columns the signature does not list instead of refusing them (useful
        when an evaluation table also holds the label and ids). With ``as_numpy`` and an all-numeric
        signature the result is a float64 matrix, which skips pandas entirely for dict inputs.
        Raises ``ValidationError`` listing every problem with the column and the fix.
        """
        if as_numpy and self._numeric and isinstance(data, Mapping):
            return self._prepare_mapping_numeric(data, strict)
        frame = to_frame(data, what="predict input")
        given = list(frame.columns)
        problems = self._check_columns(given, strict)
        present = set(given)
        converted: dict[str, Any] = {}
        for spec in self.columns:
            if spec.name in present:  # value checks run even when columns are missing: report all at once
                new = _check_series(spec, frame[spec.name], problems)
                if new is not None:
                    converted[spec.name] = new
        if problems:
            raise _error(problems)
        if given != self.names:
            frame = frame[self.names]
        if as_numpy and self._numeric:
            return frame.to_numpy(dtype=np.float64, na_value=np.nan)
        if converted:
            frame = frame.assign(**converted)
        return frame

    def _check_columns(self, given: list[Any], strict: bool) -> list[str]:
        problems = []
        given_set = set(given)
        for name in self.names:
            if name not in given_set:
                problems.append(f"column {name!r} is missing; add it ({self._describe(name)})")
        if strict:
            for name in given:
                if name not in self._index:
                    problems.append(
                        f"column {name!r} is not in the model signature; drop it or predict with strict=False"
                    )
        if len(given_set) != len(given):
            dupes = sorted({str(n) for n in given if given.count(n) > 1})
            problems.append(f"column(s) {', '.join(dupes)} appear more than once; keep one of each")
        return problems

    def _describe(self, name: str) -> str:
        spec = self.columns[self._index[name]]
        return f"dtype {spec.dtype}{', nullable' if spec.nullable else ''}"

    def _prepare_mapping_numeric(self, row: Mapping[str, Any], strict: bool) -> np.ndarray:
        """One row as a dict -> (1, n) float64 matrix: the serving hot path, a few microseconds.

        The common case (every column present, every value a plain int or float, nothing missing or
        infinite) is one list comprehension and one ``np.array``; anything else falls through to the
        value-by-value check that names each problem.
        """
        names = self._names
        if len(row) == len(names):
            try:
                values = [row[name] for name in names]
            except KeyError:
                values = None
            if values is not None and not self._bool_at:
                kinds = set(map(type, values))
                if kinds in (_FLOAT, _INT, _FLOAT_INT):
                    out = np.array([values], dtype=np.float64)
                    if np.isfinite(out).all() and (
                        not self._int_at or all(out[0, i].is_integer() for i in self._int_at)
                    ):
                        return out
        return self._prepare_mapping_checked(row, strict)

    def _prepare_mapping_checked(self, row: Mapping[str, Any], strict: bool) -> np.ndarray:
        """The value-by-value version of the fast path: every problem gets its own message."""
        if len(row) != len(self.columns) or not all(name in row for name in self._index):
            problems = self._check_columns(list(row), strict)
            if problems:
                raise _error(problems)
        out = np.empty((1, len(self.columns)), dtype=np.float64)
        problems: list[str] = []
        for i, spec in enumerate(self.columns):
            value = row[spec.name]
            if isinstance(value, list | tuple | np.ndarray):
                return self.prepare(pd.DataFrame(row), strict=strict, as_numpy=True)  # a dict of columns
            out[0, i] = _scalar(spec, value, problems)
        if problems:
            raise _error(problems)
        return out


_FLOAT = frozenset({float})
_INT = frozenset({int})
_FLOAT_INT = frozenset({float, int})


def _scalar(spec: ColumnSpec, value: Any, problems: list[str]) -> float:
    """Convert one numeric-signature value to float, appending a problem instead of raising."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        if not spec.nullable:
            problems.append(
                f"column {spec.name!r} is missing a value (null/NaN) but is not nullable; "
                "fill it or register the model with this column nullable"
            )
        return math.nan
    kind = type(value)
    if spec.dtype == "bool":
        if kind is bool or isinstance(value, np.bool_):
            return float(value)
        problems.append(f"column {spec.name!r} expects bool, got {kind.__name__} {value!r}; send true/false")
        return math.nan
    if kind is bool or isinstance(value, np.bool_) or not isinstance(value, int | float | np.number):
        problems.append(
            f"column {spec.name!r} expects {spec.dtype}, got {kind.__name__} {value!r}; send a number"
        )
        return math.nan
    number = float(value)
    if not math.isfinite(number):
        problems.append(f"column {spec.name!r} is {number} (infinite); send a finite number")
    elif spec.dtype == "int" and not number.is_integer():
        problems.append(f"column {spec.name!r} expects int, got {value!r}; send a whole number")
    return number


def _check_series(spec: ColumnSpec, series: pd.Series, problems: list[str]) -> pd.Series | None:
    """Check one column; return a converted column when the model needs a different representation."""
    dtype = series.dtype
    kind = dtype.kind
    name = spec.name
    values = None
    if spec.dtype in ("int", "float"):
        if kind in "iu":
            return None  # integers never hold NaN/inf
        if kind == "f":
            values = series.to_numpy()
        elif kind == "O" or isinstance(dtype, pd.api.extensions.ExtensionDtype):
            try:
                values = series.to_numpy(dtype=np.float64, na_value=np.nan)
            except (TypeError, ValueError):
                problems.append(
                    f"column {name!r} expects {spec.dtype}, got {dtype}; cast it with astype(float)"
                )
                return None
        else:
            problems.append(f"column {name!r} expects {spec.dtype}, got {dtype}; cast it with astype(float)")
            return None
        finite = np.isfinite(values)
        if not finite.all():
            nan = np.isnan(values)
            if (~finite & ~nan).any():
                problems.append(f"column {name!r} holds infinite values; replace them with finite numbers")
            if nan.any() and not spec.nullable:
                problems.append(
                    f"column {name!r} holds {int(nan.sum())} NaN/null value(s) but is not nullable; "
                    "fill them or register the model with this column nullable"
                )
        if spec.dtype == "int" and finite.all() and not np.array_equal(values, np.trunc(values)):
            problems.append(
                f"column {name!r} expects int, got fractional values; round or cast with astype(int)"
            )
        return None if kind == "f" else pd.Series(values, index=series.index, name=name)
    if spec.dtype == "bool":
        if kind == "b":
            return None
        if str(dtype) == "boolean":
            if series.isna().any() and not spec.nullable:
                problems.append(f"column {name!r} holds nulls but is not nullable; fill them")
            return None
        problems.append(f"column {name!r} expects bool, got {dtype}; cast it with astype(bool)")
        return None
    if spec.dtype == "datetime":
        if kind != "M":
            problems.append(f"column {name!r} expects datetime, got {dtype}; convert it with pd.to_datetime")
            return None
        if not spec.nullable and series.isna().any():
            problems.append(f"column {name!r} holds NaT values but is not nullable; fill them")
        return None
    missing = series.isna()
    if not spec.nullable and missing.any():
        problems.append(
            f"column {name!r} holds {int(missing.sum())} null value(s) but is not nullable; "
            "fill them or register the model with this column nullable"
        )
    if spec.dtype == "str":
        if kind in "iufbM":
            problems.append(f"column {name!r} expects str, got {dtype}; cast it with astype(str)")
        return None
    # category: re-code with the training categories so codes mean the same thing as at fit time.
    if kind in "fM":
        problems.append(f"column {name!r} expects category, got {dtype}; cast it with astype('category')")
        return None
    if spec.categories is None:
        return series if isinstance(dtype, pd.CategoricalDtype) else series.astype("category")
    codes = pd.Index(list(spec.categories)).get_indexer(series.astype(object))
    cat = pd.Categorical.from_codes(codes, categories=list(spec.categories))
    unknown = (codes < 0) & ~missing.to_numpy()
    if unknown.any():
        bad = sorted({str(v) for v in series[unknown].unique()})[:5]
        known = ", ".join(str(c) for c in spec.categories[:10])
        problems.append(
            f"column {name!r} holds unknown categor{'y' if len(bad) == 1 else 'ies'} {', '.join(bad)}; "
            f"known: {known}{' ...' if len(spec.categories) > 10 else ''} (map them or retrain)"
        )
    return pd.Series(cat, index=series.index, name=name)


def to_frame(data: Any, *, what: str) -> pd.DataFrame:
    """Accept a DataFrame, a dict (one row of scalars or columns of lists) or a list of row dicts."""
    if isinstance(data, pd.DataFrame):
        return data
    if isinstance(data, Mapping):
        if not data:
            raise ValidationError(f"{what} is an empty mapping; send column -> value pairs")
        if all(not isinstance(v, list | tuple | np.ndarray | pd.Series) for v in data.values()):
            return pd.DataFrame({k: [v] for k, v in data.items()})
        try:
            return pd.DataFrame(dict(data))
        except ValueError as exc:
            raise ValidationError(
                f"{what}: columns have different lengths ({exc}); send equal-length lists"
            ) from None
    if (
        isinstance(data, Sequence)
        and not isinstance(data, str | bytes)
        and data
        and all(isinstance(r, Mapping) for r in data)
    ):
        return pd.DataFrame(list(data))
    raise ValidationError(
        f"{what} must be a pandas DataFrame, a dict of column -> value(s) or a non-empty list of row dicts; "
        f"got {type(data).__name__}"
    )


def _dtype_of(series: pd.Series) -> str:
    dtype = series.dtype
    if isinstance(dtype, pd.CategoricalDtype):
        if len(dtype.categories) > MAX_EXAMPLE_CATEGORIES:
            raise ValidationError(
                f"input_example column {series.name!r} has too many categories; use dtype str"
            )
        return "category"
    kind = dtype.kind
    if kind == "b" or str(dtype) == "boolean":
        return "bool"
    if kind in "iu":
        return "int"
    if kind == "f":
        return "float"
    if kind == "M":
        return "datetime"
    non_null = series.dropna()
    if len(non_null) and all(isinstance(v, bool | np.bool_) for v in non_null):
        return "bool"
    if len(non_null) and all(isinstance(v, int | float | np.number) for v in non_null):
        return "float"
    if all(isinstance(v, str) for v in non_null):
        return "str"
    raise ValidationError(
        f"input_example column {series.name!r} has dtype {dtype} with mixed values; "
        "cast it to one of int, float, bool, str, category, datetime"
    )


def _py(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def _error(problems: list[str]) -> ValidationError:
    if len(problems) == 1:
        return ValidationError(f"input does not match the model signature: {problems[0]}")
    return ValidationError(
        f"input does not match the model signature ({len(problems)} problems):\n- " + "\n- ".join(problems)
    )
