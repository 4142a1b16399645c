"""The fraud reference system: simulator, point-in-time features, bad input, and the release story."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from loopml.apps.fraud import FraudConfig, run_fraud_story, simulate
from loopml.apps.fraud import features as fx
from loopml.apps.fraud.model import CategoryEncodedModel, fit, score
from loopml.errors import ValidationError

TEST_CFG = {
    "users": 400,
    "phase_requests": 100,
    "min_canary_requests": 30,
    "n_estimators": 40,
    "push_every": 40,
}


# -- simulator ------------------------------------------------------------------------------------


def test_simulator_is_deterministic_and_realistic() -> None:
    cfg = FraudConfig.small(users=300)
    a, b = simulate(cfg).transactions, simulate(cfg).transactions
    pd.testing.assert_frame_equal(a, b)
    other = simulate(cfg.replace(seed=cfg.seed + 1)).transactions
    assert not a["amount"].equals(other["amount"])
    assert a["ts"].is_monotonic_increasing and a["txn_id"].is_unique
    assert set(a["pattern"]) >= {"none", "account_takeover", "card_testing", "collusion"}
    assert 0.002 < a["is_fraud"].mean() < 0.1
    delay = a["label_available_at"] - a["ts"]
    assert (delay > pd.Timedelta(0)).all()
    assert (delay <= pd.Timedelta(days=cfg.label_maturity_days)).all()
    charged = a[a["label"] == 1]
    assert (charged["is_fraud"] == 1).mean() > 0.8  # chargebacks are mostly real fraud
    assert (delay[a["label"] == 1] < pd.Timedelta(days=cfg.label_maturity_days)).all()
    # collusion starts on its day, account takeover happens at night, card testing is tiny amounts
    start = cfg.start_ts + pd.Timedelta(days=cfg.collusion_start_day)
    assert (a.loc[a["pattern"] == "collusion", "ts"] >= start).all()
    ato = a[a["pattern"] == "account_takeover"]
    assert (ato["hour"] <= 6).mean() > 0.8
    testing = a[a["pattern"] == "card_testing"]
    assert (testing["amount"] < 5).mean() > 0.6
    assert "giftcard_drip" not in set(a["pattern"])
    shifted = simulate(cfg.replace(shift_day=20)).transactions
    drip = shifted[shifted["pattern"] == "giftcard_drip"]
    assert len(drip) and (drip["ts"] >= cfg.start_ts + pd.Timedelta(days=20)).all()


def test_config_and_simulator_reject_bad_input() -> None:
    with pytest.raises(ValidationError) as err:
        FraudConfig(users=-5)
    assert err.value.field == "users"
    with pytest.raises(ValidationError, match="Did you mean: users"):
        FraudConfig.from_dict({"userz": 10})
    with pytest.raises(ValidationError) as err:
        FraudConfig(threshold=float("nan"))
    assert err.value.field == "threshold"
    with pytest.raises(ValidationError, match="v2_day"):
        FraudConfig(v2_day=21)
    with pytest.raises(ValidationError) as err:
        FraudConfig(days=30)
    assert err.value.field == "days"
    with pytest.raises(ValidationError, match="FraudConfig"):
        simulate({"users": 10})  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="amount"):
        fx.user_feature_rows(pd.DataFrame({"txn_id": [1], "ts": [pd.Timestamp("2026-01-01")]}))
    with pytest.raises(ValidationError, match="DataFrame"):
        fx.user_feature_rows([1, 2])  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="1-d"):
        score([0, 1], [0.5])
    one_class = pd.DataFrame({c: [1.0, 2.0] for c in fx.MODEL_FEATURES}).assign(label=[0, 0])
    with pytest.raises(ValidationError, match="only label"):
        fit(one_class, FraudConfig.small())
    with pytest.raises(ValidationError, match="empty"):
        fit(one_class.iloc[:0], FraudConfig.small())


def test_scores_on_known_values() -> None:
    y = np.array([0, 0, 0, 1, 1, 0, 0, 0, 0, 1])
    p = np.array([0.1, 0.2, 0.05, 0.9, 0.4, 0.3, 0.01, 0.02, 0.6, 0.8])
    s = score(y, p, threshold=0.5, review_share=0.2)
    assert s.positives == 3 and s.rows == 10
    assert s.precision_at_k == 1.0 and s.recall_at_k == pytest.approx(2 / 3)  # top 2: 0.9, 0.8
    assert s.precision == pytest.approx(2 / 3) and s.recall == pytest.approx(2 / 3)  # 0.9 0.8 0.6
    assert 0.8 < s.auc < 1.0
    assert score([0, 0], [0.1, 0.2]).auc is None  # undefined, not an error


# -- features -------------------------------------------------------------------------------------


def _tiny() -> pd.DataFrame:
    t0 = pd.Timestamp("2026-01-05 10:00:00")
    times = [
        t0,
        t0 + pd.Timedelta(minutes=30),
        t0 + pd.Timedelta(hours=2),
        t0 + pd.Timedelta(hours=2, minutes=10),
    ]
    return pd.DataFrame(
        {
            "txn_id": [1, 2, 3, 4],
            "ts": pd.to_datetime(times).astype("datetime64[us]"),
            "user_id": [1, 1, 1, 2],
            "merchant_id": [7, 7, 8, 7],
            "amount": [10.0, 2.0, 100.0, 50.0],
            "hour": [10, 10, 12, 12],
            "home_region": [0, 0, 0, 3],
            "mcc": [0, 0, 5, 0],
            "merchant_region": [0, 0, 2, 3],
            "label": [0, 0, 1, 0],
        }
    )


def test_user_features_by_hand() -> None:
    rows = fx.user_feature_rows(_tiny()).set_index("txn_id")
    assert rows.loc[2, "spend_1h"] == 12.0 and rows.loc[2, "count_1h"] == 2
    assert rows.loc[2, "small_count_1h"] == 1 and rows.loc[2, "distinct_merchants_24h"] == 1
    assert rows.loc[3, "spend_1h"] == 100.0 and rows.loc[3, "count_1h"] == 1  # txns 1, 2 left the hour
    assert rows.loc[3, "spend_24h"] == 112.0 and rows.loc[3, "distinct_merchants_24h"] == 2
    assert rows.loc[3, "mean_amount"] == pytest.approx(112 / 3) and rows.loc[3, "txn_count"] == 3
    assert rows.loc[4, "txn_count"] == 1 and rows.loc[4, "spend_7d"] == 50.0  # another user: own history


def test_training_frame_is_point_in_time(lm_sqlite) -> None:  # type: ignore[no-untyped-def]
    from loopml.apps.fraud.contracts import USER_FEATURES

    tx = _tiny()
    rows = fx.user_feature_rows(tx).drop(columns=["txn_id"])
    lm_sqlite.datasets.define(fx.SOURCE_DATASET, USER_FEATURES)
    lm_sqlite.datasets.ingest(fx.SOURCE_DATASET, rows)
    fx.register(lm_sqlite)
    frame = fx.training_frame(lm_sqlite, tx).set_index("txn_id")
    # each transaction sees only the user's earlier transactions, never itself or the future
    assert pd.isna(frame.loc[1, "txn_count"]) and pd.isna(frame.loc[1, "amount_ratio"])
    assert frame.loc[2, "txn_count"] == 1 and frame.loc[2, "spend_1h"] == 10.0
    assert frame.loc[2, "amount_ratio"] == pytest.approx(2.0 / 10.0)
    assert frame.loc[3, "txn_count"] == 2 and frame.loc[3, "spend_24h"] == 12.0
    assert frame.loc[3, "amount_ratio"] == pytest.approx(100.0 / 6.0)
    assert frame.loc[3, "is_foreign"] == 1 and frame.loc[2, "is_foreign"] == 0
    assert pd.isna(frame.loc[4, "txn_count"])  # user 2 has no history
    # online: after materialising, the store holds the state after the user's latest transaction
    lm_sqlite.features.materialize()
    got = lm_sqlite.features.online_features(
        {"user_id": [1]}, fx.FEATURE_REFS, request={"amount": [30.0], "hour": [22], "merchant_region": [0]}
    )
    assert got.values["txn_count"] == [3] and got.values["amount_ratio"][0] == pytest.approx(30.0 / (112 / 3))


def test_broken_model_raises_only_on_the_category_it_never_saw() -> None:
    cfg = FraudConfig.small()
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({c: rng.random(200) for c in fx.MODEL_FEATURES}).assign(
        mcc=rng.integers(0, 3, 200), label=rng.integers(0, 2, 200)
    )
    model = CategoryEncodedModel(fit(frame, cfg), [0, 1, 2])
    ok = frame[fx.MODEL_FEATURES].head(5)
    assert model.predict_proba(ok).shape == (5, 2)
    assert model.predict_proba(ok.to_numpy(dtype=float)).shape == (5, 2)
    with pytest.raises(KeyError, match=r"\[7\]"):
        model.predict_proba(ok.assign(mcc=7))


# -- the story ------------------------------------------------------------------------------------


def test_fraud_story_end_to_end(lm_sqlite) -> None:  # type: ignore[no-untyped-def]
    lines: list[str] = []
    result = run_fraud_story(lm_sqlite, FraudConfig.small(**TEST_CFG), say=lines.append)
    # v2 went through shadow and canary and was promoted through the registry gate
    assert result.shadow is not None and result.shadow.shadowed == TEST_CFG["phase_requests"]
    assert result.shadow.shadow_errors == 0 and result.shadow.agreement > 0.9
    phases = [p.phase for p in result.phases]
    assert phases[:4] == ["v1 live", "shadow", "canary 10%", "canary 50%"]
    assert all(p.by_arm.get("canary", 0) > 0 for p in result.phases[2:4])
    assert result.promoted and result.champion == 2
    assert "beats_current(auc) passed" in result.gate_report
    # the broken v3 served canary traffic, failed on it, and was rolled back by the watchdog
    assert result.broken_version == 3 and result.broken_rolled_back
    assert result.broken_canary_errors > 0 and "error rate" in result.rollback_reason
    assert result.final_policy == {"kind": "single", "model": "fraud@champion"}
    assert result.phases[-1].by_arm == {"primary": result.phases[-1].requests}
    # not one request failed or fell back, and every outcome was joined to its logged prediction
    assert result.total_requests == sum(p.requests for p in result.phases)
    assert result.failed_requests == 0 and result.fallback_requests == 0
    assert result.labels_sent == result.total_requests == result.labelled_records
    assert set(result.comparison["version"]) == {1, 2, 3}
    assert result.comparison["labelled"].sum() == result.labelled_records - result.broken_canary_errors
    assert {"primary", "baseline", "canary"} <= set(result.latency["arm"])
    assert (result.latency["p99_ms"] >= result.latency["p50_ms"]).all()
    assert any("analyse_ab" in line for line in lines) and result.ab_verdict
    # the registry and the lineage tell the same story
    versions = lm_sqlite.registry.versions("fraud")
    assert sorted(v.number for v in versions) == [1, 2, 3]
    assert all(v.lineage["dataset_version_ids"] for v in versions)


def test_story_rejects_bad_input(lm_sqlite) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValidationError, match="Loopml"):
        run_fraud_story("not a client", FraudConfig.small())  # type: ignore[arg-type]
    with pytest.raises(ValidationError) as err:
        run_fraud_story(lm_sqlite, {"phase_requests": 0})  # type: ignore[arg-type]
    assert err.value.field == "phase_requests"
