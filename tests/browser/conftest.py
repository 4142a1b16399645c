"""Playwright fixtures: a real uvicorn server on a free loopback port and Debian's headless Chromium.

Never a downloaded browser: Chromium must be the system one at /usr/bin/chromium. Without it the
browser tests skip with the reason (or fail when LOOPML_REQUIRE_SERVICES=1, as in CI).
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = Path(os.environ.get("LOOPML_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
REQUIRE_SERVICES = os.environ.get("LOOPML_REQUIRE_SERVICES") == "1"


def need_chromium() -> None:
    if CHROMIUM.exists():
        return
    message = (
        f"Chromium is not installed at {CHROMIUM}; run `apt-get install -y chromium` (or set LOOPML_CHROMIUM)"
    )
    if REQUIRE_SERVICES:
        pytest.fail(message + " (LOOPML_REQUIRE_SERVICES=1 makes this a failure)")
    pytest.skip(message)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class LiveServer:
    """uvicorn (httptools) serving an app in a daemon thread until ``stop()``."""

    def __init__(self, app: Any) -> None:
        import uvicorn

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, http="httptools", log_level="warning")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name="loopml-live-server", daemon=True)

    def start(self, timeout: float = 15.0) -> None:
        self.thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"uvicorn did not start on {self.url} within {timeout}s")
            time.sleep(0.05)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


@pytest.fixture
def live_server(request: pytest.FixtureRequest) -> Iterator[Any]:
    """Factory: ``live_server(app)`` starts it; every server started is stopped after the test."""
    servers: list[LiveServer] = []

    def start(app: Any) -> LiveServer:
        server = LiveServer(app)
        server.start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    need_chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1360, "height": 900})
    tab = context.new_page()
    tab.set_default_timeout(15_000)
    yield tab
    context.close()
