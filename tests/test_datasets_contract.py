"""Contracts: parsing, round-trips and the errors a wrong contract gets (pure, no storage)."""

from __future__ import annotations

import json
from datetime import date, timedelta
from pathlib import Path

import pandas as pd
import pytest

from loopml.data import Column, Contract
from loopml.data.coerce import coerce_column
from loopml.errors import NotFoundError, ValidationError

CONTRACT = {
    "columns": [
        {"name": "store_id", "dtype": "int", "min": 1, "unique": False},
        {"name": "day", "dtype": "date", "min": "2020-01-01"},
        {"name": "visits", "dtype": "float", "min": 0, "nullable": True},
        {"name": "region", "dtype": "category", "allowed": ["north", "south"]},
    ],
    "unique_key": ["store_id", "day"],
    "freshness_column": "day",
    "max_age": "36h",
    "max_bad_share": 0.1,
}


def test_contract_round_trips_through_dict_json_and_toml(tmp_path: Path) -> None:
    contract = Contract.from_dict(CONTRACT)
    assert contract.max_age == timedelta(hours=36)
    assert contract.unique_keys() == [("store_id", "day")]
    assert Contract.from_dict(contract.to_dict()) == contract
    path = tmp_path / "c.json"
    path.write_text(contract.to_json())
    assert Contract.from_file(path) == contract
    toml = tmp_path / "c.toml"
    toml.write_text(
        'unique_key = ["store_id", "day"]\nmax_bad_share = 0.1\nfreshness_column = "day"\nmax_age = "36h"\n'
        '[[columns]]\nname = "store_id"\ndtype = "int"\nmin = 1\n'
        '[[columns]]\nname = "day"\ndtype = "date"\nmin = 2020-01-01\n'
        '[[columns]]\nname = "visits"\ndtype = "float"\nmin = 0\nnullable = true\n'
        '[[columns]]\nname = "region"\ndtype = "category"\nallowed = ["north", "south"]\n'
    )
    from_toml = Contract.from_file(toml)
    assert from_toml == contract  # the TOML date became ISO text, like the JSON one
    assert json.loads(json.dumps(from_toml.to_dict())) == contract.to_dict()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"columns": [{"name": "a", "dtype": "integer"}]}, "dtype 'integer' is unknown; use one of: int"),
        ({"columns": [{"name": "a", "dtype": "str", "min": 1}]}, "min/max only apply to"),
        ({"columns": [{"name": "a", "dtype": "int", "min": 5, "max": 1}]}, "min 5 is greater than max 1"),
        ({"columns": [{"name": "a", "dtype": "int", "min": "low"}]}, "min='low' is not a number"),
        ({"columns": [{"name": "a", "dtype": "date", "max": "someday"}]}, "is not an ISO date"),
        ({"columns": [{"name": "a", "dtype": "int"}, {"name": "a", "dtype": "str"}]}, "declared twice"),
        ({"columns": [{"name": "a", "dtype": "int", "nullabel": True}]}, "unknown key(s) nullabel"),
        ({"columns": [{"name": "a"}]}, "'dtype' is missing"),
        ({"columns": []}, "declare at least one column"),
        ({"columns": [{"name": "a", "dtype": "int"}], "unique_key": ["b"]}, "unique_key names 'b'"),
        ({"columns": [{"name": "a", "dtype": "int"}], "freshness_column": "a"}, "must be datetime or date"),
        (
            {"columns": [{"name": "a", "dtype": "date"}], "freshness_column": "a", "max_age": "soon"},
            "like '90m'",
        ),
        ({"columns": [{"name": "a", "dtype": "int"}], "max_bad_share": 5}, "between 0 and 1"),
        ({"columns": [{"name": "a", "dtype": "int"}], "colums": []}, "unknown key(s) colums"),
        ({"columns": [{"name": "a", "dtype": "category", "allowed": []}]}, "'allowed' is empty"),
    ],
)
def test_bad_contracts_are_explained(change: dict, message: str) -> None:
    with pytest.raises(ValidationError) as err:
        Contract.from_dict(change)
    assert message in str(err.value)


def test_contract_files_that_cannot_be_read(tmp_path: Path) -> None:
    with pytest.raises(NotFoundError, match="does not exist"):
        Contract.from_file(tmp_path / "missing.json")
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    with pytest.raises(ValidationError, match=r"broken.json' is not valid JSON"):
        Contract.from_file(broken)
    yaml = tmp_path / "c.yaml"
    yaml.write_text("columns: []")
    with pytest.raises(ValidationError, match=r"use a \.json or \.toml file"):
        Contract.from_file(yaml)
    wrong = tmp_path / "wrong.json"
    wrong.write_text('{"columns": [{"name": "x", "dtype": "number"}]}')
    with pytest.raises(ValidationError, match=r"wrong.json.*dtype 'number' is unknown"):
        Contract.from_file(wrong)


def test_column_shorthand_and_defaults() -> None:
    contract = Contract.from_dict(
        {"columns": {"a": {"dtype": "int"}, "b": {"dtype": "str", "nullable": True}}}
    )
    assert contract.names == ["a", "b"]
    assert contract.max_bad_share == 0.05
    assert contract.column("b").nullable is True
    with pytest.raises(NotFoundError, match="declared: a, b"):
        contract.column("c")


@pytest.mark.parametrize(
    ("dtype", "values", "expected", "failed"),
    [
        (
            "int",
            ["1", " 2 ", "3.0", "3.5", "x", None, ""],
            [1, 2, 3, None, None, None, None],
            [0, 0, 0, 1, 1, 0, 0],
        ),
        ("float", ["1.5", "nan?", "1e3", None], [1.5, None, 1000.0, None], [0, 1, 0, 0]),
        ("bool", ["true", "No", "1", "maybe", None], [True, False, True, None, None], [0, 0, 0, 1, 0]),
        ("str", ["007", "", None], ["007", "", None], [0, 0, 0]),
        (
            "date",
            ["2024-01-05", "2024-01-05T10:30:00", "05/01/2024", None],
            [pd.Timestamp("2024-01-05"), pd.Timestamp("2024-01-05"), None, None],
            [0, 0, 1, 0],
        ),
    ],
)
def test_coercion_flags_exactly_the_values_it_cannot_convert(dtype, values, expected, failed) -> None:
    out, mask = coerce_column(pd.Series(values, dtype=object), Column("c", dtype, nullable=True))
    assert mask.astype(int).tolist() == failed
    assert [None if pd.isna(v) else v for v in out.tolist()] == expected


def test_datetime_coercion_normalises_to_utc() -> None:
    out, mask = coerce_column(
        pd.Series(["2024-01-05T10:00:00+02:00", "2024-01-05 08:00", date(2024, 1, 6)], dtype=object),
        Column("t", "datetime"),
    )
    assert not mask.any()
    assert str(out.dtype) == "datetime64[us, UTC]"
    assert out.iloc[0] == out.iloc[1] == pd.Timestamp("2024-01-05T08:00:00Z")
    _, failed = coerce_column(pd.Series([1_700_000_000]), Column("t", "datetime"))
    assert failed.tolist() == [True]  # bare numbers are ambiguous: refused, not guessed
