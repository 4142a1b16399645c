"""The online fast path: on-demand functions on plain columns, the same values online and offline."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
import pytest

from loopml import Loopml
from loopml.errors import ValidationError
from loopml.features import Entity, FeatureStore, FeatureView, OnDemandFeature
from loopml.features.ondemand import column_array, series_array, takes_columns
from loopml.serving.endpoints import FeatureLookup
from loopml.serving.endpoints.features import lookup_rows

USER = Entity("user", join_key="user_id")
NOW = pd.Timestamp(datetime.now(UTC).replace(microsecond=0))
SEEN: list[Any] = []  # what the dict-form function was called with


def per_click_columns(cols: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    SEEN.append(cols)
    amount = np.asarray(cols["amount"], dtype=float)
    clicks = np.asarray(cols["clicks"], dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = amount / clicks
    return {"amount_per_click": ratio, "big": amount > 10, "clicks_twice": clicks * 2}


def per_click_frame(frame: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "amount_per_click": frame["amount"] / frame["clicks"],
            "big": frame["amount"] > 10,
            "clicks_twice": frame["clicks"] * 2,
        }
    )


OUTPUTS = {"amount_per_click": "float", "big": "bool", "clicks_twice": "int"}


def store(lm: Loopml, fn: Any = per_click_columns, outputs: dict[str, str] | None = None) -> FeatureStore:
    fs = FeatureStore(lm.ctx)
    frame = pd.DataFrame(
        {
            "user_id": [1, 2, 3],
            "event_ts": [NOW - pd.Timedelta(hours=2)] * 3,
            "clicks": [3, 4, 5],
            "ctr": [0.1, 0.2, None],
            "segment": ["a", "b", "c"],
        }
    )
    view = FeatureView(
        "user_stats",
        entity=USER,
        features={"clicks": "int", "ctr": "float", "segment": "str"},
        source=frame,
        ttl=timedelta(days=1),
    )
    odf = OnDemandFeature(
        "txn", inputs=["user_stats:clicks"], request={"amount": "float"}, outputs=outputs or OUTPUTS, fn=fn
    )
    fs.register(USER, view, odf)
    fs.materialize()
    return fs


def test_dict_form_runs_without_dataframes_and_matches_training(lm: Loopml) -> None:
    fs = store(lm)
    SEEN.clear()
    got = fs.online_features(
        {"user_id": [1, 2, 99]}, ["user_stats:ctr", "txn:*"], request={"amount": [30.0, 3.0, 5.0]}
    )
    assert isinstance(SEEN[-1], dict) and all(isinstance(v, np.ndarray) for v in SEEN[-1].values())
    assert SEEN[-1]["clicks"].dtype == np.float64  # key 99 has no row: NaN, not an object array
    assert got.values["amount_per_click"] == [10.0, 0.75, None]
    assert got.values["big"] == [True, False, False]
    assert got.values["clicks_twice"] == [6, 8, None]  # an int column with a gap: ints and None
    assert type(got.values["clicks_twice"][0]) is int and type(got.values["big"][0]) is bool
    assert got.values["ctr"] == [0.1, 0.2, None]
    SEEN.clear()
    offline = fs.training_frame(
        pd.DataFrame(
            {"user_id": [1, 2], "event_ts": [pd.Timestamp.now(tz="UTC")] * 2, "amount": [30.0, 3.0]}
        ),
        ["txn:*"],
    )
    assert isinstance(SEEN[-1], dict)  # training calls the very same function the same way
    assert offline["amount_per_click"].tolist() == [10.0, 0.75]
    assert offline["big"].tolist() == [True, False]
    assert offline["clicks_twice"].tolist() == [6, 8]


def test_frame_form_gives_the_same_answers(lm_sqlite: Loopml) -> None:
    fast = store(lm_sqlite).online_features(
        {"user_id": [1, 2, 99]}, ["txn:*"], request={"amount": [30.0, 3.0, 5.0]}
    )
    fs = FeatureStore(lm_sqlite.ctx)
    fs.register(
        OnDemandFeature(
            "txn2",
            inputs=["user_stats:clicks"],
            request={"amount": "float"},
            outputs=OUTPUTS,
            fn=per_click_frame,
        )
    )
    slow = fs.online_features({"user_id": [1, 2, 99]}, ["txn2:*"], request={"amount": [30.0, 3.0, 5.0]})
    assert slow.values == fast.values
    one = fs.online_features({"user_id": 1}, ["txn2:big"], request={"amount": 30.0})  # scalars are one row
    assert one.values == {"big": [True]}


def test_endpoint_feature_lookup_uses_the_fast_path(lm_sqlite: Loopml) -> None:
    fs = store(lm_sqlite)
    SEEN.clear()
    lookup = FeatureLookup("user_id", ["user_stats:clicks", "txn:amount_per_click"], request=["amount"])
    rows = lookup_rows(fs, lookup, [{"user_id": 1, "amount": 12.0}])
    assert rows == [{"clicks": 3, "amount_per_click": 4.0, "amount": 12.0}]
    assert isinstance(SEEN[-1], dict)
    plan = fs.plan(["user_stats:clicks", "txn:amount_per_click"])
    assert fs.plan(["user_stats:clicks", "txn:amount_per_click"]) is plan  # resolved once, then cached


def _missing_column(cols: Mapping[str, Any]) -> dict[str, Any]:
    return {"amount_per_click": cols["amount"]}


def _wrong_type(cols: Mapping[str, Any]) -> dict[str, Any]:
    n = len(cols["amount"])
    return {
        "amount_per_click": np.array(["x"] * n, dtype=object),
        "big": np.zeros(n, bool),
        "clicks_twice": np.zeros(n, int),
    }


def _wrong_length(cols: Mapping[str, Any]) -> dict[str, Any]:
    return {"amount_per_click": [1.0, 2.0, 3.0], "big": [True] * 3, "clicks_twice": [1] * 3}


def _returns_list(cols: Mapping[str, Any]) -> list[float]:
    return [1.0]


def _raises(cols: Mapping[str, Any]) -> dict[str, Any]:
    raise KeyError("nope")


@pytest.mark.parametrize(
    ("fn", "message"),
    [
        (_missing_column, r"missing column\(s\) \['big', 'clicks_twice'\]"),
        (_wrong_type, r"wrongly typed.*'amount_per_click' is object but declared float"),
        (_wrong_length, r"returned 3 values of 'amount_per_click' for 1 inputs"),
        (_returns_list, r"must be a pandas DataFrame or a dict of arrays, got list"),
        (_raises, r"on-demand feature 'txn' failed: KeyError"),
    ],
)
def test_bad_dict_form_outputs_are_clear_errors(lm_sqlite: Loopml, fn: Any, message: str) -> None:
    fs = store(lm_sqlite, fn)
    with pytest.raises(ValidationError, match=message):
        fs.online_features({"user_id": [1]}, ["txn:*"], request={"amount": [1.0]})
    with pytest.raises(ValidationError, match=r"txn"):  # training rejects the same function
        fs.training_frame(
            pd.DataFrame({"user_id": [1], "event_ts": [pd.Timestamp.now(tz="UTC")], "amount": [1.0]}),
            ["txn:*"],
        )


def test_request_fields_are_checked(lm_sqlite: Loopml) -> None:
    fs = store(lm_sqlite)
    with pytest.raises(ValidationError, match=r"needs request field\(s\) \['amount'\]"):
        fs.online_features({"user_id": [1]}, ["txn:big"])
    with pytest.raises(ValidationError, match=r"request field 'amount' has 2 values for 1 keys"):
        fs.online_features({"user_id": [1]}, ["txn:big"], request={"amount": [1.0, 2.0]})


def test_which_functions_take_columns() -> None:
    def untyped(cols):  # type: ignore[no-untyped-def]
        return cols

    def framed(frame: pd.DataFrame) -> pd.DataFrame:
        return frame

    def plain_dict(cols: dict[str, Any]) -> dict[str, Any]:
        return cols

    class Callable:
        def __call__(self, cols: Mapping[str, Any]) -> Mapping[str, Any]:
            return cols

        __hash__ = None  # type: ignore[assignment]

    assert takes_columns(per_click_columns) and takes_columns(plain_dict) and takes_columns(Callable())
    assert not takes_columns(per_click_frame) and not takes_columns(framed) and not takes_columns(untyped)
    assert not takes_columns(lambda f: f) and not takes_columns(len)


def test_column_conventions() -> None:
    assert column_array([1, 2]).dtype == np.int64
    nan = column_array([1, None])
    assert nan.dtype == np.float64 and np.isnan(nan[1])
    assert column_array([True, False]).dtype == bool
    assert column_array([True, None]).dtype == object  # booleans with a gap stay objects, as in pandas
    assert column_array(["a", None]).tolist() == ["a", None]
    assert column_array([None]).dtype == np.float64
    assert series_array(pd.Series([1, None], dtype="Int64")).dtype == np.float64
    assert series_array(pd.Series([1, 2], dtype="Int64")).dtype == np.int64
    assert series_array(pd.Series(["a", None])).tolist() == ["a", None]
    assert series_array(pd.Series([True, False])).dtype == bool
