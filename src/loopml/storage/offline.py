"""Offline feature queries on DuckDB: point-in-time joins, latest-row-per-key scans, snapshots, statistics.

A feature view's offline data is an ordered list of Parquet files (the source snapshot first, then the
push-log segments in arrival order). Every row gets a *sequence* ``(file index, row number)``; when two
rows share an entity key and an event time, the one with the larger sequence wins (the later write),
offline and online alike. That one rule is what makes "same entity, same time, same values" hold.

The point-in-time join is DuckDB's ASOF JOIN (``entity.ts >= feature.ts``: a value whose event time
equals the request time *is* visible, one from a microsecond later is not), followed by a TTL cut.
DuckDB runs out of core with a memory limit and a spill directory, which keeps RSS bounded on 10 M rows.
This is the only module that imports duckdb for features.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd
import pyarrow as pa

from loopml.errors import ValidationError

#: DuckDB types for the feature dtypes loopml knows.
DUCK_TYPES = {
    "int": "BIGINT",
    "float": "DOUBLE",
    "str": "VARCHAR",
    "bool": "BOOLEAN",
    "datetime": "TIMESTAMP",
}
KEY_TYPES = {"int": "BIGINT", "str": "VARCHAR"}


@dataclass(frozen=True)
class ViewData:
    """Where one feature view's offline rows are and how to read them."""

    files: tuple[str, ...]
    key: str
    event_time: str
    key_dtype: str
    features: tuple[tuple[str, str], ...]  # (column, dtype)


@dataclass(frozen=True)
class JoinSpec:
    """One view to attach to the entity frame: its data, the entity column to match and the output names."""

    data: ViewData
    entity_column: str
    ttl_seconds: float | None
    outputs: tuple[tuple[str, str], ...]  # (feature column, output column)
    #: When set, also output the matched row's event time under this column name (consistency checks).
    ts_output: str | None = None


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


class OfflineEngine:
    """A DuckDB connection configured for bounded memory (spills to ``temp_dir``) and UTC timestamps."""

    def __init__(
        self, temp_dir: str | os.PathLike[str], *, memory_limit: str = "1GB", threads: int | None = None
    ):
        Path(temp_dir).mkdir(parents=True, exist_ok=True)
        self.con = duckdb.connect()
        self.con.execute("SET TimeZone = 'UTC'")
        self.con.execute(f"SET memory_limit = {_literal(memory_limit)}")
        self.con.execute(f"SET temp_directory = {_literal(str(temp_dir))}")
        self.con.execute("SET preserve_insertion_order = false")
        if threads:
            self.con.execute(f"SET threads = {int(threads)}")
        self._lock = threading.Lock()

    def cursor(self) -> duckdb.DuckDBPyConnection:
        """A per-call cursor: DuckDB connections are not safe to share across threads."""
        return self.con.cursor()

    # -- reading a view's rows ------------------------------------------------------------------
    def rows_sql(self, data: ViewData, *, features: Sequence[str] | None = None) -> str:
        """SQL yielding ``__key, __ts, __seq_f, __seq_r`` and the typed feature columns of a view."""
        if not data.files:
            raise ValidationError("feature view has no offline data yet; push rows or give it a source")
        wanted = dict(data.features)
        names = list(features) if features is not None else list(wanted)
        files = "[" + ", ".join(_literal(f) for f in data.files) + "]"
        cols = [
            f"CAST({_quote(data.key)} AS {KEY_TYPES[data.key_dtype]}) AS __key",
            f"CAST({_quote(data.event_time)} AS TIMESTAMP) AS __ts",
            f"list_position({files}, filename) AS __seq_f",
            "file_row_number AS __seq_r",
        ]
        for name in names:
            cols.append(f"CAST({_quote(name)} AS {DUCK_TYPES[wanted[name]]}) AS {_quote(name)}")
        return (
            f"SELECT {', '.join(cols)} FROM read_parquet({files}, filename = true, "
            f"file_row_number = true, union_by_name = true) WHERE {_quote(data.event_time)} IS NOT NULL"
        )

    def schema(self, files: Sequence[str]) -> dict[str, str]:
        """Column -> DuckDB type of Parquet files (union by name)."""
        listing = "[" + ", ".join(_literal(f) for f in files) + "]"
        rows = (
            self.cursor()
            .execute(f"DESCRIBE SELECT * FROM read_parquet({listing}, union_by_name = true)")
            .fetchall()
        )
        return {r[0]: str(r[1]) for r in rows}

    # -- point-in-time join ---------------------------------------------------------------------
    def point_in_time_join(
        self, entities: pd.DataFrame, event_time: str, joins: Sequence[JoinSpec]
    ) -> pd.DataFrame:
        """Attach each view's values as of every entity row's time (ASOF JOIN + TTL), keeping row order."""
        cur = self.cursor()
        frame = entities.copy(deep=False)
        frame["__row"] = range(len(frame))
        frame[event_time] = _to_naive_utc(frame[event_time])
        cur.register("__entities", frame)
        ctes = []
        selects = [f"e.{_quote(c)}" for c in entities.columns]
        joins_sql = []
        for i, join in enumerate(joins):
            outs = [c for c, _ in join.outputs]
            # Collapse rows sharing (key, event time) to the one written last, so the ASOF match is unique.
            # A window with QUALIFY is ~8x faster here than arg_max with a composite ordering key.
            ctes.append(
                f"f{i} AS (SELECT * FROM ({self.rows_sql(join.data, features=outs)}) "
                "QUALIFY row_number() OVER (PARTITION BY __key, __ts ORDER BY __seq_f DESC, __seq_r DESC) = 1)"
            )
            ekey = f"CAST(e.{_quote(join.entity_column)} AS {KEY_TYPES[join.data.key_dtype]})"
            joins_sql.append(
                f"ASOF LEFT JOIN f{i} ON f{i}.__key = {ekey} AND e.{_quote(event_time)} >= f{i}.__ts"
            )
            for col, out in join.outputs:
                value = f"f{i}.{_quote(col)}"
                if join.ttl_seconds is not None:
                    limit = f"e.{_quote(event_time)} - to_microseconds({int(join.ttl_seconds * 1_000_000)})"
                    value = f"CASE WHEN f{i}.__ts >= {limit} THEN {value} END"
                selects.append(f"{value} AS {_quote(out)}")
            if join.ts_output:
                selects.append(f"f{i}.__ts AS {_quote(join.ts_output)}")
        sql = (
            f"WITH {', '.join(ctes)} SELECT {', '.join(selects)} FROM __entities e "
            + " ".join(joins_sql)
            + " ORDER BY e.__row"
        )
        try:
            table = cur.sql(sql).to_arrow_table()
        finally:
            cur.unregister("__entities")
        out = table.to_pandas()
        if event_time in out.columns:
            out[event_time] = pd.to_datetime(out[event_time], utc=True)
        return out

    # -- latest values per key (materialisation) -----------------------------------------------
    def latest_batches(
        self,
        data: ViewData,
        *,
        after: pd.Timestamp | None,
        until: pd.Timestamp | None,
        chunk_rows: int,
        files_after_ts: int = 0,
    ) -> Iterator[pa.RecordBatch]:
        """Stream ``(key text, event epoch seconds, packed JSON)`` of the newest row per key, in batches.

        Rows from files with index <= ``files_after_ts`` are read only when newer than ``after`` (the
        incremental watermark); rows from later files (new push-log segments) are all read.
        """
        values = []
        for name, dtype in data.features:
            col = f"r.{_quote(name)}"
            if dtype == "float":
                col = f"CASE WHEN isfinite({col}) THEN {col} END"
            values.append(f"{_quote(name)} := {col}")
        filters = []
        if after is not None:
            filters.append(f"(r.__ts > {_ts_literal(after)} OR r.__seq_f > {int(files_after_ts)})")
        if until is not None:
            filters.append(f"r.__ts <= {_ts_literal(until)}")
        where = ("WHERE " + " AND ".join(filters)) if filters else ""
        sql = (
            "SELECT CAST(__key AS VARCHAR) AS key, epoch_us(__ts) / 1e6 AS event_ts, "
            f"to_json(struct_pack({', '.join(values)})) AS value "
            f"FROM ({self.rows_sql(data)}) r {where} "
            "QUALIFY row_number() OVER (PARTITION BY __key ORDER BY __ts DESC, __seq_f DESC, __seq_r DESC) = 1"
        )
        # DuckDB produces the result chunk by chunk; nothing beyond ``chunk_rows`` rows is held in Python.
        reader = self.cursor().sql(sql).to_arrow_reader(chunk_rows)
        yield from reader

    # -- snapshots and plain queries ------------------------------------------------------------
    def query_frame(self, sql: str, *, tables: dict[str, Sequence[str]] | None = None) -> pd.DataFrame:
        """Run ``sql`` where each name in ``tables`` is a view over its Parquet files."""
        return self.cursor().sql(_with_tables(sql, tables)).to_arrow_table().to_pandas()

    def copy_to_parquet(self, sql: str, dest: str, *, tables: dict[str, Sequence[str]] | None = None) -> int:
        """Stream a query result to a Parquet file without materialising it in Python. Returns rows."""
        cur = self.cursor()
        cur.execute(f"COPY ({_with_tables(sql, tables)}) TO {_literal(dest)} (FORMAT parquet)")
        return int(cur.execute(f"SELECT count(*) FROM read_parquet({_literal(dest)})").fetchone()[0])

    def sample_keys(self, data: ViewData, limit: int) -> list[Any]:
        """Up to ``limit`` distinct entity keys of a view, chosen at random."""
        sql = f"SELECT DISTINCT __key FROM ({self.rows_sql(data, features=[])}) ORDER BY random() LIMIT {int(limit)}"
        return [r[0] for r in self.cursor().execute(sql).fetchall()]

    def max_event_time(self, data: ViewData) -> pd.Timestamp | None:
        row = self.cursor().execute(f"SELECT max(__ts) FROM ({self.rows_sql(data, features=[])})").fetchone()
        return None if row[0] is None else pd.Timestamp(row[0], tz="UTC")

    def column_stats(self, data: ViewData, *, bins: int = 10) -> dict[str, Any]:
        """Per-feature statistics of a view's offline rows (counts, nulls, moments, quantiles, histogram)."""
        cur = self.cursor()
        base = self.rows_sql(data)
        cur.execute(f"CREATE OR REPLACE TEMP TABLE __stats AS {base}")
        try:
            total, keys, tmin, tmax = cur.execute(
                "SELECT count(*), count(DISTINCT __key), min(__ts), max(__ts) FROM __stats"
            ).fetchone()
            out: dict[str, Any] = {
                "rows": int(total),
                "entities": int(keys),
                "event_time_min": None if tmin is None else pd.Timestamp(tmin, tz="UTC").isoformat(),
                "event_time_max": None if tmax is None else pd.Timestamp(tmax, tz="UTC").isoformat(),
                "features": {},
            }
            for name, dtype in data.features:
                q = _quote(name)
                nulls = cur.execute(f"SELECT count(*) - count({q}) FROM __stats").fetchone()[0]
                feat: dict[str, Any] = {
                    "dtype": dtype,
                    "nulls": int(nulls),
                    "null_share": nulls / total if total else 0.0,
                }
                if dtype in ("int", "float"):
                    r = cur.execute(
                        f"SELECT avg({q}), stddev_samp({q}), min({q}), max({q}), "
                        f"quantile_cont({q}, [0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99]) "
                        f"FROM __stats WHERE {q} IS NOT NULL AND isfinite({q}::DOUBLE)"
                    ).fetchone()
                    feat.update(mean=r[0], std=r[1], min=_num(r[2]), max=_num(r[3]))
                    feat["quantiles"] = dict(
                        zip(["p01", "p05", "p25", "p50", "p75", "p95", "p99"], r[4] or [], strict=False)
                    )
                    if r[2] is not None and r[3] is not None and r[3] > r[2]:
                        lo, hi = float(r[2]), float(r[3])
                        width = (hi - lo) / bins
                        counts = dict(
                            cur.execute(
                                f"SELECT least(floor(({q}::DOUBLE - {lo}) / {width})::BIGINT, {bins - 1}) AS b, count(*) "
                                f"FROM __stats WHERE {q} IS NOT NULL AND isfinite({q}::DOUBLE) GROUP BY b"
                            ).fetchall()
                        )
                        feat["histogram"] = {
                            "edges": [lo + i * width for i in range(bins)] + [hi],
                            "counts": [int(counts.get(i, 0)) for i in range(bins)],
                        }
                else:
                    top = cur.execute(
                        f"SELECT CAST({q} AS VARCHAR) AS v, count(*) AS n FROM __stats WHERE {q} IS NOT NULL "
                        "GROUP BY v ORDER BY n DESC, v LIMIT 20"
                    ).fetchall()
                    distinct = cur.execute(f"SELECT count(DISTINCT {q}) FROM __stats").fetchone()[0]
                    feat.update(distinct=int(distinct), top={v: int(n) for v, n in top})
                out["features"][name] = feat
            return out
        finally:
            cur.execute("DROP TABLE IF EXISTS __stats")

    def close(self) -> None:
        self.con.close()


def _with_tables(sql: str, tables: dict[str, Sequence[str]] | None) -> str:
    if not tables:
        return sql
    ctes = ", ".join(
        f"{_quote(name)} AS (SELECT * FROM read_parquet([{', '.join(_literal(f) for f in files)}], union_by_name = true))"
        for name, files in tables.items()
    )
    return f"WITH {ctes} {sql}"


def _ts_literal(ts: pd.Timestamp) -> str:
    value = pd.Timestamp(ts)
    if value.tzinfo is not None:
        value = value.tz_convert("UTC").tz_localize(None)
    return f"TIMESTAMP {_literal(value.isoformat(sep=' '))}"


def _num(value: Any) -> Any:
    if value is None:
        return None
    return float(value) if not isinstance(value, int | float) else value


def _to_naive_utc(series: pd.Series) -> pd.Series:
    """UTC wall time without a zone: DuckDB compares it with TIMESTAMP feature times directly."""
    values = pd.to_datetime(series, utc=True)
    return values.dt.tz_localize(None).astype("datetime64[us]")


def write_parquet(frame: pd.DataFrame, path: str | os.PathLike[str]) -> None:
    """Write a frame as Parquet (no pandas index), the format every offline file uses."""
    table = pa.Table.from_pandas(frame, preserve_index=False)
    import pyarrow.parquet as pq

    pq.write_table(table, str(path), compression="zstd")
