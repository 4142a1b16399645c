"""The dashboard: server-rendered pages under ``/ui/`` with locally served Plotly.js and htmx.

App plug-ins (``loopml.apps.<name>.web``) render their pages with ``loopml.web.render(request,
template, active, **context)`` so they share the layout, the nav and the number filters.
"""

from __future__ import annotations

from typing import Any

__all__ = ["render"]


def __getattr__(name: str) -> Any:
    # Lazy: importing loopml.web must not pull in FastAPI and Jinja for a process that only scores.
    if name == "render":
        from loopml.web.routes import render

        return render
    raise AttributeError(f"module 'loopml.web' has no attribute {name!r}")
