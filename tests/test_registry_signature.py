"""Signatures: inference from examples and the checks every predict runs (no database needed)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from loopml.errors import ValidationError
from loopml.registry import ColumnSpec, Signature


@pytest.fixture
def frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "amount": [1.5, 2.0, 3.25],
            "count": [1, 2, 3],
            "flag": [True, False, True],
            "city": ["a", "b", "a"],
            "segment": pd.Categorical(["x", "y", "x"], categories=["x", "y"]),
            "ts": pd.to_datetime(["2024-01-01", "2024-01-02", "2024-01-03"]),
        }
    )


def test_infer_maps_dtypes_nullability_and_categories(frame: pd.DataFrame) -> None:
    with_gap = frame.assign(amount=[1.0, None, 2.0])
    sig = Signature.infer(with_gap)
    assert [(c.name, c.dtype, c.nullable) for c in sig.columns] == [
        ("amount", "float", True),
        ("count", "int", False),
        ("flag", "bool", False),
        ("city", "str", False),
        ("segment", "category", False),
        ("ts", "datetime", False),
    ]
    assert sig.columns[4].categories == ("x", "y")
    assert Signature.from_dict(sig.to_dict()) == sig


def test_prepare_reorders_columns_to_the_signature(frame: pd.DataFrame) -> None:
    sig = Signature.infer(frame)
    shuffled = frame[list(reversed(frame.columns))]
    out = sig.prepare(shuffled)
    assert list(out.columns) == list(frame.columns)


def test_missing_and_extra_columns_are_named_with_the_fix(frame: pd.DataFrame) -> None:
    sig = Signature.infer(frame)
    with pytest.raises(ValidationError, match=r"column 'city' is missing; add it \(dtype str\)"):
        sig.prepare(frame.drop(columns=["city"]))
    with pytest.raises(ValidationError, match=r"column 'extra' is not in the model signature.*strict=False"):
        sig.prepare(frame.assign(extra=1))
    assert list(sig.prepare(frame.assign(extra=1), strict=False).columns) == list(frame.columns)


@pytest.mark.parametrize(
    ("column", "value", "message"),
    [
        ("amount", ["a", "b", "c"], r"column 'amount' expects float.*astype\(float\)"),
        ("count", [1.5, 2.0, 3.0], r"column 'count' expects int, got fractional values"),
        ("flag", [1, 0, 1], r"column 'flag' expects bool"),
        ("city", [1, 2, 3], r"column 'city' expects str"),
        ("ts", ["2024", "2024", "2024"], r"column 'ts' expects datetime.*pd.to_datetime"),
        ("amount", [1.0, math.nan, 2.0], r"column 'amount' holds 1 NaN/null value\(s\) but is not nullable"),
        ("amount", [1.0, math.inf, 2.0], r"column 'amount' holds infinite values"),
        ("segment", ["x", "zzz", "x"], r"column 'segment' holds unknown category zzz; known: x, y"),
    ],
)
def test_dtype_and_value_problems_name_the_column(
    frame: pd.DataFrame, column: str, value: list, message: str
) -> None:
    sig = Signature.infer(frame)
    with pytest.raises(ValidationError, match=message):
        sig.prepare(frame.assign(**{column: value}))


def test_every_problem_is_listed_at_once(frame: pd.DataFrame) -> None:
    sig = Signature.infer(frame)
    bad = frame.drop(columns=["count"]).assign(amount=[math.nan] * 3, other=1)
    with pytest.raises(ValidationError, match=r"3 problems") as info:
        sig.prepare(bad)
    for name in ("count", "other", "amount"):
        assert repr(name) in str(info.value)


def test_categories_are_recoded_with_the_training_order() -> None:
    sig = Signature((ColumnSpec("c", "category", categories=("x", "y", "z")),))
    out = sig.prepare(pd.DataFrame({"c": ["z", "x"]}))
    assert list(out["c"].cat.categories) == ["x", "y", "z"]
    assert list(out["c"].cat.codes) == [2, 0]


def test_single_row_dict_fast_path_returns_a_float_matrix() -> None:
    sig = Signature(
        (ColumnSpec("a", "float"), ColumnSpec("b", "int"), ColumnSpec("c", "bool", nullable=True))
    )
    out = sig.prepare({"c": None, "b": 2, "a": 0.5}, as_numpy=True)
    assert out.dtype == np.float64 and out.shape == (1, 3)
    assert out[0, 0] == 0.5 and out[0, 1] == 2 and math.isnan(out[0, 2])
    with pytest.raises(ValidationError, match=r"column 'a' is missing a value"):
        sig.prepare({"a": None, "b": 2, "c": True}, as_numpy=True)
    with pytest.raises(ValidationError, match=r"column 'b' expects int, got 2.5"):
        sig.prepare({"a": 1.0, "b": 2.5, "c": True}, as_numpy=True)
    with pytest.raises(ValidationError, match=r"column 'a' expects float, got str"):
        sig.prepare({"a": "1", "b": 2, "c": True}, as_numpy=True)
    with pytest.raises(ValidationError, match=r"column 'a' is inf"):
        sig.prepare({"a": math.inf, "b": 2, "c": True}, as_numpy=True)
    with pytest.raises(ValidationError, match=r"column 'x' is not in the model signature"):
        sig.prepare({"a": 1.0, "b": 2, "c": True, "x": 1}, as_numpy=True)
    assert sig.prepare({"a": 1.0, "b": 2, "c": True, "x": 1}, strict=False, as_numpy=True).shape == (1, 3)
    columns = sig.prepare({"a": [1.0, 2.0], "b": [1, 2], "c": [True, False]}, as_numpy=True)
    assert columns.shape == (2, 3)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (
            {"columns": [{"name": "a", "dtype": "decimal"}]},
            r"dtype 'decimal' is unknown; use one of int, float",
        ),
        (
            {"columns": [{"name": "a", "dtype": "int"}, {"name": "a", "dtype": "int"}]},
            r"column\(s\) a more than once",
        ),
        ({"columns": []}, r"at least one column"),
        ({"columns": [{"dtype": "int"}]}, r"mapping with 'name' and 'dtype'"),
        ("columns", r"signature must be"),
    ],
)
def test_malformed_signatures_are_refused(spec: object, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        Signature.from_dict(spec)  # type: ignore[arg-type]


def test_unusable_inputs_are_refused() -> None:
    sig = Signature((ColumnSpec("a", "float"),))
    for bad in (42, "a=1", [], {}):
        with pytest.raises(ValidationError):
            sig.prepare(bad)
    with pytest.raises(ValidationError, match="mixed values"):
        Signature.infer(pd.DataFrame({"m": [1, "a"]}))
