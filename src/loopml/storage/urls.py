"""From a backend URL to something to connect to, for the stores chosen by URL (online store, cache).

Why shared: ``sqlite:///path`` and ``redis://host:6379/0?prefix=...`` mean the same thing to every
backend that accepts them - the directory is created up front, ``?prefix=`` namespaces keys and is
not passed to Redis, and error messages show the URL without credentials. ``setting`` is the name
the user set the URL under (``online_url``, ``cache.url``) so errors point at it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import parse_qsl, urlencode, urlparse, urlunparse

from loopml.errors import ConfigError


def sqlite_file(url: str, setting: str, *, example: str) -> str:
    """The file path in ``sqlite:///path`` with its directory created (``:memory:`` stays as is)."""
    path = url.split("///", 1)[-1] if "///" in url else ""
    if not path:
        raise ConfigError(f"{setting} {url!r}: use {example}")
    if path != ":memory:":
        try:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(f"{setting} {url!r}: cannot create the directory: {exc}") from None
    return path


class RedisTarget(NamedTuple):
    client: Any  # redis.Redis: typed loosely because redis is an optional dependency
    prefix: str  # from ``?prefix=``, put in front of every key
    display: str  # the URL without credentials or query, for messages
    errors: tuple[type[Exception], ...]  # what "Redis is unreachable" raises


def redis_client(url: str, setting: str, *, timeout_seconds: float) -> RedisTarget:
    """The client, key prefix and display URL for ``redis://...[?prefix=...]``; nothing is sent yet.

    The timeout covers connecting and each command: a slow Redis must fail a request quickly
    rather than hold it, and the callers turn that failure into ``BackendUnavailableError``.
    """
    try:
        import redis as redis_lib
    except ModuleNotFoundError:
        raise ConfigError(f"{setting} {url!r} needs the Redis client: pip install 'loopml[redis]'") from None
    parsed = urlparse(url)
    query = dict(parse_qsl(parsed.query))
    prefix = query.pop("prefix", "")
    clean = urlunparse(parsed._replace(query=urlencode(query)))
    try:
        client = redis_lib.Redis.from_url(
            clean, socket_timeout=timeout_seconds, socket_connect_timeout=timeout_seconds
        )
    except ValueError as exc:
        raise ConfigError(f"{setting} {url!r} is not a Redis URL: {exc}") from None
    display = urlunparse(parsed._replace(netloc=parsed.hostname or "", query=""))
    return RedisTarget(client, prefix, display, (redis_lib.ConnectionError, redis_lib.TimeoutError))
