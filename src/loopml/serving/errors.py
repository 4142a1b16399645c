"""One error shape for the whole HTTP surface: ``{"error", "detail", "field"}`` with the right status.

Clients (and the dashboard) should never have to parse a traceback or FastAPI's nested validation
format: every failure names the offending field and how to fix it, exactly like the CLI does.
Dashboard pages (``/ui/...``) get the same information rendered as an HTML page instead of JSON.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from loopml.errors import LoopmlError
from loopml.serving.api.responses import JSONResponse

log = logging.getLogger("loopml.serving")


class AuthenticationError(LoopmlError):
    """A mutating route was called without the configured bearer token (or with a wrong one)."""

    status_code = 401


class ModuleUnavailableError(LoopmlError):
    """A loopml module a route needs is not part of this build (yet)."""

    status_code = 501


def error_code(exc: BaseException) -> str:
    """``NotFoundError`` -> ``not_found``: a stable, machine-readable name for the error class."""
    name = type(exc).__name__
    name = name.removesuffix("Error") or name
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


_LEADING_FIELD = re.compile(r"^(?:--)?([A-Za-z_][\w.]*)\s*=")


def field_from_message(message: str) -> str | None:
    """loopml messages start with ``field=value`` when one input is at fault: expose that field."""
    match = _LEADING_FIELD.match(message)
    return match.group(1) if match else None


def error_body(error: str, detail: str, field: str | None = None, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"error": error, "detail": detail, "field": field}
    body.update(extra)
    return body


def _wants_html(request: Request) -> bool:
    return request.url.path.startswith("/ui")


def _render(
    request: Request, status: int, body: dict[str, Any], headers: dict[str, str] | None = None
) -> Response:
    templates = getattr(request.app.state, "templates", None)
    if _wants_html(request) and templates is not None:
        return templates.TemplateResponse(
            request, "error.html", {"status": status, "error": body}, status_code=status, headers=headers
        )
    return JSONResponse(body, status_code=status, headers=headers)


async def _loopml_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, LoopmlError)
    status = exc.status_code
    if status >= 500:
        log.warning("%s %s -> %s: %s", request.method, request.url.path, status, exc)
    headers = {"WWW-Authenticate": 'Bearer realm="loopml"'} if status == 401 else None
    body = error_body(error_code(exc), str(exc), getattr(exc, "field", None) or field_from_message(str(exc)))
    return _render(request, status, body, headers)


def describe_validation_errors(errors: list[dict[str, Any]]) -> tuple[str | None, str, list[dict[str, Any]]]:
    """Turn FastAPI/pydantic error dicts into (first field, one readable sentence, per-field list)."""
    items = []
    for err in errors:
        loc = [str(p) for p in err.get("loc", ())]
        where = loc[0] if loc and loc[0] in ("body", "query", "path", "header", "cookie") else None
        field = ".".join(loc[1:] if where else loc) or (where or "request")
        message = str(err.get("msg", "invalid value"))
        if err.get("type") == "json_invalid":  # loc is ("body", <character offset>): the body is at fault
            field = "body"
            reason = (err.get("ctx") or {}).get("error")
            message = f"{message} at character {loc[1]}" if len(loc) > 1 else message
            message += f" ({reason}); send valid JSON" if reason else "; send valid JSON"
        hint = f"{field} ({where}): {message}" if where else f"{field}: {message}"
        if "input" in err and err.get("type") not in ("missing", "json_invalid"):
            hint += f" (got {err['input']!r})"
        items.append({"field": field, "in": where, "message": message, "type": err.get("type")})
        items[-1]["text"] = hint
    first = items[0]["field"] if items else None
    detail = "Invalid request: " + "; ".join(i["text"] for i in items) + ". Fix the named field(s) and retry."
    return first, detail, [{k: v for k, v in i.items() if k != "text"} for i in items]


async def _request_validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    field, detail, items = describe_validation_errors(list(exc.errors()))
    return _render(request, 422, error_body("validation", detail, field, errors=items))


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code == 404:
        detail = f"No route {request.method} {request.url.path}. See /openapi.json (or /docs) for the API, /ui/ for the dashboard."
    elif exc.status_code == 405:
        detail = f"{request.method} is not allowed on {request.url.path}. See /openapi.json for the methods it accepts."
    else:
        detail = str(exc.detail)
    field = None
    # FastAPI/Starlette raise a 400 only while reading the body (undecodable bytes, broken multipart).
    if exc.status_code == 400:
        field = "body"
        detail = (
            f"body: {detail.rstrip('.')}. Send a well-formed body (UTF-8 JSON, or multipart/form-data "
            "for uploads) and retry."
        )
    code = {400: "bad_request", 404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http")
    return _render(request, exc.status_code, error_body(code, detail, field), dict(exc.headers or {}) or None)


async def _unexpected_error(request: Request, exc: Exception) -> Response:
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    detail = f"Internal error ({type(exc).__name__}: {exc}). This is a bug in loopml; the server log has the traceback."
    return _render(request, 500, error_body("internal", detail))


def install_error_handlers(app: FastAPI) -> None:
    """Register the handlers on ``app`` so every failure leaves the server in the shape above."""
    app.add_exception_handler(LoopmlError, _loopml_error)
    app.add_exception_handler(RequestValidationError, _request_validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected_error)
