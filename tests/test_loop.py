"""The closed loop: alert -> retrain pipeline -> gates -> shadow -> canary -> promote / rollback.

Real models (scikit-learn), a real retrain pipeline, a real endpoint runtime serving traffic in this
process and the real canary watchdog; SQLite and PostgreSQL through the ``lm`` fixture.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

from loopml import Loopml
from loopml.data import Column, Contract
from loopml.errors import ConflictError, NotFoundError, ValidationError
from loopml.monitoring.actions import ActionPolicy
from loopml.pipelines import Pipeline, register, step
from loopml.registry import BeatsCurrent
from loopml.serving.endpoints import EndpointRuntime, EndpointSpec, Single
from loopml.storage.metadata.base import utcnow

PIPELINE = "loop-test-retrain"
FEATURES = ["x0", "x1"]
EVAL_CONTRACT = Contract(columns=[Column(c, "float") for c in FEATURES] + [Column("y", "int")])


def _data(n: int, seed: int, noise: float = 0.0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({"x0": rng.normal(size=n), "x1": rng.normal(size=n)})
    y = (frame["x0"] + 0.5 * frame["x1"] > 0).astype(int)
    flip = rng.random(n) < noise
    frame["y"] = np.where(flip, 1 - y, y)
    return frame


def _fit(frame: pd.DataFrame) -> LogisticRegression:
    return LogisticRegression().fit(frame[FEATURES], frame["y"])


class FailsOnNegative:
    """A retrained model with a serving bug: it answers, but raises whenever x0 < -0.5."""

    def __init__(self, model: LogisticRegression) -> None:
        self.model = model

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        if (X["x0"] < -0.5).any():
            raise RuntimeError("category table lacks this value")
        return self.model.predict(X[FEATURES])


@step(cache=False)
def retrain(lm: Any, pipeline_run_id: str, kind: str, loop_run_id: int) -> dict:
    """Train the candidate the test asks for and register it from a tracking run of this pipeline run."""
    frame = _data(400, seed=7)
    if kind == "bad":
        frame = frame.assign(y=1 - frame["y"])  # labels joined with a bug: the model learns the opposite
    if kind == "cents":
        # a unit bug upstream: x0 arrives x100 in the training data *and* in the gate's refreshed eval set,
        # while serving still sends x0 as before; the offline gate cannot see it
        frame = frame.assign(x0=frame["x0"] * 100)
        lm.datasets.ingest(
            "m_eval", _data(300, seed=3).assign(x0=lambda f: f["x0"] * 100), contract=EVAL_CONTRACT
        )
    model: Any = _fit(frame)
    flavor = None
    if kind == "broken":
        model, flavor = FailsOnNegative(model), "python"
    with lm.tracking.start_run("loop-test", pipeline_run_id=pipeline_run_id, params={"kind": kind}) as run:
        mv = lm.registry.register(
            "m", model, flavor=flavor, input_example=frame[FEATURES].head(5).abs(), run_id=run.id
        )
    return {"version": mv.number, "loop_run_id": loop_run_id}


register(Pipeline(PIPELINE, [retrain], params={"kind": "good", "loop_run_id": 0}), module=__name__)


class World:
    """Model m/1 (trained on noisy labels) as champion behind endpoint ``e``, and a runtime serving it."""

    def __init__(self, lm: Loopml) -> None:
        self.lm = lm
        weak = _fit(_data(400, seed=1, noise=0.35))
        lm.registry.register("m", weak, input_example=_data(5, seed=2)[FEATURES])
        lm.registry.promote("m", 1, "champion", actor="test", reason="first model")
        # a generous timeout: a loaded test machine must not turn a slow shadow call into a shadow "error"
        lm.endpoints.create(EndpointSpec("e", Single("m@champion"), timeout_ms=5000), actor="test")
        self.writer = lm.inference.writer(flush_interval=0.05)
        self.rt = EndpointRuntime(lm, log_writer=self.writer, seed=5)
        self.rt.refresh(force=True)
        self.rng = np.random.default_rng(11)

    def send(self, n: int) -> None:
        for _ in range(n):
            row = {"x0": float(self.rng.normal()), "x1": float(self.rng.normal())}
            assert self.rt.predict("e", [row]).status == "ok"  # a failing canary is answered by the baseline
        self.rt.drain_shadows(timeout=10)
        self.writer.flush()

    def policy(self, name: str = "p", **changes: Any) -> ActionPolicy:
        spec: dict[str, Any] = {
            "name": name,
            "on": {"rule": "acc-drop"},
            "endpoint": "e",
            "model": "m",
            "retrain": {"pipeline": PIPELINE, "params": {"kind": "good"}},
            "release": {
                "alias": "champion",
                "shadow": {"min_requests": 30, "max_error_rate": 0.02},
                "canary": {
                    "weights": [0.3, 0.6],
                    "min_requests": 12,
                    # m/2 is much sharper than the noisy m/1, so their score distributions differ by design
                    # (PSI ~3 on these samples): the canary's PSI limit is derived from the shadow's, the
                    # policy's 0.25 is only the floor
                    "rollback": {"min_requests": 12, "max_p99_ratio": 1000.0, "max_psi": 0.25},
                },
            },
        }
        spec.update(changes)
        return ActionPolicy.from_dict(spec)

    def fire(self) -> Any:
        return self.lm.alerts.fire(
            "rule:acc-drop", severity="warning", title="acc-drop: accuracy < 0.8", data={"rule": "acc-drop"}
        )

    def drive(self, run_id: int, *, rounds: int = 40, per_round: int = 40, watchdog: bool = False) -> Any:
        """Advance, let the runtime load what the loop set, serve traffic; until the run finishes."""
        run = self.lm.loop.get(run_id)
        for _ in range(rounds):
            run = self.lm.loop.advance(run_id)
            self.rt.refresh(force=True)
            if not run.active or run.status == "waiting_approval":
                return run
            if run.stage in ("shadow", "canary"):
                self.send(per_round)
                if watchdog:
                    self.rt.check_canaries()
                    self.rt.refresh(force=True)
        return run

    def close(self) -> None:
        self.rt.close()
        self.writer.close()


@pytest.fixture
def world(lm: Loopml) -> Iterator[World]:
    w = World(lm)
    yield w
    w.close()


@pytest.fixture
def sqlite_world(lm_sqlite: Loopml) -> Iterator[World]:
    w = World(lm_sqlite)
    yield w
    w.close()


def _champion(lm: Loopml) -> int:
    return next(a.version for a in lm.registry.aliases("m") if a.alias == "champion")


def test_a_better_model_goes_through_shadow_and_canary_and_is_promoted(world: World) -> None:
    lm = world.lm
    lm.loop.create_policy(world.policy(), actor="test")
    alert = world.fire()
    started = lm.loop.process_alerts()
    assert [r.status for r in started] == ["running"] and started[0].alert_id == alert.id
    assert lm.loop.process_alerts() == []  # one active run per policy
    run = world.drive(started[0].id)
    assert run.status == "promoted", run.outcome
    assert run.candidate == "m/2" and run.baseline == "m@champion"
    assert _champion(lm) == 2
    assert lm.endpoints.get("e").spec.policy == Single("m@champion")
    assert lm.alerts.get(alert.id).status == "resolved"
    steps = [(s.step, s.status) for s in run.steps]
    assert steps[0] == ("triggered", "ok")
    order = [name for name, status in steps if status == "ok"]
    assert order == ["triggered", "retrain", "gates", "shadow", "canary", "canary", "promote"]
    shadow = next(s for s in run.steps if s.step == "shadow" and s.status == "ok")
    assert shadow.data["shadowed"] >= 30 and shadow.data["errors"] == 0
    # the pipeline accepted loop_run_id, so its run record names the loop run
    assert lm.pipelines.get_run(run.pipeline_run_id).params["loop_run_id"] == run.id
    story = lm.loop.story(run.id)
    assert (
        story[0]["step"] == "alert"
        and story[-2]["step"] == "outcome"
        and story[-1]["step"] == "alert_resolved"
    )
    assert story[-2]["status"] == "promoted"
    history = [r.action for r in lm.endpoints.history("e")]
    assert history[:4] == ["promote", "policy", "policy", "policy"]  # shadow, canary 30 %, 60 %, promote
    events = _events(lm, run.id)
    assert "loop.triggered" in events and "loop.promoted" in events


def test_the_canary_psi_limit_is_derived_from_the_shadow() -> None:
    from loopml.monitoring.loop_steps import canary_rule

    policy = {"min_requests": 60, "max_psi": 2.0}
    rule, why = canary_rule(policy, 3.576)  # the default-size fraud demo's honest retrain
    assert rule.max_psi == pytest.approx(3.576 * 1.5 + 0.25, abs=1e-3) and rule.min_requests == 60
    assert "3.576 x 1.5 + 0.25" in why and "above the policy's 2" in why
    rule, why = canary_rule(policy, 0.145)  # the fast demo's: the policy's limit is the floor
    assert rule.max_psi == 2.0 and "below it" in why
    rule, why = canary_rule(policy, None)  # no shadow stage: the policy's limit
    assert rule.max_psi == 2.0 and "no shadow PSI" in why


def test_a_sharper_model_passes_a_canary_whose_psi_limit_comes_from_the_shadow(world: World) -> None:
    lm = world.lm
    lm.loop.create_policy(world.policy(), actor="test")  # rollback.max_psi 0.25: m/2 differs far more
    run = lm.loop.start("p", actor="ops")
    run = world.drive(run.id, watchdog=True)
    assert run.status == "promoted", run.outcome
    shadow = next(s for s in run.steps if s.step == "shadow" and s.status == "ok")
    limit = shadow.data["max_psi"]
    assert shadow.data["psi"] > 1.0 and limit == pytest.approx(shadow.data["psi"] * 1.5 + 0.25, abs=1e-3)
    assert "canary PSI limit" in shadow.detail
    canaries = [s for s in run.steps if s.step == "canary" and s.status == "ok"]
    assert canaries and all(0.25 < s.data["psi"] <= limit for s in canaries)
    assert (
        "skew check off: no offline evaluation data" in next(s for s in run.steps if s.step == "gates").detail
    )


def test_training_serving_skew_rolls_the_canary_back(world: World) -> None:
    lm = world.lm
    lm.datasets.ingest("m_eval", _data(300, seed=3), contract=EVAL_CONTRACT)
    lm.registry.protect("m", "champion", [BeatsCurrent("accuracy", "m_eval", "y")], actor="test")
    lm.loop.create_policy(
        world.policy(retrain={"pipeline": PIPELINE, "params": {"kind": "cents"}}), actor="test"
    )
    run = lm.loop.start("p", actor="ops", reason="weekly retrain")
    run = world.drive(run.id, watchdog=True)
    assert run.status == "rolled_back", run.outcome
    assert "training/serving skew: candidate scores live differ from its offline evaluation" in run.outcome
    gates = next(s for s in run.steps if s.step == "gates")
    assert gates.data["skew"]["source"] == "m_eval@2" and gates.data["skew"]["max_psi"] == 1.0
    assert "beats_current(accuracy)" in gates.detail  # the skewed eval set let it pass the gate
    shadow = next(s for s in run.steps if s.step == "shadow" and s.status == "ok")
    assert shadow.data["skew_psi"] > 1.0 and "skew PSI" in shadow.detail  # reported in shadow
    rollback = next(s for s in run.steps if s.step == "rollback")
    assert rollback.data["skew_psi"] > rollback.data["skew_max_psi"] == 1.0
    assert lm.endpoints.get("e").spec.policy == Single("m@champion") and _champion(lm) == 1
    assert lm.endpoints.history("e", limit=1)[0].action == "rollback"


def _events(lm: Loopml, run_id: int) -> list[str]:
    from loopml.storage.metadata.core import list_events

    with lm.ctx.db.session() as session:
        return [e.kind for e in list_events(session, subject_type="loop_run", subject_id=str(run_id))]


def test_a_broken_candidate_is_rolled_back_by_the_watchdog(world: World) -> None:
    lm = world.lm
    release = {
        "alias": "champion",
        "shadow": None,
        "canary": {
            "weights": [0.5],
            "min_requests": 400,
            "rollback": {"min_requests": 15, "max_p99_ratio": 1000.0, "max_psi": 1000.0},
        },
    }
    lm.loop.create_policy(
        world.policy(retrain={"pipeline": PIPELINE, "params": {"kind": "broken"}}, release=release),
        actor="test",
    )
    world.fire()
    (run,) = lm.loop.process_alerts()
    run = world.drive(run.id, watchdog=True)
    assert run.status == "rolled_back", run.outcome
    assert "canary-watchdog" in (run.outcome or "") and "error rate" in (run.outcome or "")
    assert lm.endpoints.get("e").spec.policy == Single("m@champion")
    assert _champion(lm) == 1
    assert lm.alerts.get_open("rule:acc-drop") is not None  # not fixed: the alert stays open


def test_a_worse_candidate_is_blocked_by_the_gate(world: World) -> None:
    lm = world.lm
    evaluation = _data(300, seed=3)
    contract = Contract(columns=[Column(c, "float") for c in FEATURES] + [Column("y", "int")])
    lm.datasets.ingest("m_eval", evaluation, contract=contract)
    lm.registry.protect("m", "champion", [BeatsCurrent("accuracy", "m_eval", "y")], actor="test")
    lm.loop.create_policy(
        world.policy(retrain={"pipeline": PIPELINE, "params": {"kind": "bad"}}), actor="test"
    )
    world.fire()
    (run,) = lm.loop.process_alerts()
    run = world.drive(run.id)
    assert run.status == "blocked"
    assert "accuracy" in (run.outcome or "").lower() or "beats" in (run.outcome or "").lower()
    assert lm.endpoints.get("e").spec.policy == Single("m@champion")
    assert [r.action for r in lm.endpoints.history("e")] == ["create"]


def test_approve_mode_waits_for_a_person_and_cooldown_holds_the_next_run(world: World) -> None:
    lm = world.lm
    release = {"alias": "champion", "shadow": None, "canary": None, "approve_promotion": True}
    lm.loop.create_policy(world.policy(mode="approve", release=release, cooldown_seconds=600), actor="test")
    world.fire()
    (run,) = lm.loop.process_alerts()
    assert (run.status, run.stage) == ("waiting_approval", "approval")
    assert lm.loop.advance(run.id).status == "waiting_approval"  # nothing happens without a person
    run = lm.loop.approve(run.id, actor="ops")
    with pytest.raises(ConflictError):
        lm.loop.approve(run.id, actor="ops")  # it no longer waits
    assert run.status == "running" and run.decided_by == "ops"
    run = world.drive(run.id)
    assert (run.status, run.stage) == ("waiting_approval", "promote")  # healthy, alias not moved yet
    assert _champion(lm) == 1
    run = lm.loop.approve(run.id, actor="lead", reason="numbers look right")
    run = world.drive(run.id)
    assert run.status == "promoted" and _champion(lm) == 2
    assert lm.endpoints.get("e").spec.policy == Single("m@champion")

    # cooldown: the alert fires again right away -> no run; after the cooldown -> a new run
    world.fire()
    assert lm.loop.process_alerts() == []
    later = utcnow() + timedelta(seconds=601)
    (again,) = lm.loop.process_alerts(now=later)
    assert again.id != run.id and again.status == "waiting_approval"
    rejected = lm.loop.reject(again.id, actor="lead", reason="not now")
    assert rejected.status == "rejected" and rejected.decided_by == "lead"
    # the same alert, not fired again, does not start another run even after the cooldown
    assert lm.loop.process_alerts(now=later + timedelta(seconds=1200)) == []


def test_reject_during_shadow_restores_the_endpoint(sqlite_world: World) -> None:
    world = sqlite_world
    lm = world.lm
    lm.loop.create_policy(world.policy(), actor="test")
    run = lm.loop.start("p", actor="ops", reason="drift seen on the dashboard")
    for _ in range(4):
        run = lm.loop.advance(run.id)
    assert run.stage == "shadow"
    assert lm.endpoints.get("e").spec.policy.kind == "shadow"
    run = lm.loop.reject(run.id, actor="ops", reason="wrong data")
    assert run.status == "rejected"
    assert lm.endpoints.get("e").spec.policy == Single("m@champion")
    with pytest.raises(ConflictError):
        lm.loop.reject(run.id, actor="ops")
    with pytest.raises(ConflictError):
        lm.loop.approve(run.id, actor="ops")


def test_a_shadow_with_min_seconds_covers_that_long(sqlite_world: World) -> None:
    world = sqlite_world
    lm = world.lm
    release = world.policy().to_dict()["release"]
    release["shadow"] = {"min_requests": 20, "min_seconds": 600}
    lm.loop.create_policy(world.policy(release=release), actor="test")
    start = utcnow()
    run = lm.loop.start("p", actor="ops", now=start)
    for _ in range(4):
        run = lm.loop.advance(run.id, now=start)
    assert run.stage == "shadow"
    world.rt.refresh(force=True)
    world.send(40)
    run = lm.loop.advance(run.id, now=start + timedelta(seconds=300))  # enough outputs, too soon
    assert run.stage == "shadow" and "and 600 s" in run.steps[-1].detail
    run = lm.loop.advance(run.id, now=start + timedelta(seconds=900))
    assert run.stage == "canary", run.outcome


def test_shadow_timeout_fails_and_restores(sqlite_world: World) -> None:
    world = sqlite_world
    lm = world.lm
    lm.loop.create_policy(world.policy(), actor="test")
    run = lm.loop.start("p", actor="ops")
    for _ in range(4):
        run = lm.loop.advance(run.id)
    assert run.stage == "shadow"
    run = lm.loop.advance(run.id, now=utcnow() + timedelta(hours=2))
    assert run.status == "failed" and "timeout" in (run.outcome or "")
    assert lm.endpoints.get("e").spec.policy == Single("m@champion")


def test_bad_policies_and_calls_name_the_field(world: World) -> None:
    lm = world.lm
    good = world.policy().to_dict()

    def refused(exc: type[Exception], field: str, **changes: Any) -> None:
        with pytest.raises(exc) as info:
            lm.loop.create_policy({**good, **changes}, actor="test")
        assert getattr(info.value, "field", None) == field, (field, str(info.value))

    refused(NotFoundError, "retrain.pipeline", retrain={"pipeline": "nope"})
    refused(ValidationError, "retrain.params", retrain={"pipeline": PIPELINE, "params": {"kindd": 1}})
    refused(NotFoundError, "endpoint", endpoint="nope")
    refused(NotFoundError, "model", model="nope")
    refused(ValidationError, "mode", mode="yolo")
    refused(ValidationError, "on", on={"min_severity": "warning"})
    refused(ValidationError, "on.min_severity", on={"rule": "r", "min_severity": "loud"})
    refused(ValidationError, "release.canary.weights[1]", release={"canary": {"weights": [0.5, 0.2]}})
    refused(
        ValidationError,
        "release.canary.rollback.min_requests",
        release={"canary": {"rollback": {"min_requests": 0}}},
    )
    refused(ValidationError, "release.shadow.max_error_rate", release={"shadow": {"max_error_rate": 2}})
    refused(ValidationError, "release.alias", release={"alias": "no spaces"})
    refused(
        ValidationError,
        "release.shadow.min_seconds",
        release={"shadow": {"min_seconds": 7200, "timeout_seconds": 3600}},
    )
    refused(ValidationError, "release.skew.max_psi", release={"skew": {"max_psi": 0}})
    refused(ValidationError, "release.skew.eval_dataset", release={"skew": {"eval_dataset": "no such!"}})
    refused(NotFoundError, "release.skew.eval_dataset", release={"skew": {"eval_dataset": "nope@2"}})
    refused(ValidationError, "cooldown_seconds", cooldown_seconds=-1)
    refused(ValidationError, "colour", colour="red")
    refused(
        ValidationError,
        "retrain.params.loop_run_id",
        retrain={"pipeline": PIPELINE, "params": {"loop_run_id": 3}},
    )
    lm.loop.create_policy(good, actor="test")
    with pytest.raises(ConflictError):
        lm.loop.create_policy(good, actor="test")
    with pytest.raises(ValidationError) as info:
        lm.loop.advance(0)
    assert info.value.field == "run_id"
    with pytest.raises(NotFoundError):
        lm.loop.get(12345)
    with pytest.raises(NotFoundError) as nf:
        lm.loop.start("nope", actor="x")
    assert nf.value.field == "policy"
    with pytest.raises(ValidationError):
        lm.loop.list(status="sleeping")
    with pytest.raises(ValidationError):
        lm.loop.start("p", actor="")
    run = lm.loop.start("p", actor="ops")
    with pytest.raises(ConflictError):
        lm.loop.start("p", actor="ops")  # one active run per policy
    with pytest.raises(ConflictError):
        lm.loop.delete_policy("p", actor="ops")
    lm.loop.reject(run.id, actor="ops")
    lm.loop.delete_policy("p", actor="ops")
    assert lm.loop.list_policies() == []
    assert lm.loop.get(run.id).policy == "p"  # the history outlives the policy


def test_policy_round_trip_and_matching() -> None:
    policy = ActionPolicy(
        "fraud-retrain",
        on={"alert_key_prefix": "rule:", "min_severity": "critical"},
        endpoint="fraud",
        model="fraud",
        retrain={"pipeline": "fraud.retrain"},
    )
    assert ActionPolicy.from_dict(json.loads(json.dumps(policy.to_dict()))) == policy
    assert policy.release["canary"]["weights"] == [0.1, 0.5]
    assert policy.matches("rule:drift", "critical")
    assert not policy.matches("rule:drift", "warning")
    assert not policy.matches("endpoint.canary_rolled_back:fraud", "critical")
    by_rule = ActionPolicy(
        "r", on={"rule": "auc"}, endpoint="fraud", model="fraud", retrain={"pipeline": "x"}
    )
    assert by_rule.matches("rule:auc", "warning") and by_rule.matches("other", "warning", {"rule": "auc"})
    assert not by_rule.matches("rule:auc", "info")


# ----------------------------------------------------------------------------------- HTTP, CLI, job


def test_http_routes(sqlite_world: World) -> None:
    from fastapi.testclient import TestClient

    from loopml.serving.app import create_app

    lm = sqlite_world.lm
    lm.settings.api_token = "s3cret"
    auth = {"Authorization": "Bearer s3cret", "X-Loopml-Actor": "alice"}
    with TestClient(create_app(lm, apps=()), raise_server_exceptions=False) as http:
        body = sqlite_world.policy().to_dict()
        assert http.post("/v1/loop/policies", json=body).status_code == 401
        created = http.post("/v1/loop/policies", json=body, headers=auth)
        assert created.status_code == 201, created.text
        assert http.post("/v1/loop/policies", json=body, headers=auth).status_code == 409
        assert http.post("/v1/loop/policies?replace=true", json=body, headers=auth).status_code == 200
        bad = http.post("/v1/loop/policies", json={**body, "name": "q", "endpoint": "nope"}, headers=auth)
        assert bad.status_code == 404 and "endpoint" in bad.text
        assert [p["name"] for p in http.get("/v1/loop/policies").json()["policies"]] == ["p"]
        assert http.get("/v1/loop/policies/p").json()["retrain"]["pipeline"] == PIPELINE
        assert http.get("/v1/loop/policies/zzz").status_code == 404

        started = http.post("/v1/loop/start", json={"policy": "p", "reason": "try"}, headers=auth)
        assert started.status_code == 201, started.text
        run_id = started.json()["id"]
        assert http.post("/v1/loop/start", json={"policy": "p"}, headers=auth).status_code == 409
        assert http.post("/v1/loop/start", json={"policy": "p", "colour": 1}, headers=auth).status_code == 422
        listed = http.get("/v1/loop/runs", params={"status": "running"}).json()["runs"]
        assert [r["id"] for r in listed] == [run_id]
        assert http.get("/v1/loop/runs", params={"status": "asleep"}).status_code == 422
        shown = http.get(f"/v1/loop/runs/{run_id}").json()
        assert shown["story"][0]["step"] == "triggered" and "alice" in shown["story"][0]["detail"]
        assert http.get("/v1/loop/runs/0").status_code == 422
        assert http.get("/v1/loop/runs/999").status_code == 404
        assert http.post(f"/v1/loop/runs/{run_id}/approve", headers=auth).status_code == 409
        assert http.post(f"/v1/loop/runs/{run_id}/reject", json={"reason": "x"}).status_code == 401
        rejected = http.post(f"/v1/loop/runs/{run_id}/reject", json={"reason": "no"}, headers=auth)
        assert rejected.status_code == 200 and rejected.json()["status"] == "rejected"
        assert rejected.json()["decided_by"] == "alice"
        assert http.delete("/v1/loop/policies/p", headers=auth).status_code == 200
        assert http.get("/v1/loop/policies").json()["policies"] == []


def test_cli_policies_and_runs(sqlite_world: World, tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    import typer
    from typer.testing import CliRunner

    from loopml.cli import loop as loop_cli

    lm = sqlite_world.lm
    monkeypatch.setenv("LOOPML_HOME", str(lm.settings.home))
    app = typer.Typer()
    loop_cli.register(app)
    runner = CliRunner()

    def ok(*args: str) -> str:
        result = runner.invoke(app, list(args))
        assert result.exit_code == 0, (result.output, result.exception)
        return result.output

    spec = tmp_path / "policy.json"
    release = {"alias": "champion", "shadow": None, "canary": None}
    spec.write_text(json.dumps(sqlite_world.policy(release=release).to_dict()))
    assert "policy p created" in ok("policies", "create", "--spec", str(spec))
    assert "policy p updated" in ok("policies", "create", "--spec", str(spec), "--replace")
    assert "action policies (1)" in ok("policies", "list")
    assert json.loads(ok("policies", "list", "--json"))[0]["retrain"]["pipeline"] == PIPELINE
    assert json.loads(ok("policies", "show", "p"))["model"] == "m"
    assert "disabled" in ok("policies", "disable", "p") and "enabled" in ok("policies", "enable", "p")
    missing = runner.invoke(app, ["policies", "create", "--spec", str(tmp_path / "nope.json")])
    assert missing.exit_code != 0 and isinstance(missing.exception, ValidationError)

    sqlite_world.fire()
    out = ok("loop", "advance", "--until-done", "--interval", "0")
    assert "started loop run 1" in out and "promoted" in out
    assert "promoted" in ok("loop", "list")
    shown = ok("loop", "show", "1")
    assert "retrain" in shown and "gates" in shown and "promote" in shown and "alert" in shown
    assert json.loads(ok("loop", "show", "1", "--json"))["status"] == "promoted"
    assert "--until-done" in ok("loop", "advance", "--help")
    bad = runner.invoke(app, ["loop", "approve", "1"])
    assert bad.exit_code != 0 and isinstance(bad.exception, ConflictError)
    assert "policy p deleted" in ok("policies", "delete", "p")
    assert _champion(lm) == 2


def test_the_advance_job_moves_a_run_and_requeues_itself(sqlite_world: World) -> None:
    from loopml.monitoring.loop_jobs import advance_job

    lm = sqlite_world.lm
    lm.loop.create_policy(sqlite_world.policy(), actor="test")
    run = lm.loop.start("p", actor="ops")
    (job,) = lm.jobs.claim("w1", limit=10)
    assert job.kind == "loop.advance" and job.payload == {"run_id": run.id}
    result = advance_job(lm.ctx, job)
    assert result["stage"] == "retrain" and result["next_job"] is not None
    nxt = lm.jobs.get(result["next_job"])
    assert nxt.kind == "loop.advance" and nxt.not_before > utcnow()
    # inline=False: the retrain stays a queued pipeline job for a worker to run
    assert lm.pipelines.get_run(lm.loop.get(run.id).pipeline_run_id).status == "queued"
    assert advance_job(lm.ctx, job)["next_job"] == result["next_job"]  # a retried job does not fork the chain
    # a transition computed on a stale view (another process moved the run meanwhile) is not written
    from loopml.monitoring.loop_steps import terminal

    stale = lm.loop._apply(
        run,
        terminal("failed", "stale", step="x", step_status="failed"),
        now=utcnow(),
        wall=utcnow(),
        actor="t",
    )
    assert (stale.status, stale.stage) == ("running", "retrain")
    lm.loop.reject(run.id, actor="ops")
    assert advance_job(lm.ctx, nxt)["next_job"] is None  # finished: the chain ends


def test_a_worker_closes_the_loop_with_jobs_only(
    sqlite_world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No inline execution: the worker runs loop.advance jobs and the retrain pipeline.run job."""
    import threading
    import time

    from loopml.monitoring import loop_jobs
    from loopml.worker import Worker

    monkeypatch.setattr(loop_jobs, "POLL_SECONDS", 0.1)
    lm = sqlite_world.lm
    release = {"alias": "champion", "shadow": None, "canary": None}
    lm.loop.create_policy(sqlite_world.policy(release=release), actor="test")
    sqlite_world.fire()
    (run,) = lm.loop.process_alerts()
    stop = threading.Event()
    worker = Worker(lm.ctx, concurrency=2, poll_max=0.1)
    thread = threading.Thread(target=worker.run, args=(stop,), daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while lm.loop.get(run.id).active and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        stop.set()
        thread.join(timeout=30)
    run = lm.loop.get(run.id)
    assert run.status == "promoted", run.outcome
    assert lm.pipelines.get_run(run.pipeline_run_id).trigger == "api"
    kinds = {j.kind: j.status for j in lm.jobs.list(limit=100)}
    assert kinds["pipeline.run"] == "succeeded"  # run by the worker, not cancelled for inline execution
    assert _champion(lm) == 2 and lm.endpoints.get("e").spec.policy == Single("m@champion")
