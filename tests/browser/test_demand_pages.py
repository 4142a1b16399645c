"""Headless Chromium opens the demand dashboard and sees the charts drawn (loopback only)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from loopml import Loopml
from loopml.serving.app import create_app
from test_demand_web import WEEKS, populate

pytestmark = pytest.mark.browser
SCREENSHOTS = Path("/tmp")


def test_demand_overview_and_store_pages_draw_their_charts(
    lm_sqlite: Loopml, live_server: Any, page: Any
) -> None:
    populate(lm_sqlite)
    server = live_server(create_app(lm_sqlite))
    failures: list[str] = []
    page.on("pageerror", lambda exc: failures.append(f"page error: {exc}"))
    page.on("requestfailed", lambda req: failures.append(f"request failed: {req.url}"))
    page.route(
        re.compile(r"^(?!http://127\.0\.0\.1).*"), lambda route: route.abort()
    )  # nothing leaves loopback

    page.goto(server.url + "/ui/")
    page.get_by_role("link", name="Demand", exact=True).click()
    assert page.url.endswith("/ui/demand")
    assert page.get_by_test_id("card-weeks").inner_text().split()[2] == str(len(WEEKS))
    assert "no clear difference" in page.get_by_test_id("card-ab").inner_text()
    for name in ("errors", "costs"):
        page.get_by_test_id(f"plot-{name}").locator("svg.main-svg").first.wait_for()
    assert (
        page.get_by_test_id("plot-errors").locator(".scatterlayer .trace").count() == 4
    )  # published + 3 arms
    assert "interval coverage" in page.get_by_test_id("trust").inner_text()
    page.screenshot(path=str(SCREENSHOTS / "loopml-demand-overview.png"), full_page=True)

    page.get_by_test_id("top-stores").get_by_role("link", name="store 3").click()
    assert page.get_by_test_id("store-title").inner_text() == "Store 3"
    for name in ("day", "hour", "heatmap", "errors"):
        page.get_by_test_id(f"plot-{name}").locator("svg.main-svg").first.wait_for()
    assert page.get_by_test_id("plot-heatmap").locator(".heatmaplayer, .hm").count() >= 1
    page.get_by_test_id("week-selector").locator("select").select_option(WEEKS[0])
    page.wait_for_url(re.compile(r"week=2026-11-16"))
    daily = page.get_by_test_id("plot-day")
    daily.locator("svg.main-svg").first.wait_for()
    assert "actual" in daily.inner_text()  # this week's actuals have landed
    page.screenshot(path=str(SCREENSHOTS / "loopml-demand-store.png"), full_page=True)

    page.goto(server.url + "/ui/demand/ab")
    page.get_by_test_id("plot-ci").locator("svg.main-svg").first.wait_for()
    page.screenshot(path=str(SCREENSHOTS / "loopml-demand-ab.png"), full_page=True)
    page.goto(server.url + "/ui/demand/staffing")
    page.get_by_test_id("plot-stores").locator("svg.main-svg").first.wait_for()
    assert page.get_by_test_id("plan").locator("tbody tr").count() == 3
    page.screenshot(path=str(SCREENSHOTS / "loopml-demand-staffing.png"), full_page=True)
    assert failures == []
