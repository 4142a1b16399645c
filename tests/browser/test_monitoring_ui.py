"""Headless Chromium opens the health overview, a monitor and a loop run, and sees the Plotly charts drawn."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from loopml import Loopml
from loopml.serving.app import create_app
from test_ui_monitoring import ENDPOINT, MONITOR, populate_monitoring

pytestmark = pytest.mark.browser
SCREENSHOTS = Path("/tmp")


def _watch(page: Any) -> list[str]:
    failures: list[str] = []
    page.on("pageerror", lambda exc: failures.append(f"page error: {exc}"))
    page.on(
        "console",
        lambda msg: failures.append(f"console {msg.type}: {msg.text}") if msg.type == "error" else None,
    )
    page.on("requestfailed", lambda req: failures.append(f"request failed: {req.url}"))
    page.route(
        re.compile(r"^(?!http://127\.0\.0\.1).*"), lambda route: route.abort()
    )  # nothing leaves loopback
    return failures


def _drawn(page: Any, *names: str) -> None:
    for name in names:
        page.get_by_test_id(f"plot-{name}").locator("svg.main-svg").first.wait_for()


def test_monitoring_pages_draw_their_charts(lm_sqlite: Loopml, live_server: Any, page: Any) -> None:
    made = populate_monitoring(lm_sqlite)
    server = live_server(create_app(lm_sqlite, apps=()))
    failures = _watch(page)

    page.goto(server.url + "/ui/")
    page.get_by_role("link", name="Health", exact=True).click()
    assert page.url.endswith("/ui/overview")
    _drawn(
        page,
        f"spark-requests-{ENDPOINT}",
        f"spark-p99-{ENDPOINT}",
        "alerts",
        "budgets",
        "queues",
        "pipeline-runs",
    )
    assert page.get_by_test_id("plot-budgets").locator(".barlayer .point").count() == 3
    page.screenshot(path=str(SCREENSHOTS / "loopml-health.png"), full_page=True)

    page.get_by_role("link", name="Monitors", exact=True).click()
    page.get_by_test_id(f"monitor-{MONITOR}").get_by_role("link", name=MONITOR, exact=True).click()
    assert page.get_by_test_id("monitor-name").inner_text() == MONITOR
    _drawn(page, "heatmap", "share", "feature", "distribution", "performance", "slices", "gaps")
    assert page.get_by_test_id("plot-heatmap").locator(".hm, .heatmaplayer image, image").count() >= 1
    assert page.get_by_test_id("plot-distribution").locator(".barlayer .trace").count() == 2
    page.screenshot(path=str(SCREENSHOTS / "loopml-monitor.png"), full_page=True)

    page.get_by_test_id("drift-selector").locator("select[name=feature]").select_option("region")
    page.wait_for_url(re.compile(r"feature=region"))
    _drawn(page, "distribution")
    assert "region" in page.get_by_test_id("feature-verdict").inner_text()

    page.get_by_role("link", name="SLOs", exact=True).click()
    _drawn(page, "budgets", "slo-scores-p99", "slo-scores-errors", "slo-default-queue")

    page.get_by_role("link", name="Loop", exact=True).click()
    _drawn(page, "loop-history")
    page.get_by_test_id(f"loop-run-{made['run_id']}").get_by_role("link", name=str(made["run_id"])).click()
    _drawn(page, "story")
    assert page.get_by_test_id("plot-story").locator(".scatterlayer .point").count() >= 6
    assert "promoted" in page.get_by_test_id("loop-run-title").inner_text()
    page.screenshot(path=str(SCREENSHOTS / "loopml-loop-run.png"), full_page=True)
    page.get_by_test_id("loop-links").get_by_role("link", name=f"endpoint {ENDPOINT}").click()
    assert page.url.endswith(f"/ui/endpoints/{ENDPOINT}")
    assert failures == []
