"""Headless Chromium: an operator clears a 3-item review queue with the keyboard only (loopback only)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from loopml import Loopml
from loopml.serving.app import create_app
from test_moderation_review import held

pytestmark = pytest.mark.browser
SCREENSHOTS = Path("/tmp")


def test_operator_clears_the_queue_with_the_keyboard(lm_sqlite: Loopml, live_server: Any, page: Any) -> None:
    from playwright.sync_api import expect

    first, second, third = held(lm_sqlite, 3)
    server = live_server(create_app(lm_sqlite, apps=["loopml.apps.moderation.web"]))
    failures: list[str] = []
    page.on("pageerror", lambda exc: failures.append(f"page error: {exc}"))
    page.route(
        re.compile(r"^(?!http://127\.0\.0\.1).*"), lambda route: route.abort()
    )  # nothing leaves loopback

    page.goto(server.url + "/ui/moderation/review")
    items = page.get_by_test_id("review-item")
    expect(items).to_have_count(3)
    expect(items.first).to_have_class(re.compile("current"))
    page.screenshot(path=str(SCREENSHOTS / "loopml-moderation-review.png"), full_page=True)

    page.keyboard.press("a")  # approve the oldest
    expect(items).to_have_count(2)
    expect(page.get_by_test_id("review-status")).to_contain_text(f"Published {first}")
    page.keyboard.press("j")  # next: the third upload
    expect(items.nth(1)).to_have_class(re.compile("current"))
    page.keyboard.press("r")  # reject it
    expect(items).to_have_count(1)
    page.keyboard.press("k")  # previous (the only one left)
    page.keyboard.press("a")
    expect(items).to_have_count(0)
    expect(page.get_by_test_id("queue-empty")).to_be_visible()

    statuses = {i: lm_sqlite.async_requests.get(i).status for i in (first, second, third)}
    assert statuses == {first: "published", second: "published", third: "rejected"}
    assert all(lm_sqlite.async_requests.get(i).result["review"]["reviewer"] == "api" for i in statuses)
    page.goto(server.url + "/ui/moderation")
    page.get_by_test_id("plot-capacity").locator("svg.main-svg").first.wait_for()
    assert page.get_by_test_id("card-queue").inner_text().split()[3] == "0"
    page.screenshot(path=str(SCREENSHOTS / "loopml-moderation-overview.png"), full_page=True)
    assert failures == []
