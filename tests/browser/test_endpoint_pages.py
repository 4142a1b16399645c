"""Headless Chromium opens the endpoint pages and sees the Plotly charts drawn (loopback only)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from loopml import Loopml
from loopml.serving.app import create_app
from test_ui_endpoints import ENDPOINT, populate_endpoint

pytestmark = pytest.mark.browser
SCREENSHOTS = Path("/tmp")


def test_endpoint_pages_draw_traffic_and_ab_charts(lm_sqlite: Loopml, live_server: Any, page: Any) -> None:
    populate_endpoint(lm_sqlite, requests=300)
    server = live_server(create_app(lm_sqlite, apps=()))
    failures: list[str] = []
    page.on("pageerror", lambda exc: failures.append(f"page error: {exc}"))
    page.on("requestfailed", lambda req: failures.append(f"request failed: {req.url}"))
    page.route(
        re.compile(r"^(?!http://127\.0\.0\.1).*"), lambda route: route.abort()
    )  # nothing leaves loopback

    page.goto(server.url + "/ui/")
    page.get_by_role("link", name="Endpoints", exact=True).click()
    assert page.url.endswith("/ui/endpoints")
    page.get_by_test_id(f"endpoint-{ENDPOINT}").get_by_role("link", name=ENDPOINT, exact=True).click()
    assert page.get_by_test_id("endpoint-name").inner_text() == ENDPOINT
    for name in ("requests", "latency", "errors", "distribution", "ab", "ab-diff"):
        page.get_by_test_id(f"plot-{name}").locator("svg.main-svg").first.wait_for()
    assert page.get_by_test_id("plot-requests").locator(".scatterlayer .trace").count() == 2
    assert page.get_by_test_id("plot-distribution").locator(".barlayer .trace").count() == 2
    assert page.get_by_test_id("plot-ab").locator(".errorbar").count() >= 2  # CI error bars drawn
    assert page.get_by_test_id("ab-verdict").inner_text() == "treatment is better"
    assert "rollback" in page.get_by_test_id("history").inner_text()
    page.screenshot(path=str(SCREENSHOTS / "loopml-endpoint.png"), full_page=True)

    page.get_by_test_id("window-selector").locator("select").select_option("24h")
    page.wait_for_url(re.compile(r"window=24h"))
    page.get_by_test_id("plot-requests").locator("svg.main-svg").first.wait_for()

    page.get_by_role("link", name="Alerts", exact=True).click()
    assert page.url.endswith("/ui/alerts")
    assert "canary fraud/2 rolled back" in page.get_by_test_id("open-alerts").inner_text()
    page.screenshot(path=str(SCREENSHOTS / "loopml-alerts.png"), full_page=True)
    assert failures == []
