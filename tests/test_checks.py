"""The shared input checks (loopml.checks) and backend-URL parsing (loopml.storage.urls)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from loopml.checks import check_choice, check_keys, check_number
from loopml.errors import ConfigError, ValidationError
from loopml.storage.urls import redis_client, sqlite_file


@pytest.mark.parametrize(
    ("value", "kwargs", "needle"),
    [
        (True, {}, "a finite number; got True"),
        ("3", {}, "a finite number"),
        (math.nan, {}, "a finite number"),
        (math.inf, {"low": 0}, "a finite number"),
        (None, {"integer": True}, "a whole number"),
        (3.0, {"integer": True}, "a whole number"),
        (3.5, {"integer": True, "whole_floats": True}, "a whole number"),
        (math.inf, {"integer": True, "whole_floats": True}, "a whole number"),
        (-1, {"low": 0}, "must be >= 0; got -1"),
        (0, {"low": 0, "low_open": True}, "must be > 0"),
        (5, {"high": 5, "high_open": True}, "must be < 5"),
        (6, {"high": 5}, "must be <= 5"),
        (2, {"low": 0, "high": 1}, "must be between 0 and 1"),
        (1, {"low": 0, "high": 1, "low_open": True, "high_open": True}, r"must be in (0, 1)"),
    ],
)
def test_check_number_refuses_with_the_field_and_the_rule(value: object, kwargs: dict, needle: str) -> None:
    with pytest.raises(ValidationError) as err:
        check_number(value, "policy.weight", **kwargs)
    assert err.value.field == "policy.weight"
    assert str(err.value).startswith("policy.weight must be ") and needle in str(err.value)


def test_check_number_returns_the_normalised_value_and_appends_the_hint() -> None:
    assert check_number(3, "n") == 3.0 and isinstance(check_number(3, "n"), float)
    assert check_number(3, "n", integer=True) == 3
    got = check_number(3.0, "n", integer=True, whole_floats=True)
    assert got == 3 and isinstance(got, int)
    assert check_number(1, "share", low=0, high=1) == 1.0  # closed bounds include the bound
    with pytest.raises(ValidationError, match=r"years must be > 0; got -1; e\.g\. 3\.0$"):
        check_number(-1, "years", low=0, low_open=True, hint="e.g. 3.0")


def test_check_choice_lists_the_choices() -> None:
    assert check_choice("W", "freq", ("h", "D", "W")) == "W"
    with pytest.raises(ValidationError, match=r"freq must be one of 'h', 'D'; got 'x'; daily") as err:
        check_choice("x", "freq", ("h", "D"), hint="daily")
    assert err.value.field == "freq"
    with pytest.raises(ValidationError):
        check_choice(["h"], "freq", ("h",))  # an unhashable value is refused, not a TypeError


def test_check_keys_suggests_names_and_reports_missing_ones() -> None:
    check_keys({"a": 1}, ("a", "b"), required=("a",))
    with pytest.raises(ValidationError, match=r"Did you mean: stores\?") as err:
        check_keys({"stors": 1}, ("stores", "years"), owner="the demand config", noun="setting")
    assert err.value.field == "stors" and "unknown setting 'stors' for the demand config" in str(err.value)
    with pytest.raises(ValidationError) as err:
        check_keys({"": 1}, ("a",), where="policy")
    assert err.value.field == "policy"  # an empty key is reported as the object it sits in
    with pytest.raises(ValidationError) as err:
        check_keys({"": 1}, ("a",), root="spec")
    assert err.value.field == "spec"
    with pytest.raises(ValidationError, match=r"policy\.model is required") as err:
        check_keys({}, ("model",), where="policy", required=("model",))
    assert err.value.field == "policy.model"


def test_sqlite_file_creates_the_directory_and_names_the_setting(tmp_path: Path) -> None:
    path = sqlite_file(f"sqlite:///{tmp_path}/a/b/x.db", "online_url", example="sqlite:///x.db")
    assert path == f"{tmp_path}/a/b/x.db" and (tmp_path / "a" / "b").is_dir()
    assert sqlite_file("sqlite:///:memory:", "cache.url", example="x") == ":memory:"
    with pytest.raises(ConfigError, match=r"cache\.url 'sqlite:': use sqlite:///path\.db"):
        sqlite_file("sqlite:", "cache.url", example="sqlite:///path.db")
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(ConfigError, match="cannot create the directory"):
        sqlite_file(f"sqlite:///{blocker}/sub/x.db", "online_url", example="x")


def test_redis_client_splits_off_the_prefix_and_hides_credentials() -> None:
    target = redis_client("redis://user:secret@localhost:6390/2?prefix=p1:", "cache.url", timeout_seconds=0.2)
    try:
        assert target.prefix == "p1:"
        assert target.display == "redis://localhost/2" and "secret" not in target.display
        assert target.client.connection_pool.connection_kwargs["db"] == 2
        assert {e.__module__.split(".")[0] for e in target.errors} == {"redis"} and len(target.errors) == 2
    finally:
        target.client.close()
    with pytest.raises(ConfigError, match="online_url 'redis://x:notaport/0' is not a Redis URL"):
        redis_client("redis://x:notaport/0", "online_url", timeout_seconds=0.2)


def test_actor_and_reason_checks_name_the_field_and_strip() -> None:
    from loopml.checks import check_actor, check_reason

    assert check_actor("  ops ") == "ops"
    for bad in ("", "   ", None, 3, "x" * 256):
        with pytest.raises(ValidationError) as err:
            check_actor(bad)
        assert err.value.field == "actor"
    assert check_reason(None) is None and check_reason("  ") is None
    assert check_reason(" drift ") == "drift"
    with pytest.raises(ValidationError, match="reason is required"):
        check_reason("", required=True)
    for bad in (5, "y" * 11):
        with pytest.raises(ValidationError) as err:
            check_reason(bad, max_len=10)
        assert err.value.field == "reason"
