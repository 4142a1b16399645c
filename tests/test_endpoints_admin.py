"""Endpoint definitions, storage, service, admin HTTP API and CLI (the control plane of serving)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import typer
from fastapi.testclient import TestClient
from sklearn.linear_model import LogisticRegression
from typer.testing import CliRunner

from loopml import Loopml
from loopml.cli import endpoints as endpoints_cli
from loopml.errors import ConflictError, NotFoundError, ValidationError
from loopml.serving.app import create_app
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
    policy_from_dict,
)
from loopml.serving.endpoints.service import Endpoints
from loopml.storage.metadata.core import list_events

POLICIES = [
    Single("fraud@champion"),
    Canary("fraud@champion", "fraud/2", weight=0.2, rollback=RollbackRule(min_requests=50, max_psi=0.1)),
    AB(
        {"control": "fraud/1", "treatment": "fraud/2"}, {"control": 0.7, "treatment": 0.3}, routing_key="card"
    ),
    AB({"a": "fraud/1", "b": "fraud/2", "c": "fraud/3"}),
    Shadow("fraud@champion", ["fraud/2", "fraud/3"], sample=0.5),
    Bandit({"a": "fraud/1", "b": "fraud/2"}, prior_alpha=2.0, prior_beta=3.0, min_pulls=10),
]


@pytest.fixture(scope="module")
def classifier() -> tuple[LogisticRegression, pd.DataFrame]:
    rng = np.random.default_rng(0)
    X = pd.DataFrame({"amount": rng.normal(size=200), "hour": rng.normal(size=200)})
    y = (X.amount + 0.3 * rng.normal(size=200) > 0).astype(int)
    return LogisticRegression().fit(X, y), X.head(5)


@pytest.fixture
def models(lm: Loopml, classifier: tuple[LogisticRegression, pd.DataFrame]) -> Loopml:
    """``fraud`` v1..v3 with champion -> v1."""
    model, example = classifier
    for _ in range(3):
        lm.registry.register("fraud", model, input_example=example)
    lm.registry.set_alias("fraud", "champion", 1, actor="test", reason="first")
    return lm


def _endpoints(lm: Loopml) -> Endpoints:
    existing = getattr(lm, "endpoints", None)
    return existing if isinstance(existing, Endpoints) else Endpoints(lm.ctx)


# ---------------------------------------------------------------- definitions


@pytest.mark.parametrize("policy", POLICIES, ids=lambda p: p.kind)
def test_every_policy_round_trips_through_its_dict(policy: object) -> None:
    data = policy.to_dict()  # type: ignore[attr-defined]
    assert policy_from_dict(json.loads(json.dumps(data))) == policy
    spec = EndpointSpec(
        "fraud",
        policy,  # type: ignore[arg-type]
        timeout_ms=25,
        fallback=Fallback(0.0),
        cache=CacheSpec(ttl_seconds=5),
        max_batch_rows=10,
        features=FeatureLookup("user_id", ["user_stats:spend_7d"], request=["amount"]),
        description="card fraud",
    )
    assert EndpointSpec.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec


def test_spec_models_lists_each_ref_once_and_refs_are_normalised() -> None:
    spec = EndpointSpec("x", AB({"a": "fraud/latest", "b": "fraud/2", "c": "fraud/2"}))
    assert spec.models() == ["fraud", "fraud/2"]
    assert Shadow("m@champion", ["m/2"]).models() == ["m@champion", "m/2"]
    assert AB({"a": "m/1", "b": "m/2"}).effective_weights() == {"a": 0.5, "b": 0.5}


@pytest.mark.parametrize(
    ("build", "field"),
    [
        (lambda: AB({"a": "m/1", "b": "m/2"}, {"a": 0.5, "b": 0.6}), "policy.weights"),
        (lambda: AB({"a": "m/1", "b": "m/2"}, {"a": 0.5, "zz": 0.5}), "policy.weights.zz"),
        (lambda: AB({"a": "m/1", "b": "m/2"}, {"a": 1.0}), "policy.weights.b"),
        (lambda: AB({"a": "m/1"}), "policy.arms"),
        (lambda: AB({"a": "m/1", "b": "m/2"}, routing_key="user id"), "policy.routing_key"),
        (lambda: AB({"a": "m/1", "b": "m//2"}), "policy.arms.b"),
        (lambda: Canary("m/1", "m/2", weight=1.0), "policy.weight"),
        (lambda: Canary("m/1", "m/2", weight=0), "policy.weight"),
        (lambda: Canary("m/1", "m/2", weight=math.nan), "policy.weight"),
        (lambda: Canary("m/1", "m/2", weight=True), "policy.weight"),
        (lambda: Canary("m/1", "m/1"), "policy.canary"),
        (lambda: Canary("m/1", "m/2", rollback={"min_requests": 0}), "policy.rollback.min_requests"),
        (lambda: Canary("m/1", "m/2", rollback={"nope": 1}), "policy.rollback.nope"),
        (lambda: Shadow("m/1", []), "policy.shadows"),
        (lambda: Shadow("m/1", ["m/1"]), "policy.shadows[0]"),
        (lambda: Shadow("m/1", ["m/2"], sample=0), "policy.sample"),
        (lambda: Bandit({"a": "m/1", "b": "m/2"}, prior_alpha=0), "policy.prior_alpha"),
        (lambda: Bandit({"a": "m/1", "b": "m/2"}, min_pulls=-1), "policy.min_pulls"),
        (lambda: Single(""), "policy.model"),
        (lambda: policy_from_dict({"kind": "canery"}), "policy.kind"),
        (lambda: policy_from_dict({"kind": "single", "model": "m", "weight": 1}), "policy.weight"),
        (lambda: policy_from_dict({"kind": "single"}), "policy.model"),
        (lambda: EndpointSpec("bad name!", Single("m")), "name"),
        (lambda: EndpointSpec("", Single("m")), "name"),
        (lambda: EndpointSpec("x", "m"), "policy"),  # type: ignore[arg-type]
        (lambda: EndpointSpec("x", Single("m"), timeout_ms=-1), "timeout_ms"),
        (lambda: EndpointSpec("x", Single("m"), timeout_ms=math.inf), "timeout_ms"),
        (lambda: EndpointSpec("x", Single("m"), max_batch_rows=0), "max_batch_rows"),
        (lambda: EndpointSpec("x", Single("m"), max_batch_rows=1.5), "max_batch_rows"),
        (lambda: EndpointSpec("x", Single("m"), fallback=Fallback(math.nan)), "fallback.value"),
        (lambda: EndpointSpec("x", Single("m"), fallback=Fallback(object())), "fallback.value"),
        (lambda: EndpointSpec("x", Single("m"), fallback={"status": "ok"}), "fallback.status"),
        (lambda: EndpointSpec("x", Single("m"), cache={"ttl_seconds": 0}), "cache.ttl_seconds"),
        (lambda: EndpointSpec("x", Single("m"), cache={"url": "memcached://x"}), "cache.url"),
        (
            lambda: EndpointSpec("x", Single("m"), features={"entity_key": "u", "features": ["nocolon"]}),
            "features.features[0]",
        ),
        (
            lambda: EndpointSpec("x", Single("m"), features={"entity_key": "u", "features": []}),
            "features.features",
        ),
        (
            lambda: EndpointSpec.from_dict(
                {"name": "x", "policy": {"kind": "single", "model": "m"}, "timeout": 1}
            ),
            "timeout",
        ),
        (lambda: EndpointSpec.from_dict({"name": "x"}), "policy"),
        (
            lambda: EndpointSpec.from_dict({"name": "x", "policy": {"kind": "single", "model": "m"}, "": 1}),
            "spec",
        ),
        (lambda: EndpointSpec.from_dict([]), "spec"),
        (
            lambda: EndpointSpec.from_dict(
                {"name": "x", "policy": {"kind": "single", "model": "m"}}, name="y"
            ),
            "name",
        ),
    ],
)
def test_bad_definitions_name_the_field(build: object, field: str) -> None:
    with pytest.raises(ValidationError) as info:
        build()  # type: ignore[operator]
    assert info.value.field == field, str(info.value)
    assert field.split(".")[-1].split("[")[0] in str(info.value)


# ---------------------------------------------------------------- service


def test_every_policy_round_trips_through_the_database(models: Loopml) -> None:
    service = _endpoints(models)
    specs = [
        EndpointSpec(
            f"ep{i}-{policy.kind}",
            policy,
            fallback=Fallback({"score": 0.0}),
            cache=CacheSpec(url="redis://h:6379/0"),
            features=FeatureLookup("user_id", ["user_stats:*"]),
        )
        for i, policy in enumerate(POLICIES)
    ]
    for spec in specs:
        created = service.create(spec, actor="ana", reason="launch")
        assert created.revision == 1 and created.updated_by == "ana"
    fresh = Endpoints(models.ctx)
    for spec in specs:
        info = fresh.get(spec.name)
        assert info.spec == spec and info.to_dict()["spec"] == spec.to_dict()
    assert [i.name for i in service.list()] == sorted(s.name for s in specs)


def test_create_refuses_duplicates_and_unknown_model_refs(models: Loopml) -> None:
    service = _endpoints(models)
    with pytest.raises(NotFoundError) as info:
        service.create(EndpointSpec("fraud", Canary("fraud@champion", "fraud/9")))
    assert info.value.field == "policy.canary" and "fraud/9" in str(info.value)
    with pytest.raises(NotFoundError) as info:
        service.create(EndpointSpec("fraud", AB({"a": "fraud/1", "b": "nomodel@champion"})))
    assert info.value.field == "policy.arms.b"
    with pytest.raises(NotFoundError) as info:
        service.create(EndpointSpec("fraud", Single("fraud@nosuchalias")))
    assert info.value.field == "policy.model"
    service.create({"name": "fraud", "policy": {"kind": "single", "model": "fraud@champion"}})
    with pytest.raises(ConflictError, match="already exists"):
        service.create(EndpointSpec("fraud", Single("fraud/2")))
    with pytest.raises(ValidationError) as info:
        service.create(EndpointSpec("other", Single("fraud/1")), actor=" ")
    assert info.value.field == "actor"
    with pytest.raises(NotFoundError, match="Did you mean: fraud"):
        service.get("frau")


def test_update_makes_a_revision_with_an_audit_event(models: Loopml) -> None:
    service = _endpoints(models)
    service.create(EndpointSpec("fraud", Single("fraud@champion")), actor="ana")
    updated = service.update(
        "fraud", EndpointSpec("fraud", Single("fraud/2"), timeout_ms=20), actor="bo", reason="faster"
    )
    assert updated.revision == 2 and updated.spec.timeout_ms == 20 and updated.updated_by == "bo"
    after = service.set_policy(
        "fraud", {"kind": "shadow", "primary": "fraud/2", "shadows": ["fraud/3"]}, actor="cy"
    )
    assert after.revision == 3 and after.spec.timeout_ms == 20 and isinstance(after.spec.policy, Shadow)
    with pytest.raises(ConflictError) as info:
        service.set_policy("fraud", Single("fraud/1"), actor="dd", expected_revision=2)
    assert info.value.field == "expected_revision"
    with pytest.raises(NotFoundError) as nf:
        service.set_policy("fraud", Single("fraud/7"), actor="dd")
    assert nf.value.field == "policy.model"
    with pytest.raises(ValidationError, match="renamed"):
        service.update("fraud", EndpointSpec("other", Single("fraud/1")), actor="x")
    with pytest.raises(NotFoundError):
        service.update("ghost", EndpointSpec("ghost", Single("fraud/1")), actor="x")
    history = service.history("fraud")
    assert [(r.revision, r.action, r.actor) for r in history] == [
        (3, "policy", "cy"),
        (2, "update", "bo"),
        (1, "create", "ana"),
    ]
    assert history[1].reason == "faster" and history[2].spec.policy == Single("fraud@champion")
    with models.ctx.db.session() as session:
        events = list_events(session, subject_type="endpoint", subject_id="fraud")
        assert [e.kind for e in events] == ["endpoint.policy_changed", "endpoint.updated", "endpoint.created"]
        assert events[1].reason == "faster" and events[1].data["revision"] == 2
    with pytest.raises(ValidationError) as bad:
        service.history("fraud", limit=0)
    assert bad.value.field == "limit"


def test_change_token_moves_on_policy_change_and_alias_move_only(models: Loopml) -> None:
    service = _endpoints(models)
    t0 = service.change_token()
    assert service.change_token() == t0
    service.create(EndpointSpec("fraud", Single("fraud@champion")))
    t1 = service.change_token()
    assert t1 != t0 and service.change_token() == t1
    service.set_policy("fraud", Canary("fraud@champion", "fraud/2"), actor="ana")
    t2 = service.change_token()
    assert t2 != t1
    models.registry.set_alias("fraud", "champion", 3, actor="ana", reason="better")
    t3 = service.change_token()
    assert t3 != t2 and service.change_token() == t3
    service.get("fraud")
    service.history("fraud")
    assert service.change_token() == t3


def test_delete_keeps_history_and_a_recreated_endpoint_continues_it(models: Loopml) -> None:
    service = _endpoints(models)
    service.create(EndpointSpec("fraud", Single("fraud/1")))
    token = service.change_token()
    service.delete("fraud", actor="ana", reason="retired")
    assert service.change_token() != token
    with pytest.raises(NotFoundError):
        service.get("fraud")
    with pytest.raises(NotFoundError):
        service.delete("fraud", actor="ana")
    again = service.create(EndpointSpec("fraud", Single("fraud/2")))
    assert again.revision == 3
    assert [r.action for r in service.history("fraud")] == ["create", "delete", "create"]
    with pytest.raises(NotFoundError, match="never created"):
        service.history("nothing")


def test_rollback_canary_is_idempotent_and_guards_the_canary_ref(models: Loopml) -> None:
    service = _endpoints(models)
    service.create(EndpointSpec("fraud", Canary("fraud@champion", "fraud/2", weight=0.3), timeout_ms=30))
    with pytest.raises(ConflictError, match="no canary 'fraud/3'"):
        service.rollback_canary("fraud", actor="watchdog", canary="fraud/3")
    back = service.rollback_canary("fraud", actor="watchdog", reason="error rate", canary="fraud/2")
    assert back.spec.policy == Single("fraud@champion") and back.spec.timeout_ms == 30 and back.revision == 2
    again = service.rollback_canary("fraud", actor="other-process", canary="fraud/2")
    assert again.revision == 2  # the second watchdog changes nothing
    assert [r.action for r in service.history("fraud")] == ["rollback", "create"]
    service.set_policy("fraud", Single("fraud/1"), actor="ana")
    with pytest.raises(ConflictError, match="no canary"):
        service.rollback_canary("fraud", actor="ana")
    with pytest.raises(ValidationError) as info:
        service.rollback_canary("fraud", actor="ana", canary="bad ref!")
    assert info.value.field == "canary"


def test_promote_canary_with_and_without_moving_an_alias(models: Loopml) -> None:
    service = _endpoints(models)
    service.create(EndpointSpec("fraud", Canary("fraud@champion", "fraud/2")))
    done = service.promote_canary("fraud", actor="ana", reason="canary healthy")
    assert done.spec.policy == Single("fraud/2")
    assert models.registry.get_version("fraud@champion").number == 1  # the registry was left alone
    with pytest.raises(ConflictError, match="no canary to promote"):
        service.promote_canary("fraud", actor="ana")

    service.set_policy("fraud", Canary("fraud@champion", "fraud/3"), actor="ana")
    moved = service.promote_canary("fraud", actor="ana", reason="wins", promote_to_alias="champion")
    assert moved.spec.policy == Single("fraud@champion")
    assert models.registry.get_version("fraud@champion").number == 3
    assert [r.action for r in service.history("fraud", limit=2)] == ["promote", "policy"]
    with models.ctx.db.session() as session:
        kinds = [e.kind for e in list_events(session, subject_type="endpoint", subject_id="fraud")]
    assert kinds.count("endpoint.canary_promoted") == 2


# ---------------------------------------------------------------- HTTP


@pytest.fixture
def http(models: Loopml) -> TestClient:
    models.settings.api_token = "s3cret"
    app = create_app(models, apps=())
    with TestClient(app) as client:
        yield client


AUTH = {"Authorization": "Bearer s3cret", "X-Loopml-Actor": "ana"}


def test_admin_http_crud_with_token(http: TestClient) -> None:
    spec = {"name": "fraud", "policy": {"kind": "single", "model": "fraud@champion"}, "timeout_ms": 40}
    assert http.post("/v1/endpoints", json={"spec": spec}).status_code == 401
    created = http.post("/v1/endpoints", json={"spec": spec, "reason": "launch"}, headers=AUTH)
    assert created.status_code == 201, created.text
    assert created.json()["revision"] == 1 and created.json()["updated_by"] == "ana"
    assert http.post("/v1/endpoints", json={"spec": spec}, headers=AUTH).status_code == 409
    listing = http.get("/v1/endpoints").json()["endpoints"]
    assert [e["name"] for e in listing] == ["fraud"]
    assert http.get("/v1/endpoints/fraud").json()["spec"]["timeout_ms"] == 40

    canary = {"kind": "canary", "baseline": "fraud@champion", "canary": "fraud/2", "weight": 0.25}
    assert http.put("/v1/endpoints/fraud/policy", json={"policy": canary}).status_code == 401
    changed = http.put(
        "/v1/endpoints/fraud/policy", json={"policy": canary, "reason": "try v2"}, headers=AUTH
    )
    assert changed.status_code == 200 and changed.json()["spec"]["policy"]["weight"] == 0.25
    stale = http.put(
        "/v1/endpoints/fraud/policy", json={"policy": canary, "expected_revision": 1}, headers=AUTH
    )
    assert stale.status_code == 409
    rolled = http.post("/v1/endpoints/fraud/rollback", json={"reason": "p99"}, headers=AUTH)
    assert rolled.status_code == 200 and rolled.json()["spec"]["policy"]["kind"] == "single"
    http.put("/v1/endpoints/fraud/policy", json={"policy": canary}, headers=AUTH)
    promoted = http.post("/v1/endpoints/fraud/promote", json={"promote_to_alias": "champion"}, headers=AUTH)
    assert promoted.status_code == 200, promoted.text
    assert promoted.json()["spec"]["policy"] == {"kind": "single", "model": "fraud@champion"}

    replaced = http.put("/v1/endpoints/fraud", json={"spec": {**spec, "timeout_ms": 15}}, headers=AUTH)
    assert replaced.status_code == 200 and replaced.json()["spec"]["timeout_ms"] == 15
    history = http.get("/v1/endpoints/fraud/history", params={"limit": 3}).json()["revisions"]
    assert [r["action"] for r in history] == ["update", "promote", "policy"]
    assert http.delete("/v1/endpoints/fraud").status_code == 401
    assert http.delete("/v1/endpoints/fraud", params={"reason": "done"}, headers=AUTH).status_code == 200
    assert http.get("/v1/endpoints/fraud").status_code == 404


def test_admin_http_bad_input_is_a_4xx_naming_the_field(http: TestClient) -> None:
    bad_weights = {
        "name": "fraud",
        "policy": {"kind": "ab", "arms": {"a": "fraud/1", "b": "fraud/2"}, "weights": {"a": 0.9, "b": 0.9}},
    }
    response = http.post("/v1/endpoints", json={"spec": bad_weights}, headers=AUTH)
    assert response.status_code == 422 and "policy.weights" in response.text
    unknown = {"name": "fraud", "policy": {"kind": "single", "model": "ghost@champion"}}
    response = http.post("/v1/endpoints", json={"spec": unknown}, headers=AUTH)
    assert response.status_code == 404 and "policy.model" in response.text
    assert http.post("/v1/endpoints", content=b"{not json", headers=AUTH).status_code == 422
    assert http.post("/v1/endpoints", json={"spec": {}, "extra": 1}, headers=AUTH).status_code == 422
    assert http.get("/v1/endpoints/nope").status_code == 404
    assert http.get("/v1/endpoints/nope/history").status_code == 404
    assert http.post("/v1/endpoints/nope/rollback", headers=AUTH).status_code == 404
    assert http.put("/v1/endpoints/x/policy", json={"policy": {"kind": "zzz"}}, headers=AUTH).status_code in (
        404,
        422,
    )


# ---------------------------------------------------------------- CLI

runner = CliRunner()


@pytest.fixture
def cli(models: Loopml, monkeypatch: pytest.MonkeyPatch) -> typer.Typer:
    monkeypatch.setenv("LOOPML_HOME", str(models.settings.home))
    monkeypatch.setenv("LOOPML_METADATA_URL", models.settings.resolved_metadata_url)
    monkeypatch.setenv("LOOPML_ACTOR", "tester")
    monkeypatch.setenv("COLUMNS", "200")
    app = typer.Typer()
    endpoints_cli.register(app)
    app.command("noop", hidden=True)(lambda: None)  # keep "endpoints" a sub-command group
    return app


def _run(app: typer.Typer, *args: str):
    return runner.invoke(app, ["endpoints", *args])


def test_cli_manages_an_endpoint_end_to_end(cli: typer.Typer, models: Loopml, tmp_path: Path) -> None:
    out = _run(cli, "create", "fraud", "--model", "fraud@champion", "--timeout-ms", "30", "--fallback", "0.5")
    assert out.exit_code == 0, out.output
    assert "created endpoint fraud revision 1" in out.output
    out = _run(cli, "list")
    assert out.exit_code == 0 and "fraud@champion" in out.output and "30 ms" in out.output
    out = _run(cli, "show", "fraud")
    assert out.exit_code == 0 and "v1" in out.output
    out = _run(
        cli,
        "set-policy",
        "fraud",
        "--kind",
        "canary",
        "--baseline",
        "fraud@champion",
        "--canary",
        "fraud/2",
        "--weight",
        "0.1",
        "--rollback",
        "min_requests=20",
        "--reason",
        "v2",
    )
    assert out.exit_code == 0, out.output
    assert "canary fraud/2 @ 10%" in out.output
    policy = _endpoints(models).get("fraud").spec.policy
    assert isinstance(policy, Canary) and policy.rollback.min_requests == 20
    assert _run(cli, "rollback", "fraud", "--reason", "slow").exit_code == 0
    out = _run(
        cli,
        "set-policy",
        "fraud",
        "--kind",
        "ab",
        "--arm",
        "control=fraud/1",
        "--arm",
        "treat=fraud/2",
        "--arm-weight",
        "control=0.8",
        "--arm-weight",
        "treat=0.2",
        "--routing-key",
        "card_id",
    )
    assert out.exit_code == 0 and "control=fraud/1 (80%)" in out.output
    out = _run(cli, "set-policy", "fraud", "--kind", "shadow", "--primary", "fraud/1", "--shadow", "fraud/3")
    assert out.exit_code == 0, out.output
    out = _run(
        cli,
        "set-policy",
        "fraud",
        "--kind",
        "bandit",
        "--arm",
        "a=fraud/1",
        "--arm",
        "b=fraud/2",
        "--min-pulls",
        "5",
    )
    assert out.exit_code == 0, out.output
    out = _run(
        cli,
        "set-policy",
        "fraud",
        "--policy",
        '{"kind": "canary", "baseline": "fraud/1", "canary": "fraud/3"}',
    )
    assert out.exit_code == 0, out.output
    out = _run(cli, "promote", "fraud", "--to-alias", "champion", "--reason", "healthy")
    assert out.exit_code == 0, out.output
    assert models.registry.get_version("fraud@champion").number == 3
    out = _run(cli, "history", "fraud", "--json")
    actions = [r["action"] for r in json.loads(out.output)]
    assert actions == ["promote", "policy", "policy", "policy", "policy", "rollback", "policy", "create"]
    assert json.loads(out.output)[0]["actor"] == "tester"
    out = _run(cli, "status", "fraud")
    assert out.exit_code == 0 and "fraud@champion" in out.output
    assert _run(cli, "delete", "fraud", "--yes").exit_code == 0
    assert _run(cli, "list").output.startswith("no endpoints yet")

    spec_file = tmp_path / "spec.json"
    spec_file.write_text(json.dumps({"policy": {"kind": "single", "model": "fraud/2"}, "max_batch_rows": 5}))
    out = _run(cli, "create", "fraud2", "--spec", str(spec_file))
    assert out.exit_code == 0, out.output
    assert _endpoints(models).get("fraud2").spec.max_batch_rows == 5


def test_cli_bad_input_names_the_option(cli: typer.Typer) -> None:
    out = _run(cli, "create", "fraud")
    assert out.exit_code != 0 and isinstance(out.exception, ValidationError)
    out = _run(cli, "create", "fraud", "--model", "ghost/1")
    assert isinstance(out.exception, NotFoundError) and "ghost/1" in str(out.exception)
    _run(cli, "create", "fraud", "--model", "fraud/1")
    out = _run(cli, "set-policy", "fraud", "--kind", "single", "--model", "fraud/2", "--weight", "0.2")
    assert isinstance(out.exception, ValidationError) and "--weight" in str(out.exception)
    out = _run(
        cli,
        "set-policy",
        "fraud",
        "--kind",
        "ab",
        "--arm",
        "a=fraud/1",
        "--arm",
        "b=fraud/2",
        "--arm-weight",
        "a=x",
    )
    assert isinstance(out.exception, ValidationError) and "--arm-weight" in str(out.exception)
    out = _run(cli, "set-policy", "fraud", "--kind", "ab", "--arm", "nothing")
    assert isinstance(out.exception, ValidationError) and "--arm" in str(out.exception)
    out = _run(cli, "set-policy", "fraud", "--kind", "lottery")
    assert isinstance(out.exception, ValidationError) and out.exception.field == "policy.kind"
    out = _run(cli, "set-policy", "fraud", "--policy", "{broken")
    assert isinstance(out.exception, ValidationError) and "--policy" in str(out.exception)
    out = _run(cli, "status", "fraud", "--url", "ftp://host")
    assert isinstance(out.exception, ValidationError) and out.exception.field == "url"
    out = _run(cli, "rollback", "fraud")
    assert isinstance(out.exception, ConflictError)
