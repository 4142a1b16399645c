"""The moderation app on the web: uploads, status and timeline (``/v1/contents``, ``/v1/timeline``),
the review API (``/v1/moderation``) and the dashboard pages (``/ui/moderation``).

``loopml.serving.app.create_app`` mounts this module as an app plug-in: it includes ``api_router``
and ``ui_router`` and adds ``NAV`` to the dashboard's top bar.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter

from loopml.apps.moderation.web.api import router as _contents_router
from loopml.apps.moderation.web.review_api import router as _review_router
from loopml.apps.moderation.web.ui import router as ui_router

api_router = APIRouter()
api_router.include_router(_contents_router)
api_router.include_router(_review_router)

NAV = [("Moderation", "/ui/moderation")]
TEMPLATES_DIR = Path(__file__).resolve().parent / "templates"

__all__ = ["NAV", "TEMPLATES_DIR", "api_router", "ui_router"]
