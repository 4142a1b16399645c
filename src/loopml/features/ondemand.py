"""Running on-demand feature functions: on a DataFrame, or on plain columns when the function says so.

A function whose first parameter is annotated as a mapping (``def f(cols: Mapping[str, np.ndarray])``,
``dict[str, Any]``) is called with a plain ``dict`` of numpy arrays and may return a dict of arrays
(or a DataFrame), in training *and* serving alike, so both still run the very same code. Serving one
transaction then costs microseconds instead of the ~3 ms pandas spends building, indexing and
checking one-row frames. Other functions keep receiving a DataFrame. Column conventions for the
dict form (what pandas would infer, as numpy): numbers are int64 / float64 arrays, float64 with NaN
when a value is missing; booleans are a bool array; anything else (strings, datetimes, booleans with
gaps) is an object array with None for missing values.
"""

from __future__ import annotations

import contextlib
import inspect
import typing
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import pandas as pd
from pandas.api import types as pdt

from loopml.errors import ValidationError
from loopml.features.catalog import OnDemandPlan
from loopml.features.schema import _fits, check_frame

_MAPPING_NAMES = ("dict", "Dict", "Mapping", "MutableMapping")
_takes_columns: dict[Any, bool] = {}


def takes_columns(fn: Callable[..., Any]) -> bool:
    """True when ``fn``'s first parameter is annotated as a mapping (cached per function)."""
    try:
        return _takes_columns[fn]
    except KeyError:
        pass
    except TypeError:  # an unhashable callable object: decide every time
        return _annotated_mapping(fn)
    found = _annotated_mapping(fn)
    if len(_takes_columns) > 1024:
        _takes_columns.clear()
    _takes_columns[fn] = found
    return found


def _annotated_mapping(fn: Callable[..., Any]) -> bool:
    try:
        params = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):
        return False
    if not params or params[0].annotation is inspect.Parameter.empty:
        return False
    ann: Any = params[0].annotation
    if isinstance(ann, str):  # ``from __future__ import annotations``: resolve, or read the text
        with contextlib.suppress(Exception):  # unresolvable names: fall back to reading the text
            ann = typing.get_type_hints(fn).get(params[0].name, ann)
    if isinstance(ann, str):
        return ann.split("[", 1)[0].strip().rsplit(".", 1)[-1] in _MAPPING_NAMES
    origin = typing.get_origin(ann) or ann
    return isinstance(origin, type) and issubclass(origin, Mapping)


def column_array(values: list[Any]) -> np.ndarray:
    """One column of the dict form from a list of Python values (see the module docstring)."""
    arr = np.asarray(values)
    kind = arr.dtype.kind
    if kind in "fiub":
        return arr
    if kind == "O" and all(
        v is None or (isinstance(v, int | float | np.number) and not isinstance(v, bool | np.bool_))
        for v in values
    ):
        return np.array([np.nan if v is None else v for v in values], dtype=float)
    return np.array(values, dtype=object)


def series_array(series: pd.Series) -> np.ndarray:
    """One column of the dict form from a training-frame column, by the same conventions."""
    if pdt.is_bool_dtype(series) and not series.isna().any():
        return series.to_numpy(dtype=bool)
    if pdt.is_numeric_dtype(series) and not pdt.is_bool_dtype(series):
        if series.isna().any() or pdt.is_float_dtype(series):
            return series.to_numpy(dtype=float, na_value=np.nan)
        return series.to_numpy(dtype=np.int64)
    return series.astype(object).where(series.notna(), None).to_numpy(dtype=object)


def frame_columns(odf: OnDemandPlan, frame: pd.DataFrame) -> dict[str, np.ndarray]:
    """The dict-form input of ``odf`` from a training frame (stored inputs and request columns)."""
    inputs = {inner: series_array(frame[out]) for inner, out in odf.inputs}
    for col in odf.request:
        inputs[col] = series_array(frame[col])
    return inputs


def call(odf: OnDemandPlan, inputs: Any) -> Any:
    """Run the function; its failure is the definition's problem, reported as a ValidationError."""
    try:
        return odf.fn(inputs)
    except Exception as exc:
        raise ValidationError(
            f"on-demand feature {odf.record.view!r} failed: {type(exc).__name__}: {exc}"
        ) from exc


def result_frame(odf: OnDemandPlan, result: Any, n: int) -> pd.DataFrame:
    """The function's answer as a checked DataFrame (training: cost does not matter, messages do)."""
    name = odf.record.view
    if isinstance(result, Mapping):
        try:
            result = pd.DataFrame({k: np.asarray(v) for k, v in result.items()})
        except ValueError as exc:
            raise ValidationError(
                f"output of on-demand feature {name!r} cannot be read as columns ({exc}); "
                "return a dict of equally long arrays"
            ) from None
    frame = check_frame(
        result,
        owner=f"output of on-demand feature {name!r}",
        columns=dict(odf.record.features),
        fix="The function must return a DataFrame (or a dict of arrays) with every declared output column.",
    )
    if len(frame) != n:
        raise ValidationError(
            f"on-demand feature {name!r} returned {len(frame)} rows for {n} inputs; return one row per input"
        )
    return frame


def online_values(
    odf: OnDemandPlan, values: Mapping[str, list[Any]], request: Mapping[str, list[Any]], n: int
) -> dict[str, list[Any]]:
    """Output columns (Python values, None when missing) for ``n`` looked-up rows: the serving path.

    ``values`` are the stored features by output name, ``request`` the request fields (already one
    value per key). No DataFrame is built for a dict-form function; a DataFrame function gets one
    small frame and its answer is checked column by column instead of copied.
    """
    name = odf.record.view
    missing = [c for c in odf.request if c not in request]
    if missing:
        raise ValidationError(
            f"on-demand feature {name!r} needs request field(s) {missing}; "
            "add them to the request data (request={...})"
        )
    if takes_columns(odf.fn):
        inputs: Any = {inner: column_array(values[out]) for inner, out in odf.inputs}
        for col in odf.request:
            inputs[col] = column_array(request[col])
    else:
        columns = {inner: values[out] for inner, out in odf.inputs}
        for col in odf.request:
            columns[col] = request[col]
        inputs = pd.DataFrame(columns, index=range(n))
    result = call(odf, inputs)
    declared = odf.record.features
    if isinstance(result, pd.DataFrame):
        if len(result) != n:
            raise ValidationError(
                f"on-demand feature {name!r} returned {len(result)} rows for {n} inputs; return one row per input"
            )
        have = list(result.columns)
    elif isinstance(result, Mapping):
        have = list(result)
    else:
        raise ValidationError(
            f"output of on-demand feature {name!r} must be a pandas DataFrame or a dict of arrays, "
            f"got {type(result).__name__}. The function must return every declared output column."
        )
    missing = [c for c in declared if c not in have]
    if missing:
        raise ValidationError(
            f"output of on-demand feature {name!r} is missing column(s) {missing}; it has {have[:20]}. "
            "The function must return every declared output column."
        )
    arrays: dict[str, tuple[np.ndarray, Any]] = {}
    wrong = []
    for inner, dtype in declared.items():
        raw = result[inner]
        arr = raw.to_numpy() if isinstance(raw, pd.Series) else np.asarray(raw)
        if arr.ndim != 1 or len(arr) != n:
            size = len(arr) if arr.ndim == 1 else arr.size
            raise ValidationError(
                f"on-demand feature {name!r} returned {size} values of {inner!r} for {n} inputs; "
                "return one row per input"
            )
        if not _array_fits(arr, raw, dtype):
            wrong.append(f"{inner!r} is {arr.dtype} but declared {dtype}")
        arrays[inner] = (arr, raw)
    if wrong:
        raise ValidationError(
            f"output of on-demand feature {name!r} has wrongly typed column(s): {'; '.join(wrong)}. "
            "The function must return every declared output column."
        )
    return {column: _python_values(*arrays[inner], declared[inner]) for inner, column in odf.outputs}


def _array_fits(arr: np.ndarray, raw: Any, dtype: str) -> bool:
    kind = arr.dtype.kind
    if dtype == "float" and kind in "fiu":
        return True
    if dtype == "int" and kind in "iu":
        return True
    if dtype == "bool" and kind == "b":
        return True
    series = raw if isinstance(raw, pd.Series) else pd.Series(arr)
    return _fits(series, dtype)


def _python_values(arr: np.ndarray, raw: Any, dtype: str) -> list[Any]:
    """Plain Python values with None for missing ones (whole floats back to int for int columns)."""
    kind = arr.dtype.kind
    if kind == "f":
        values = arr.tolist()
        if dtype == "int":
            return [None if v != v else int(v) for v in values]
        return [None if v != v else v for v in values]
    if kind in "iub":
        return arr.tolist()
    series = raw if isinstance(raw, pd.Series) else pd.Series(arr)
    return [
        None if v is None or v is pd.NA or v is pd.NaT or (isinstance(v, float) and v != v) else v
        for v in series.tolist()
    ]
