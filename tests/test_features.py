"""Feature store: definitions and versions, point-in-time correctness under adversarial timing, bad input."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from loopml import Loopml
from loopml.errors import ConfigError, ConflictError, NotFoundError, ValidationError
from loopml.features import Entity, FeatureStore, FeatureView, OnDemandFeature, ParquetSource, SqlSource

USER = Entity("user", join_key="user_id")


def ts(*values: str) -> pd.Series:
    return pd.Series(pd.to_datetime(list(values), utc=True, format="ISO8601"))


def clicks_frame() -> pd.DataFrame:
    # Out of order on purpose; user 1 has two rows at the same instant (the later row must win).
    return pd.DataFrame(
        {
            "user_id": [1, 2, 1, 1, 1, 3],
            "event_ts": ts(
                "2024-01-03T00:00",
                "2024-01-02T00:00",
                "2024-01-01T00:00",
                "2024-01-03T00:00",
                "2024-01-05T00:00",
                "2024-01-01T00:00",
            ),
            "clicks": [2, 5, 1, 3, 7, 4],
            "ctr": [np.nan, 0.5, 0.1, 0.3, 0.7, None],
        }
    )


def stats_view(source: object = None, **kw: object) -> FeatureView:
    return FeatureView(
        "user_stats",
        entity=USER,
        features={"clicks": "int", "ctr": "float"},
        source=clicks_frame() if source is None else source,
        ttl=kw.pop("ttl", timedelta(days=1)),
        **kw,
    )


def store(lm: Loopml) -> FeatureStore:
    fs = lm.features
    fs.register(USER, stats_view())
    return fs


def test_point_in_time_join_never_leaks_the_future(lm: Loopml) -> None:
    fs = store(lm)
    entities = pd.DataFrame(
        {
            "user_id": [1, 1, 1, 1, 2, 3, 9, 1, 2],
            "event_ts": ts(
                "2023-12-31T23:59:59",  # before any value
                "2024-01-01T00:00",  # equal timestamp: the value is visible
                "2024-01-02T00:00",  # exactly TTL old: still visible (the boundary is inclusive)
                "2024-01-03T00:00",  # two rows at this instant: the later-written one
                "2024-01-03T00:00:00.000001",  # value from 1 day + 1 us ago: expired by TTL
                "2024-01-01T12:00",  # value with a missing feature stays missing
                "2024-01-05T00:00",  # unknown entity
                "2024-01-04T12:00",  # 7 at 01-05 is in the future; 3 at 01-03 is 1.5 days old: expired
                "2024-01-01T23:59:59.999999",  # user 2's value arrives a microsecond later: not visible
            ),
            "label": [0, 1, 0, 1, 0, 1, 0, 1, 0],
        }
    )
    out = fs.training_frame(entities, ["user_stats:clicks", "user_stats:ctr"])
    assert list(out.columns) == ["user_id", "event_ts", "label", "clicks", "ctr"]
    assert out["label"].tolist() == entities["label"].tolist(), "row order must be kept"
    clicks = [None if pd.isna(v) else int(v) for v in out["clicks"]]
    assert clicks == [None, 1, 1, 3, None, 4, None, None, None]
    assert out["ctr"].iloc[3] == pytest.approx(0.3)
    assert pd.isna(out["ctr"].iloc[5])


def test_late_arriving_push_is_seen_offline_by_event_time(lm: Loopml) -> None:
    fs = store(lm)
    # Arrives after everything else but describes 2024-01-02 12:00 for user 1.
    fs.push(
        "user_stats",
        pd.DataFrame({"user_id": [1], "event_ts": ts("2024-01-02T12:00"), "clicks": [42], "ctr": [0.42]}),
    )
    entities = pd.DataFrame(
        {"user_id": [1, 1, 1], "event_ts": ts("2024-01-01T23:00", "2024-01-02T12:00", "2024-01-03T00:00")}
    )
    out = fs.training_frame(entities, ["user_stats:clicks"])
    assert [None if pd.isna(v) else int(v) for v in out["clicks"]] == [1, 42, 3]


def test_no_ttl_keeps_old_values_and_star_selects_all(lm: Loopml) -> None:
    fs = lm.features
    forever = FeatureView(
        "user_stats_forever", entity=USER, features={"clicks": "int", "ctr": "float"}, source=clicks_frame()
    )
    fs.register(USER, forever)
    out = fs.training_frame(
        pd.DataFrame({"user_id": [2], "event_ts": ts("2030-01-01T00:00")}), ["user_stats_forever:*"]
    )
    assert int(out["clicks"].iloc[0]) == 5 and out["ctr"].iloc[0] == pytest.approx(0.5)


def test_changing_a_definition_makes_a_new_version(lm: Loopml) -> None:
    fs = lm.features
    first = fs.register(USER, stats_view())[1]
    again = fs.register(stats_view())[0]
    assert (first.number, first.created, again.number, again.created) == (1, True, 1, False)
    changed = fs.register(stats_view(ttl=timedelta(days=2)))[0]
    assert changed.number == 2 and changed.created
    assert [v.number for v in fs.versions("user_stats")] == [1, 2]
    # Pinned versions keep their own TTL: 1.5 days old is expired in v1, alive in v2.
    entities = pd.DataFrame({"user_id": [1], "event_ts": ts("2024-01-04T12:00")})
    v1 = fs.training_frame(entities, ["user_stats@1:clicks"])
    v2 = fs.training_frame(entities, ["user_stats:clicks"])
    assert pd.isna(v1["clicks"].iloc[0]) and int(v2["clicks"].iloc[0]) == 3
    info = fs.get_view("user_stats")
    assert info.latest_version == 2 and info.entity == "user" and info.ttl_seconds == 2 * 86400


def test_python_transformation_and_its_schema_errors(lm: Loopml) -> None:
    raw = pd.DataFrame(
        {
            "uid": [1, 1, 2],
            "when": ts("2024-01-01T00:00", "2024-01-02T00:00", "2024-01-01T00:00"),
            "amount": [10.0, 30.0, 5.0],
        }
    )

    def spend(frame: pd.DataFrame) -> pd.DataFrame:
        frame = frame.sort_values("when")
        frame["spend_total"] = frame.groupby("uid")["amount"].cumsum()
        return frame.rename(columns={"uid": "user_id", "when": "event_ts"})

    fs = lm.features
    fs.register(
        USER,
        FeatureView("spend", entity=USER, features={"spend_total": "float"}, source=raw, transform=spend),
    )
    out = fs.training_frame(
        pd.DataFrame({"user_id": [1, 2], "event_ts": ts("2024-01-03T00:00", "2024-01-03T00:00")}),
        ["spend:spend_total"],
    )
    assert out["spend_total"].tolist() == [40.0, 5.0]

    def wrong_type(frame: pd.DataFrame) -> pd.DataFrame:
        out = spend(frame)
        out["spend_total"] = out["spend_total"].astype(str)
        return out

    fs.register(
        FeatureView(
            "spend_bad", entity=USER, features={"spend_total": "float"}, source=raw, transform=wrong_type
        )
    )
    with pytest.raises(ValidationError, match=r"spend_total.*declared float"):
        fs.training_frame(
            pd.DataFrame({"user_id": [1], "event_ts": ts("2024-01-03T00:00")}), ["spend_bad:spend_total"]
        )

    def missing_column(frame: pd.DataFrame) -> pd.DataFrame:
        return spend(frame).drop(columns=["spend_total"])

    fs.register(
        FeatureView(
            "spend_missing",
            entity=USER,
            features={"spend_total": "float"},
            source=raw,
            transform=missing_column,
        )
    )
    with pytest.raises(ValidationError, match=r"missing column.*spend_total"):
        fs.training_frame(
            pd.DataFrame({"user_id": [1], "event_ts": ts("2024-01-03T00:00")}), ["spend_missing:spend_total"]
        )


def test_sql_source_over_parquet_inputs(lm: Loopml, tmp_path: Path) -> None:
    orders = pd.DataFrame(
        {
            "user_id": [1, 1, 2],
            "ts": ts("2024-01-01T00:00", "2024-01-02T00:00", "2024-01-02T00:00"),
            "amount": [1.0, 2.0, 3.0],
        }
    )
    path = tmp_path / "orders.parquet"
    orders.to_parquet(path)
    query = "SELECT user_id, ts AS event_ts, sum(amount) OVER (PARTITION BY user_id ORDER BY ts) AS amount_total FROM orders"
    view = FeatureView(
        "order_totals",
        entity=USER,
        features={"amount_total": "float"},
        source=SqlSource(query, {"orders": ParquetSource(str(path))}),
    )
    fs = lm.features
    fs.register(USER, view)
    out = fs.training_frame(
        pd.DataFrame({"user_id": [1, 2], "event_ts": ts("2024-01-03T00:00", "2024-01-01T00:00")}),
        ["order_totals:amount_total"],
    )
    assert out["amount_total"].iloc[0] == 3.0 and pd.isna(out["amount_total"].iloc[1])


def test_on_demand_feature_offline_uses_request_columns(lm: Loopml) -> None:
    fs = store(lm)

    def ratio(frame: pd.DataFrame) -> pd.DataFrame:
        return pd.DataFrame({"amount_per_click": frame["amount"] / frame["clicks"]})

    odf = OnDemandFeature(
        "txn",
        inputs=["user_stats:clicks"],
        request={"amount": "float"},
        outputs={"amount_per_click": "float"},
        fn=ratio,
    )
    fs.register(odf)
    entities = pd.DataFrame({"user_id": [1], "event_ts": ts("2024-01-03T00:00"), "amount": [30.0]})
    out = fs.training_frame(entities, ["txn:amount_per_click"])
    assert list(out.columns) == ["user_id", "event_ts", "amount", "amount_per_click"]
    assert out["amount_per_click"].iloc[0] == pytest.approx(10.0)
    with pytest.raises(ValidationError, match=r"request field.*amount"):
        fs.training_frame(entities.drop(columns=["amount"]), ["txn:amount_per_click"])


def test_bad_input_gets_clear_errors(lm: Loopml) -> None:
    fs = store(lm)
    good = pd.DataFrame({"user_id": [1], "event_ts": ts("2024-01-03T00:00")})
    with pytest.raises(NotFoundError, match=r"Did you mean: user_stats"):
        fs.training_frame(good, ["user_stat:clicks"])
    with pytest.raises(NotFoundError, match=r"unknown feature 'click'.*Did you mean: clicks"):
        fs.training_frame(good, ["user_stats:click"])
    with pytest.raises(ValidationError, match=r"malformed"):
        fs.training_frame(good, ["clicks"])
    with pytest.raises(ValidationError, match=r"no time column 'event_ts'"):
        fs.training_frame(good.rename(columns={"event_ts": "t"}), ["user_stats:clicks"])
    with pytest.raises(ValidationError, match=r"no key column 'user_id'"):
        fs.training_frame(good.rename(columns={"user_id": "uid"}), ["user_stats:clicks"])
    with pytest.raises(ValidationError, match=r"key column 'user_id' is .*int keys"):
        fs.training_frame(good.assign(user_id=["1"]), ["user_stats:clicks"])
    with pytest.raises(ValidationError, match=r"non-empty list"):
        fs.training_frame(good, "user_stats:clicks")
    with pytest.raises(NotFoundError, match=r"no version 7"):
        fs.training_frame(good, ["user_stats@7:clicks"])
    with pytest.raises(ValidationError, match=r"pandas DataFrame"):
        fs.training_frame([{"user_id": 1}], ["user_stats:clicks"])  # type: ignore[arg-type]


def test_definition_errors() -> None:
    with pytest.raises(ValidationError, match=r"dtype 'float' is not a key type"):
        Entity("user", dtype="float")
    with pytest.raises(ValidationError, match=r"feature 'x' has dtype 'decimal'"):
        FeatureView("v", entity=USER, features={"x": "decimal"})
    with pytest.raises(ValidationError, match=r"not valid"):
        FeatureView("bad name", entity=USER, features={"x": "int"})
    with pytest.raises(ValidationError, match=r"ttl must be positive"):
        FeatureView("v", entity=USER, features={"x": "int"}, ttl=-5)
    with pytest.raises(ValidationError, match=r"key/time columns"):
        FeatureView("v", entity=USER, features={"user_id": "int"})
    with pytest.raises(ValidationError, match=r"source must be"):
        FeatureView("v", entity=USER, features={"x": "int"}, source=42)
    with pytest.raises(ValidationError, match=r"'view:feature' references"):
        OnDemandFeature("o", inputs=["x"], request={}, outputs={"y": "int"}, fn=lambda f: f)


def test_registration_conflicts_and_missing_source(lm: Loopml, tmp_path: Path) -> None:
    fs = lm.features
    fs.register(USER)
    with pytest.raises(ConflictError, match=r"Keys cannot change"):
        fs.register(Entity("user", join_key="uid"))
    with pytest.raises(ValidationError, match=r"register\(\) takes"):
        fs.register("user_stats")  # type: ignore[arg-type]
    fs.register(
        FeatureView(
            "missing_src",
            entity=USER,
            features={"x": "int"},
            source=ParquetSource(str(tmp_path / "nope.parquet")),
        )
    )
    with pytest.raises(NotFoundError, match=r"does not exist"):
        fs.training_frame(
            pd.DataFrame({"user_id": [1], "event_ts": ts("2024-01-01T00:00")}), ["missing_src:x"]
        )
    wrong = tmp_path / "wrong.parquet"
    pd.DataFrame({"user_id": [1], "event_ts": ts("2024-01-01T00:00"), "y": [1]}).to_parquet(wrong)
    fs.register(FeatureView("wrong_cols", entity=USER, features={"x": "int"}, source=str(wrong)))
    with pytest.raises(ValidationError, match=r"lacks column\(s\) \['x'\]"):
        fs.training_frame(
            pd.DataFrame({"user_id": [1], "event_ts": ts("2024-01-01T00:00")}), ["wrong_cols:x"]
        )
    with pytest.raises(ValidationError, match=r"no rows yet"):
        fs.register(FeatureView("push_only", entity=USER, features={"x": "int"}))
        fs.training_frame(pd.DataFrame({"user_id": [1], "event_ts": ts("2024-01-01T00:00")}), ["push_only:x"])


def test_colliding_feature_names_need_full_names(lm: Loopml) -> None:
    fs = store(lm)
    fs.register(FeatureView("user_stats_b", entity=USER, features={"clicks": "int"}, source=clicks_frame()))
    entities = pd.DataFrame({"user_id": [1], "event_ts": ts("2024-01-03T00:00")})
    with pytest.raises(ValidationError, match=r"full_names=True"):
        fs.training_frame(entities, ["user_stats:clicks", "user_stats_b:clicks"])
    out = fs.training_frame(entities, ["user_stats:clicks", "user_stats_b:clicks"], full_names=True)
    assert {"user_stats__clicks", "user_stats_b__clicks"} <= set(out.columns)


def test_transform_code_is_needed_in_process(lm: Loopml) -> None:
    fs = lm.features
    fs.register(
        USER,
        FeatureView(
            "lam", entity=USER, features={"clicks": "int"}, source=clicks_frame(), transform=lambda f: f
        ),
    )
    other = FeatureStore(lm.ctx)  # a fresh process would not have the lambda
    with pytest.raises(ConfigError, match=r"not available in this process"):
        other.training_frame(
            pd.DataFrame({"user_id": [1], "event_ts": ts("2024-01-03T00:00")}), ["lam:clicks"]
        )


def test_dataset_source_follows_new_versions(lm: Loopml) -> None:
    from loopml.data import Column, Contract
    from loopml.features import DatasetSource

    contract = Contract(
        columns=[Column("user_id", "int"), Column("event_ts", "datetime"), Column("clicks", "int")]
    )
    first = pd.DataFrame(
        {"user_id": [1, 2], "event_ts": ts("2024-01-01T00:00", "2024-01-01T00:00"), "clicks": [1, 2]}
    )
    lm.datasets.ingest("clicks", first, contract=contract)
    fs = lm.features
    fs.register(
        USER,
        FeatureView("ds_clicks", entity=USER, features={"clicks": "int"}, source=DatasetSource("clicks")),
    )
    entities = pd.DataFrame({"user_id": [1], "event_ts": ts("2024-01-03T00:00")})
    assert fs.training_frame(entities, ["ds_clicks:clicks"])["clicks"].tolist() == [1]
    second = pd.concat(
        [first, pd.DataFrame({"user_id": [1], "event_ts": ts("2024-01-02T00:00"), "clicks": [5]})],
        ignore_index=True,
    )
    lm.datasets.ingest("clicks", second)
    assert fs.training_frame(entities, ["ds_clicks:clicks"])["clicks"].tolist() == [5]
    fs.register(
        FeatureView("ds_missing", entity=USER, features={"clicks": "int"}, source=DatasetSource("nope"))
    )
    with pytest.raises(NotFoundError, match="nope"):
        fs.training_frame(entities, ["ds_missing:clicks"])
    from loopml.storage.metadata import features as q

    expected = lm.datasets.version("clicks", 1).id
    with lm.ctx.db.session() as s:
        row = q.get_version(s, q.get_view(s, "ds_clicks").id, 1)
        assert row.source_version_id == expected
