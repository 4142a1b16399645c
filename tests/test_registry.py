"""Registry end to end on SQLite and PostgreSQL: versions, loading, aliases, gates, rollback, audit.

The release-gate tests use real LightGBM models trained on a small synthetic demand dataset: a
good model (60 trees on every feature) and a clearly worse one (2 stumps).
"""

from __future__ import annotations

import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest

from loopml import Loopml
from loopml.data import Column, Contract
from loopml.errors import ConflictError, IntegrityError, NotFoundError, ValidationError
from loopml.registry import BeatsCurrent, GateBlockedError, LatencyBudget, SliceMetric
from loopml.storage.metadata.core import list_events

FEATURES = ["x1", "x2", "region"]


def _data(seed: int = 0, n: int = 600) -> tuple[pd.DataFrame, pd.Series]:
    rng = np.random.default_rng(seed)
    X = pd.DataFrame({"x1": rng.normal(size=n), "x2": rng.normal(size=n), "region": rng.integers(0, 3, n)})
    y = 3 * X.x1 - 2 * X.x2 + 0.5 * X.region + rng.normal(scale=0.3, size=n)
    return X, y.rename("y")


@pytest.fixture(scope="module")
def models() -> dict[str, object]:
    X, y = _data()
    fit = {"verbose": -1, "n_jobs": 1}
    return {
        "good": lgb.LGBMRegressor(n_estimators=60, **fit).fit(X[:400], y[:400]),
        "bad": lgb.LGBMRegressor(n_estimators=2, num_leaves=2, **fit).fit(X[:400], y[:400]),
        "eval": X[400:].assign(y=y[400:]).reset_index(drop=True),
        "example": X.head(20),
    }


def _register(lm: Loopml, models: dict, which: str, name: str = "demand", **kw: object):
    return lm.registry.register(name, models[which], input_example=models["example"], **kw)


def test_register_and_load_by_every_reference_form(lm: Loopml, models: dict) -> None:
    v1 = _register(lm, models, "bad", metrics={"mae": 2.5}, description="stumps")
    v2 = _register(lm, models, "good")
    assert (v1.number, v2.number, v1.flavor) == (1, 2, "lightgbm")
    assert v1.metrics == {"mae": 2.5} and v1.description == "stumps"
    assert [c["name"] for c in v1.signature["columns"]] == FEATURES
    lm.registry.set_alias("demand", "challenger", 1, actor="ana", reason="try it")
    row = {"x1": 0.3, "x2": -1.0, "region": 2}
    assert lm.registry.load("demand").version.number == 2
    assert lm.registry.load("demand/latest").version.number == 2
    assert lm.registry.load("demand/1").version.number == 1
    loaded = lm.registry.load("demand@challenger")
    assert loaded.version.number == 1 and loaded.version.aliases == ("challenger",)
    expected = models["bad"].predict(pd.DataFrame([row]))
    np.testing.assert_allclose(loaded.predict(row), expected)
    np.testing.assert_allclose(
        loaded.predict(models["eval"], strict=False), models["bad"].predict(models["eval"][FEATURES])
    )
    infos = lm.registry.list_models()
    assert [(m.name, m.version_count, m.latest_version, m.aliases) for m in infos] == [
        ("demand", 2, 2, {"challenger": 1})
    ]
    assert [v.number for v in lm.registry.versions("demand")] == [2, 1]
    assert lm.registry.input_example("demand/1").shape == (20, 3)


def test_unknown_names_and_malformed_references_say_what_exists(lm: Loopml, models: dict) -> None:
    _register(lm, models, "good")
    with pytest.raises(NotFoundError, match=r"model 'demnad' does not exist.*Did you mean: demand"):
        lm.registry.load("demnad@champion")
    with pytest.raises(NotFoundError, match=r"has no alias 'champion'"):
        lm.registry.load("demand@champion")
    with pytest.raises(NotFoundError, match=r"has no version 7; versions are 1\.\.1"):
        lm.registry.load("demand/7")
    for bad in ("", "demand/x", "demand@", "demand@Champion!", "bad name", 3):
        with pytest.raises(ValidationError):
            lm.registry.load(bad)  # type: ignore[arg-type]
    with pytest.raises(NotFoundError, match="has no version 9"):
        lm.registry.set_alias("demand", "champion", 9, actor="ana", reason="")
    with pytest.raises(ValidationError, match="alias 'latest' is reserved"):
        lm.registry.set_alias("demand", "latest", 1, actor="ana", reason="")


def test_register_refuses_bad_input_before_writing_anything(lm: Loopml, models: dict) -> None:
    with pytest.raises(ValidationError, match=r"metric 'mae' must be a finite number"):
        _register(lm, models, "good", metrics={"mae": float("nan")})
    with pytest.raises(ValidationError, match=r"flavor 'lgbm' is unknown"):
        _register(lm, models, "good", flavor="lgbm")
    with pytest.raises(ValidationError, match=r"the signature lists column\(s\) extra"):
        lm.registry.register("demand", models["good"], input_example=models["example"].assign(extra=1.0))
    with pytest.raises(NotFoundError, match="dataset_version_ids lists 999"):
        _register(lm, models, "good", dataset_version_ids=[999])
    with pytest.raises(NotFoundError, match="No run with id"):
        _register(lm, models, "good", run_id="f" * 32)
    with pytest.raises(ValidationError, match="cannot tell how to store a int"):
        lm.registry.register("demand", 42, input_example=models["example"])
    assert lm.registry.list_models() == []


def test_lineage_links_runs_and_dataset_versions(lm: Loopml, models: dict) -> None:
    contract = Contract(columns=[Column(c, "float") for c in ("x1", "x2", "y")] + [Column("region", "int")])
    dv = lm.datasets.ingest("demand_eval", models["eval"], contract=contract).version
    with lm.tracking.start_run("demand") as run:
        run.log_input(dv)
    lm.tracking.flush()
    v = _register(lm, models, "good", run_id=run.id, git_sha="a" * 40)
    assert v.run_id == run.id
    assert v.lineage == {"dataset_version_ids": [dv.id], "git_sha": "a" * 40}
    # the same lineage is a foreign key: "which models did this data version feed?"
    assert [m.number for m in lm.registry.trained_on(dv.id)] == [v.number]
    assert lm.registry.trained_on(dv.id + 999) == []


def test_signature_is_enforced_at_predict(lm: Loopml, models: dict) -> None:
    _register(lm, models, "good")
    model = lm.registry.load("demand/1")
    with pytest.raises(ValidationError, match=r"column 'region' is missing; add it \(dtype int\)"):
        model.predict({"x1": 1.0, "x2": 2.0})
    with pytest.raises(ValidationError, match=r"column 'y' is not in the model signature"):
        model.predict(models["eval"])
    with pytest.raises(ValidationError, match=r"column 'x2' holds 1 NaN"):
        model.predict(models["eval"][FEATURES].assign(x2=[np.nan] + [0.0] * (len(models["eval"]) - 1)))
    with pytest.raises(ValidationError, match=r"column 'region' expects int, got str"):
        model.predict({"x1": 1.0, "x2": 2.0, "region": "north"})
    with pytest.raises(ValidationError, match="not a classifier"):
        model.predict_proba({"x1": 1.0, "x2": 2.0, "region": 1})


def test_corrupted_artifact_is_refused_at_load(lm: Loopml, models: dict) -> None:
    from pathlib import Path

    v = _register(lm, models, "good")
    Path(lm.ctx.artifacts.uri(v.digest)).write_bytes(b"tampered")
    with pytest.raises(IntegrityError, match="corrupt"):
        lm.registry.load("demand/1")


def _protect(lm: Loopml, models: dict, **beats: object) -> None:
    lm.registry.protect(
        "demand",
        "champion",
        [
            BeatsCurrent("mae", models["eval"], "y", margin=beats.get("margin", 0.05)),
            LatencyBudget(p99_ms=250.0, n=20),
            SliceMetric("region", "mae", max_gap=1.0),
        ],
        actor="lead",
    )


def test_a_gate_blocks_a_worse_model_and_lets_a_better_one_through(lm: Loopml, models: dict) -> None:
    _register(lm, models, "bad")  # v1
    _register(lm, models, "good")  # v2
    _register(lm, models, "bad")  # v3: clearly worse than v2
    _protect(lm, models)

    first = lm.registry.promote("demand", 1, actor="ana", reason="first model")
    assert first.moved and first.passed and first.previous_version is None
    assert "no current champion" in first.results[0].summary

    better = lm.registry.promote("demand", 2, actor="ana", reason="more trees")
    assert better.moved and better.previous_version == 1
    beats = better.results[0].details
    assert beats["candidate"] < beats["current"] and beats["current_version"] == 1

    with pytest.raises(GateBlockedError, match=r"(?s)BLOCKED.*\[FAIL\] beats_current\(mae\)") as info:
        lm.registry.promote("demand", 3, actor="ana", reason="oops")
    report = info.value.report
    assert isinstance(info.value, ConflictError) and not report.moved
    assert [r.passed for r in report.results] == [False, True, True]
    assert lm.registry.load("demand@champion").version.number == 2

    recorded = lm.registry.gate_results("demand", 3, "champion")
    assert [(r.gate, r.passed) for r in recorded] == [
        ("beats_current(mae)", False),
        ("latency_budget", True),
        ("slice_metric(mae by region)", True),
    ]
    moves = lm.registry.history("demand", "champion")
    assert [(m.from_version, m.to_version, m.actor, m.reason) for m in moves] == [
        (1, 2, "ana", "more trees"),
        (None, 1, "ana", "first model"),
    ]
    assert moves[0].evaluation_id == better.evaluation_id


def test_margin_can_block_a_model_that_is_only_slightly_better(lm: Loopml, models: dict) -> None:
    _register(lm, models, "good")
    _protect(lm, models, margin=0.0)
    lm.registry.promote("demand", 1, actor="ana", reason="")
    lm.registry.protect(
        "demand", "champion", [BeatsCurrent("mae", models["eval"], "y", margin=0.5)], actor="lead"
    )
    _register(lm, models, "good")  # identical model: 0 improvement < 50 % required
    with pytest.raises(GateBlockedError, match=r"improvement 0 < required"):
        lm.registry.promote("demand", 2, actor="ana", reason="")
    report = lm.registry.promote("demand", 2, actor="ana", reason="", dry_run=True)
    assert not report.passed and not report.moved


def test_protected_alias_moves_only_through_gates_or_an_audited_force(lm: Loopml, models: dict) -> None:
    _register(lm, models, "good")
    _register(lm, models, "bad")
    _protect(lm, models)
    lm.registry.promote("demand", 1, actor="ana", reason="first")
    with pytest.raises(ConflictError, match=r"protected by release gates; use promote"):
        lm.registry.set_alias("demand", "champion", 2, actor="ana", reason="")
    with pytest.raises(ValidationError, match="needs a non-empty reason"):
        lm.registry.set_alias("demand", "champion", 2, actor="ana", reason="  ", force=True)
    move = lm.registry.set_alias(
        "demand", "champion", 2, actor="oncall", reason="hotfix for incident 42", force=True
    )
    assert move.forced and move.kind == "forced" and (move.from_version, move.to_version) == (1, 2)
    with lm.ctx.db.session() as session:
        event = list_events(session, subject_type="model", subject_id="demand", limit=1)[0]
        assert (event.kind, event.actor, event.reason) == (
            "model.alias_moved",
            "oncall",
            "hotfix for incident 42",
        )
        assert event.data["forced"] is True and event.data["from_version"] == 1


def test_rollback_walks_back_through_the_audit_trail(lm: Loopml, models: dict) -> None:
    for _ in range(3):
        _register(lm, models, "good")
    for number in (1, 2, 3):
        lm.registry.set_alias("demand", "champion", number, actor="ana", reason=f"v{number}")
    with pytest.raises(ValidationError, match="rollback needs a non-empty reason"):
        lm.registry.rollback("demand", "champion", actor="bob", reason="")
    assert lm.registry.rollback("demand", "champion", actor="bob", reason="bad latency").to_version == 2
    assert lm.registry.rollback("demand", "champion", actor="bob", reason="still bad").to_version == 1
    with pytest.raises(ConflictError, match="no previous holder"):
        lm.registry.rollback("demand", "champion", actor="bob", reason="again")
    assert lm.registry.load("demand@champion").version.number == 1
    with pytest.raises(NotFoundError, match="alias 'canary' of 'demand' is not set"):
        lm.registry.rollback("demand", "canary", actor="bob", reason="x")


def test_gates_can_read_evaluation_data_from_the_dataset_store(lm: Loopml, models: dict) -> None:
    contract = Contract(columns=[Column(c, "float") for c in ("x1", "x2", "y")] + [Column("region", "int")])
    dv = lm.datasets.ingest("demand_eval", models["eval"], contract=contract).version
    _register(lm, models, "bad")
    _register(lm, models, "good")
    lm.registry.protect(
        "demand", "champion", [BeatsCurrent("mae", "demand_eval", "y", margin=0.0)], actor="lead"
    )
    lm.registry.promote("demand", 1, actor="ana", reason="")
    report = lm.registry.promote("demand", 2, actor="ana", reason="")
    assert report.results[0].dataset_version_id == dv.id
    assert report.results[0].details["dataset"] == f"demand_eval@{dv.number}"


def test_slice_gate_fails_when_one_slice_is_much_worse(lm: Loopml, models: dict) -> None:
    X, y = _data(seed=1)
    region_blind = X.assign(region=0)  # trained without region: its error depends on the region
    biased = lgb.LGBMRegressor(n_estimators=60, verbose=-1, n_jobs=1).fit(
        region_blind, y + 4 * (X.region == 2)
    )
    lm.registry.register("demand", biased, input_example=models["example"])
    gate = SliceMetric("region", "mae", maximum=1.0, eval_dataset=models["eval"], label="y")
    lm.registry.protect("demand", "champion", [gate], actor="lead")
    with pytest.raises(GateBlockedError, match=r"region=2: mae .* > maximum 1.0"):
        lm.registry.promote("demand", 1, actor="ana", reason="")


def test_gate_declarations_are_validated(lm: Loopml, models: dict) -> None:
    _register(lm, models, "good")
    with pytest.raises(ValidationError, match=r"metric 'maee' is unknown.*Did you mean: mae"):
        BeatsCurrent("maee", models["eval"], "y")
    with pytest.raises(ValidationError, match="margin must be >= 0"):
        BeatsCurrent("mae", models["eval"], "y", margin=-1)
    with pytest.raises(ValidationError, match="lower-is-better; bound it with maximum="):
        SliceMetric("region", "mae", minimum=0.5)
    with pytest.raises(ValidationError, match=r"p99_ms must be >= 0\.001"):
        LatencyBudget(p99_ms=0)
    with pytest.raises(ValidationError, match="gate type 'beats' is unknown"):
        lm.registry.protect("demand", "champion", [{"type": "beats"}], actor="lead")
    with pytest.raises(ValidationError, match="non-empty list of gates"):
        lm.registry.protect("demand", "champion", [], actor="lead")
    with pytest.raises(ValidationError, match="needs a BeatsCurrent gate"):
        lm.registry.protect("demand", "champion", [SliceMetric("region", "mae", max_gap=1.0)], actor="lead")


def test_a_gate_that_cannot_be_evaluated_blocks_with_the_reason(lm: Loopml, models: dict) -> None:
    _register(lm, models, "good")
    lm.registry.protect("demand", "champion", [BeatsCurrent("mae", models["eval"], "target")], actor="lead")
    with pytest.raises(GateBlockedError, match=r"could not evaluate: label column 'target' is not in"):
        lm.registry.promote("demand", 1, actor="ana", reason="")
    assert lm.registry.aliases("demand")[0].version == 0  # protected, not yet held
