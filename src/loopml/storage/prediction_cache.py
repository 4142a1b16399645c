"""Prediction cache backends: embedded SQLite (default) or Redis, chosen by URL.

Values are opaque bytes (the serving layer packs outputs with orjson) stored under a string key with
an expiry. One ``get_many`` is one round trip (a single ``SELECT ... IN`` or one ``MGET``), so a
batch request costs the same as a single row. Expired entries are ignored on read and pruned lazily
on write, which keeps the hot path free of background maintenance threads.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Sequence
from urllib.parse import urlparse

from loopml.errors import BackendUnavailableError, ConfigError
from loopml.storage.urls import redis_client, sqlite_file

#: SQLite's bound-parameter limit is 32766; stay far below it per statement.
_MAX_IN = 900
#: Prune expired SQLite rows at most this often (seconds).
_PRUNE_EVERY = 60.0


class PredictionCache(ABC):
    """Key -> bytes with a time to live."""

    url: str

    @abstractmethod
    def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        """Values for ``keys`` in order; None for a miss or an expired entry."""

    @abstractmethod
    def set_many(self, items: Sequence[tuple[str, bytes]], ttl_seconds: float) -> int:
        """Store the values for ``ttl_seconds``; returns how many were written."""

    @abstractmethod
    def check(self) -> str:
        """A one-line health summary; raises BackendUnavailableError when unusable."""

    @abstractmethod
    def close(self) -> None: ...


class SqlitePredictionCache(PredictionCache):
    """``sqlite:///path/cache.db``: per-thread connections, WAL, a WITHOUT ROWID table."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.path = sqlite_file(url, "cache.url", example="sqlite:///path/to/cache.db or redis://host:6379/0")
        self._local = threading.local()
        self._conns: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._last_prune = 0.0
        self._conn()

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            try:
                conn = sqlite3.connect(
                    self.path, timeout=5, isolation_level=None, cached_statements=64, check_same_thread=False
                )
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA synchronous=OFF")  # a cache may lose entries on power loss
                conn.execute(
                    "CREATE TABLE IF NOT EXISTS predictions (key TEXT PRIMARY KEY, expires REAL NOT NULL, "
                    "value BLOB NOT NULL) WITHOUT ROWID"
                )
            except sqlite3.Error as exc:
                raise BackendUnavailableError(
                    f"prediction cache {self.url} cannot be opened: {exc}"
                ) from None
            self._local.conn = conn
            with self._lock:
                self._conns.append(conn)
        return conn

    def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        if not keys:
            return []
        now = time.time()
        found: dict[str, bytes] = {}
        conn = self._conn()
        try:
            for start in range(0, len(keys), _MAX_IN):
                part = list(keys[start : start + _MAX_IN])
                sql = (
                    "SELECT key, value FROM predictions WHERE expires > ? AND key IN ("
                    + ",".join("?" * len(part))
                    + ")"
                )
                for key, value in conn.execute(sql, (now, *part)):
                    found[key] = value
        except sqlite3.Error as exc:
            raise BackendUnavailableError(f"prediction cache {self.url} read failed: {exc}") from None
        return [found.get(k) for k in keys]

    def set_many(self, items: Sequence[tuple[str, bytes]], ttl_seconds: float) -> int:
        if not items:
            return 0
        now = time.time()
        expires = now + float(ttl_seconds)
        conn = self._conn()
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.executemany(
                    "INSERT OR REPLACE INTO predictions (key, expires, value) VALUES (?, ?, ?)",
                    [(k, expires, v) for k, v in items],
                )
                if now - self._last_prune > _PRUNE_EVERY:
                    self._last_prune = now
                    conn.execute("DELETE FROM predictions WHERE expires <= ?", (now,))
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            raise BackendUnavailableError(f"prediction cache {self.url} write failed: {exc}") from None
        return len(items)

    def check(self) -> str:
        try:
            n = self._conn().execute("SELECT count(*) FROM predictions").fetchone()[0]
        except sqlite3.Error as exc:
            raise BackendUnavailableError(f"prediction cache {self.url} unusable: {exc}") from None
        return f"ok (sqlite, {n} entries)"

    def close(self) -> None:
        with self._lock:
            conns, self._conns = self._conns, []
        for conn in conns:
            with contextlib.suppress(sqlite3.Error):
                conn.close()
        self._local = threading.local()


class RedisPredictionCache(PredictionCache):
    """``redis://host:6379/0`` (``?prefix=`` namespaces the keys): MGET to read, pipelined SET EX to write."""

    def __init__(self, url: str, *, timeout_seconds: float = 0.5) -> None:
        self.url = url
        self._redis, self.prefix, self._display, self._errors = redis_client(
            url, "cache.url", timeout_seconds=timeout_seconds
        )
        self.check()

    def _key(self, key: str) -> str:
        return f"{self.prefix}lmp:{key}"

    def _unavailable(self, exc: Exception) -> BackendUnavailableError:
        return BackendUnavailableError(f"Redis prediction cache {self._display} unreachable: {exc}")

    def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        if not keys:
            return []
        try:
            return list(self._redis.mget([self._key(k) for k in keys]))
        except self._errors as exc:
            raise self._unavailable(exc) from None

    def set_many(self, items: Sequence[tuple[str, bytes]], ttl_seconds: float) -> int:
        if not items:
            return 0
        ttl_ms = max(1, int(float(ttl_seconds) * 1000))
        try:
            pipe = self._redis.pipeline(transaction=False)
            for key, value in items:
                pipe.set(self._key(key), value, px=ttl_ms)
            pipe.execute()
        except self._errors as exc:
            raise self._unavailable(exc) from None
        return len(items)

    def check(self) -> str:
        try:
            self._redis.ping()
        except self._errors as exc:
            raise self._unavailable(exc) from None
        return "ok (redis)"

    def close(self) -> None:
        self._redis.close()


def open_prediction_cache(url: str) -> PredictionCache:
    """Open the cache at ``url`` (``sqlite:///...`` or ``redis://...``); fails fast when unreachable."""
    if not isinstance(url, str) or not url:
        raise ConfigError("cache.url is empty; use sqlite:///path/to/cache.db or redis://host:6379/0")
    scheme = urlparse(url).scheme
    if scheme == "sqlite":
        return SqlitePredictionCache(url)
    if scheme in ("redis", "rediss"):
        return RedisPredictionCache(url)
    raise ConfigError(
        f"cache.url {url!r} has scheme {scheme or '(none)'!r}; use sqlite:///path/cache.db or redis://host:6379/0"
    )
