"""Bearer-token protection for mutating routes.

Reads stay open (dashboards, scrapers, health checks must not need a secret); anything that changes
state needs ``Authorization: Bearer <api_token>`` once ``api_token`` is configured. The comparison
is constant-time so the token cannot be recovered byte by byte from response timings.
"""

from __future__ import annotations

import hmac

from fastapi import Request

from loopml.serving.errors import AuthenticationError

ACTOR_HEADER = "X-Loopml-Actor"
MAX_ACTOR_LENGTH = 255


def configured_token(request: Request) -> str | None:
    """The token the app was started with (``None`` or empty means mutating routes are open)."""
    return getattr(request.app.state, "api_token", None) or None


def check_bearer(authorization: str | None, expected: str | None) -> None:
    """Raise ``AuthenticationError`` unless ``authorization`` carries ``expected`` (no-op when unset)."""
    if not expected:
        return
    if not authorization:
        raise AuthenticationError(
            "This route changes state and the server has an api_token configured: send the header "
            "'Authorization: Bearer <token>' (the value of LOOPML_API_TOKEN on the server)."
        )
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise AuthenticationError(
            f"Authorization header uses scheme {scheme!r}; send 'Authorization: Bearer <token>' instead."
        )
    if not hmac.compare_digest(token.strip().encode(), expected.encode()):
        raise AuthenticationError(
            "The bearer token in the Authorization header is wrong; use the server's LOOPML_API_TOKEN."
        )


def require_token(request: Request) -> str:
    """FastAPI dependency for mutating routes; returns the actor recorded in audit events.

    The actor is taken from the ``X-Loopml-Actor`` header (so a person or CI job can be named in
    the audit trail) and defaults to ``api``.
    """
    check_bearer(request.headers.get("authorization"), configured_token(request))
    actor = (request.headers.get(ACTOR_HEADER) or "api").strip() or "api"
    return actor[:MAX_ACTOR_LENGTH]
