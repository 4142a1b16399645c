"""The canary watchdog judges each canary on its own traffic, and its PSI is usable for rare-event scores."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
import pytest

from loopml import Loopml
from loopml.errors import ValidationError
from loopml.serving.endpoints import Canary, EndpointRuntime, EndpointSpec, RollbackRule, Single, psi
from loopml.serving.endpoints.policies import canary_verdict
from loopml.serving.inference import InferenceLog, InferenceRecord

EXAMPLE = pd.DataFrame({"x": [0.5, 1.0, 2.0]})
# latency is left out on purpose: a loaded CI machine makes p99 ratios noise at these request counts
RULE = RollbackRule(min_requests=20, max_error_rate_delta=0.05, max_p99_ratio=1000.0, window_seconds=3600)


class Linear:
    def __init__(self, a: float) -> None:
        self.a = a

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        return self.a * X["x"].to_numpy()


class FailsOnNegative(Linear):
    """Passes its input example, then breaks on every request with x < 0."""

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        if (X["x"] < 0).any():
            raise RuntimeError("boom on negative x")
        return super().predict(X)


class Harness:
    def __init__(self, lm: Loopml) -> None:
        from loopml.serving.endpoints.service import Endpoints

        self.lm = lm
        self.log = InferenceLog(lm.ctx)
        self.writer = self.log.writer(flush_interval=0.05)
        self.rt = EndpointRuntime(lm, log_writer=self.writer, seed=3)
        self.eps = Endpoints(lm.ctx)

    def policy(self, policy: Any) -> None:
        self.eps.set_policy("e", policy, actor="test", reason="test")
        self.rt.refresh(force=True)

    def send(self, n: int, *, negative_every: int = 0) -> dict[str, int]:
        """``n`` requests (every ``negative_every``-th with x < 0); requests per answering arm."""
        arms: dict[str, int] = {}
        for i in range(n):
            x = -1.0 if negative_every and i % negative_every == 0 else 1.0 + i % 3
            res = self.rt.predict("e", [{"x": x}])
            assert res.status == "ok"  # a failing canary is always rescued by the baseline
            arms[res.arm or ""] = arms.get(res.arm or "", 0) + 1
        self.writer.flush()
        return arms

    def close(self) -> None:
        self.rt.close()
        self.writer.close()


@pytest.fixture
def h(lm_sqlite: Loopml) -> Iterator[Harness]:
    lm = lm_sqlite
    lm.registry.register("m", Linear(1.0), flavor="python", input_example=EXAMPLE)  # m/1 baseline
    lm.registry.register("m", FailsOnNegative(1.0), flavor="python", input_example=EXAMPLE)  # m/2 broken
    lm.registry.register("m", Linear(1.0), flavor="python", input_example=EXAMPLE)  # m/3 healthy
    harness = Harness(lm)
    harness.eps.create(EndpointSpec("e", Single("m/1")))
    harness.rt.refresh(force=True)
    yield harness
    harness.close()


def test_a_new_canary_is_judged_only_on_its_own_requests(h: Harness) -> None:
    h.policy(Canary("m/1", "m/2", weight=0.5, rollback=RULE))
    h.send(120, negative_every=2)
    assert h.rt.check_canaries() == ["e"]  # m/2 failed on its own traffic
    assert h.eps.get("e").spec.policy == Single("m/1")

    # m/3 starts inside the same window: m/2's failed canary requests must not count against it
    h.policy(Canary("m/1", "m/3", weight=0.5, rollback=RULE))
    assert h.rt.check_canaries() == []
    arms = h.send(120, negative_every=2)
    assert arms["canary"] >= RULE.min_requests
    assert h.rt.check_canaries() == []
    assert h.eps.get("e").spec.policy.canary == "m/3"
    own = h.log.window_stats("e", since=timedelta(hours=1), model="m", version=3)
    assert own["canary"].n == arms["canary"] and own["canary"].errors == 0
    everything = h.log.window_stats("e", since=timedelta(hours=1))
    assert everything["canary"].errors > 0  # the window itself still holds m/2's failures


def test_a_restarted_canary_starts_counting_again_and_min_requests_is_its_own(h: Harness) -> None:
    h.policy(Canary("m/1", "m/2", weight=0.5, rollback=RULE))
    h.send(120, negative_every=2)
    h.policy(Single("m/1"))  # stopped by hand before the watchdog looked
    restarted = datetime.now(UTC)
    h.policy(Canary("m/1", "m/2", weight=0.5, rollback=RULE))  # same version again, same window
    assert h.rt.check_canaries() == []  # its earlier failures belong to the previous run
    arms = h.send(16, negative_every=2)
    assert 0 < arms.get("canary", 0) < RULE.min_requests
    assert h.rt.check_canaries() == []  # failing, but not enough requests of its own yet
    h.send(100, negative_every=2)
    assert h.rt.check_canaries() == ["e"]
    reason = h.eps.history("e")[0].reason or ""
    assert "error rate" in reason
    # both sides cover the same interval: the requests since the restart, not the whole window
    canary_n, baseline_n = (int(v) for v in reason.split(" over ")[1].split(" requests")[0].split(" vs "))
    since_restart = h.log.window_stats("e", since=restarted)
    assert (canary_n, baseline_n) == (since_restart["canary"].n, since_restart["baseline"].n)
    whole = h.log.window_stats("e", since=timedelta(hours=1))
    assert whole["canary"].n > canary_n and whole["baseline"].n > baseline_n


def test_weight_changes_keep_the_canary_running(h: Harness) -> None:
    h.policy(Canary("m/1", "m/2", weight=0.3, rollback=RULE))
    h.send(60, negative_every=2)
    h.policy(Canary("m/1", "m/2", weight=0.5, rollback=RULE))  # a ramp, not a new canary
    h.send(40, negative_every=2)
    assert h.rt.check_canaries() == ["e"]
    reason = h.eps.history("e")[0].reason or ""
    canary_n = int(reason.split(" over ")[1].split(" vs ")[0])
    assert canary_n > 25  # requests from both weights count


def test_window_stats_filters_by_model_version(lm_sqlite: Loopml) -> None:
    log = InferenceLog(lm_sqlite.ctx)
    at = datetime.now(UTC)

    def rec(i: int, model: str, version: int, status: str = "ok") -> InferenceRecord:
        return InferenceRecord(f"r{i}", "e", model, version, "canary", [{"x": 1}], [0.5], 1.0, status, at=at)

    log.write([rec(0, "m", 2, "error"), rec(1, "m", 2, "error"), rec(2, "m", 3), rec(3, "n", 3)])
    since = at - timedelta(minutes=1)
    assert log.window_stats("e", since=since)["canary"].n == 4
    assert log.window_stats("e", since=since, model="m", version=3)["canary"].n == 1
    assert log.window_stats("e", since=since, version=3)["canary"].n == 2
    assert log.window_stats("e", since=since, model="m")["canary"].errors == 2
    assert log.window_stats("e", since=since, model="m", version=9) == {}
    for bad in (0, -1, "3", True, 1.5):
        with pytest.raises(ValidationError, match="version"):
            log.window_stats("e", since=since, version=bad)  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="model"):
        log.window_stats("e", since=since, model="")


# -- PSI of the prediction distribution -----------------------------------------------------------
def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


def test_psi_is_small_for_two_calibrated_rare_event_models() -> None:
    rng = np.random.default_rng(0)
    v1 = _sigmoid(rng.normal(-6.0, 1.5, 3000))  # nearly every score close to 0
    v2 = _sigmoid(rng.normal(-6.0, 1.5, 3000))
    assert psi(v1, v2) < 0.1
    # tree models emit a few discrete scores; a retrain moves them by a hair, which changes no decision
    levels1, levels2 = [0.0012, 0.0013, 0.0021, 0.004, 0.3], [0.0011, 0.00125, 0.0022, 0.0041, 0.31]
    weights = [0.5, 0.3, 0.15, 0.04, 0.01]
    t1 = rng.choice(levels1, 3000, p=weights)
    t2 = rng.choice(levels2, 3000, p=weights)
    assert psi(t1, t2) < 0.1
    rule = RollbackRule(min_requests=100)
    base = _Stats(3000, 0, 2.0, t1)
    assert not canary_verdict(rule, base, _Stats(300, 0, 2.0, t2[:300])).rollback


def test_psi_flags_constant_and_shifted_scores() -> None:
    rng = np.random.default_rng(1)
    v1 = _sigmoid(rng.normal(-6.0, 1.5, 3000))
    assert psi(v1, np.full(500, 0.5)) > 0.25  # a model answering a constant
    assert psi(v1, np.full(500, float(np.median(v1)))) > 0.25  # even a plausible constant
    assert psi(v1, _sigmoid(rng.normal(-4.5, 1.5, 3000))) > 0.25  # scores shifted by 1.5 logits
    assert psi(v1, _sigmoid(rng.normal(-6.0, 1.5, 3000) + 1.0)) > 0.25
    rule = RollbackRule(min_requests=100)
    verdict = canary_verdict(rule, _Stats(3000, 0, 2.0, v1), _Stats(300, 0, 2.0, np.full(300, 0.5)))
    assert verdict.rollback and "PSI" in verdict.reason


def test_psi_edge_cases_and_bad_input() -> None:
    rng = np.random.default_rng(2)
    assert psi([], [0.1, 0.2]) == 0.0
    assert psi([0.2] * 50, [0.2] * 50) == 0.0
    assert psi([np.nan, np.inf, 0.1, 0.2], [0.1, 0.2, np.nan]) >= 0.0
    assert psi(rng.normal(0, 1, 2000), rng.normal(0, 1, 2000)) < 0.05  # regressor outputs: raw scale
    assert psi(rng.normal(0, 1, 2000), rng.normal(1.5, 1, 2000)) > 0.25
    same = rng.uniform(0, 1, 1000)
    assert psi(same, same, scale="raw") == pytest.approx(0.0, abs=1e-12)
    for kw, field in (({"bins": 1}, "bins"), ({"scale": "log"}, "scale"), ({"min_count": 0}, "min_count")):
        with pytest.raises(ValidationError, match=field):
            psi([0.1, 0.2], [0.1, 0.2], **kw)


class _Stats:
    def __init__(self, n: int, errors: int, p99: float, outputs: np.ndarray) -> None:
        self.n, self.errors, self.p99, self.outputs = n, errors, p99, outputs
