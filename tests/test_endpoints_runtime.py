"""The endpoint runtime: routing policies, hot reload, broken versions, resilience, cache, features."""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

from loopml import Loopml
from loopml.errors import BackendUnavailableError, NotFoundError, ValidationError
from loopml.serving.endpoints import (
    AB,
    Bandit,
    CacheSpec,
    Canary,
    EndpointSpec,
    Fallback,
    FeatureLookup,
    RollbackRule,
    Shadow,
    Single,
)
from loopml.serving.endpoints.breaker import CLOSED, HALF_OPEN, OPEN, CircuitBreaker
from loopml.serving.endpoints.policies import ABRouter, canary_verdict, psi
from loopml.serving.endpoints.runtime import EndpointRuntime
from loopml.serving.endpoints.serving_metrics import EndpointMetrics
from loopml.serving.inference import InferenceLog
from services import REDIS_URL, need_redis

EXAMPLE = pd.DataFrame({"x": [0.5, 1.0, 2.0], "y": [1.0, 0.0, 3.0]})
SIGNATURE = {"columns": [{"name": "x", "dtype": "float"}, {"name": "y", "dtype": "float"}]}


class Linear:
    """y = a*x + b*y: a python-flavor regressor whose version is visible in its output."""

    def __init__(self, a: float, b: float = 0.0) -> None:
        self.a, self.b = a, b

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        return self.a * X["x"].to_numpy() + self.b * X["y"].to_numpy()


class FailsOnNegative(Linear):
    """A canary that breaks on part of the traffic (x < 0) but passes its input example."""

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        if (X["x"] < 0).any():
            raise RuntimeError("boom on negative x")
        return super().predict(X)


class AlwaysRaises:
    def predict(self, X: pd.DataFrame) -> np.ndarray:
        raise RuntimeError("this version is broken")


SWITCH = {"fail": False, "sleep": 0.0}


class Switchable(Linear):
    """Fails or stalls on demand (module state, so the test flips it while the endpoint serves)."""

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        if SWITCH["sleep"]:
            time.sleep(SWITCH["sleep"])
        if SWITCH["fail"]:
            raise RuntimeError("dependency down")
        return super().predict(X)


@pytest.fixture(autouse=True)
def _reset_switch() -> Iterator[None]:
    SWITCH.update(fail=False, sleep=0.0)
    yield
    SWITCH.update(fail=False, sleep=0.0)


def endpoints(lm: Loopml) -> Any:
    found = getattr(lm, "endpoints", None)
    if found is not None:
        return found
    from loopml.serving.endpoints.service import Endpoints

    return Endpoints(lm.ctx)


def register(lm: Loopml, model: Any, name: str = "m", **kw: Any) -> Any:
    if "signature" not in kw:
        kw["input_example"] = EXAMPLE
    return lm.registry.register(name, model, flavor="python", **kw)


class Harness:
    """A runtime without its watcher thread (tests drive refresh/watchdog/reward rounds)."""

    def __init__(self, lm: Loopml, **kw: Any) -> None:
        self.lm = lm
        self.log = InferenceLog(lm.ctx)
        self.writer = self.log.writer(flush_interval=0.05)
        self.metrics = EndpointMetrics()
        kw.setdefault("seed", 7)
        self.rt = EndpointRuntime(lm, log_writer=self.writer, metrics=self.metrics, **kw)
        self.eps = endpoints(lm)

    def create(self, spec: EndpointSpec) -> None:
        self.eps.create(spec)
        self.rt.refresh(force=True)

    def flush(self) -> None:
        self.rt.drain_shadows()
        self.writer.flush()

    def close(self) -> None:
        self.rt.close()
        self.writer.close()


@pytest.fixture
def h(lm_sqlite: Loopml) -> Iterator[Harness]:
    harness = Harness(lm_sqlite)
    yield harness
    harness.close()


ROW = {"x": 1.0, "y": 2.0}


# -- single policy, signature checks -------------------------------------------------------------------
def test_single_policy_predicts_one_and_many_rows(h: Harness) -> None:
    register(h.lm, Linear(2.0, 1.0))
    h.create(EndpointSpec("demand", Single("m")))
    one = h.rt.predict("demand", [ROW], request_id="r-1")
    assert (one.outputs, one.model, one.version, one.arm, one.status) == ([4.0], "m", 1, "primary", "ok")
    assert one.request_id == "r-1" and one.latency_ms > 0 and not one.cached
    many = h.rt.predict("demand", [ROW, {"x": 3.0, "y": 0.0}, {"x": -1, "y": 1}])
    assert many.outputs == [4.0, 6.0, -1.0] and len(many.request_id) == 32
    h.flush()
    rec = h.log.get("r-1")
    assert (rec.endpoint, rec.arm, rec.version, rec.outputs, rec.inputs) == (
        "demand",
        "primary",
        1,
        [4.0],
        [ROW],
    )


def test_classifier_outputs_probability_and_label(h: Harness) -> None:
    X = pd.DataFrame({"x": [0.0, 1.0, 2.0, 3.0, 0.5, 2.5], "y": [1.0, 0.0, 1.0, 0.0, 0.0, 1.0]})
    clf = LogisticRegression().fit(X, [0, 0, 1, 1, 0, 1])
    h.lm.registry.register("clf", clf, input_example=X)
    h.create(EndpointSpec("score", Single("clf")))
    out = h.rt.predict("score", [{"x": 3.0, "y": 0.0}, {"x": 0.0, "y": 0.0}]).outputs
    assert out[0]["label"] == 1 and out[0]["probability"] > 0.5
    assert out[1]["label"] == 0 and 0.0 <= out[1]["probability"] < 0.5


@pytest.mark.parametrize(
    ("row", "needle"),
    [
        ({"x": 1.0}, "'y' is missing"),
        ({"x": 1.0, "y": 1.0, "z": 3}, "'z' is not in the model signature"),
        ({"x": "a lot", "y": 1.0}, "'x' expects float"),
        ({"x": float("nan"), "y": 1.0}, "'x' (is missing a value|holds 1 NaN)"),
        ({"x": float("inf"), "y": 1.0}, "'x' (is inf|holds infinite)"),
    ],
)
def test_signature_errors_name_the_column(h: Harness, row: dict[str, Any], needle: str) -> None:
    register(h.lm, Linear(1.0))
    h.create(EndpointSpec("e", Single("m")))
    with pytest.raises(ValidationError, match=needle):
        h.rt.predict("e", [row])
    with pytest.raises(ValidationError, match=needle):  # the batch path names it too
        h.rt.predict("e", [ROW, row])
    assert h.rt.predict("e", [ROW]).status == "ok"  # bad input does not trip the breaker
    assert h.rt.state("e").arms["primary"].breaker.state == CLOSED


def test_bad_requests_are_refused_with_the_field(h: Harness) -> None:
    register(h.lm, Linear(1.0))
    h.create(EndpointSpec("fraud", Single("m"), max_batch_rows=3))
    with pytest.raises(ValidationError, match="at most 3") as err:
        h.rt.predict("fraud", [ROW] * 4)
    assert err.value.field == "rows"
    with pytest.raises(ValidationError, match="rows is empty"):
        h.rt.predict("fraud", [])
    with pytest.raises(ValidationError, match=r"rows\[1\] must be an object"):
        h.rt.predict("fraud", [ROW, 5])
    with pytest.raises(ValidationError, match="request_id"):
        h.rt.predict("fraud", [ROW], request_id="")
    with pytest.raises(NotFoundError, match="Did you mean: fraud"):
        h.rt.predict("frau", [ROW])


# -- hot reload, broken versions -----------------------------------------------------------------------
def test_alias_move_is_picked_up_while_requests_keep_succeeding(lm_sqlite: Loopml) -> None:
    h = Harness(lm_sqlite, poll_interval=0.05)
    try:
        register(h.lm, Linear(1.0))
        register(h.lm, Linear(10.0))
        h.lm.registry.set_alias("m", "champion", 1, actor="t", reason="v1")
        h.eps.create(EndpointSpec("e", Single("m@champion")))
        h.rt.start()
        assert h.rt.predict("e", [ROW]).version == 1
        failures: list[BaseException] = []
        versions: Counter[int] = Counter()
        stop = threading.Event()

        def hammer() -> None:
            while not stop.is_set():
                try:
                    res = h.rt.predict("e", [ROW])
                    assert res.status == "ok" and res.outputs == [float(res.version == 2) * 9 + 1.0]
                    versions[res.version] += 1
                except BaseException as exc:
                    failures.append(exc)

        threads = [threading.Thread(target=hammer) for _ in range(3)]
        for t in threads:
            t.start()
        time.sleep(0.2)
        h.lm.registry.set_alias("m", "champion", 2, actor="t", reason="v2 is better")
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and h.rt.predict("e", [ROW]).version != 2:
            time.sleep(0.02)
        time.sleep(0.1)
        stop.set()
        for t in threads:
            t.join()
        assert not failures
        assert versions[1] > 0 and versions[2] > 0
        assert h.rt.status("e")["arms"]["primary"]["version"] == 2
    finally:
        h.close()


def test_a_broken_version_never_replaces_a_working_one(h: Harness) -> None:
    register(h.lm, Linear(1.0))
    h.lm.registry.set_alias("m", "champion", 1, actor="t", reason="v1")
    h.create(EndpointSpec("e", Single("m@champion")))
    # v2 raises on every input (registered without an example, so the registry could not see it)
    register(h.lm, AlwaysRaises(), signature=SIGNATURE)
    h.lm.registry.set_alias("m", "champion", 2, actor="t", reason="oops")
    assert h.rt.refresh()
    res = h.rt.predict("e", [ROW])
    assert (res.version, res.status, res.outputs) == (1, "ok", [1.0])
    arm = h.rt.status("e")["arms"]["primary"]
    assert arm["state"] == "stale" and arm["pending_version"] == 2 and "broken" in arm["error"]
    alert = h.lm.alerts.get_open("endpoint.load_failed:e")
    assert alert is not None and "m/2" in alert.detail
    # v3's artifact is corrupted on disk: it fails to load, v1 keeps serving
    v3 = register(h.lm, Linear(3.0))
    path = h.lm.ctx.artifacts.local_path(v3.digest, verify=False)
    path.chmod(0o644)
    path.write_bytes(b"not a pickle")
    h.lm.registry.set_alias("m", "champion", 3, actor="t", reason="corrupt")
    h.rt.refresh()
    assert h.rt.predict("e", [ROW]).version == 1
    assert h.rt.status("e")["arms"]["primary"]["pending_version"] == 3
    # a good v4 goes live and the alert resolves
    register(h.lm, Linear(4.0))
    h.lm.registry.set_alias("m", "champion", 4, actor="t", reason="fixed")
    h.rt.refresh()
    assert h.rt.predict("e", [ROW]).outputs == [4.0]
    assert h.lm.alerts.get_open("endpoint.load_failed:e") is None


def test_an_endpoint_whose_only_model_is_broken_answers_503_or_the_fallback(h: Harness) -> None:
    register(h.lm, AlwaysRaises(), signature=SIGNATURE)
    h.create(EndpointSpec("broken", Single("m")))
    with pytest.raises(BackendUnavailableError, match="no model can answer"):
        h.rt.predict("broken", [ROW])
    h.eps.update("broken", EndpointSpec("broken", Single("m"), fallback=Fallback(0.0)), actor="t")
    h.rt.refresh()
    res = h.rt.predict("broken", [ROW])
    assert (res.status, res.outputs) == ("fallback", [0.0])


# -- canary ------------------------------------------------------------------------------------------
def test_canary_routes_by_weight_and_rolls_back_when_its_error_rate_is_worse(h: Harness) -> None:
    register(h.lm, Linear(1.0))
    register(h.lm, FailsOnNegative(1.0))
    rule = RollbackRule(min_requests=20, max_error_rate_delta=0.05)
    h.create(EndpointSpec("e", Canary("m/1", "m/2", weight=0.3, rollback=rule)))
    arms: Counter[str] = Counter()
    for _ in range(300):
        arms[h.rt.predict("e", [ROW]).arm] += 1
    assert 0.2 < arms["canary"] / 300 < 0.4
    h.flush()
    assert h.rt.check_canaries() == []  # healthy so far
    for i in range(200):  # half the traffic now breaks the canary; the baseline answers those requests
        res = h.rt.predict("e", [{"x": -1.0 if i % 2 else 1.0, "y": 0.0}])
        assert res.status == "ok"
    h.flush()
    assert h.rt.check_canaries() == ["e"]
    info = h.eps.get("e")
    assert info.spec.policy == Single("m/1")
    assert "error rate" in h.eps.history("e")[0].reason
    assert h.rt.predict("e", [{"x": -1.0, "y": 0.0}]).arm == "primary"
    assert h.rt.check_canaries() == []  # idempotent: nothing left to roll back


def test_canary_verdict_and_psi() -> None:
    class S:
        def __init__(self, n: int, errors: int, p99: float, outputs: np.ndarray) -> None:
            self.n, self.errors, self.p99, self.outputs = n, errors, p99, outputs

    rng = np.random.default_rng(0)
    base = S(500, 5, 2.0, rng.normal(0, 1, 500))
    rule = RollbackRule(min_requests=100)
    assert not canary_verdict(rule, base, S(50, 40, 2.0, rng.normal(0, 1, 50))).rollback  # too few
    assert not canary_verdict(rule, base, S(200, 2, 2.1, rng.normal(0, 1, 200))).rollback
    jitter = canary_verdict(rule, base, S(200, 2, 9.0, rng.normal(0, 1, 200)))
    assert not jitter.rollback  # x4.5 the baseline, but under the 10 ms floor: scheduling noise
    slow = canary_verdict(rule, base, S(200, 2, 25.0, rng.normal(0, 1, 200)))
    assert slow.rollback and "p99" in slow.reason
    strict = RollbackRule(min_requests=100, latency_floor_ms=0)
    assert canary_verdict(strict, base, S(200, 2, 9.0, rng.normal(0, 1, 200))).rollback
    shifted = canary_verdict(rule, base, S(200, 2, 2.0, rng.normal(2, 1, 200)))
    assert shifted.rollback and "PSI" in shifted.reason
    assert psi(rng.normal(0, 1, 1000), rng.normal(0, 1, 1000)) < 0.05


# -- A/B, shadow, bandit -----------------------------------------------------------------------------
def test_ab_is_sticky_by_routing_key_and_logs_the_assignment(h: Harness) -> None:
    register(h.lm, Linear(1.0))
    register(h.lm, Linear(2.0))
    h.create(
        EndpointSpec("e", AB({"control": "m/1", "treatment": "m/2"}, {"control": 0.5, "treatment": 0.5}))
    )
    first = {f"user-{i}": h.rt.predict("e", [ROW], routing_key=f"user-{i}").arm for i in range(200)}
    again = {k: h.rt.predict("e", [ROW], routing_key=k).arm for k in list(first)[:50]}
    assert all(first[k] == arm for k, arm in again.items())
    share = sum(arm == "treatment" for arm in first.values()) / len(first)
    assert 0.35 < share < 0.65
    # the key can also come from the row (policy.routing_key, default user_id): not a model column, so
    # the assignment uses it even when the request does not name a routing key
    router = ABRouter("e", {"control": 0.5, "treatment": 0.5}, "user_id")
    assert router.assign("user-3") == first["user-3"]
    res = h.rt.predict("e", [ROW], routing_key="user-3", request_id="ab-1")
    h.flush()
    rec = h.log.get("ab-1")
    assert (rec.arm, rec.routing_key, rec.version) == (res.arm, "user-3", 1 if res.arm == "control" else 2)


def test_shadow_answers_from_primary_and_logs_the_shadow_output(h: Harness) -> None:
    register(h.lm, Linear(1.0))
    register(h.lm, Linear(1.0, 0.5))  # disagrees whenever y != 0
    h.create(EndpointSpec("e", Shadow("m/1", ["m/2"])))
    res = h.rt.predict("e", [{"x": 1.0, "y": 2.0}, {"x": 1.0, "y": 0.0}], request_id="s-1")
    assert (res.outputs, res.version, res.arm) == ([1.0, 1.0], 1, "primary")
    h.flush()
    rec = h.log.get("s-1")
    (shadow,) = rec.shadow
    assert shadow["version"] == 2 and shadow["outputs"] == [2.0, 1.0] and shadow["agreement"] == 0.5
    text = h.metrics.registry.get_sample_value(
        "loopml_endpoint_shadow_disagreements_total", {"endpoint": "e", "shadow": "m/2"}
    )
    assert text == 1.0


def test_bandit_converges_to_the_arm_with_better_rewards(h: Harness) -> None:
    register(h.lm, Linear(1.0))
    register(h.lm, Linear(1.0))
    h.create(EndpointSpec("e", Bandit({"a": "m/1", "b": "m/2"}, min_pulls=5)))
    rng = np.random.default_rng(3)
    p = {"a": 0.2, "b": 0.7}
    picks: list[str] = []
    for _ in range(12):
        batch = []
        for _ in range(25):
            res = h.rt.predict("e", [ROW])
            picks.append(res.arm)
            batch.append({"request_id": res.request_id, "reward": float(rng.random() < p[res.arm])})
        h.flush()
        h.log.feedback_many("e", batch)
        h.rt.refresh_rewards()
    late = Counter(picks[-100:])
    assert late["b"] > 75, late
    status = h.rt.status("e")["routing"]["arms"]
    assert status["b"]["mean"] > status["a"]["mean"]


# -- resilience --------------------------------------------------------------------------------------
def test_circuit_breaker_states() -> None:
    now = [0.0]
    b = CircuitBreaker(2, 10.0, clock=lambda: now[0])
    assert b.allow() and b.state == CLOSED
    b.record_failure()
    assert b.state == CLOSED
    b.record_failure()
    assert b.state == OPEN and not b.allow()
    now[0] = 10.0
    assert b.state == HALF_OPEN
    assert b.allow() and not b.allow()  # a single probe
    b.record_failure()
    assert b.state == OPEN
    now[0] = 20.0
    assert b.allow()
    b.record_success()
    assert b.state == CLOSED and b.allow()
    with pytest.raises(ValidationError, match="failure_threshold"):
        CircuitBreaker(0)


def test_timeout_and_breaker_serve_the_fallback_then_half_open_recovers(lm_sqlite: Loopml) -> None:
    h = Harness(lm_sqlite, breaker_failures=2, breaker_cooldown=0.3)
    try:
        register(h.lm, Switchable(1.0))
        h.create(EndpointSpec("e", Single("m"), timeout_ms=50, fallback=Fallback(-1.0)))
        assert h.rt.predict("e", [ROW]).outputs == [1.0]
        SWITCH["sleep"] = 0.3
        for _ in range(2):
            res = h.rt.predict("e", [ROW])
            assert (res.status, res.outputs) == ("fallback", [-1.0]) and res.latency_ms < 250
        assert h.rt.status("e")["arms"]["primary"]["circuit"] == OPEN
        SWITCH.update(sleep=0.0, fail=True)
        t0 = time.perf_counter()
        assert h.rt.predict("e", [ROW]).status == "fallback"  # open: the model is not even called
        assert time.perf_counter() - t0 < 0.05
        SWITCH["fail"] = False
        time.sleep(0.35)
        assert h.rt.status("e")["arms"]["primary"]["circuit"] == HALF_OPEN
        res = h.rt.predict("e", [ROW])  # the half-open probe succeeds and closes the circuit
        assert (res.status, res.outputs) == ("ok", [1.0])
        assert h.rt.status("e")["arms"]["primary"]["circuit"] == CLOSED
        h.flush()
        statuses = Counter(h.log.records("e")["status"])
        assert statuses["fallback"] == 3 and statuses["ok"] == 2
        timeouts = h.metrics.registry.get_sample_value(
            "loopml_endpoint_errors_total",
            {"endpoint": "e", "version": "m/1", "arm": "primary", "kind": "timeout"},
        )
        assert timeouts == 2.0
    finally:
        h.close()


def test_model_errors_without_a_fallback_are_503(h: Harness) -> None:
    register(h.lm, Switchable(1.0))
    h.create(EndpointSpec("e", Single("m")))
    SWITCH["fail"] = True
    with pytest.raises(BackendUnavailableError, match="dependency down"):
        h.rt.predict("e", [ROW], request_id="bad-1")
    h.flush()
    rec = h.log.get("bad-1")
    assert rec.status == "error" and "dependency down" in rec.error


# -- cache -------------------------------------------------------------------------------------------
def _cache_roundtrip(h: Harness, url: str) -> None:
    register(h.lm, Linear(1.0))
    h.create(EndpointSpec("e", Single("m"), cache=CacheSpec(ttl_seconds=60, url=url)))
    first = h.rt.predict("e", [ROW, {"x": 5.0, "y": 0.0}])
    assert not first.cached
    again = h.rt.predict("e", [{"y": 2.0, "x": 1.0}, {"x": 5.0, "y": 0.0}])  # key order does not matter
    assert again.cached and again.outputs == first.outputs == [1.0, 5.0]
    partial = h.rt.predict("e", [ROW, {"x": 7.0, "y": 0.0}])
    assert not partial.cached and partial.outputs == [1.0, 7.0]
    stats = h.rt.status("e")["cache"]
    assert stats["hits"] == 3 and stats["misses"] == 3 and stats["hit_rate"] == 0.5
    # a new version has its own keys
    register(h.lm, Linear(2.0))
    h.eps.set_policy("e", Single("m/2"), actor="t")
    h.rt.refresh()
    res = h.rt.predict("e", [ROW])
    assert not res.cached and res.outputs == [2.0]


def test_cache_hits_on_repeated_input_sqlite(h: Harness) -> None:
    _cache_roundtrip(h, "")


def test_cache_hits_on_repeated_input_redis(h: Harness) -> None:
    need_redis()
    _cache_roundtrip(h, f"{REDIS_URL}?prefix=lmtest-{uuid.uuid4().hex[:10]}:")


# -- features ----------------------------------------------------------------------------------------
def test_features_are_looked_up_by_entity_key(h: Harness) -> None:
    from loopml.features import Entity, FeatureView

    now = datetime.now(UTC).replace(microsecond=0)
    user = Entity("user", join_key="user_id")
    frame = pd.DataFrame(
        {"user_id": [1, 2], "event_ts": [pd.Timestamp(now - timedelta(hours=1))] * 2, "spend": [10.0, 20.0]}
    )
    h.lm.features.register(
        user, FeatureView("user_stats", entity=user, features={"spend": "float"}, source=frame)
    )
    h.lm.features.materialize()

    def xy(X: pd.DataFrame) -> np.ndarray:
        return X["spend"].to_numpy() + X["amount"].to_numpy()

    h.lm.registry.register(
        "f", xy, flavor="python", input_example=pd.DataFrame({"spend": [1.0], "amount": [2.0]})
    )
    lookup = FeatureLookup("user_id", ["user_stats:spend"], request=["amount"])
    h.create(EndpointSpec("e", Single("f"), features=lookup))
    res = h.rt.predict("e", [{"user_id": 2, "amount": 1.5}, {"user_id": 1, "amount": 0.0}])
    assert res.outputs == [21.5, 10.0]
    with pytest.raises(ValidationError, match=r"rows\[0\]\.user_id is missing"):
        h.rt.predict("e", [{"amount": 1.0}])
    with pytest.raises(ValidationError, match=r"rows\[0\]\.amount is missing"):
        h.rt.predict("e", [{"user_id": 1}])
