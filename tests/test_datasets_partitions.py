"""Partitioned datasets: daily deliveries as partitions of immutable, content-addressed manifest versions."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from loopml import Loopml
from loopml.data import Column, Contract, IngestRefusedError, PartitionInfo
from loopml.errors import NotFoundError, ValidationError

DAYS = 12
PER_DAY = 30
VISITS = Contract(
    columns=[
        Column("store_id", "int", min=1),
        Column("ts", "datetime"),
        Column("visitors", "float", min=0, max=1e6),
    ],
    freshness_column="ts",
    max_bad_share=0.2,
)


def visits(days: int = DAYS, *, start: str = "2026-11-01", seed: int = 0) -> pd.DataFrame:
    """Hourly-ish rows, shuffled so a partition's rows are not contiguous in the input."""
    rng = np.random.default_rng(seed)
    n = days * PER_DAY
    ts = pd.Timestamp(start) + pd.to_timedelta(np.repeat(np.arange(days), PER_DAY), "D")
    ts = ts + pd.to_timedelta(np.tile(np.arange(PER_DAY) % 24, days), "h")
    frame = pd.DataFrame(
        {"store_id": np.tile(np.arange(1, PER_DAY + 1), days), "ts": ts, "visitors": rng.gamma(2.0, 10.0, n)}
    )
    return frame.sample(frac=1.0, random_state=seed).reset_index(drop=True)


def day_keys(days: int = DAYS, start: str = "2026-11-01") -> list[str]:
    return [d.date().isoformat() for d in pd.date_range(start, periods=days, freq="D")]


@pytest.fixture
def loaded(lm: Loopml) -> tuple[Loopml, pd.DataFrame]:
    frame = visits()
    lm.datasets.define("visits", VISITS)
    lm.datasets.ingest("visits", frame, partition_by="ts")
    return lm, frame


def test_bulk_partition_by_ingest_writes_one_version_with_a_partition_per_day(lm: Loopml) -> None:
    frame = visits()
    frame.loc[3, "visitors"] = -5.0  # one hostile row: quarantined, the rest of its day kept
    lm.datasets.define("visits", VISITS)
    result = lm.datasets.ingest("visits", frame, partition_by="ts")
    v = result.version
    assert result.created and v.number == 1 and v.partitioned
    assert (v.partition_count, v.row_count, result.rows_quarantined) == (DAYS, DAYS * PER_DAY - 1, 1)
    assert v.partitions_delivered == day_keys()
    assert result.report.partitions == day_keys() and result.report.partition_count == DAYS
    assert "partitions: 12 (2026-11-01 .. 2026-11-12); the version has 12" in result.report.render()
    assert len(lm.datasets.versions("visits")) == 1  # one transaction, one version
    parts = lm.datasets.partitions("visits")
    assert all(isinstance(p, PartitionInfo) for p in parts)
    assert [p.key for p in parts] == day_keys()
    assert sum(p.rows for p in parts) == v.row_count and len({p.digest for p in parts}) == DAYS
    assert parts[0].to_dict()["key"] == "2026-11-01"
    assert lm.datasets.get("visits").partitioned and lm.datasets.get("visits").to_dict()["partitioned"]
    out = lm.datasets.read("visits")
    # Partition key order, and input order within a partition.
    good = frame.drop(index=3)
    expected = good.assign(day=good["ts"].dt.normalize()).sort_values("day", kind="stable")
    assert out["visitors"].tolist() == expected["visitors"].tolist()
    assert list(out.columns) == ["store_id", "ts", "visitors"] and str(out["ts"].dt.tz) == "UTC"
    assert v.stats["visitors"]["count"] == DAYS * PER_DAY - 1
    assert v.to_dict()["partition_count"] == DAYS


def test_single_partition_reingest_replaces_only_that_partition(
    loaded: tuple[Loopml, pd.DataFrame],
) -> None:
    lm, frame = loaded
    before = {p.key: p for p in lm.datasets.partitions("visits")}
    day = frame[frame["ts"].dt.normalize() == pd.Timestamp("2026-11-05")].copy()
    day["visitors"] = day["visitors"] + 1.0
    day = day.iloc[:-2]  # the corrected delivery has two rows fewer
    result = lm.datasets.ingest("visits", day, partition="2026-11-05")
    v = result.version
    assert result.created and v.number == 2 and v.partitions_delivered == ["2026-11-05"]
    assert v.row_count == DAYS * PER_DAY - 2 and v.partition_count == DAYS
    assert v.stats["visitors"]["count"] == PER_DAY - 2  # stats cover the delivered rows only
    after = {p.key: p for p in lm.datasets.partitions("visits")}
    changed = [k for k in after if after[k].digest != before[k].digest]
    assert changed == ["2026-11-05"]
    got = lm.datasets.read("visits", partitions=["2026-11-05"])
    assert got["visitors"].tolist() == pytest.approx(day["visitors"].tolist())
    diff = lm.datasets.diff("visits", 1, 2)
    assert diff.partitions == {"added": [], "removed": [], "changed": ["2026-11-05"]}
    assert diff.row_change == -2 and diff.to_dict()["partitions"]["changed"] == ["2026-11-05"]
    # A new day adds a partition and keeps the rest.
    new_day = visits(1, start="2026-11-13", seed=3)
    added = lm.datasets.ingest("visits", new_day, partition_by="ts").version
    assert added.partition_count == DAYS + 1 and added.row_count == v.row_count + PER_DAY
    assert lm.datasets.diff("visits", 2, 3).partitions["added"] == ["2026-11-13"]


def test_identical_reingest_makes_no_new_version(loaded: tuple[Loopml, pd.DataFrame]) -> None:
    lm, frame = loaded
    again = lm.datasets.ingest("visits", frame, partition_by="ts")
    assert not again.created and again.version.number == 1
    one_day = frame[frame["ts"].dt.normalize() == pd.Timestamp("2026-11-02")]
    same = lm.datasets.ingest("visits", one_day, partition="2026-11-02")
    assert not same.created and same.version.number == 1
    assert "unchanged" in same.report.render()
    assert [v.number for v in lm.datasets.versions("visits")] == [1]


def test_read_with_partition_filter_and_its_errors(loaded: tuple[Loopml, pd.DataFrame]) -> None:
    lm, _ = loaded
    two = lm.datasets.read("visits", columns=["ts"], partitions=["2026-11-07", "2026-11-03", "2026-11-03"])
    assert len(two) == 2 * PER_DAY and list(two.columns) == ["ts"]
    assert two["ts"].dt.strftime("%Y-%m-%d").drop_duplicates().tolist() == ["2026-11-03", "2026-11-07"]
    with pytest.raises(NotFoundError, match=r"no partition '2026-11-31'.*Did you mean") as err:
        lm.datasets.read("visits", partitions=["2026-11-31"])
    assert err.value.field == "partitions"
    with pytest.raises(ValidationError, match="list of partition keys"):
        lm.datasets.read("visits", partitions="2026-11-03")  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="at least one partition"):
        lm.datasets.read("visits", partitions=[])
    with pytest.raises(ValidationError, match="not a valid partition key"):
        lm.datasets.read("visits", partitions=["../etc"])
    with pytest.raises(ValidationError, match="unknown column"):
        lm.datasets.read("visits", columns=["nope"], partitions=["2026-11-03"])
    uris = lm.datasets.parquet_uris("visits", partitions=["2026-11-03"])
    assert len(uris) == 1 and Path(uris[0]).is_file() and len(lm.datasets.parquet_uris("visits")) == DAYS
    with pytest.raises(ValidationError, match=r"parquet_uris\('visits', 1\)"):
        lm.datasets.parquet_uri("visits")


def test_quarantine_per_partition_and_rows_without_a_key(lm: Loopml) -> None:
    contract = Contract(
        columns=[Column("store_id", "int", min=1), Column("region", "str", nullable=True)],
        max_bad_share=0.5,
    )
    lm.datasets.define("stores", contract)
    frame = pd.DataFrame(
        {"store_id": [1, 2, 0, 4, 5, 6], "region": ["north", "south", "north", None, "we st", "south"]}
    )
    result = lm.datasets.ingest("stores", frame, partition_by="region")
    assert [p.key for p in lm.datasets.partitions("stores")] == ["north", "south"]
    assert result.rows_quarantined == 3
    checks = {c.check: c.rows for c in result.report.checks}
    assert checks == {"partition_key": 2, "greater_than_or_equal_to(1)": 1}
    bad = lm.datasets.quarantine("stores", version=1)
    assert sorted(bad["row_index"]) == [2, 3, 4]
    assert set(bad["checks"]) == {"region: partition_key", "store_id: greater_than_or_equal_to(1)"}
    # A later delivery of one partition records its own quarantined rows against its own version.
    later = lm.datasets.ingest(
        "stores", pd.DataFrame({"store_id": [7, -1], "region": ["east", "east"]}), partition="east"
    )
    assert later.version.number == 2 and later.rows_quarantined == 1
    assert lm.datasets.quarantine("stores", version=2)["row_index"].tolist() == [1]
    # Too many bad rows refuse the ingest and keep the rows; no version is made.
    with pytest.raises(IngestRefusedError):
        lm.datasets.ingest(
            "stores", pd.DataFrame({"store_id": [-1, -2, 3], "region": ["x"] * 3}), partition="x"
        )
    assert lm.datasets.version("stores").number == 2


@pytest.mark.parametrize(
    ("kwargs", "field", "message"),
    [
        ({"partition": ""}, "partition", "not a valid partition key"),
        ({"partition": "2026/11/29"}, "partition", "not a valid partition key"),
        ({"partition": "x" * 65}, "partition", "not a valid partition key"),
        ({"partition": 20261129}, "partition", "a partition key is a string"),
        ({"partition": "a", "partition_by": "ts"}, "partition", "not both"),
        ({"partition_by": "nope"}, "partition_by", "name a contract column"),
        ({"partition_by": "visitors"}, "partition_by", "is a float column"),
    ],
)
def test_bad_partition_arguments_are_refused(lm: Loopml, kwargs: dict, field: str, message: str) -> None:
    lm.datasets.define("visits", VISITS)
    with pytest.raises(ValidationError, match=message) as err:
        lm.datasets.ingest("visits", visits(1), **kwargs)
    assert err.value.field == field
    assert lm.datasets.versions("visits") == []


def test_plain_and_partitioned_ingests_cannot_be_mixed(lm: Loopml) -> None:
    lm.datasets.define("plain", VISITS)
    lm.datasets.ingest("plain", visits(2))
    with pytest.raises(ValidationError, match="plain \\(unpartitioned\\) versions") as err:
        lm.datasets.ingest("plain", visits(1), partition_by="ts")
    assert err.value.field == "partition_by"
    with pytest.raises(ValidationError, match="not partitioned") as err:
        lm.datasets.partitions("plain")
    with pytest.raises(ValidationError, match="not partitioned"):
        lm.datasets.read("plain", partitions=["2026-11-01"])
    assert "partition_count" not in lm.datasets.version("plain").to_dict()
    assert "partitioned" not in lm.datasets.get("plain").to_dict()
    lm.datasets.define("daily", VISITS)
    lm.datasets.ingest("daily", visits(1), partition="2026-11-01")
    with pytest.raises(ValidationError, match="is partitioned") as err:
        lm.datasets.ingest("daily", visits(1))
    assert err.value.field == "partition"


def test_sql_sees_the_union_of_partitions_and_old_versions(loaded: tuple[Loopml, pd.DataFrame]) -> None:
    lm, frame = loaded
    replacement = frame[frame["ts"].dt.normalize() == pd.Timestamp("2026-11-01")].iloc[:5]
    lm.datasets.ingest("visits", replacement, partition="2026-11-01")
    now = lm.datasets.sql("SELECT count(*) AS n, count(DISTINCT CAST(ts AS DATE)) AS days FROM visits")
    assert (int(now["n"][0]), int(now["days"][0])) == ((DAYS - 1) * PER_DAY + 5, DAYS)
    old = lm.datasets.sql('SELECT count(*) AS n FROM "visits@1"')
    assert int(old["n"][0]) == DAYS * PER_DAY
    # The first version is still readable, byte for byte what it was.
    v1 = lm.datasets.read("visits", 1)
    assert len(v1) == DAYS * PER_DAY
    assert sorted(v1["visitors"].tolist()) == pytest.approx(sorted(frame["visitors"].tolist()))
    assert len(lm.datasets.read("visits", 1, partitions=["2026-11-01"])) == PER_DAY


def test_freshness_looks_at_every_partition_not_just_the_last_delivery(
    loaded: tuple[Loopml, pd.DataFrame],
) -> None:
    lm, frame = loaded
    backfill = frame[frame["ts"].dt.normalize() == pd.Timestamp("2026-11-01")].iloc[:3]
    lm.datasets.ingest("visits", backfill, partition="2026-11-01")
    fresh = lm.datasets.freshness("visits", now=pd.Timestamp("2026-11-13", tz="UTC").to_pydatetime())
    assert fresh.version == 2
    assert fresh.newest == frame["ts"].max().tz_localize("UTC").isoformat()


def test_other_partition_column_kinds_and_contract_changes(lm: Loopml) -> None:
    contract = Contract(columns=[Column("week", "date"), Column("store_id", "int", min=1)])
    lm.datasets.define("weekly", contract)
    weeks = pd.DataFrame({"week": ["2026-11-30", "2026-12-07", "2026-11-30"], "store_id": [1, 1, 2]})
    lm.datasets.ingest("weekly", weeks, partition_by="week")
    assert [p.key for p in lm.datasets.partitions("weekly")] == ["2026-11-30", "2026-12-07"]
    # A new nullable column: old partitions read back with nulls in it.
    wider = Contract(columns=[*contract.columns, Column("note", "str", nullable=True)])
    more = pd.DataFrame({"week": ["2026-12-14"], "store_id": [3], "note": ["new"]})
    lm.datasets.ingest("weekly", more, partition_by="week", contract=wider)
    out = lm.datasets.read("weekly")
    assert out["note"].isna().tolist() == [True, True, True, False]
    assert lm.datasets.sql("SELECT count(note) AS n FROM weekly")["n"][0] == 1
    lm.datasets.define("by_store", contract)
    lm.datasets.ingest("by_store", weeks, partition_by="store_id")
    assert [(p.key, p.rows) for p in lm.datasets.partitions("by_store")] == [("1", 2), ("2", 1)]


# -- CLI and HTTP ------------------------------------------------------------------------------
@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    from loopml.cli.main import app

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("LOOPML_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("COLUMNS", "200")
    runner = CliRunner()

    def run(*args: str, code: int = 0):
        result = runner.invoke(app, list(args))
        if result.exit_code != code:
            raise AssertionError(f"exit {result.exit_code}: {result.output}\n{result.exception!r}")
        return result

    (tmp_path / "contract.json").write_text(json.dumps(VISITS.to_dict()))
    visits(3).to_csv(tmp_path / "visits.csv", index=False)
    visits(1, start="2026-11-02", seed=5).to_csv(tmp_path / "day.csv", index=False)
    return run


def test_cli_partitioned_ingest_show_partitions(cli) -> None:
    out = cli(
        "datasets", "ingest", "visits", "visits.csv", "-c", "contract.json", "--partition-by", "ts"
    ).output
    assert (
        "accepted as version 1" in out and "partitions delivered: 2026-11-01, 2026-11-02, 2026-11-03" in out
    )
    out = cli("datasets", "ingest", "visits", "day.csv", "--partition", "2026-11-02").output
    assert "accepted as version 2" in out and "the version has 3" in out
    show = cli("datasets", "show", "visits").output
    assert "partitions 3" in show and "delivered 2026-11-02" in show
    listing = cli("datasets", "partitions", "visits", "--version", "1").output
    assert "visits@1: 3 partitions, 90 rows" in listing and "2026-11-03" in listing
    assert "delivered" in cli("datasets", "versions", "visits").output
    assert "changed 2026-11-02" in cli("datasets", "diff", "visits", "1", "2").output
    bad = cli("datasets", "ingest", "visits", "day.csv", "--partition", "a b", code=1)
    assert isinstance(bad.exception, ValidationError) and "not a valid partition key" in str(bad.exception)


@pytest.fixture
def http(lm: Loopml) -> Iterator[TestClient]:
    from loopml.serving.app import create_app

    with TestClient(create_app(lm), raise_server_exceptions=False) as client:
        yield client


def test_http_partitions_route_and_partitioned_upload(http: TestClient, lm: Loopml) -> None:
    lm.datasets.define("visits", VISITS)
    body = visits(2).to_csv(index=False).encode()
    upload = http.post(
        "/v1/datasets/visits/ingest",
        params={"partition_by": "ts"},
        files={"file": ("v.csv", io.BytesIO(body), "text/csv")},
    )
    assert upload.status_code == 201, upload.text
    assert upload.json()["report"]["partitions"] == ["2026-11-01", "2026-11-02"]
    listing = http.get("/v1/datasets/visits/partitions").json()
    assert listing["partition_count"] == 2 and listing["rows"] == 2 * PER_DAY
    assert [p["key"] for p in listing["partitions"]] == ["2026-11-01", "2026-11-02"]
    assert http.get("/v1/datasets/visits/partitions", params={"version": "9"}).status_code == 404
    lm.datasets.define("plain", VISITS)
    lm.datasets.ingest("plain", visits(1))
    refused = http.get("/v1/datasets/plain/partitions")
    assert refused.status_code == 422 and "not partitioned" in refused.json()["detail"]
