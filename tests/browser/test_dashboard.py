"""Headless Chromium opens every dashboard page and finds the real data on it (loopback only)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from loopml import Loopml
from loopml.serving.app import create_app
from test_ui import populate_dashboard

pytestmark = pytest.mark.browser
SCREENSHOTS = Path("/tmp")


def test_dashboard_pages_show_real_data(lm_sqlite: Loopml, live_server: Any, page: Any) -> None:
    data = populate_dashboard(lm_sqlite)
    server = live_server(create_app(lm_sqlite))
    failures: list[str] = []
    page.on("pageerror", lambda exc: failures.append(f"page error: {exc}"))
    page.on("requestfailed", lambda req: failures.append(f"request failed: {req.url}"))
    page.route(
        re.compile(r"^(?!http://127\.0\.0\.1).*"), lambda route: route.abort()
    )  # nothing leaves loopback

    page.goto(server.url + "/")  # redirects to /ui/
    assert page.url.endswith("/ui/")
    assert page.get_by_test_id("card-datasets").inner_text().split()[1] == "1"
    assert "job.dead" in page.get_by_test_id("events").inner_text()
    page.screenshot(path=str(SCREENSHOTS / "loopml-overview.png"), full_page=True)

    page.get_by_role("link", name="Datasets", exact=True).click()
    page.get_by_role("link", name=data.dataset).click()
    assert page.get_by_test_id("dataset-name").inner_text() == data.dataset
    assert page.get_by_test_id("quarantined-count").inner_text() == str(data.quarantined)
    quarantine = page.get_by_test_id("quarantine")
    assert quarantine.locator("tbody tr").count() == data.quarantined
    assert "store: greater_than_or_equal_to(1)" in quarantine.inner_text()

    page.get_by_role("link", name="Runs", exact=True).click()
    page.get_by_role("link", name="baseline-lr").click()
    chart = page.locator('.metric-chart[data-metric="rmse"]')
    chart.locator("svg.main-svg").first.wait_for()
    assert chart.locator(".scatterlayer .trace").count() == 1
    assert "alpha" in page.get_by_test_id("params").inner_text()
    page.screenshot(path=str(SCREENSHOTS / "loopml-run.png"), full_page=True)

    page.get_by_role("link", name="Models", exact=True).click()
    page.get_by_role("link", name=data.model).click()
    champion = page.get_by_test_id("alias-champion").inner_text()
    assert "v2" in champion
    assert "v1" in page.get_by_test_id("alias-challenger").inner_text()
    assert page.get_by_test_id("model-versions").locator("tbody tr").count() == 2
    gates = page.get_by_test_id("gates").inner_text()
    assert "passed" in gates
    page.screenshot(path=str(SCREENSHOTS / "loopml-model.png"), full_page=True)
    page.get_by_test_id("model-versions").get_by_role("link", name="store_visits@1").first.click()
    assert page.get_by_test_id("dataset-name").inner_text() == data.dataset

    page.get_by_role("link", name="Pipelines", exact=True).click()
    page.get_by_role("link", name=data.pipeline_run_id[:12]).click()
    steps = page.get_by_test_id("steps").inner_text()
    assert "ui_load" in steps and "ui_total" in steps and "succeeded" in steps

    page.get_by_role("link", name="Jobs", exact=True).click()
    assert "the handler exploded" in page.get_by_test_id("dead-letters").inner_text()
    assert page.get_by_test_id("jobs-dead").inner_text().split()[-1] == "1"

    page.get_by_role("link", name="Features", exact=True).click()
    assert page.locator("h1").inner_text() == "Features"
    views = page.get_by_test_id("feature-views").inner_text()
    assert "store_weather" in views and "temp_avg" in views
    assert failures == []
