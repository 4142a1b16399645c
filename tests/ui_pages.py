"""Reading dashboard pages in tests: the Plotly figure a page embeds, and a client for the UI.

Pages embed each figure as JSON in a ``data-figure`` attribute next to ``data-testid="plot-<name>"``;
the page tests assert on that JSON (the numbers drawn), so they share one way of finding it.
"""

from __future__ import annotations

import html
import json
import re
from typing import Any

from fastapi.testclient import TestClient

from loopml import Loopml
from loopml.serving.app import create_app


def page_figure(page: str, name: str) -> dict[str, Any]:
    """The figure ``plot-<name>`` embedded in ``page`` (the HTML text), as a dict."""
    match = re.search(rf"data-testid=\"plot-{re.escape(name)}\" data-figure='([^']*)'", page)
    assert match, f"no figure {name!r} on the page"
    return json.loads(html.unescape(match.group(1)))


def ui_client(lm: Loopml) -> TestClient:
    """A test client for the dashboard alone (no demo apps mounted)."""
    return TestClient(create_app(lm, apps=()))
