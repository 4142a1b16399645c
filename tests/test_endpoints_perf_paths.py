"""The serving fast paths keep the slow paths' behaviour: inline calls, the numpy signature path, the
ASGI predict shortcut, small log batches, the lock-free change token, metrics without duplicates."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient

from loopml import Loopml
from loopml.errors import BackendUnavailableError, ValidationError
from loopml.registry.signature import ColumnSpec, Signature
from loopml.serving.app import create_app
from loopml.serving.endpoints import EndpointSpec, Fallback, Single
from loopml.serving.endpoints.breaker import OPEN
from loopml.serving.endpoints.runtime import INLINE_MAX_ROWS, CallTimes, EndpointRuntime
from loopml.serving.endpoints.serving_metrics import EndpointMetrics
from loopml.serving.inference.records import InferenceRecord
from loopml.serving.inference.writer import LogWriter

EXAMPLE = pd.DataFrame({"x": [0.5, 1.0, 2.0], "y": [1.0, 0.0, 3.0]})
ROW = {"x": 1.0, "y": 2.0}
SWITCH = {"fail": False, "sleep": 0.0, "threads": set()}


class Switchable:
    """2x + y; fails or stalls on demand and remembers which threads called it."""

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        SWITCH["threads"].add(threading.current_thread().name)
        if SWITCH["sleep"]:
            time.sleep(SWITCH["sleep"])
        if SWITCH["fail"]:
            raise RuntimeError("dependency down")
        return 2.0 * X["x"].to_numpy() + X["y"].to_numpy()


@pytest.fixture(autouse=True)
def _reset_switch() -> Iterator[None]:
    SWITCH.update(fail=False, sleep=0.0, threads=set())
    yield
    SWITCH.update(fail=False, sleep=0.0, threads=set())


def _endpoints(lm: Loopml) -> Any:
    found = getattr(lm, "endpoints", None)
    if found is not None:
        return found
    from loopml.serving.endpoints.service import Endpoints

    return Endpoints(lm.ctx)


@pytest.fixture
def runtime(lm_sqlite: Loopml) -> Iterator[EndpointRuntime]:
    lm_sqlite.registry.register("m", Switchable(), flavor="python", input_example=EXAMPLE)
    # inline limit min(timeout / 10, 1 s): a scheduling hiccup of the test host does not flip the path
    rt = EndpointRuntime(
        lm_sqlite, metrics=EndpointMetrics(), breaker_failures=3, breaker_cooldown=60, inline_max_seconds=1.0
    )
    yield rt
    rt.close()


def _create(lm: Loopml, rt: EndpointRuntime, **spec: Any) -> None:
    _endpoints(lm).create(EndpointSpec("e", Single("m"), **spec))
    rt.refresh(force=True)


# -- inline execution -------------------------------------------------------------------------
def test_call_times_need_samples_then_follow_the_p99() -> None:
    times = CallTimes(size=128, every=16, min_calls=16)
    for _ in range(15):
        times.record(0.0001)
    assert not times.fast(0.002)  # not measured enough yet: stay in the pool
    times.record(0.0001)
    assert times.fast(0.002) and times.p99 == pytest.approx(0.0001)
    times.record(0.0015)  # slower, but under the 2 ms floor: waits for the next recount
    assert times.fast(0.002)
    times.record(0.05)  # one stall: out of the inline path at once
    assert not times.fast(0.002)
    for _ in range(15):
        times.record(0.0001)
    assert not times.fast(0.002)  # among 32 calls one stall is the p99
    for _ in range(112):
        times.record(0.0001)
    assert times.fast(0.002)  # among the last 128 calls a single outlier is not
    assert times.snapshot()["calls"] == 145


def test_a_fast_model_runs_inline_with_the_same_answers(lm_sqlite: Loopml, runtime: EndpointRuntime) -> None:
    _create(lm_sqlite, runtime)
    first = [runtime.predict("e", [ROW]).outputs for _ in range(16)]
    assert runtime.inline_calls == 0 and all(o == [4.0] for o in first)
    assert any(name.startswith("loopml-predict") for name in SWITCH["threads"])
    SWITCH["threads"] = set()
    for _ in range(10):
        assert runtime.predict("e", [ROW]).outputs == [4.0]
    assert runtime.inline_calls == 10
    assert SWITCH["threads"] == {threading.current_thread().name}
    calls = runtime.status("e")["arms"]["primary"]["calls"]
    assert calls["calls"] == 26 and calls["p99_ms"] < 10.0
    big = [ROW] * (INLINE_MAX_ROWS + 1)  # a big batch goes through the pool again
    assert runtime.predict("e", big).outputs == [4.0] * len(big)
    assert runtime.inline_calls == 10


def test_inline_failures_still_open_the_breaker_and_serve_the_fallback(
    lm_sqlite: Loopml, runtime: EndpointRuntime
) -> None:
    _create(lm_sqlite, runtime, fallback=Fallback(-1.0))
    for _ in range(16):
        runtime.predict("e", [ROW])
    SWITCH["fail"] = True
    for _ in range(3):
        res = runtime.predict("e", [ROW])
        assert (res.status, res.outputs) == ("fallback", [-1.0])
    assert runtime.inline_calls == 3
    assert runtime.status("e")["arms"]["primary"]["circuit"] == OPEN
    errors = runtime.metrics.registry.get_sample_value(
        "loopml_endpoint_errors_total",
        {"endpoint": "e", "version": "m/1", "arm": "primary", "kind": "model_error"},
    )
    assert errors == 3.0


def test_inline_bad_input_is_a_validation_error_not_a_failure(
    lm_sqlite: Loopml, runtime: EndpointRuntime
) -> None:
    _create(lm_sqlite, runtime)
    for _ in range(16):
        runtime.predict("e", [ROW])
    with pytest.raises(ValidationError, match="'y' is missing"):
        runtime.predict("e", [{"x": 1.0}])
    assert runtime.inline_calls == 1
    assert runtime.status("e")["arms"]["primary"]["breaker"]["consecutive_failures"] == 0


def test_a_slow_model_stays_in_the_pool_where_the_timeout_answers(
    lm_sqlite: Loopml, runtime: EndpointRuntime
) -> None:
    _create(lm_sqlite, runtime, timeout_ms=40)  # inline limit: 4 ms
    SWITCH["sleep"] = 0.008
    for _ in range(16):
        assert runtime.predict("e", [ROW]).outputs == [4.0]
    assert runtime.inline_calls == 0
    SWITCH["sleep"] = 0.3
    with pytest.raises(BackendUnavailableError, match=r"timed out after 40 ms.*Set a fallback"):
        runtime.predict("e", [ROW])
    assert runtime.inline_calls == 0


# -- the numpy signature path -----------------------------------------------------------------
def _signature() -> Signature:
    return Signature(
        (ColumnSpec("a", "float"), ColumnSpec("b", "int"), ColumnSpec("c", "float", nullable=True))
    )


def test_the_numpy_path_equals_the_frame_path() -> None:
    sig = _signature()
    row = {"c": 0.25, "a": 1.5, "b": 3}
    fast = sig.prepare(row, as_numpy=True)
    assert fast.dtype == np.float64 and fast.shape == (1, 3)
    assert fast.tolist() == sig.prepare(pd.DataFrame([row]), as_numpy=True).tolist() == [[1.5, 3.0, 0.25]]
    assert np.isnan(sig.prepare({"a": 1.0, "b": 2, "c": None}, as_numpy=True)[0, 2])
    assert sig.prepare({"a": 1, "b": 2.0, "c": 0}, as_numpy=True).tolist() == [[1.0, 2.0, 0.0]]


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ({"a": 1.0, "b": 2.5, "c": 0.0}, "'b' expects int"),
        ({"a": float("inf"), "b": 2, "c": 0.0}, "'a' is inf"),
        ({"a": float("nan"), "b": 2, "c": 0.0}, "'a' is missing a value"),
        ({"a": "1", "b": 2, "c": 0.0}, "'a' expects float, got str"),
        ({"a": True, "b": 2, "c": 0.0}, "'a' expects float, got bool"),
        ({"a": 1.0, "b": 2}, "'c' is missing"),
        ({"a": 1.0, "b": 2, "c": 0.0, "d": 1.0}, "'d' is not in the model signature"),
        ({"a": 1.0, "b": 2, "z": 0.0}, "'c' is missing"),
    ],
)
def test_the_numpy_path_refuses_what_the_checked_path_refuses(row: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        _signature().prepare(row, as_numpy=True)


def test_bool_columns_and_non_strict_rows_take_the_checked_path() -> None:
    sig = Signature((ColumnSpec("a", "float"), ColumnSpec("flag", "bool")))
    assert sig.prepare({"a": 1.0, "flag": True}, as_numpy=True).tolist() == [[1.0, 1.0]]
    with pytest.raises(ValidationError, match="'flag' expects bool"):
        sig.prepare({"a": 1.0, "flag": 1}, as_numpy=True)
    got = sig.prepare({"a": 1.0, "flag": False, "extra": 9}, strict=False, as_numpy=True)
    assert got.tolist() == [[1.0, 0.0]]


# -- the ASGI fast path and metrics -----------------------------------------------------------
@pytest.fixture
def client(lm_sqlite: Loopml) -> Iterator[TestClient]:
    lm_sqlite.registry.register("m", Switchable(), flavor="python", input_example=EXAMPLE)
    _endpoints(lm_sqlite).create(EndpointSpec("e", Single("m"), max_batch_rows=3))
    with TestClient(create_app(lm_sqlite, apps=())) as c:
        yield c


def test_fast_path_answers_and_errors_like_the_route(client: TestClient) -> None:
    r = client.post("/v1/endpoints/e/predict", json={"row": ROW, "request_id": "fast-1"})
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    assert r.json()["outputs"] == [4.0] and r.json()["request_id"] == "fast-1"
    bad = client.post("/v1/endpoints/e/predict", content=b"{nope")
    assert bad.status_code == 422 and bad.json()["field"] == "body"
    big = client.post("/v1/endpoints/e/predict", json={"rows": [ROW] * 4})
    assert (
        big.status_code == 422 and big.json()["field"] == "rows" and "max_batch_rows" in big.json()["detail"]
    )
    missing = client.post("/v1/endpoints/nope/predict", json={"row": ROW})
    assert missing.status_code == 404 and missing.json()["field"] == "name"
    assert client.get("/v1/endpoints/e/predict").status_code == 405  # not POST: the router answers
    assert client.post("/v1/endpoints/a/b/predict", json={"row": ROW}).status_code == 404
    assert client.post("/v1/endpoints//predict", json={"row": ROW}).status_code in (404, 405)


def test_metrics_keep_the_endpoint_series_and_skip_the_duplicate_http_series(client: TestClient) -> None:
    for _ in range(3):
        assert client.post("/v1/endpoints/e/predict", json={"row": ROW}).status_code == 200
    assert client.get("/v1/endpoints/e/status").status_code == 200
    text = client.get("/metrics").text
    assert (
        'loopml_endpoint_predictions_total{arm="primary",endpoint="e",status="ok",version="m/1"} 3.0' in text
    )
    assert 'route="/v1/endpoints/{name}/status"' in text  # other routes keep the HTTP series
    assert 'route="/v1/endpoints/{name}/predict"' not in text


# -- the inference log writer -----------------------------------------------------------------
def _rec(i: int) -> InferenceRecord:
    return InferenceRecord(f"r{i}", "e", "m", 1, "primary", [ROW], [4.0], 0.1, "ok")


def test_the_background_writer_writes_small_batches_and_loses_nothing() -> None:
    sizes: list[int] = []
    stored: list[str] = []

    def sink(batch: list[Any]) -> int:
        sizes.append(len(batch))
        stored.extend(entry[0].request_id for entry in batch)
        return len(batch)

    writer = LogWriter(sink, flush_rows=50, flush_interval=30)
    assert (LogWriter(sink).flush_rows, LogWriter(sink).flush_interval) == (200, 0.1)
    writer.extend([_rec(i) for i in range(170)])  # wakes the thread: batches of flush_rows
    deadline = time.monotonic() + 5
    while writer.pending and time.monotonic() < deadline:
        time.sleep(0.01)
    assert max(sizes) <= 50 and sum(sizes) == 170
    writer.extend([_rec(i) for i in range(170, 1300)])
    writer.close()  # an explicit flush/close writes in big batches: the caller wants it done
    assert stored == [f"r{i}" for i in range(1300)]
    assert max(sizes) <= 1000


# -- the change token -------------------------------------------------------------------------
def test_change_token_moves_with_endpoints_aliases_and_versions(lm: Loopml) -> None:
    eps = _endpoints(lm)
    lm.registry.register("m", Switchable(), flavor="python", input_example=EXAMPLE)
    t0 = eps.change_token()
    assert eps.change_token() == t0
    eps.create(EndpointSpec("e", Single("m")))
    t1 = eps.change_token()
    assert t1 != t0
    lm.registry.set_alias("m", "champion", 1, actor="t", reason="first")
    t2 = eps.change_token()
    assert t2 != t1
    lm.registry.register("m", Switchable(), flavor="python", input_example=EXAMPLE)
    t3 = eps.change_token()
    assert t3 != t2
    time.sleep(0.01)
    lm.registry.set_alias("m", "champion", 2, actor="t", reason="second")
    assert eps.change_token() != t3
    assert eps.change_token() == eps.change_token()


# -- dict-style on-demand features --------------------------------------------------------------
def test_fraud_txn_context_takes_and_returns_numpy_columns() -> None:
    from loopml.apps.fraud.features import txn_context
    from loopml.features.ondemand import takes_columns

    assert takes_columns(txn_context)
    cols = {
        "mean_amount": np.array([10.0, np.nan]),
        "usual_hour": np.array([23.0, np.nan]),
        "home_region": np.array([1, 2]),
        "amount": np.array([20.0, 5.0]),
        "hour": np.array([1, 4]),
        "merchant_region": np.array([1, 3]),
    }
    got = txn_context(cols)
    assert set(got) == {"amount_ratio", "hour_gap", "is_foreign"}
    assert got["amount_ratio"][0] == 2.0 and np.isnan(got["amount_ratio"][1])
    assert got["hour_gap"][0] == 2.0 and got["is_foreign"].tolist() == [0, 1]
    as_frame = txn_context(pd.DataFrame(cols))
    for name, values in got.items():
        np.testing.assert_array_equal(values, as_frame[name])
    unknown_user = {k: np.array([None], dtype=object) for k in ("mean_amount", "usual_hour", "home_region")}
    new = txn_context(
        {**unknown_user, "amount": np.array([5.0]), "hour": np.array([3]), "merchant_region": np.array([2])}
    )
    assert np.isnan(new["amount_ratio"][0]) and new["is_foreign"].tolist() == [0]
