"""DatasetStore on SQLite and PostgreSQL: row-exact quarantine, refusal, versions, diff, SQL, freshness."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest
from sqlalchemy import select

from loopml import Loopml
from loopml.data import Column, Contract, IngestRefusedError
from loopml.errors import NotFoundError, ValidationError
from loopml.storage.metadata.core import Event

CONTRACT = Contract(
    columns=[
        Column("store_id", "int", min=1),
        Column("day", "date"),
        Column("visits", "int", min=0, max=10_000),
        Column("region", "category", allowed=("north", "south"), nullable=True),
        Column("open", "bool"),
    ],
    unique_key=("store_id", "day"),
    freshness_column="day",
    max_age="3d",
    max_bad_share=0.6,
)


def visits_frame() -> pd.DataFrame:
    """Ten rows, six of them bad in known ways (rows 1, 3, 4, 6, 8, 9)."""
    return pd.DataFrame(
        {
            "store_id": ["1", "2", "3", "0", "4", "5", "1", "6", "7", "x"],
            "day": [
                "2024-03-01",
                "2024-03-01",
                "2024-03-01",
                "2024-03-01",
                "not a day",
                "2024-03-02",
                "2024-03-01",
                "2024-03-02",
                "2024-03-02",
                "2024-03-02",
            ],
            "visits": ["10", "-5", "30", "40", "50", "60", "70", "80", None, "100"],
            "region": ["north", "south", None, "north", "south", "north", "north", "south", "west", "north"],
            "open": ["true", "true", "false", "yes", "no", "1", "0", "t", "f", "true"],
        }
    )


EXPECTED_QUARANTINE = {
    1: [("visits", "in_range(0, 10000)")],
    3: [("store_id", "greater_than_or_equal_to(1)")],
    4: [("day", "coerce_dtype('date')")],
    6: [("store_id,day", "unique(store_id, day)")],
    8: [("region", "isin(['north', 'south'])"), ("visits", "not_nullable")],
    9: [("store_id", "coerce_dtype('int')")],
}


def test_ingest_quarantines_exactly_the_bad_rows(lm: Loopml) -> None:
    result = lm.datasets.ingest("visits", visits_frame(), contract=CONTRACT, actor="ana")
    assert (result.rows_in, result.rows_ok, result.rows_quarantined) == (10, 4, 6)
    assert result.version.number == 1 and result.version.row_count == 4 and result.created

    quarantined = lm.datasets.quarantine("visits")
    got = {
        int(r.row_index): sorted((c["column"], c["check"]) for c in r.failed_checks)
        for r in quarantined.itertuples(index=False)
    }
    assert got == EXPECTED_QUARANTINE
    row8 = quarantined.set_index("row_index").loc[8]
    assert row8["row"] == {
        "store_id": "7",
        "day": "2024-03-02",
        "visits": None,
        "region": "west",
        "open": "f",
    }
    assert set(quarantined["version"].tolist()) == {1}

    good = lm.datasets.read("visits")
    assert good["store_id"].tolist() == [1, 3, 5, 6]  # input order kept, the first (1, 2024-03-01) kept
    assert good["open"].tolist() == [True, False, True, True]
    assert str(good["day"].iloc[0])[:10] == "2024-03-01"
    checks = {(c.column, c.check): c.rows for c in result.report.checks}
    assert checks[("store_id,day", "unique(store_id, day)")] == 1
    assert any("duplicate keys" in w for w in result.report.warnings)
    assert result.report.stale is True and result.report.newest == "2024-03-02"


def test_over_the_limit_is_refused_but_nothing_is_dropped(lm: Loopml) -> None:
    strict = Contract.from_dict({**CONTRACT.to_dict(), "max_bad_share": 0.1})
    with pytest.raises(IngestRefusedError) as err:
        lm.datasets.ingest("visits", visits_frame(), contract=strict)
    report = err.value.report
    assert not report.accepted and report.rows_quarantined == 6 and report.version is None
    text = str(err.value)
    assert "REFUSED" in text and "60.00% bad; the contract allows 10.00%" in text
    assert "visits: in_range(0, 10000) failed on 1 row(s), e.g. -5" in text
    assert isinstance(err.value, ValidationError)

    quarantined = lm.datasets.quarantine("visits")
    assert sorted(quarantined["row_index"].tolist()) == sorted(EXPECTED_QUARANTINE)
    assert quarantined["version"].isna().all()
    assert lm.datasets.versions("visits") == []
    with lm.ctx.db.session() as session:
        events = session.scalars(select(Event).where(Event.kind == "ingest.refused")).all()
        assert len(events) == 1 and events[0].data["rows_quarantined"] == 6


def test_identical_content_returns_the_existing_version(lm: Loopml, tmp_path: Path) -> None:
    first = lm.datasets.ingest("visits", visits_frame(), contract=CONTRACT)
    again = lm.datasets.ingest("visits", visits_frame())
    assert again.version.number == 1 and not again.created
    assert again.version.digest == first.version.digest
    path = tmp_path / "visits.csv"
    visits_frame().to_csv(path, index=False)
    from_csv = lm.datasets.ingest("visits", path)
    assert from_csv.version.number == 1  # same rows through CSV -> same bytes -> same version

    changed = visits_frame().assign(visits="5")
    second = lm.datasets.ingest("visits", changed)
    assert second.version.number == 2 and second.created
    back = lm.datasets.ingest("visits", visits_frame())
    assert back.version.number == 3 and back.version.digest == first.version.digest  # latest = last ingested
    assert [v.number for v in lm.datasets.versions("visits")] == [1, 2, 3]
    assert lm.datasets.version("visits").number == 3
    assert lm.datasets.version("visits", "2").row_count == second.version.row_count
    assert len(lm.datasets.quarantine("visits", version=2)) == 5
    assert len(lm.datasets.quarantine("visits", limit=3)) == 3


def test_contract_change_is_recorded_on_dataset_and_versions(lm: Loopml) -> None:
    lm.datasets.ingest("visits", visits_frame(), contract=CONTRACT)
    looser = Contract.from_dict({**CONTRACT.to_dict(), "max_bad_share": 0.9})
    info = lm.datasets.define("visits", looser, "daily visits", actor="bo")
    assert info.contract["max_bad_share"] == 0.9 and info.description == "daily visits"
    result = lm.datasets.ingest("visits", visits_frame())
    assert result.version.number == 2  # same rows, different contract: a new version says so
    assert lm.datasets.version("visits", 1).contract["max_bad_share"] == 0.6
    assert lm.datasets.version("visits", 2).contract["max_bad_share"] == 0.9
    with lm.ctx.db.session() as session:
        change = session.scalars(select(Event).where(Event.kind == "dataset.contract_changed")).one()
        assert change.actor == "bo" and change.data["before"]["max_bad_share"] == 0.6


def test_stats_and_diff_between_versions(lm: Loopml) -> None:
    lm.datasets.ingest("visits", visits_frame(), contract=CONTRACT)
    v1 = lm.datasets.version("visits", 1)
    assert v1.stats["visits"] == {
        "dtype": "int",
        "count": 4,
        "nulls": 0,
        "distinct": 4,
        "min": 10,
        "max": 80,
        "mean": 45.0,
        "std": pytest.approx(31.0913, rel=1e-4),
    }
    assert v1.stats["region"]["top"] == [["north", 2], ["south", 1]] and v1.stats["region"]["nulls"] == 1
    assert v1.stats["day"]["min"] == "2024-03-01"
    more = pd.DataFrame(
        {
            "store_id": ["1", "2", "3"],
            "day": ["2024-03-05"] * 3,
            "visits": ["100", "200", "300"],
            "region": ["south", "south", "south"],
            "open": ["true"] * 3,
        }
    )
    lm.datasets.ingest("visits", more)
    diff = lm.datasets.diff("visits", 1, "latest")
    assert (diff.a, diff.b, diff.row_change) == (1, 2, -1)
    visits = diff.column("visits")
    assert (visits.mean_a, visits.mean_b, visits.min_b, visits.max_b) == (45.0, 200.0, 100, 300)
    region = diff.column("region")
    assert region.missing_values == ["north"] and region.new_values == []
    assert region.null_share_a == 0.25 and region.null_share_b == 0.0
    assert diff.column("open").status == "changed"
    assert diff.to_dict()["columns"][0]["column"] == "store_id"


def test_sql_over_latest_and_numbered_versions(lm: Loopml) -> None:
    lm.datasets.ingest("visits", visits_frame(), contract=CONTRACT)
    lm.datasets.ingest("visits", visits_frame().assign(visits="1"))
    lm.datasets.define("stores", Contract([Column("store_id", "int"), Column("name", "str")]))
    lm.datasets.ingest("stores", pd.DataFrame({"store_id": [1, 3], "name": ["a", "b"]}))
    out = lm.datasets.sql(
        "SELECT s.name, sum(v.visits) AS now, sum(o.visits) AS before FROM visits v "
        'JOIN "visits@1" o USING (store_id, day) JOIN stores s USING (store_id) GROUP BY 1 ORDER BY 1'
    )
    assert out.to_dict("records") == [
        {"name": "a", "now": 1, "before": 10},
        {"name": "b", "now": 1, "before": 30},
    ]
    assert lm.datasets.sql('select count(*) as n from "visits@latest"')["n"].tolist() == [5]
    with pytest.raises(ValidationError, match="Datasets visible to this query: visits"):
        lm.datasets.sql("SELECT nope FROM visits")
    with pytest.raises(NotFoundError, match="no version 9; versions are 1, 2"):
        lm.datasets.sql('SELECT * FROM "visits@9"')
    with pytest.raises(ValidationError, match="give a query"):
        lm.datasets.sql("  ")


def test_freshness_for_monitoring(lm: Loopml) -> None:
    today = datetime.now(UTC).date()
    frame = pd.DataFrame(
        {
            "store_id": [1, 2],
            "day": [today - timedelta(days=1), today],
            "visits": [1, 2],
            "region": ["north", None],
            "open": [True, False],
        }
    )
    result = lm.datasets.ingest("visits", frame, contract=CONTRACT)
    assert result.report.stale is False and not result.report.warnings
    fresh = lm.datasets.freshness("visits")
    assert not fresh.stale and fresh.newest == today.isoformat() and fresh.max_age_seconds == 3 * 86400
    later = lm.datasets.freshness("visits", now=datetime.now(UTC) + timedelta(days=5))
    assert later.stale and later.age_seconds > 3 * 86400
    lm.datasets.define("plain", Contract([Column("a", "int")]))
    with pytest.raises(ValidationError, match="no freshness_column"):
        lm.datasets.freshness("plain")


def test_bad_input_is_explained(lm: Loopml, tmp_path: Path) -> None:
    with pytest.raises(NotFoundError, match=r"'visits' does not exist. None exist yet. Define it first"):
        lm.datasets.ingest("visits", visits_frame())
    lm.datasets.define("visits", CONTRACT)
    with pytest.raises(NotFoundError, match="Did you mean: visits"):
        lm.datasets.version("visit")
    with pytest.raises(NotFoundError, match="has no versions yet"):
        lm.datasets.version("visits")
    with pytest.raises(ValidationError, match=r"missing contract column.*open"):
        lm.datasets.ingest("visits", visits_frame().drop(columns=["open"]))
    with pytest.raises(ValidationError, match="has no rows"):
        lm.datasets.ingest("visits", visits_frame().iloc[:0])
    with pytest.raises(ValidationError, match="DataFrame or a path"):
        lm.datasets.ingest("visits", [1, 2, 3])  # type: ignore[arg-type]
    with pytest.raises(NotFoundError, match="does not exist; check the path"):
        lm.datasets.ingest("visits", tmp_path / "nope.csv")
    garbage = tmp_path / "garbage.parquet"
    garbage.write_text("store_id,day\n1,2")
    with pytest.raises(ValidationError, match=r"cannot read PARQUET file.*not renamed CSV"):
        lm.datasets.ingest("visits", garbage)
    ragged = tmp_path / "ragged.csv"
    ragged.write_text("store_id,day,visits,region,open\n1,2024-03-01,3\n2,2024-03-01,4,north,true,extra\n")
    with pytest.raises(ValidationError, match=r"cannot read CSV file.*same number of fields"):
        lm.datasets.ingest("visits", ragged)
    with pytest.raises(ValidationError, match=r"name it \*\.csv"):
        lm.datasets.ingest("visits", tmp_path / "data.xlsx")
    with pytest.raises(ValidationError, match="is not valid: start with a letter"):
        lm.datasets.define("bad name!", CONTRACT)
    with pytest.raises(IngestRefusedError, match="no row passed the contract"):
        lm.datasets.ingest("visits", visits_frame().assign(store_id="0"))
    lm.datasets.ingest("visits", visits_frame())
    with pytest.raises(ValidationError, match=r"version='newest'.*or 'latest'"):
        lm.datasets.version("visits", "newest")
    with pytest.raises(ValidationError, match="version numbers start at 1"):
        lm.datasets.version("visits", 0)
    with pytest.raises(ValidationError, match=r"unknown column.*this version has: store_id"):
        lm.datasets.read("visits", columns=["nope"])
    with pytest.raises(ValidationError, match="positive whole number"):
        lm.datasets.quarantine("visits", limit=0)


def test_parquet_and_csv_sources_and_parquet_uri(lm: Loopml, tmp_path: Path) -> None:
    frame = pd.DataFrame({"id": [1, 2, 3], "score": [0.5, None, 1.5], "label": ["007", "a", "b"]})
    contract = Contract(
        [Column("id", "int", unique=True), Column("score", "float", nullable=True), Column("label", "str")]
    )
    path = tmp_path / "in.parquet"
    frame.to_parquet(path)
    result = lm.datasets.ingest("scores", path, contract=contract)
    assert result.rows_quarantined == 0
    uri = lm.datasets.parquet_uri("scores")
    assert Path(uri).is_file()
    csv = tmp_path / "in.csv"
    frame.to_csv(csv, index=False)
    assert lm.datasets.ingest("scores", csv).version.number == 1  # CSV text "007" stays a string
    read = lm.datasets.read("scores", 1, columns=["label", "score"])
    assert list(read.columns) == ["label", "score"] and read["label"].tolist() == ["007", "a", "b"]
    infos = {d.name: d for d in lm.datasets.list()}
    assert infos["scores"].latest_version == 1 and infos["scores"].version_count == 1
    assert lm.datasets.get("scores").to_dict()["contract"] == contract.to_dict()


def test_large_quarantine_is_inserted_in_batches_and_row_exact(lm: Loopml) -> None:
    rows = 12_001  # more bad rows than one insert batch (5,000)
    frame = pd.DataFrame({"id": range(rows), "score": [-1.0 if i % 2 else 1.0 for i in range(rows)]})
    contract = Contract([Column("id", "int"), Column("score", "float", min=0)], max_bad_share=0.6)
    result = lm.datasets.ingest("scores", frame, contract=contract)
    assert result.rows_quarantined == rows // 2
    quarantined = lm.datasets.quarantine("scores", limit=rows)
    assert sorted(quarantined["row_index"].tolist()) == list(range(1, rows, 2))
    assert set(quarantined["checks"]) == {"score: greater_than_or_equal_to(0)"}


def test_concurrent_ingests_get_distinct_version_numbers(lm: Loopml) -> None:
    from concurrent.futures import ThreadPoolExecutor

    lm.datasets.define("ticks", Contract([Column("n", "int")]))
    with ThreadPoolExecutor(4) as pool:
        numbers = list(
            pool.map(lambda i: lm.datasets.ingest("ticks", pd.DataFrame({"n": [i]})).version.number, range(6))
        )
    assert sorted(numbers) == [1, 2, 3, 4, 5, 6]
