"""compute_drift: Evidently's default test choice, the dataset rule, profiles, the JSON shape, bad input."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from loopml.errors import ValidationError
from loopml.monitoring import stats
from loopml.monitoring.drift import (
    DriftConfig,
    ReferenceProfile,
    column_kind,
    compute_drift,
)

FEATURE_KEYS = {
    "kind",
    "test",
    "statistic",
    "p_value",
    "threshold",
    "drifted",
    "n_ref",
    "n_cur",
    "missing_cur",
    "ref_hist",
    "cur_hist",
}
REPORT_KEYS = {
    "features",
    "share_drifted",
    "drifted_features",
    "dataset_drifted",
    "drift_share",
    "n_ref",
    "n_cur",
}


def frames(n: int, shift: float = 0.0, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(seed)

    def one(s: float) -> pd.DataFrame:
        return pd.DataFrame(
            {
                "x": rng.normal(s, 1, n),
                "big_int": rng.integers(0, 1000, n),
                "small_int": rng.integers(0, 4, n),
                "few_floats": rng.choice([0.5, 1.5, 2.5], n),
                "city": rng.choice(["a", "b", "c", "d"], n),
                "flag": rng.random(n) < 0.3 + s / 10,
            }
        )

    return one(0.0), one(shift)


def test_column_kinds_follow_evidently() -> None:
    ref, _ = frames(300)
    kinds = {c: column_kind(ref[c]) for c in ref.columns}
    assert kinds == {
        "x": "numeric",
        "big_int": "numeric",
        "small_int": "categorical",  # integer with <= 5 distinct values
        "few_floats": "numeric",  # floats stay numeric; the test is chosen by distinct values below
        "city": "categorical",
        "flag": "categorical",
    }


def test_default_tests_small_reference() -> None:
    ref, cur = frames(500, shift=0.5)
    report = compute_drift(ref, cur).to_dict()
    tests = {name: f["test"] for name, f in report["features"].items()}
    assert tests == {
        "x": "ks",
        "big_int": "ks",
        "small_int": "chi2",
        "few_floats": "chi2",  # numeric with <= 5 distinct values
        "city": "chi2",
        "flag": "chi2",  # binary: Evidently uses a Z-test here, loopml chi-square (documented)
    }
    x = report["features"]["x"]
    expected = sps.ks_2samp(ref["x"], cur["x"])
    assert x["statistic"] == pytest.approx(expected.statistic, abs=1e-12)
    assert x["p_value"] == pytest.approx(expected.pvalue, rel=1e-9)
    assert x["threshold"] == 0.05 and x["drifted"] is True


def test_default_tests_large_reference() -> None:
    ref, cur = frames(3000, shift=0.5)
    report = compute_drift(ref, cur).to_dict()
    tests = {name: f["test"] for name, f in report["features"].items()}
    assert tests == {
        "x": "wasserstein",
        "big_int": "wasserstein",
        "small_int": "jensenshannon",
        "few_floats": "jensenshannon",
        "city": "jensenshannon",
        "flag": "jensenshannon",
    }
    x = report["features"]["x"]
    assert x["statistic"] == pytest.approx(stats.wasserstein_normed(ref["x"], cur["x"]), rel=1e-12)
    assert x["p_value"] is None and x["threshold"] == 0.1 and x["drifted"] is True


def test_overrides_per_kind_per_column_and_thresholds() -> None:
    ref, cur = frames(3000, shift=0.2)
    config = DriftConfig(
        tests={"x": "ks"},
        numeric_test="psi",
        categorical_test="chi2",
        thresholds={"psi": 0.5},
        column_thresholds={"x": 0.01},
    )
    report = compute_drift(ref, cur, config=config).to_dict()["features"]
    assert report["x"]["test"] == "ks" and report["x"]["threshold"] == 0.01
    assert report["big_int"]["test"] == "psi" and report["big_int"]["threshold"] == 0.5
    assert report["big_int"]["statistic"] == pytest.approx(
        stats.psi(ref["big_int"], cur["big_int"], bins="evidently"), rel=1e-12
    )
    assert report["city"]["test"] == "chi2"
    assert DriftConfig.from_dict(config.to_dict()) == config


def test_dataset_rule_uses_the_drifted_share() -> None:
    ref, cur = frames(2000, shift=0.0, seed=1)
    cur = cur.copy()
    cur["x"] += 1.0  # 1 of 6 drifts
    one = compute_drift(ref, cur)
    assert one.drifted_features == ["x"]
    assert one.share_drifted == pytest.approx(1 / 6)
    assert one.dataset_drifted is False
    assert compute_drift(ref, cur, config=DriftConfig(drift_share=1 / 6)).dataset_drifted is True
    cur["big_int"] += 500
    cur["city"] = "a"
    three = compute_drift(ref, cur)
    assert sorted(three.drifted_features) == ["big_int", "city", "x"]
    assert three.dataset_drifted is True  # 3/6 >= 0.5


def test_report_shape_is_exact_and_json_safe() -> None:
    ref, cur = frames(400, shift=0.3)
    cur = cur.copy()
    cur.loc[:9, "x"] = np.nan
    cur.loc[10:12, "city"] = None
    cur.loc[13, "city"] = "never-seen"  # chi-square statistic is inf: clamped to a finite float
    data = compute_drift(ref, cur).to_dict()
    assert set(data) == REPORT_KEYS
    json.dumps(data, allow_nan=False)
    assert data["n_ref"] == 400 and data["n_cur"] == 400
    for name, feature in data["features"].items():
        assert set(feature) == FEATURE_KEYS, name
        key = "edges" if feature["kind"] == "numeric" else "categories"
        for hist in (feature["ref_hist"], feature["cur_hist"]):
            assert set(hist) == {key, "shares"}
            assert len(hist["shares"]) <= 20
            assert sum(hist["shares"]) == pytest.approx(1.0)
        if key == "edges":
            assert len(feature["ref_hist"]["edges"]) == len(feature["ref_hist"]["shares"]) + 1
    assert data["features"]["x"]["missing_cur"] == 10 and data["features"]["x"]["n_cur"] == 390
    city = data["features"]["city"]
    assert city["missing_cur"] == 3 and city["p_value"] == 0.0 and city["drifted"] is True
    assert "never-seen" in city["cur_hist"]["categories"]


def test_many_categories_fold_into_other_for_the_chart() -> None:
    rng = np.random.default_rng(2)
    ref = pd.DataFrame({"sku": rng.integers(0, 60, 5000).astype(str)})
    cur = pd.DataFrame({"sku": rng.integers(0, 60, 5000).astype(str)})
    hist = compute_drift(ref, cur).to_dict()["features"]["sku"]["ref_hist"]
    assert len(hist["categories"]) == 20 and hist["categories"][-1] == "(other)"


def test_profile_gives_the_same_report_and_round_trips_bytes() -> None:
    ref, cur = frames(2500, shift=0.4)
    direct = compute_drift(ref, cur).to_dict()
    profile = ReferenceProfile.from_frame(ref)
    assert compute_drift(profile, cur).to_dict() == direct
    loaded = ReferenceProfile.from_bytes(profile.to_bytes())
    assert compute_drift(loaded, cur).to_dict() == direct
    assert compute_drift(loaded, cur, columns=["x"]).to_dict()["features"].keys() == {"x"}


def test_threads_and_serial_agree() -> None:
    ref, cur = frames(2000, shift=0.3)
    assert (
        compute_drift(ref, cur, executor="thread").to_dict()
        == compute_drift(ref, cur, executor="serial").to_dict()
    )


def test_reference_frame_is_not_modified() -> None:
    ref, cur = frames(300)
    before = ref.copy()
    compute_drift(ref, cur)
    pd.testing.assert_frame_equal(ref, before)


def test_datetime_columns_are_skipped_by_default_and_refused_by_name() -> None:
    ref, cur = frames(300)
    ref["ts"] = pd.Timestamp("2024-01-01")
    cur["ts"] = pd.Timestamp("2024-02-01")
    assert "ts" not in compute_drift(ref, cur).features
    with pytest.raises(ValidationError) as err:
        compute_drift(ref, cur, columns=["ts"])
    assert err.value.field == "columns.ts"


def _field(call) -> str | None:
    with pytest.raises(ValidationError) as err:
        call()
    return err.value.field


def test_bad_input_names_the_field() -> None:
    ref, cur = frames(300)
    assert _field(lambda: compute_drift(ref, cur, columns=["nope"])) == "columns"
    assert _field(lambda: compute_drift(ref, cur, columns=[])) == "columns"
    assert _field(lambda: compute_drift(ref, cur.drop(columns="x"))) == "current.x"
    assert _field(lambda: compute_drift(ref.iloc[:0], cur)) == "reference"
    assert _field(lambda: compute_drift(ref, cur.iloc[:0])) == "current"
    assert _field(lambda: compute_drift(ref, cur.iloc[:10])) == "current"  # < min_rows
    assert _field(lambda: compute_drift("ref", cur)) == "reference"
    assert _field(lambda: compute_drift(ref, [1, 2])) == "current"
    assert _field(lambda: compute_drift(ref, cur, config={"drift_share": 0.5})) == "config"
    all_nan = cur.assign(x=np.nan)
    assert _field(lambda: compute_drift(ref, all_nan)) == "current.x"
    assert _field(lambda: compute_drift(ref.assign(x=np.nan), cur)) == "reference.x"
    text = cur.assign(x="oops")
    assert _field(lambda: compute_drift(ref, text)) == "current.x"
    assert _field(lambda: compute_drift(ref, cur, config=DriftConfig(tests={"zz": "ks"}))) == "tests.zz"
    assert _field(lambda: compute_drift(ref, cur, config=DriftConfig(tests={"city": "ks"}))) == "tests.city"
    assert _field(lambda: ReferenceProfile.from_bytes(b"not a profile")) == "profile"


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"tests": {"x": "kolmogorov"}}, "tests.x"),
        ({"numeric_test": "t-test"}, "numeric_test"),
        ({"numeric_test": "chi2"}, "numeric_test"),
        ({"categorical_test": "wasserstein"}, "categorical_test"),
        ({"thresholds": {"kss": 0.1}}, "thresholds.kss"),
        ({"thresholds": {"ks": -1}}, "thresholds.ks"),
        ({"column_thresholds": {"x": float("nan")}}, "column_thresholds.x"),
        ({"kinds": {"x": "text"}}, "kinds.x"),
        ({"drift_share": 0}, "drift_share"),
        ({"drift_share": 1.5}, "drift_share"),
        ({"min_rows": 0}, "min_rows"),
        ({"min_rows": True}, "min_rows"),
        ({"tests": ["x"]}, "tests"),
    ],
)
def test_bad_config_names_the_field(kwargs: dict, field: str) -> None:
    assert _field(lambda: DriftConfig(**kwargs)) == field


def test_config_from_dict_refuses_unknown_keys() -> None:
    assert _field(lambda: DriftConfig.from_dict({"drift_shares": 0.4})) == "drift.drift_shares"
    assert DriftConfig.from_dict(None) == DriftConfig()
