"""Embedded online store: one SQLite table keyed by (table, key), values packed in a BLOB.

Reads of many keys are one ``SELECT ... WHERE key IN (...)`` on the primary key (a WITHOUT ROWID
table, so the row lives in the index). Each thread keeps its own connection, and Python's sqlite3
statement cache keeps the prepared statements, so the hot path does no parsing and no connecting.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterable, Sequence

from loopml.errors import BackendUnavailableError
from loopml.storage.online.base import OnlineRow, OnlineStore, StoredValue
from loopml.storage.urls import sqlite_file

_SCHEMA = """
CREATE TABLE IF NOT EXISTS online_values (
    tbl TEXT NOT NULL,
    key TEXT NOT NULL,
    event_ts REAL NOT NULL,
    written_at REAL NOT NULL,
    value BLOB NOT NULL,
    PRIMARY KEY (tbl, key)
) WITHOUT ROWID
"""
_UPSERT = (
    "INSERT INTO online_values (tbl, key, event_ts, written_at, value) VALUES (?, ?, ?, ?, ?) "
    "ON CONFLICT (tbl, key) DO UPDATE SET event_ts = excluded.event_ts, written_at = excluded.written_at, "
    "value = excluded.value WHERE excluded.event_ts >= online_values.event_ts"
)
#: SQLite's default limit on bound parameters is 32766; stay far below it per statement.
_MAX_IN = 900


class SqliteOnlineStore(OnlineStore):
    """``sqlite:///path/online.db`` (the embedded default under the loopml home)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.path = sqlite_file(url, "online_url", example="sqlite:///path/to/online.db")
        self._local = threading.local()
        self._conn()  # fail at start-up, not on the first request

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            try:
                conn = sqlite3.connect(self.path, timeout=30, isolation_level=None, cached_statements=256)
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA synchronous=NORMAL")
                conn.execute(_SCHEMA)
            except sqlite3.Error as exc:
                raise BackendUnavailableError(f"online store {self.url} cannot be opened: {exc}") from None
            self._local.conn = conn
        return conn

    def write(self, table: str, rows: Iterable[OnlineRow], *, written_at: float | None = None) -> int:
        now = time.time() if written_at is None else written_at
        conn = self._conn()
        params = [(table, key, ts, now, value) for key, ts, value in rows]
        if not params:
            return 0
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.executemany(_UPSERT, params)
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        return len(params)

    def read(self, table: str, keys: Sequence[str]) -> list[StoredValue | None]:
        if not keys:
            return []
        conn = self._conn()
        found: dict[str, StoredValue] = {}
        for start in range(0, len(keys), _MAX_IN):
            part = keys[start : start + _MAX_IN]
            sql = (
                "SELECT key, event_ts, written_at, value FROM online_values WHERE tbl = ? AND key IN ("
                + ",".join("?" * len(part))
                + ")"
            )
            for key, ts, wa, value in conn.execute(sql, (table, *part)):
                found[key] = StoredValue(ts, wa, value)
        return [found.get(k) for k in keys]

    def count(self, table: str) -> int:
        return int(
            self._conn().execute("SELECT count(*) FROM online_values WHERE tbl = ?", (table,)).fetchone()[0]
        )

    def sample_keys(self, table: str, limit: int) -> list[str]:
        rows = self._conn().execute(
            "SELECT key FROM online_values WHERE tbl = ? ORDER BY random() LIMIT ?", (table, limit)
        )
        return [r[0] for r in rows]

    def drop(self, table: str) -> int:
        cur = self._conn().execute("DELETE FROM online_values WHERE tbl = ?", (table,))
        return cur.rowcount

    def check(self) -> str:
        try:
            n = self._conn().execute("SELECT count(*) FROM online_values").fetchone()[0]
        except sqlite3.Error as exc:
            raise BackendUnavailableError(f"online store {self.url} unusable: {exc}") from None
        return f"ok (sqlite, {n} keys)"

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None
