"""What every router needs: the app's ``Loopml`` client and its services, with clear failures.

Domain modules are optional at import time (a slim install, or a build where one is missing): a
route whose module cannot be imported answers 501 with the reason instead of crashing the app.
"""

from __future__ import annotations

from typing import Any, Literal

from fastapi import Request

from loopml.client import Loopml
from loopml.errors import ValidationError
from loopml.serving.errors import ModuleUnavailableError

#: Largest id / version number a request may carry: what a SQL BIGINT holds (SQLite and PostgreSQL).
#: Bigger numbers cannot name a stored record and would make the database driver raise.
MAX_INT = 2**63 - 1

SERVICE_MODULES = {
    "datasets": "loopml.data",
    "jobs": "loopml.storage.queue",
    "pipelines": "loopml.pipelines",
    "tracking": "loopml.tracking",
    "registry": "loopml.registry",
    "features": "loopml.features",
    "alerts": "loopml.alerts",
    "endpoints": "loopml.serving.endpoints",
    "notify": "loopml.notify",
    "async_requests": "loopml.serving.asynchronous",
    "monitors": "loopml.monitoring.monitors",
    "slos": "loopml.monitoring.slo",
    "alert_rules": "loopml.monitoring.rules",
    "loop": "loopml.monitoring.loop",
}


def get_client(request: Request) -> Loopml:
    """The ``Loopml`` client the app was created with (one per process, shared by all requests)."""
    return request.app.state.lm


def service(lm: Loopml, name: str) -> Any:
    """``lm.<name>``, or ``ModuleUnavailableError`` naming the module when it cannot be imported."""
    try:
        return getattr(lm, name)
    except ImportError as exc:
        module = SERVICE_MODULES.get(name, name)
        raise ModuleUnavailableError(
            f"The {name} service is not available: importing {module} failed ({exc}). "
            "Install a loopml build that includes it."
        ) from None


def parse_version(value: str, field: str = "version") -> int | Literal["latest"]:
    """``"3"`` -> 3, ``"latest"`` -> ``"latest"``; anything else names the field and the fix."""
    text = value.strip()
    if text == "latest":
        return "latest"
    try:
        number = int(text)
    except ValueError:
        raise ValidationError(
            f"{field}={value!r} is not a version: use a positive integer or 'latest'."
        ) from None
    if number < 1:
        raise ValidationError(f"{field}={value!r}: versions start at 1; use a positive integer or 'latest'.")
    if number > MAX_INT:
        raise ValidationError(f"{field}={value!r} is too large: version numbers are at most {MAX_INT}.")
    return number
