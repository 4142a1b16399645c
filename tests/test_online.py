"""Online store and serving: materialisation, pushes, offline/online agreement, skew checks, on SQLite and Redis."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest

from loopml import Loopml
from loopml.errors import BackendUnavailableError, ConfigError, NotFoundError, ValidationError
from loopml.features import Entity, FeatureStore, FeatureView, OnDemandFeature, materialize_step
from loopml.storage.online import OnlineStore, open_online_store
from services import REDIS_URL, need_redis

USER = Entity("user", join_key="user_id")
NOW = datetime.now(UTC).replace(microsecond=0)


@pytest.fixture(params=["sqlite", pytest.param("redis", marks=pytest.mark.redis)])
def online(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[OnlineStore]:
    """An empty online store: embedded SQLite, then Redis (db 15, a unique key prefix per test)."""
    if request.param == "sqlite":
        store = open_online_store(f"sqlite:///{tmp_path / 'online.db'}")
        yield store
        store.close()
        return
    need_redis()
    store = open_online_store(f"{REDIS_URL}?prefix=lmtest-{uuid.uuid4().hex[:10]}:")
    yield store
    for table in ("t", "user_stats@1", "user_stats@2", "orders@1"):
        store.drop(table)
    store.close()


def recent(hours_ago: float) -> pd.Timestamp:
    return pd.Timestamp(NOW - timedelta(hours=hours_ago))


def recent_frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "user_id": [1, 2, 1, 3, 2, 1],
            "event_ts": [recent(5), recent(4), recent(2), recent(50), recent(1), recent(2)],
            "clicks": [1, 5, 2, 9, 6, 3],
            "ctr": [0.1, 0.5, None, 0.9, 0.6, 0.3],
            "segment": ["a", "b", "a", "c", "b", "z"],
        }
    )


def feature_store(lm: Loopml, online: OnlineStore) -> FeatureStore:
    fs = FeatureStore(lm.ctx, online=online)
    view = FeatureView(
        "user_stats",
        entity=USER,
        features={"clicks": "int", "ctr": "float", "segment": "str"},
        source=recent_frame(),
        ttl=timedelta(days=1),
    )
    fs.register(USER, view)
    return fs


FEATURES = ["user_stats:clicks", "user_stats:ctr", "user_stats:segment"]


# -- the store itself ---------------------------------------------------------------------------------


def test_online_store_keeps_the_newest_event_and_reads_in_order(online: OnlineStore) -> None:
    assert online.write("t", [("a", 10.0, b'{"x":1}'), ("b", 10.0, b'{"x":2}')], written_at=100.0) == 2
    online.write("t", [("a", 5.0, b'{"x":"old"}')])  # late, older event: ignored
    online.write("t", [("b", 10.0, b'{"x":3}')])  # same event time: the later write wins
    got = online.read("t", ["b", "zz", "a"])
    assert got[1] is None
    assert (got[0].value, got[2].value, got[2].event_ts, got[2].written_at) == (
        b'{"x":3}',
        b'{"x":1}',
        10.0,
        100.0,
    )
    assert online.read_many([("t", ["a"]), ("other", ["a"])])[1] == [None]
    assert online.count("t") == 2 and sorted(online.sample_keys("t", 10)) == ["a", "b"]
    assert online.drop("t") == 2 and online.read("t", ["a"]) == [None]
    assert online.check().startswith("ok")


def test_unreachable_redis_and_bad_urls_fail_clearly() -> None:
    with pytest.raises(BackendUnavailableError, match=r"unreachable.*on_unavailable='missing'"):
        open_online_store("redis://127.0.0.1:1/0")
    with pytest.raises(ConfigError, match=r"sqlite:///path.db or redis://"):
        open_online_store("memcached://x")


# -- materialise, serve, agree --------------------------------------------------------------------------


def test_online_values_equal_offline_values_at_the_same_time(lm: Loopml, online: OnlineStore) -> None:
    fs = feature_store(lm, online)
    [result] = fs.materialize(chunk_rows=1)
    assert (result.status, result.rows_written, result.chunks) == (
        "succeeded",
        2,
        2,
    )  # user 3 is past its TTL
    got = fs.online_features({"user_id": [1, 2, 3, 4]}, FEATURES)
    assert got.values == {
        "clicks": [3, 6, None, None],
        "ctr": [0.3, 0.6, None, None],
        "segment": ["z", "b", None, None],
    }
    ages = got.age_seconds["user_stats"]
    assert ages[0] == pytest.approx((datetime.now(UTC) - recent(2)).total_seconds(), abs=5)
    assert ages[2] is None and ages[3] is None  # never materialised (expired) / unknown
    offline = fs.training_frame(
        pd.DataFrame({"user_id": [1, 2, 3, 4], "event_ts": [pd.Timestamp.now(tz="UTC")] * 4}), FEATURES
    )
    for col in ("clicks", "ctr", "segment"):
        assert [None if pd.isna(v) else v for v in offline[col]] == got.values[col]
    report = fs.check(sample=10)
    assert report.ok and report.views[0].features[0].compared == 2
    assert got.rows()[0] == {"user_id": 1, "clicks": 3, "ctr": 0.3, "segment": "z"}


def test_materialisation_is_incremental_and_pushes_land_on_both_sides(
    lm: Loopml, online: OnlineStore
) -> None:
    fs = feature_store(lm, online)
    fs.materialize()
    [again] = fs.materialize()
    assert again.status == "skipped"
    pushed = fs.push(
        "user_stats",
        pd.DataFrame(
            {
                "user_id": [1, 4],
                "event_ts": [recent(0.5), recent(0.5)],
                "clicks": [11, 40],
                "ctr": [0.11, None],
                "segment": ["p", "q"],
            }
        ),
    )
    assert (pushed.rows, pushed.online_rows) == (2, 2)
    # A late-arriving row for user 1 (older event) must not replace the newer online value.
    fs.push(
        "user_stats",
        pd.DataFrame(
            {"user_id": [1], "event_ts": [recent(3)], "clicks": [-1], "ctr": [0.0], "segment": ["late"]}
        ),
    )
    got = fs.online_features([{"user_id": 1}, {"user_id": 4}], ["user_stats:clicks"])
    assert got.values["clicks"] == [11, 40]
    offline = fs.training_frame(
        pd.DataFrame({"user_id": [1, 1], "event_ts": [recent(0.25), recent(2.5)]}), ["user_stats:clicks"]
    )
    assert offline["clicks"].tolist() == [11, -1]
    assert fs.check(sample=10).ok
    # The next run reads only the two new push segments.
    [inc] = fs.materialize()
    assert (
        inc.status == "succeeded" and inc.rows_written == 2 and inc.last_segment_id == pushed.segment_id + 1
    )
    assert fs.materialize()[0].status == "skipped"
    assert fs.materialize(full=True)[0].rows_written == 3


def test_incremental_run_picks_up_new_source_rows(lm: Loopml, online: OnlineStore, tmp_path: Path) -> None:
    path = tmp_path / "orders.parquet"
    pd.DataFrame({"user_id": [1, 2], "event_ts": [recent(3), recent(3)], "amount": [1.0, 2.0]}).to_parquet(
        path
    )
    fs = FeatureStore(lm.ctx, online=online)
    fs.register(USER, FeatureView("orders", entity=USER, features={"amount": "float"}, source=str(path)))
    assert fs.materialize("orders")[0].rows_written == 2
    pd.DataFrame(
        {"user_id": [1, 2, 3], "event_ts": [recent(3), recent(1), recent(1)], "amount": [1.0, 20.0, 30.0]}
    ).to_parquet(path)
    [inc] = fs.materialize("orders")
    assert inc.rows_written == 2  # only rows after the watermark
    assert fs.online_features({"user_id": [1, 2, 3]}, ["orders:amount"]).values["amount"] == [1.0, 20.0, 30.0]


def test_check_reports_skew_and_missing_keys(lm: Loopml, online: OnlineStore) -> None:
    fs = feature_store(lm, online)
    fs.materialize()
    # A writer that bypassed the feature store: same event time, different value.
    stored = online.read("user_stats@1", ["2"])[0]
    online.write("user_stats@1", [("2", stored.event_ts, b'{"clicks": 999, "ctr": 0.6, "segment": "b"}')])
    report = fs.check(sample=10)
    clicks = next(f for f in report.views[0].features if f.feature == "clicks")
    assert not report.ok and clicks.mismatches == 1
    assert clicks.examples == [{"key": 2, "online": 999, "offline": 6}]
    online.drop("user_stats@1")
    report = fs.check(sample=10)
    assert report.views[0].missing_online == 2


def test_ttl_expires_online_values_but_reports_their_age(lm: Loopml, online: OnlineStore) -> None:
    fs = FeatureStore(lm.ctx, online=online)
    fs.register(USER, FeatureView("user_stats", entity=USER, features={"clicks": "int"}, ttl=60))
    now = datetime.now(UTC)  # not the module's NOW: the suite may run for minutes before this test
    hour_ago = pd.Timestamp(now - timedelta(hours=1))
    fs.push(
        "user_stats",
        pd.DataFrame({"user_id": [1, 2], "event_ts": [hour_ago, pd.Timestamp(now)], "clicks": [1, 2]}),
    )
    got = fs.online_features({"user_id": [1, 2]}, ["user_stats:clicks"])
    assert got.values["clicks"] == [None, 2]
    expected_age = (datetime.now(UTC) - hour_ago).total_seconds()
    assert got.age_seconds["user_stats"][0] == pytest.approx(expected_age, abs=5)


def test_on_demand_features_match_offline_and_online(lm: Loopml, online: OnlineStore) -> None:
    fs = feature_store(lm, online)

    def per_click(frame: pd.DataFrame) -> pd.DataFrame:
        return pd.DataFrame(
            {"amount_per_click": frame["amount"] / frame["clicks"], "big": frame["amount"] > 10}
        )

    fs.register(
        OnDemandFeature(
            "txn",
            inputs=["user_stats:clicks"],
            request={"amount": "float"},
            outputs={"amount_per_click": "float", "big": "bool"},
            fn=per_click,
        )
    )
    fs.materialize()
    got = fs.online_features({"user_id": [1, 2]}, ["txn:*"], request={"amount": [30.0, 3.0]})
    offline = fs.training_frame(
        pd.DataFrame(
            {"user_id": [1, 2], "event_ts": [pd.Timestamp.now(tz="UTC")] * 2, "amount": [30.0, 3.0]}
        ),
        ["txn:*"],
    )
    assert got.values["amount_per_click"] == offline["amount_per_click"].tolist() == [10.0, 0.5]
    assert got.values["big"] == offline["big"].tolist() == [True, False]
    with pytest.raises(ValidationError, match=r"request field.*amount"):
        fs.online_features({"user_id": [1]}, ["txn:amount_per_click"])
    with pytest.raises(ValidationError, match=r"2 values for 1 keys"):
        fs.online_features({"user_id": [1]}, ["txn:big"], request={"amount": [1.0, 2.0]})


def test_online_bad_input(lm: Loopml, online: OnlineStore) -> None:
    fs = feature_store(lm, online)
    with pytest.raises(ValidationError, match=r"key user_id='1' is str; entity 'user' has int keys"):
        fs.online_features({"user_id": ["1"]}, FEATURES)
    with pytest.raises(ValidationError, match=r"key user_id=True is bool"):
        fs.online_features({"user_id": [True]}, FEATURES)
    with pytest.raises(ValidationError, match=r"no 'user_id' column"):
        fs.online_features({"uid": [1]}, FEATURES)
    with pytest.raises(NotFoundError, match=r"Did you mean: clicks"):
        fs.online_features({"user_id": [1]}, ["user_stats:clickz"])
    with pytest.raises(ValidationError, match=r"keys is empty"):
        fs.online_features({"user_id": []}, FEATURES)
    with pytest.raises(ValidationError, match=r"different lengths"):
        fs.online_features({"user_id": [1], "other": [1, 2]}, FEATURES)
    with pytest.raises(ValidationError, match=r"on_unavailable='fail'"):
        fs.online_features({"user_id": [1]}, FEATURES, on_unavailable="fail")
    with pytest.raises(ValidationError, match=r"missing column.*segment"):
        fs.push(
            "user_stats", pd.DataFrame({"user_id": [1], "event_ts": [recent(0)], "clicks": [1], "ctr": [0.1]})
        )
    with pytest.raises(ValidationError, match=r"'clicks' is .* but declared int"):
        fs.push(
            "user_stats",
            pd.DataFrame(
                {"user_id": [1], "event_ts": [recent(0)], "clicks": ["x"], "ctr": [0.1], "segment": ["a"]}
            ),
        )
    with pytest.raises(NotFoundError, match=r"unknown feature view 'nope'"):
        fs.push("nope", pd.DataFrame())
    with pytest.raises(NotFoundError, match=r"unknown feature view 'nope'"):
        fs.materialize("nope")
    with pytest.raises(ValidationError, match=r"chunk_rows must be a positive integer"):
        fs.materialize(chunk_rows=0)


def test_serving_falls_back_when_the_online_store_is_down(lm: Loopml, online: OnlineStore) -> None:
    fs = feature_store(lm, online)

    class Down(type(online)):  # type: ignore[misc]
        def read_many(self, requests):  # type: ignore[no-untyped-def]
            raise BackendUnavailableError("online store down")

        def write(self, table, rows, *, written_at=None):  # type: ignore[no-untyped-def]
            raise BackendUnavailableError("online store down")

    online.__class__ = Down
    with pytest.raises(BackendUnavailableError):
        fs.online_features({"user_id": [1]}, FEATURES)
    got = fs.online_features({"user_id": [1, 2]}, FEATURES, on_unavailable="missing")
    assert got.degraded and got.values["clicks"] == [None, None]
    with pytest.raises(BackendUnavailableError, match=r"appended to the offline log"):
        fs.push(
            "user_stats",
            pd.DataFrame(
                {"user_id": [7], "event_ts": [recent(0)], "clicks": [7], "ctr": [0.7], "segment": ["s"]}
            ),
        )
    offline = fs.training_frame(
        pd.DataFrame({"user_id": [7], "event_ts": [pd.Timestamp.now(tz="UTC")]}), ["user_stats:clicks"]
    )
    assert offline["clicks"].tolist() == [7]


def test_stats_audit_summary_and_pipeline_step(lm: Loopml, online: OnlineStore) -> None:
    fs = feature_store(lm, online)
    assert fs.stats("user_stats") is None
    stats = fs.compute_stats("user_stats")
    feats = stats.stats["features"]
    assert stats.stats["rows"] == 6 and stats.stats["entities"] == 3
    assert feats["clicks"]["max"] == 9 and sum(feats["clicks"]["histogram"]["counts"]) == 6
    assert feats["ctr"]["nulls"] == 1 and feats["segment"]["top"]["b"] == 2
    assert fs.stats("user_stats").stats == stats.stats
    audit = fs.audit({"fraud/1": ["clicks", "amount"], "fraud/2": ["user_stats__ctr"]})
    assert audit.used == ["user_stats:clicks", "user_stats:ctr"] and audit.unused == ["user_stats:segment"]
    assert audit.unused_share == pytest.approx(1 / 3)
    with pytest.raises(ValidationError, match=r"signatures must be a dict"):
        fs.audit(["clicks"])  # type: ignore[arg-type]
    fs.materialize()
    [row] = fs.summary()
    assert row["name"] == "user_stats" and row["latest_version"] == 1 and row["stats"]["rows"] == 6
    assert row["freshness"]["last_materialised_at"] is not None and row["materialisations"][0]["rows"] == 2


def test_materialize_step_for_pipelines(lm: Loopml) -> None:
    fs = lm.features
    fs.register(
        USER, FeatureView("user_stats", entity=USER, features={"clicks": "int"}, source=recent_frame())
    )
    out = materialize_step(lm.ctx)
    assert out["rows_written"] == 3 and out["views"][0]["status"] == "succeeded"
    assert fs.online_features({"user_id": [3]}, ["user_stats:clicks"]).values["clicks"] == [9]


def test_materialisation_runs_as_the_builtin_pipeline(lm: Loopml) -> None:
    """`loopml run features.materialize` (and the scheduler) keep the settings' online store fresh."""
    fs = lm.features
    fs.register(
        USER,
        FeatureView(
            "user_stats",
            entity=USER,
            features={"clicks": "int", "ctr": "float", "segment": "str"},
            source=recent_frame(),
            ttl=timedelta(days=1),
        ),
    )
    run = lm.pipelines.run("features.materialize")
    assert run.status == "succeeded", run
    summary = lm.pipelines.output(run.id, "materialize")
    assert summary["rows_written"] == 2
    assert fs.online_features({"user_id": [1]}, FEATURES).values["clicks"] == [3]
