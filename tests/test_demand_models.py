"""Demand app: features (no leakage), models, intervals, registry round trip, backtest, bad input."""

from __future__ import annotations

from functools import partial

import numpy as np
import pandas as pd
import pytest

from loopml.apps.demand.backtest import (
    _OriginTask,
    _run_origin,
    backtest_origins,
    default_models,
    gate_eval_frame,
    metrics,
    origin_window,
    rolling_origin,
    worker_threads,
)
from loopml.apps.demand.config import DemandConfig
from loopml.apps.demand.features import (
    AUX,
    HORIZON,
    build_features,
    feature_names,
    hourly_profile,
    to_grain,
    to_hourly,
    training_frame,
)
from loopml.apps.demand.models import (
    SMALL_FIT_ROWS,
    GlobalLightGBM,
    HourRatios,
    RidgeForecaster,
    SeasonalNaive,
    model_from_registry,
    register_model,
)
from loopml.apps.demand.simulate import simulate_stores, simulate_visits
from loopml.errors import ValidationError

FAST_LGB = {"n_estimators": 60, "num_leaves": 15, "learning_rate": 0.1, "n_jobs": 1}


def _stores(n: int = 3) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "store_id": np.arange(1, n + 1),
            "region": ["Seoul", "Busan", "Daegu"][:n] if n <= 3 else ["Seoul"] * n,
            "size_m2": np.linspace(100, 400, n),
            "open_hour": 9,
            "close_hour": 21,
            "opened_on": pd.Timestamp("2022-06-01"),
            "closed_on": pd.NaT,
        }
    )


def _daily(n_stores: int = 3, days: int = 200, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    idx = pd.date_range("2024-01-01", periods=days, freq="D")
    weekday = np.array([1.0, 1.0, 1.0, 1.1, 1.3, 1.7, 1.5])[idx.day_of_week]
    frames = [
        pd.DataFrame({"store_id": s, "ts": idx, "visitors": rng.poisson(50 * s * weekday).astype(float)})
        for s in range(1, n_stores + 1)
    ]
    return pd.concat(frames, ignore_index=True)


@pytest.fixture(scope="module")
def sim() -> tuple[pd.DataFrame, pd.DataFrame]:
    cfg = DemandConfig.small(stores=8, years=1.15)
    stores = simulate_stores(cfg)
    visits = simulate_visits(stores, cfg)
    visits = visits[(visits["visitors"] >= 0) & (visits["visitors"] < 1e6)].reset_index(drop=True)
    return stores, visits


@pytest.fixture(scope="module")
def backtest(sim):
    stores, visits = sim
    models = {
        "seasonal_naive": SeasonalNaive,
        "lightgbm": partial(GlobalLightGBM, FAST_LGB),
        "ridge": RidgeForecaster,
    }
    return rolling_origin(visits, stores, models, weeks=3)


# -- features -------------------------------------------------------------------------------------
def test_features_never_read_inside_the_horizon():
    history = _daily(days=150)
    stores = _stores()
    target_day = pd.Timestamp("2024-05-20")
    targets = pd.DataFrame({"store_id": [1, 2, 3], "ts": [target_day] * 3})
    names = [n for n in feature_names("day") if n != "store_id"] + ["naive_value"]
    before = build_features(history, stores, targets, grain="day")[names]
    # change every value closer than the horizon (and the target day itself) by a lot
    inside = history["ts"] > target_day - pd.Timedelta(days=HORIZON["day"])
    perturbed = history.copy()
    perturbed.loc[inside, "visitors"] = perturbed.loc[inside, "visitors"] * 10 + 777
    after = build_features(perturbed, stores, targets, grain="day")[names]
    pd.testing.assert_frame_equal(before, after)
    # ... while a value exactly at the horizon does move them
    at = perturbed["ts"] == target_day - pd.Timedelta(days=HORIZON["day"])
    perturbed.loc[at, "visitors"] += 5
    moved = build_features(perturbed, stores, targets, grain="day")
    assert (moved["lag_14"] != before["lag_14"]).all()


def test_features_built_once_equal_features_built_at_the_cutoff():
    history = _daily(days=160)
    stores = _stores()
    cutoff = pd.Timestamp("2024-05-05")
    targets = pd.DataFrame({"store_id": 2, "ts": pd.date_range(cutoff + pd.Timedelta(days=8), periods=7)})
    cols = [*feature_names("day"), "naive_value"]
    full = build_features(history, stores, targets, grain="day")[cols]
    cut = build_features(history[history["ts"] <= cutoff], stores, targets, grain="day")[cols]
    pd.testing.assert_frame_equal(full, cut)


def test_features_are_robust_to_spikes_and_cover_calendar():
    history = _daily(days=300)
    stores = _stores()
    spike = (history["store_id"] == 1) & (history["ts"] == pd.Timestamp("2024-04-01"))
    history.loc[spike, "visitors"] *= 10
    targets = pd.DataFrame({"store_id": [1], "ts": [pd.Timestamp("2024-04-15")]})
    row = build_features(history, stores, targets, grain="day").iloc[0]
    trailing = history[(history["store_id"] == 1) & (history["ts"] <= pd.Timestamp("2024-04-01"))].tail(28)
    assert history.loc[spike, "visitors"].iloc[0] > 400
    assert row["lag_14"] == pytest.approx(4 * trailing["visitors"].median())  # capped, not 10 x
    assert row["roll_median_7"] < 80
    assert list(build_features(history, stores, targets, grain="day").columns[:2]) == ["store_id", "ts"]
    hol = build_features(
        history, stores, pd.DataFrame({"store_id": [1], "ts": [pd.Timestamp("2024-05-06")]}), grain="day"
    ).iloc[0]
    assert hol["is_holiday"] == 1.0  # alternative holiday for Children's Day (KR)
    days = pd.to_datetime(["2024-02-13", "2024-10-02"])
    after = build_features(history, stores, pd.DataFrame({"store_id": 1, "ts": days}), grain="day")
    assert after["is_holiday"].tolist() == [0.0, 0.0] and after["days_since_holiday"].tolist() == [1.0, 1.0]
    assert after["is_bridge"].tolist() == [0.0, 1.0]  # Wed 2 Oct 2024: between two holidays


def test_to_grain_week_and_month_models_run():
    daily = _daily(days=400)
    weekly, grain = to_grain(daily.assign(ts=daily["ts"]), "W")
    assert grain == "week" and (weekly["ts"].dt.day_of_week == 0).all()
    model = GlobalLightGBM(FAST_LGB).fit(weekly, _stores(), grain="week")
    last = weekly["ts"].max()
    targets = pd.DataFrame({"store_id": [1, 2], "ts": [last + pd.Timedelta(weeks=2)] * 2})
    out = model.predict(weekly, _stores(), targets, grain="week")
    assert list(out.columns) == ["store_id", "ts", "forecast", "lower", "upper"]
    assert (out["forecast"] > 0).all() and (out["lower"] <= out["forecast"]).all()
    monthly, grain = to_grain(daily, "MS")
    assert grain == "month"
    naive = SeasonalNaive().fit(monthly, _stores(), grain="month")
    nxt = monthly["ts"].max() + pd.offsets.MonthBegin(1)
    pred = naive.predict(monthly, _stores(), pd.DataFrame({"store_id": [1], "ts": [nxt]}), grain="month")
    assert pred["forecast"].iloc[0] > 0


def test_hourly_profile_and_top_down_split():
    hours = []
    daily = _daily(n_stores=2, days=70)
    shape = np.array([1, 2, 3, 4, 3, 2, 1], dtype=float)
    for h, w in enumerate(shape):
        part = daily.copy()
        part["ts"] = part["ts"] + pd.Timedelta(hours=10 + h)
        part["visitors"] = part["visitors"] * w
        hours.append(part)
    visits = pd.concat(hours, ignore_index=True)
    visits = visits[~((visits["store_id"] == 2) & (visits["ts"].dt.day_of_week == 6))]  # no Sundays: fallback
    profile = hourly_profile(visits, weeks=4)
    sums = profile.groupby(["store_id", "weekday"])["share"].sum()
    np.testing.assert_allclose(sums.to_numpy(), 1.0)
    assert len(sums) == 14  # every store x weekday, store 2's Sunday from its all-week shape
    sunday = profile[(profile["store_id"] == 2) & (profile["weekday"] == 6)].sort_values("hour")
    np.testing.assert_allclose(sunday["share"].to_numpy(), shape / shape.sum(), atol=0.02)
    day = pd.DataFrame(
        {
            "store_id": [1, 3],
            "ts": [pd.Timestamp("2024-03-18")] * 2,
            "forecast": [160.0, 80.0],
            "lower": [120.0, 60.0],
            "upper": [200.0, 100.0],
        }
    )
    hourly = to_hourly(day, profile)
    totals = hourly.groupby("store_id")[["forecast", "lower", "upper"]].sum()
    np.testing.assert_allclose(totals.loc[1].to_numpy(), [160.0, 120.0, 200.0])
    np.testing.assert_allclose(totals.loc[3].to_numpy(), [80.0, 60.0, 100.0])  # unknown store: global shape
    assert (hourly["ts"].dt.hour >= 10).all()


# -- models ---------------------------------------------------------------------------------------
def test_seasonal_naive_repeats_the_value_two_weeks_back():
    idx = pd.date_range("2024-01-01", periods=60, freq="D")
    history = pd.DataFrame({"store_id": 1, "ts": idx, "visitors": np.arange(60, dtype=float)})
    history = history[history["ts"] != pd.Timestamp("2024-02-25")]  # a missing day
    stores = _stores(1)
    last = idx[-1]
    targets = pd.DataFrame({"store_id": 1, "ts": pd.date_range(last + pd.Timedelta(days=8), periods=7)})
    model = SeasonalNaive().fit(history, stores, grain="day")
    out = model.predict(history, stores, targets, grain="day")
    expected = [(t - idx[0]).days - 14 for t in targets["ts"]]
    assert (
        SeasonalNaive.lag("day") == 14
        and SeasonalNaive.lag("week") == 52
        and SeasonalNaive.lag("month") == 12
    )
    # 2024-03-10 reads 2024-02-25 (missing): mean of the same weekday 21, 28, 35 days back
    gap = targets.index[targets["ts"] == pd.Timestamp("2024-03-10")][0]
    day_no = (pd.Timestamp("2024-03-10") - idx[0]).days
    expected[gap] = np.mean([day_no - 21, day_no - 28, day_no - 35])
    np.testing.assert_allclose(out["forecast"].to_numpy(), expected)


def test_lightgbm_beats_naive_and_intervals_cover(backtest):
    day = backtest.overall[backtest.overall["grain"] == "day"].set_index("model")
    assert day.loc["lightgbm", "wape"] < day.loc["seasonal_naive", "wape"]
    assert backtest.improvement() > 0.05
    assert 0.6 <= day.loc["lightgbm", "coverage"] <= 0.97  # nominal 0.8
    assert set(backtest.overall["grain"]) == {"day", "hour"}
    assert {"model", "grain", "store_id", "mae", "rmse", "wape"} <= set(backtest.per_store.columns)
    assert backtest.per_week["week"].nunique() == 3
    assert len(backtest.origins) == 3 and all(o.day_of_week == 1 for o in backtest.origins)
    preds = backtest.predictions
    assert (preds["forecast"] >= 0).all() and (preds["lower"] <= preds["upper"]).all()


def test_hourly_intervals_are_calibrated_on_hourly_residuals(backtest):
    hour = backtest.overall[backtest.overall["grain"] == "hour"].set_index("model")
    for model in ("lightgbm", "seasonal_naive", "ridge"):
        assert 0.65 <= hour.loc[model, "coverage"] <= 0.95, (model, hour.loc[model, "coverage"])
    preds = backtest.predictions[backtest.predictions["grain"] == "hour"]
    assert (preds["lower"] <= preds["forecast"]).all() and (preds["forecast"] <= preds["upper"]).all()


def test_hour_ratios_fit_per_hour_and_fall_back(sim):
    stores, visits = sim
    daily, grain = to_grain(visits)
    model = SeasonalNaive().fit(daily, stores, grain=grain, hourly=visits)
    ratios = model.hour_ratios
    assert ratios is not None and ratios.by_hour
    assert all(lo <= 1.0 <= hi for lo, hi in [ratios.default, *ratios.by_hour.values()])
    # hourly spread ratios are wider than the day ones: each hour's share varies too
    assert ratios.default[1] - ratios.default[0] > model.interval_ratios[1] - model.interval_ratios[0]
    lo, hi = ratios.bounds(np.array([next(iter(ratios.by_hour)), 99]))
    assert (lo[1], hi[1]) == ratios.default
    assert HourRatios.from_metrics(ratios.to_metrics()) == ratios
    assert HourRatios.from_metrics({"interval_lo_ratio": 0.8}) is None
    # to_hourly uses them; without hourly data the day bounds are spread as before
    day = model.predict(daily, stores, _next_week(daily, stores), grain=grain)
    profile = hourly_profile(visits)
    spread = model.to_hourly(day, profile)
    exp_lo, exp_hi = ratios.bounds(spread["ts"].dt.hour)
    np.testing.assert_allclose(spread["lower"], spread["forecast"] * exp_lo)
    np.testing.assert_allclose(spread["upper"], spread["forecast"] * exp_hi)
    plain = SeasonalNaive().fit(daily, stores, grain=grain)
    assert plain.hour_ratios is None
    pd.testing.assert_frame_equal(plain.to_hourly(day, profile), to_hourly(day, profile))
    with pytest.raises(ValidationError, match="hourly"):
        SeasonalNaive().fit(daily, stores, grain=grain, hourly=visits.drop(columns="visitors"))
    weeks = daily.assign(ts=daily["ts"].dt.to_period("W-SUN").dt.start_time)
    weekly, wgrain = to_grain(weeks.groupby(["store_id", "ts"], as_index=False)["visitors"].sum(), "W")
    with pytest.raises(ValidationError, match="day-grain"):
        SeasonalNaive().fit(weekly, stores, grain=wgrain, hourly=visits)


def _next_week(daily: pd.DataFrame, stores: pd.DataFrame) -> pd.DataFrame:
    last = daily["ts"].max()
    ids = stores["store_id"].to_numpy()[:3]
    return pd.DataFrame(
        {"store_id": np.repeat(ids, 7), "ts": list(pd.date_range(last + pd.Timedelta(days=8), periods=7)) * 3}
    )


def test_threads_follow_the_fanout_and_the_data_size(sim, monkeypatch):
    import lightgbm

    import loopml.apps.demand.backtest as bt

    monkeypatch.setattr(bt.os, "cpu_count", lambda: 8)
    assert worker_threads(8) == 1 and worker_threads(2) == 4 and worker_threads(8, workers=2) == 4
    assert worker_threads(1, workers=3) == 8
    model = GlobalLightGBM({"n_jobs": 6, "num_threads": 6})
    model.use_threads(2)
    assert model.params["n_jobs"] == 2 and "num_threads" not in model.params
    model.use_threads(4)
    assert model.params["n_jobs"] == 2  # never more than the user asked for
    with pytest.raises(ValidationError, match="threads"):
        model.use_threads(0)
    seen: list[int] = []
    real = lightgbm.LGBMRegressor

    def spy(**params):
        seen.append(params["n_jobs"])
        return real(**params)

    monkeypatch.setattr(lightgbm, "LGBMRegressor", spy)
    stores, visits = sim
    daily, grain = to_grain(visits)
    frame = training_frame(daily, stores, grain=grain)
    assert len(frame) < SMALL_FIT_ROWS
    GlobalLightGBM({**FAST_LGB, "n_jobs": 2}).fit_frame(frame, grain=grain)
    assert seen and set(seen) == {1}  # a small fit runs on one thread
    # origins sent to workers get cores // workers threads; serial ones keep n_jobs
    seen.clear()
    monkeypatch.setattr("loopml.apps.demand.models.SMALL_FIT_ROWS", 0)
    origin = backtest_origins(daily["ts"].max(), 1, grain)[0]
    factory = {"lightgbm": partial(GlobalLightGBM, {**FAST_LGB, "n_jobs": 8})}
    for threads, expected in ((None, 8), (worker_threads(2), 4)):
        _run_origin(_OriginTask(origin, grain, origin_window(origin, grain), frame, factory, None, threads))
        assert set(seen) == {expected}
        seen.clear()


def test_lightgbm_is_deterministic(sim):
    stores, visits = sim
    daily, grain = to_grain(visits)
    frame = training_frame(daily, stores, grain=grain)
    a = GlobalLightGBM(FAST_LGB).fit_frame(frame, grain=grain).predict_frame(frame.tail(50))
    b = GlobalLightGBM(FAST_LGB).fit_frame(frame, grain=grain).predict_frame(frame.tail(50))
    pd.testing.assert_frame_equal(a, b)


def test_backtest_fanout_gives_the_serial_result(sim):
    from loopml.compute import fan_out

    stores, visits = sim
    models = {"seasonal_naive": SeasonalNaive}
    serial = rolling_origin(visits, stores, models, weeks=2, hourly=False)
    threaded = rolling_origin(
        visits, stores, models, weeks=2, hourly=False, fanout=partial(fan_out, backend="thread")
    )
    pd.testing.assert_frame_equal(serial.overall, threaded.overall)


def test_origins_and_windows_follow_the_tuesday_calendar():
    origins = backtest_origins(pd.Timestamp("2024-03-31"), 2, "day")  # a Sunday
    assert origins == [pd.Timestamp("2024-03-12"), pd.Timestamp("2024-03-19")]
    cutoff, first, last = origin_window(origins[-1], "day")
    assert (cutoff, first, last) == (
        pd.Timestamp("2024-03-17"),
        pd.Timestamp("2024-03-25"),
        pd.Timestamp("2024-03-31"),
    )
    assert (last - cutoff).days == HORIZON["day"]


def test_metrics():
    m = metrics([10, 20, 30], [12, 18, 30])
    assert m["mae"] == pytest.approx(4 / 3) and m["wape"] == pytest.approx(4 / 60)
    assert m["rmse"] == pytest.approx(np.sqrt(8 / 3))
    assert np.isnan(metrics([0, 0], [1, 1])["wape"])
    with pytest.raises(ValidationError, match="aligned"):
        metrics([1, 2], [1])
    with pytest.raises(ValidationError, match="finite"):
        metrics([1, np.nan], [1, 2])


# -- registry -------------------------------------------------------------------------------------
def test_registry_round_trip_keeps_predictions_and_intervals(lm, sim):
    stores, visits = sim
    daily, grain = to_grain(visits)
    model = GlobalLightGBM(FAST_LGB).fit(daily, stores, grain=grain)
    eval_frame = gate_eval_frame(visits, stores)
    assert list(eval_frame.columns) == [*feature_names("day"), "visitors"]
    version = register_model(lm, model, eval_frame=eval_frame, metrics={"wape": 0.2, "bad": float("nan")})
    assert version.number == 1 and version.metrics["interval_hi_ratio"] >= 1.0
    loaded = lm.registry.load("demand/1")
    restored = model_from_registry(loaded)
    assert restored.hour_ratios is None  # fitted without hourly visits
    hourly = GlobalLightGBM(FAST_LGB).fit(daily, stores, grain=grain, hourly=visits)
    assert hourly.hour_ratios is not None
    v2 = register_model(lm, hourly, eval_frame=eval_frame, metrics={})
    assert v2.metrics["hour_hi_ratio"] == hourly.hour_ratios.default[1]
    assert model_from_registry(lm.registry.load("demand/2")).hour_ratios == hourly.hour_ratios
    last = daily["ts"].max()
    targets = pd.DataFrame(
        {
            "store_id": np.repeat(stores["store_id"].to_numpy()[:3], 7),
            "ts": list(pd.date_range(last + pd.Timedelta(days=8), periods=7)) * 3,
        }
    )
    a = model.predict(daily, stores, targets, grain=grain)
    b = restored.predict(daily, stores, targets, grain=grain)
    pd.testing.assert_frame_equal(a, b)
    np.testing.assert_allclose(
        loaded.predict(eval_frame, strict=False), model.estimator.predict(eval_frame[feature_names("day")])
    )


# -- bad input ------------------------------------------------------------------------------------
def test_bad_input_is_refused_with_the_field_named():
    history = _daily(days=60)
    stores = _stores()
    targets = pd.DataFrame({"store_id": [1], "ts": [history["ts"].max() + pd.Timedelta(days=3)]})
    with pytest.raises(ValidationError, match="missing column"):
        build_features(history.drop(columns="visitors"), stores, targets, grain="day")
    with pytest.raises(ValidationError, match="empty"):
        build_features(history.iloc[:0], stores, targets, grain="day")
    with pytest.raises(ValidationError, match="before the history"):
        build_features(history, stores, targets.assign(ts=pd.Timestamp("2023-06-01")), grain="day")
    with pytest.raises(ValidationError, match="latest servable"):
        build_features(
            history, stores, targets.assign(ts=history["ts"].max() + pd.Timedelta(days=15)), grain="day"
        )
    nan = history.copy()
    nan.loc[3, "visitors"] = np.nan
    with pytest.raises(ValidationError, match="NaN") as err:
        build_features(nan, stores, targets, grain="day")
    assert err.value.field == "visitors"
    with pytest.raises(ValidationError, match="visitors"):
        GlobalLightGBM().fit(history.assign(visitors=-1.0), stores, grain="day")
    with pytest.raises(ValidationError, match="grain"):
        build_features(history, stores, targets, grain="hour")
    with pytest.raises(ValidationError, match="no row in stores"):
        build_features(history, stores[stores["store_id"] != 2], targets, grain="day")
    with pytest.raises(ValidationError, match="midnight"):
        build_features(history, stores, targets.assign(ts=targets["ts"] + pd.Timedelta(hours=3)), grain="day")
    with pytest.raises(ValidationError, match="not fitted"):
        GlobalLightGBM().predict(history, stores, targets, grain="day")
    with pytest.raises(ValidationError, match="interval"):
        SeasonalNaive(interval=1.5)
    with pytest.raises(ValidationError, match="params"):
        GlobalLightGBM(params=[1, 2])  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="weeks"):
        rolling_origin(history, stores, weeks=0)
    with pytest.raises(ValidationError, match="history starts"):
        rolling_origin(history, stores, weeks=8)
    with pytest.raises(ValidationError, match="grain"):
        rolling_origin(history, stores, weeks=1, grain="week")
    with pytest.raises(ValidationError, match="weeks"):
        hourly_profile(history, weeks=0)
    with pytest.raises(ValidationError, match="profile"):
        to_hourly(history.assign(forecast=1.0), pd.DataFrame())
    with pytest.raises(ValidationError, match="fitted GlobalLightGBM"):
        register_model(None, SeasonalNaive(), eval_frame=history, metrics={})
    assert set(AUX) == {"robust_cap", "naive_value"}
    assert default_models()["lightgbm"]().params["deterministic"] is True
