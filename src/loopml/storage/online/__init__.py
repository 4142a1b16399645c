"""Online feature store backends, chosen by URL: ``sqlite:///path.db`` (embedded) or ``redis://host:port/db``."""

from __future__ import annotations

from urllib.parse import urlparse

from loopml.errors import ConfigError
from loopml.storage.online.base import OnlineRow, OnlineStore, StoredValue

__all__ = ["OnlineRow", "OnlineStore", "StoredValue", "open_online_store"]


def open_online_store(url: str) -> OnlineStore:
    """Open (and health-check) the online store at ``url``; raises BackendUnavailableError if unreachable."""
    scheme = urlparse(url).scheme
    if scheme == "sqlite":
        from loopml.storage.online.sqlite import SqliteOnlineStore

        return SqliteOnlineStore(url)
    if scheme in ("redis", "rediss"):
        try:
            from loopml.storage.online.redis import RedisOnlineStore
        except ModuleNotFoundError:
            raise ConfigError(
                f"online_url {url!r} needs the Redis client: pip install 'loopml[redis]'"
            ) from None
        return RedisOnlineStore(url)
    raise ConfigError(
        f"online_url {url!r} has scheme {scheme or '(none)'!r}; use sqlite:///path.db or redis://host:6379/0"
    )
