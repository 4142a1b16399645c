"""Where the test servers are, and how a test says it needs one (skip locally, fail in CI)."""

from __future__ import annotations

import os
import socket

import pytest

PG_ADMIN_URL = os.environ.get("LOOPML_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("LOOPML_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
REQUIRE_SERVICES = os.environ.get("LOOPML_REQUIRE_SERVICES") == "1"


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def need_service(name: str, host: str, port: int) -> None:
    """Skip (or fail, in CI) when a server a test needs is not listening."""
    if _reachable(host, port):
        return
    message = f"{name} is not reachable at {host}:{port}; start it or set LOOPML_TEST_{name.upper()}_URL"
    if REQUIRE_SERVICES:
        pytest.fail(message + " (LOOPML_REQUIRE_SERVICES=1 makes this a failure)")
    pytest.skip(message)


def need_postgres() -> None:
    need_service("pg", "127.0.0.1", 5432)


def need_redis() -> None:
    need_service("redis", "127.0.0.1", 6379)
