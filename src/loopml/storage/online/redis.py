"""Production online store on Redis: one string per (table, key), read with a single MGET.

The stored string is ``"<event_ts>|<written_at>|<json>"`` so one MGET returns values *and* their
age. Writes go through a small Lua script that compares event times on the server, in batches, so
"an older event never overwrites a newer one" holds even with concurrent pushes and materialisation,
at one round trip per batch. Keys are ``<prefix>lmf:<table>:<key>``; set ``?prefix=`` in the URL to
share one Redis database between projects (tests use it for isolation).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence

import redis as redis_lib

from loopml.errors import BackendUnavailableError
from loopml.storage.online.base import OnlineRow, OnlineStore, StoredValue
from loopml.storage.urls import redis_client

_CONDITIONAL_SET = """
local written = 0
for i, k in ipairs(KEYS) do
  local ts = tonumber(ARGV[2 * i - 1])
  local cur = redis.call('GET', k)
  local ok = true
  if cur then
    local sep = string.find(cur, '|', 1, true)
    if sep then
      local cur_ts = tonumber(string.sub(cur, 1, sep - 1))
      if cur_ts and cur_ts > ts then ok = false end
    end
  end
  if ok then
    redis.call('SET', k, ARGV[2 * i])
    written = written + 1
  end
end
return written
"""
#: Keys per Lua call: large enough to amortise the round trip, small enough not to block Redis long.
WRITE_BATCH = 2_000
_ERRORS = (redis_lib.ConnectionError, redis_lib.TimeoutError)


class RedisOnlineStore(OnlineStore):
    """``redis://host:6379/0`` (optionally ``?prefix=myproject:``)."""

    def __init__(self, url: str, *, timeout_seconds: float = 1.0) -> None:
        self.url = url
        target = redis_client(url, "online_url", timeout_seconds=timeout_seconds)
        self._redis, self.prefix, self._display = target.client, target.prefix, target.display
        self._script = self._redis.register_script(_CONDITIONAL_SET)
        self.check()  # a clear error at start-up instead of on the first request

    def _key(self, table: str, key: str) -> str:
        return f"{self.prefix}lmf:{table}:{key}"

    def _unavailable(self, exc: Exception) -> BackendUnavailableError:
        return BackendUnavailableError(
            f"Redis online store {self._display} unreachable: {exc}. Start Redis or set LOOPML_ONLINE_URL; "
            "serving can fall back with online_features(..., on_unavailable='missing')."
        )

    def write(self, table: str, rows: Iterable[OnlineRow], *, written_at: float | None = None) -> int:
        now = repr(time.time() if written_at is None else written_at).encode()
        sent = 0
        keys: list[str] = []
        args: list[bytes | str] = []
        try:
            for key, ts, value in rows:
                ts_b = repr(float(ts)).encode()
                keys.append(self._key(table, key))
                args.append(ts_b)
                args.append(ts_b + b"|" + now + b"|" + value)
                if len(keys) >= WRITE_BATCH:
                    self._script(keys=keys, args=args)
                    sent += len(keys)
                    keys, args = [], []
            if keys:
                self._script(keys=keys, args=args)
                sent += len(keys)
        except _ERRORS as exc:
            raise self._unavailable(exc) from None
        return sent

    def read(self, table: str, keys: Sequence[str]) -> list[StoredValue | None]:
        return self.read_many([(table, keys)])[0]

    def read_many(self, requests: Sequence[tuple[str, Sequence[str]]]) -> list[list[StoredValue | None]]:
        names = [self._key(table, k) for table, keys in requests for k in keys]
        if not names:
            return [[] for _ in requests]
        try:
            raw = self._redis.mget(names)
        except _ERRORS as exc:
            raise self._unavailable(exc) from None
        out: list[list[StoredValue | None]] = []
        pos = 0
        for _table, keys in requests:
            part: list[StoredValue | None] = []
            for blob in raw[pos : pos + len(keys)]:
                if blob is None:
                    part.append(None)
                else:
                    ts, wa, value = blob.split(b"|", 2)
                    part.append(StoredValue(float(ts), float(wa), value))
            pos += len(keys)
            out.append(part)
        return out

    def _scan(self, table: str) -> Iterable[bytes]:
        try:
            yield from self._redis.scan_iter(match=self._key(table, "*"), count=1000)
        except _ERRORS as exc:
            raise self._unavailable(exc) from None

    def count(self, table: str) -> int:
        return sum(1 for _ in self._scan(table))

    def sample_keys(self, table: str, limit: int) -> list[str]:
        head = len(self._key(table, ""))
        out: list[str] = []
        for name in self._scan(table):
            out.append(name[head:].decode())
            if len(out) >= limit:
                break
        return out

    def drop(self, table: str) -> int:
        removed = 0
        batch: list[bytes] = []
        for name in self._scan(table):
            batch.append(name)
            if len(batch) >= 1000:
                removed += int(self._redis.delete(*batch))
                batch = []
        if batch:
            removed += int(self._redis.delete(*batch))
        return removed

    def check(self) -> str:
        try:
            self._redis.ping()
        except _ERRORS as exc:
            raise self._unavailable(exc) from None
        return f"ok (redis {self._display})"

    def close(self) -> None:
        self._redis.close()
