"""Demand app data layer: config, simulator, warehouse cut-off, contracts and the user-data loader."""

from __future__ import annotations

from pathlib import Path

import holidays
import numpy as np
import pandas as pd
import pytest

from loopml.apps.demand.config import DEFAULT_LGB_PARAMS, DemandConfig
from loopml.apps.demand.contracts import DATASETS, STORES, VISITS
from loopml.apps.demand.simulate import (
    REGIONS,
    Warehouse,
    default_stores_for,
    load_user_visits,
    simulate_stores,
    simulate_visits,
    write_sample_csv,
)
from loopml.errors import NotFoundError, ValidationError

SMALL = DemandConfig.small()


@pytest.fixture(scope="module")
def sim() -> tuple[pd.DataFrame, pd.DataFrame]:
    stores = simulate_stores(SMALL)
    return stores, simulate_visits(stores, SMALL)


def _hash(frame: pd.DataFrame) -> int:
    return int(pd.util.hash_pandas_object(frame, index=False).sum())


def _clean(visits: pd.DataFrame) -> pd.DataFrame:
    return visits[(visits["visitors"] >= 0) & (visits["visitors"] <= 1e6)]


# -- config -------------------------------------------------------------------------------------
def test_config_defaults_round_trip_and_small() -> None:
    cfg = DemandConfig()
    assert (cfg.stores, cfg.years, cfg.freq, cfg.backtest_weeks, cfg.min_staff) == (300, 3.0, "h", 8, 3)
    assert cfg.lgb_params == DEFAULT_LGB_PARAMS and cfg.lgb_params["objective"] == "tweedie"
    assert DemandConfig.from_dict(cfg.to_dict()) == cfg
    assert hash(DemandConfig.from_dict(cfg.to_dict())) == hash(cfg)
    small = DemandConfig.small()
    assert small.stores < cfg.stores and small.years < cfg.years
    tuned = DemandConfig.from_dict({"lgb_params": {"num_leaves": 15}})
    assert tuned.lgb_params["num_leaves"] == 15 and tuned.lgb_params["n_jobs"] == 2
    assert cfg.replace(retrain="keep").retrain == "keep"
    assert cfg.deadline("2026-12-01") == pd.Timestamp("2026-12-03 18:00")  # Tuesday run -> Thursday
    assert cfg.end_ts == pd.Timestamp("2026-01-02")  # 3 x 365.25 days later


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("stores", 0),
        ("stores", 2.5),
        ("years", 0),
        ("years", float("nan")),
        ("freq", "5min"),
        ("backtest_weeks", 0),
        ("backtest_weeks", 53),
        ("retrain", "daily"),
        ("visitors_per_staff", 0.0),
        ("min_staff", -1),
        ("interval", 1.0),
        ("interval", 0),
        ("challenger_share", 1.5),
        ("publish_deadline", "thursday"),
        ("publish_deadline", "xyz 18:00"),
        ("publish_deadline", "thu 25:00"),
        ("start", "not a date"),
        ("lgb_params", "fast"),
        ("seed", True),
    ],
)
def test_config_rejects_bad_values_naming_the_field(field: str, value: object) -> None:
    with pytest.raises(ValidationError) as err:
        DemandConfig.from_dict({field: value})
    assert err.value.field == field and field in str(err.value)


def test_config_unknown_key_suggests_the_right_one() -> None:
    with pytest.raises(ValidationError, match="Did you mean: stores"):
        DemandConfig.from_dict({"store": 5})
    with pytest.raises(ValidationError, match="mapping"):
        DemandConfig.from_dict(["stores", 5])


# -- simulator ----------------------------------------------------------------------------------
def test_stores_table(sim: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    stores, _ = sim
    assert list(stores.columns) == [c.name for c in STORES.columns]
    assert len(stores) == SMALL.stores and stores["store_id"].is_unique
    assert set(stores["region"]) <= set(REGIONS)
    assert ((stores["open_hour"] < stores["close_hour"]) & (stores["close_hour"] <= 24)).all()
    assert (stores["opened_on"] > SMALL.start_ts).sum() >= 1  # a store opens inside the window
    assert stores["closed_on"].notna().sum() >= 1  # and one closes
    assert len(simulate_stores(DemandConfig(stores=300))) == 300


def test_visits_are_deterministic_for_a_seed(sim: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    stores, visits = sim
    again = simulate_visits(simulate_stores(SMALL), SMALL)
    assert _hash(again) == _hash(visits)
    other = SMALL.replace(seed=8)
    assert _hash(simulate_visits(simulate_stores(other), other)) != _hash(visits)
    # rows up to a day never depend on how far the simulation runs
    short = simulate_visits(stores, SMALL, until="2023-05-31")
    assert short.equals(visits[visits["ts"] < "2023-06-01"].reset_index(drop=True))


def test_visits_shape_hours_and_lifetimes(sim: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    stores, visits = sim
    assert list(visits.columns) == ["store_id", "ts", "visitors"]
    assert visits["ts"].dtype == "datetime64[ns]" and visits["visitors"].dtype == "float64"
    assert not visits["visitors"].isna().any()
    assert visits["ts"].min() >= SMALL.start_ts and visits["ts"].max() < SMALL.end_ts
    span_days = (visits["ts"].max() - visits["ts"].min()).days
    assert span_days >= 0.95 * SMALL.years * 365
    rows = visits.merge(stores, on="store_id")
    hour = rows["ts"].dt.hour
    assert ((hour >= rows["open_hour"]) & (hour < rows["close_hour"])).all()
    assert (rows["ts"] >= rows["opened_on"]).all()
    closed = rows["closed_on"].notna()
    assert (rows.loc[closed, "ts"] < rows.loc[closed, "closed_on"]).all()
    # whole missing days: some store-days inside a store's life have no rows at all
    days = visits.assign(day=visits["ts"].dt.normalize()).groupby("store_id")["day"].nunique()
    life = stores.set_index("store_id").apply(
        lambda s: (
            (
                min(SMALL.end_ts, s["closed_on"] if pd.notna(s["closed_on"]) else SMALL.end_ts)
                - max(SMALL.start_ts, s["opened_on"])
            ).days
        ),
        axis=1,
    )
    assert 0 < (life - days).sum() < 0.02 * life.sum()
    # outliers: a few values far above the store's typical peak, but below the contract's ceiling
    clean = _clean(visits)
    p99 = clean.groupby("store_id")["visitors"].transform(lambda v: v.quantile(0.99))
    assert (clean["visitors"] > 3 * p99).sum() >= 1


def test_holidays_move_malls_up_and_offices_down() -> None:
    cfg = DemandConfig.small(stores=40)
    stores = simulate_stores(cfg)
    visits = _clean(simulate_visits(stores, cfg))
    daily = visits.assign(day=visits["ts"].dt.normalize()).groupby(["store_id", "day"])["visitors"].sum()
    daily = daily.reset_index().merge(stores[["store_id", "store_type"]], on="store_id")
    kr = holidays.country_holidays("KR", years=[2023, 2024])
    daily["holiday"] = daily["day"].dt.date.map(lambda d: d in kr)
    workday = ~daily["holiday"] & (daily["day"].dt.day_of_week < 5)
    level = daily.groupby("store_id")["visitors"].transform(lambda v: v.median())
    daily["rel"] = daily["visitors"] / level

    def ratio(kind: str) -> float:
        sel = daily["store_type"] == kind
        return daily.loc[sel & daily["holiday"], "rel"].mean() / daily.loc[sel & workday, "rel"].mean()

    assert ratio("mall") > 1.15
    assert ratio("office") < 0.6


def test_other_frequencies_are_aggregated_on_their_grid() -> None:
    for freq, check in [
        ("D", lambda ts: (ts == ts.dt.normalize()).all()),
        ("W", lambda ts: (ts.dt.day_of_week == 0).all()),
        ("MS", lambda ts: (ts.dt.day == 1).all()),
    ]:
        cfg = DemandConfig.small(freq=freq)
        visits = simulate_visits(simulate_stores(cfg), cfg)
        assert len(visits) and check(visits["ts"]), freq
        assert not visits.duplicated(["store_id", "ts"]).any()


def test_simulator_rejects_bad_input(sim: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    stores, _ = sim
    with pytest.raises(ValidationError, match="DemandConfig"):
        simulate_stores({"stores": 3})  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="open_hour"):
        simulate_visits(stores.drop(columns=["open_hour"]), SMALL)
    with pytest.raises(ValidationError, match="empty"):
        simulate_visits(stores.iloc[:0], SMALL)
    with pytest.raises(ValidationError, match="before the simulation start"):
        simulate_visits(stores, SMALL, until="2020-01-01")
    bad = stores.assign(close_hour=stores["open_hour"])
    with pytest.raises(ValidationError, match="close_hour"):
        simulate_visits(bad, SMALL)


# -- contract and ingestion ---------------------------------------------------------------------
def test_hostile_rows_are_quarantined_by_the_visits_contract(lm_sqlite, sim) -> None:
    stores, visits = sim
    hostile = (visits["visitors"] < 0) | (visits["visitors"] > 1e6)
    assert (visits["visitors"] < 0).any() and (visits["visitors"] >= 1e9).any()
    assert hostile.mean() < 0.001
    result = lm_sqlite.datasets.ingest(DATASETS["visits"], visits, contract=VISITS)
    assert result.rows_quarantined == int(hostile.sum())
    assert result.rows_ok == len(visits) - int(hostile.sum())
    stored = lm_sqlite.datasets.ingest(DATASETS["stores"], stores, contract=STORES)
    assert stored.rows_quarantined == 0 and stored.rows_ok == len(stores)


# -- warehouse ----------------------------------------------------------------------------------
def test_warehouse_holds_data_up_to_two_days_before_the_run(sim: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    stores, visits = sim
    house = Warehouse(stores, visits)
    run = pd.Timestamp("2023-09-05")  # a Tuesday
    seen = house.available(run)
    assert seen["ts"].dt.normalize().max() == pd.Timestamp("2023-09-03")
    assert len(seen) == int((visits["ts"] < "2023-09-04").sum())
    one = house.delivery("2023-09-03")
    assert len(one) and (one["ts"].dt.normalize() == pd.Timestamp("2023-09-03")).all()
    assert len(house.days("2023-09-01", "2023-09-07")) == 7
    with pytest.raises(ValidationError, match="run_date"):
        house.available("someday")
    with pytest.raises(ValidationError, match="before start"):
        house.days("2023-09-07", "2023-09-01")

    cfg = DemandConfig.small(freq="W")
    weekly = Warehouse(simulate_stores(cfg), simulate_visits(simulate_stores(cfg), cfg))
    assert weekly.freq == "W"
    # the week of Monday 2023-08-28 ends Sunday 09-03, so the Tuesday 09-05 run sees it, 09-04 not
    assert weekly.available("2023-09-05")["ts"].max() == pd.Timestamp("2023-08-28")
    assert weekly.available("2023-09-04")["ts"].max() == pd.Timestamp("2023-08-21")


# -- user data ----------------------------------------------------------------------------------
@pytest.mark.parametrize("freq", ["h", "D", "W", "MS"])
@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_user_visits_round_trip_at_every_frequency(tmp_path: Path, freq: str, suffix: str) -> None:
    cfg = DemandConfig.small(stores=3, years=0.6, freq=freq)
    visits = simulate_visits(simulate_stores(cfg), cfg)
    path = tmp_path / f"visits{suffix}"
    out = visits.rename(columns={"ts": "timestamp"})
    if freq == "W":  # Sunday-labelled weeks (pandas' W-SUN) are normalised to their Monday
        out["timestamp"] = out["timestamp"] + pd.Timedelta(days=6)
    if freq == "MS":  # month ends are normalised to month starts
        out["timestamp"] = out["timestamp"] + pd.offsets.MonthEnd(0)
    if suffix == ".csv":
        out.to_csv(path, index=False)
    else:
        out.to_parquet(path, index=False)
    frame, found = load_user_visits(path)
    assert found == freq
    assert list(frame.columns) == ["store_id", "ts", "visitors"]
    pd.testing.assert_frame_equal(frame, visits.reset_index(drop=True), check_dtype=False)
    assert load_user_visits(path, freq={"h": "H", "D": "daily", "W": "W-SUN", "MS": "M"}[freq])[1] == freq
    stores = default_stores_for(frame)
    assert len(stores) == 3 and set(stores["region"]) == {"unknown"}
    assert np.isfinite(stores["size_m2"]).all()  # a placeholder, so feature code never meets a gap
    if freq == "h":
        rows = frame.merge(stores, on="store_id")
        assert ((rows["ts"].dt.hour >= rows["open_hour"]) & (rows["ts"].dt.hour < rows["close_hour"])).all()


def test_sample_csv_loads_and_ingests(lm_sqlite, tmp_path: Path) -> None:
    cfg = DemandConfig.small(stores=4, years=0.5, freq="D")
    path = write_sample_csv(tmp_path / "sample.csv", cfg)
    frame, freq = load_user_visits(path)
    assert freq == "D" and frame["store_id"].nunique() == 4
    result = lm_sqlite.datasets.ingest(DATASETS["visits"], frame, contract=VISITS)
    assert result.rows_ok + result.rows_quarantined == len(frame)
    stored = lm_sqlite.datasets.ingest(DATASETS["stores"], default_stores_for(frame), contract=STORES)
    assert stored.rows_ok == 4
    with pytest.raises(ValidationError, match=r".csv"):
        write_sample_csv(tmp_path / "sample.txt", cfg)


def _frame(ts: list[str], stores: list[int] | None = None) -> pd.DataFrame:
    return pd.DataFrame(
        {"store_id": stores or [1] * len(ts), "timestamp": ts, "visitors": np.arange(len(ts), dtype=float)}
    )


def test_user_loader_refuses_bad_files(tmp_path: Path) -> None:
    hourly = [f"2025-03-03 {h:02d}:00" for h in range(9, 15)]
    missing = tmp_path / "missing.csv"
    _frame(hourly).drop(columns=["visitors"]).to_csv(missing, index=False)
    with pytest.raises(ValidationError, match=r"'visitors' column.*expected columns: store_id"):
        load_user_visits(missing)
    wrong = tmp_path / "visits.xlsx"
    wrong.write_text("x")
    with pytest.raises(ValidationError, match=r"use a .csv or .parquet"):
        load_user_visits(wrong)
    with pytest.raises(NotFoundError):
        load_user_visits(tmp_path / "nope.csv")
    with pytest.raises(ValidationError, match=r"2 of 6 timestamp\(s\) could not be parsed.*'soon'"):
        load_user_visits(_frame([*hourly[:4], "soon", "never"]))
    mixed = _frame([*hourly, "2025-03-01", "2025-03-02", "2025-03-03", "2025-03-04"], [1] * 6 + [2] * 4)
    with pytest.raises(ValidationError, match=r"mixed frequencies.*store 1 is hourly; store 2 is daily"):
        load_user_visits(mixed)
    with pytest.raises(ValidationError, match="not on the hour"):
        load_user_visits(_frame([*hourly, "2025-03-03 15:30", "2025-03-03 16:00"]))
    with pytest.raises(ValidationError, match="not hourly, daily, weekly or monthly"):
        load_user_visits(_frame(["2025-03-01", "2025-03-04", "2025-03-07", "2025-03-10"]))
    with pytest.raises(ValidationError, match="mixed steps"):
        load_user_visits(
            _frame(["2025-03-01 00:00", "2025-03-01 01:00", "2025-03-02 00:00", "2025-03-03 00:00"])
        )
    with pytest.raises(ValidationError, match="freq='D' was given but the data is hourly"):
        load_user_visits(_frame(hourly), freq="D")
    with pytest.raises(ValidationError, match="mixed weekdays"):
        load_user_visits(_frame(["2025-03-03", "2025-03-10", "2025-03-17", "2025-03-25"]))
    with pytest.raises(ValidationError, match="first or last day of a month"):
        load_user_visits(_frame(["2025-01-15", "2025-02-15", "2025-03-15"]))
    with pytest.raises(ValidationError, match=r"store_id.*'S1'"):
        load_user_visits(_frame(hourly).assign(store_id="S1"))
    with pytest.raises(ValidationError, match="freq="):
        load_user_visits(_frame(["2025-03-03"]))
    assert load_user_visits(_frame(["2025-03-03"]), freq="D")[1] == "D"
    with pytest.raises(ValidationError, match="both 'timestamp' and 'ts'"):
        load_user_visits(_frame(hourly).assign(ts=hourly))
    with pytest.raises(ValidationError, match="no rows"):
        load_user_visits(_frame(hourly).iloc[:0])
    with pytest.raises(ValidationError, match="CSV/Parquet path or a DataFrame"):
        load_user_visits(42)
    with pytest.raises(ValidationError, match=r"freq=.*use h"):
        load_user_visits(_frame(hourly), freq="5min")


def test_user_loader_leaves_bad_rows_to_the_contract(lm_sqlite) -> None:
    days = [f"2025-03-{d:02d}" for d in range(1, 11)]
    raw = _frame(days)
    raw["visitors"] = raw["visitors"].astype(object)
    raw.loc[2, "visitors"] = -4
    raw.loc[5, "visitors"] = "lots"
    frame, freq = load_user_visits(raw)
    assert freq == "D" and len(frame) == 10
    contract = VISITS.__class__.from_dict({**VISITS.to_dict(), "max_bad_share": 0.5})
    result = lm_sqlite.datasets.ingest("user_visits", frame, contract=contract)
    assert result.rows_quarantined == 2


def test_default_stores_marks_silent_stores_closed() -> None:
    days = pd.date_range("2025-01-01", "2025-04-30", freq="D")
    frame = pd.DataFrame(
        {
            "store_id": [1] * len(days) + [2] * 40,
            "ts": list(days) + list(days[:40]),
            "visitors": 10.0,
        }
    )
    stores = default_stores_for(frame)
    closed = stores.set_index("store_id")["closed_on"]
    assert pd.isna(closed[1]) and closed[2] == days[40]
    assert (stores["open_hour"] == 10).all() and (stores["close_hour"] == 22).all()
    with pytest.raises(ValidationError, match="no visits"):
        default_stores_for(frame.iloc[:0])
