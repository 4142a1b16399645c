"""The demand app on the web: JSON/CSV API under ``/v1/demand`` and dashboard pages under ``/ui/demand``.

``loopml.serving.app.create_app`` mounts this module as an app plug-in: it includes ``api_router`` and
``ui_router``, adds ``NAV`` to the dashboard's top bar and searches ``TEMPLATES_DIR`` for the pages.
"""

from __future__ import annotations

from pathlib import Path

from loopml.apps.demand.web.api import router as api_router
from loopml.apps.demand.web.ui import router as ui_router

NAV = [("Demand", "/ui/demand")]
TEMPLATES_DIR = Path(__file__).resolve().parent / "templates"

__all__ = ["NAV", "TEMPLATES_DIR", "api_router", "ui_router"]
