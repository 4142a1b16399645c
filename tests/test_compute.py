"""Fan-out: order, failure reporting and settings for every backend, and Ray when the extra is installed."""

from __future__ import annotations

import os
import threading

import numpy as np
import pytest

from loopml import load_settings
from loopml.compute import (
    Executor,
    FanOutError,
    available_backends,
    fan_out,
    resolve_backend,
)
from loopml.errors import ConfigError, ValidationError
from loopml.storage import executors

LOCAL = ["serial", "thread", "process"]


# Top-level so the process and Ray backends can pickle them by reference.
def square(x: int) -> int:
    return x * x


def fail_on_odd_multiples_of_three(x: int) -> int:
    if x % 3 == 0 and x % 2 == 1:
        raise ValueError(f"bad item {x}")
    return x


def where_am_i(_: int) -> tuple[int, str]:
    return os.getpid(), threading.current_thread().name


def nested_backend(_: int) -> str:
    return resolve_backend(None, settings=load_settings(executor="")).backend


def crash_on_two(x: int) -> int:
    if x == 2:
        os._exit(3)  # a worker dying (OOM kill, segfault) rather than raising
    return x


def store_fit(item: tuple[int, np.ndarray]) -> dict[str, float]:
    """A per-store fit shaped like the demand app's: least-squares trend on a seeded series."""
    store, series = item
    t = np.arange(len(series), dtype=float)
    slope, intercept = np.polyfit(t, series, 1)
    return {"store": store, "slope": round(float(slope), 9), "intercept": round(float(intercept), 9)}


def store_items(n: int = 12) -> list[tuple[int, np.ndarray]]:
    rng = np.random.default_rng(7)
    return [(s, rng.normal(100 + s, 5, 60) + 0.3 * np.arange(60)) for s in range(1, n + 1)]


@pytest.fixture(autouse=True)
def _no_executor_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LOOPML_EXECUTOR", raising=False)


# -- order and results -------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", LOCAL)
def test_results_come_back_in_input_order(backend: str) -> None:
    items = list(range(37))
    assert fan_out(square, items, backend=backend, max_workers=2, chunk_size=3) == [x * x for x in items]
    # default chunking (about 4 chunks per worker) and a generator as input
    assert fan_out(square, (x for x in items), backend=backend) == [x * x for x in items]


@pytest.mark.parametrize("backend", LOCAL)
def test_empty_items_give_an_empty_list(backend: str) -> None:
    assert fan_out(square, [], backend=backend) == []


def test_each_backend_runs_where_it_says() -> None:
    me = os.getpid()
    serial = fan_out(where_am_i, range(4), backend="serial")
    assert {pid for pid, _ in serial} == {me}
    assert {name for _, name in serial} == {threading.current_thread().name}
    threads = fan_out(where_am_i, range(8), backend="thread", max_workers=2, chunk_size=1)
    assert {pid for pid, _ in threads} == {me}
    assert all(name.startswith("loopml-fanout") for _, name in threads)
    processes = fan_out(where_am_i, range(8), backend="process", max_workers=2, chunk_size=1)
    assert me not in {pid for pid, _ in processes}


def test_closures_run_on_processes_through_cloudpickle() -> None:
    offset = 10
    assert fan_out(lambda x: x + offset, range(5), backend="process", max_workers=2) == [10, 11, 12, 13, 14]


def test_a_nested_default_fan_out_inside_a_worker_runs_serially() -> None:
    assert fan_out(nested_backend, range(4), backend="process", max_workers=2) == ["serial"] * 4


@pytest.mark.parametrize("backend", LOCAL)
def test_progress_reports_done_and_total_up_to_the_end(backend: str) -> None:
    seen: list[tuple[int, int]] = []
    fan_out(
        square,
        range(10),
        backend=backend,
        max_workers=2,
        chunk_size=3,
        progress=lambda d, t: seen.append((d, t)),
    )
    assert seen[-1] == (10, 10)
    assert all(t == 10 for _, t in seen)
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)


# -- failures ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", LOCAL)
def test_a_failing_item_is_named_and_the_others_are_kept(backend: str) -> None:
    with pytest.raises(FanOutError) as info:
        fan_out(fail_on_odd_multiples_of_three, range(12), backend=backend, max_workers=2, chunk_size=2)
    err = info.value
    assert err.index == 3
    assert err.error_type == "ValueError"
    assert [f.index for f in err.failures] == [3, 9]
    assert "fail_on_odd_multiples_of_three" in err.traceback and "bad item 3" in err.traceback
    assert "item 3 of 12" in str(err) and "indices 3, 9" in str(err)
    assert err.results == [0, 1, 2, None, 4, 5, 6, 7, 8, None, 10, 11]
    assert err.status_code == 500 and err.field == "items"


def test_a_dead_worker_process_is_reported_with_the_items_it_held() -> None:
    with pytest.raises(FanOutError) as info:
        fan_out(crash_on_two, range(4), backend="process", max_workers=1, chunk_size=1)
    err = info.value
    assert 2 in [f.index for f in err.failures]
    assert {f.error_type for f in err.failures} == {"BrokenProcessPool"}
    assert "was lost" in str(err)


def test_an_unpicklable_fn_is_refused_with_a_fix() -> None:
    lock = threading.Lock()
    with pytest.raises(ConfigError, match="could not pickle fn"):
        fan_out(lambda x: (lock, x), range(3), backend="process")


# -- bad input ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"fn": 3}, "fn"),
        ({"items": "abc"}, "items"),
        ({"items": 5}, "items"),
        ({"max_workers": 0}, "max_workers"),
        ({"max_workers": -2}, "max_workers"),
        ({"max_workers": True}, "max_workers"),
        ({"max_workers": 1.5}, "max_workers"),
        ({"chunk_size": 0}, "chunk_size"),
        ({"progress": "bar"}, "progress"),
        ({"backend": 3}, "backend"),
    ],
)
def test_bad_arguments_are_rejected(kwargs: dict, field: str) -> None:
    call = {"fn": square, "items": [1, 2], "backend": "serial", **kwargs}
    with pytest.raises(ValidationError) as info:
        fan_out(call.pop("fn"), call.pop("items"), **call)
    assert info.value.field == field
    assert field in str(info.value)


def test_an_unknown_backend_suggests_the_right_one() -> None:
    with pytest.raises(ValidationError, match="Did you mean: process") as info:
        fan_out(square, [1], backend="proces")
    assert info.value.field == "backend"


def test_ray_without_the_extra_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(executors, "ray_installed", lambda: False)
    assert "ray" not in available_backends()
    with pytest.raises(ConfigError, match=r"pip install 'loopml\[ray\]'"):
        fan_out(square, [1, 2], backend="ray")
    with pytest.raises(ConfigError, match="install the ray extra"):
        resolve_backend(None, settings=load_settings(executor="ray://head:10001"))


# -- settings ----------------------------------------------------------------------------------------


def test_automatic_backend_depends_on_the_work() -> None:
    settings = load_settings(executor="")
    assert resolve_backend(None, settings=settings, n_items=1).backend == "serial"
    expected = "process" if (os.cpu_count() or 1) > 1 else "serial"
    assert resolve_backend(None, settings=settings, n_items=50).backend == expected


def test_the_executor_setting_picks_the_backend(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOOPML_EXECUTOR", "thread")
    assert resolve_backend(None) == Executor("thread", reason="from LOOPML_EXECUTOR")
    names = {name for _, name in fan_out(where_am_i, range(4))}
    assert all(n.startswith("loopml-fanout") for n in names)
    # an explicit backend wins over the setting
    assert resolve_backend("serial").backend == "serial"


def test_a_nested_call_is_serial_whatever_the_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(executors, "_IN_WORKER", True)
    assert resolve_backend(None, settings=load_settings(executor="process")).backend == "serial"


@pytest.mark.parametrize(
    "value", ["", "serial", "thread", "process", "ray", "ray:auto", "ray://head-node:10001"]
)
def test_valid_executor_settings_load(value: str) -> None:
    assert load_settings(executor=value).executor == value


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("gpu", "not a known backend"),
        ("ray://head-node", "needs a host and a port"),
        ("ray://:10001", "host"),
    ],
)
def test_invalid_executor_settings_name_the_field(value: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(executor=value)
    assert "executor" in str(info.value) and "LOOPML_EXECUTOR" in str(info.value)
    assert message in str(info.value)


@pytest.mark.skipif(not executors.ray_installed(), reason="ray extra not installed")
def test_ray_addresses_come_from_the_name_or_the_settings() -> None:
    assert resolve_backend("ray", settings=load_settings(executor="")).address is None
    assert resolve_backend("ray:auto").address == "auto"
    assert resolve_backend("ray://h:1").address == "ray://h:1"
    settings = load_settings(executor="ray://head:10001")
    assert resolve_backend("ray", settings=settings).address == "ray://head:10001"
    assert resolve_backend(None, settings=settings).describe().startswith("ray at ray://head:10001")


# -- Ray ---------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_fan_out_starts_a_quiet_local_ray_when_none_is_running() -> None:
    ray = pytest.importorskip("ray", reason="the ray extra is not installed: pip install 'loopml[ray]'")
    if ray.is_initialized():
        pytest.skip("a Ray session is already running in this process")
    try:
        assert fan_out(square, range(5), backend="ray") == [0, 1, 4, 9, 16]
        assert ray.is_initialized()
        assert ray.cluster_resources()["CPU"] == os.cpu_count()
        # tasks run as fan-out workers: a nested default fan-out stays serial
        assert fan_out(nested_backend, range(2), backend="ray") == ["serial", "serial"]
    finally:
        ray.shutdown()


@pytest.mark.slow
def test_ray_gives_the_same_results_as_processes(local_ray: object) -> None:
    items = store_items()
    seen: list[tuple[int, int]] = []
    on_ray = fan_out(store_fit, items, backend="ray", progress=lambda d, t: seen.append((d, t)))
    on_processes = fan_out(store_fit, items, backend="process", max_workers=2)
    assert on_ray == on_processes
    assert [r["store"] for r in on_ray] == list(range(1, 13))
    assert seen[-1] == (12, 12)
    # max_workers caps the tasks in flight; chunk_size 1 sends one task per item
    assert fan_out(square, range(9), backend="ray", max_workers=1, chunk_size=1) == [x * x for x in range(9)]


@pytest.mark.slow
def test_ray_reports_the_failing_item(local_ray: object) -> None:
    with pytest.raises(FanOutError) as info:
        fan_out(fail_on_odd_multiples_of_three, range(12), backend="ray", chunk_size=4)
    assert info.value.backend == "ray"
    assert [f.index for f in info.value.failures] == [3, 9]
    assert "bad item 3" in info.value.traceback
    assert info.value.results[:3] == [0, 1, 2]
