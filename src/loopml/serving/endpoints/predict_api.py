"""Data-plane routes: ``POST /v1/endpoints/{name}/predict``, ``.../feedback``, ``GET .../status``.

The predict route is the hot path: the raw body is parsed with orjson (no pydantic model), the
routing runs on the event loop, the model call runs inline (fast models) or in the runtime's pool
under the endpoint's timeout, and the response is serialised with orjson. The request schema is
still published in the OpenAPI document (``openapi_extra``) so clients and fuzzers know the shape.

``PredictFastPath`` (installed by the app as a middleware) answers ``POST .../predict`` before
FastAPI's routing, dependency solving and the generic Prometheus middleware: those cost more than a
200-tree booster. It runs the very same functions as the route, and errors go through the app's own
exception handlers, so the answers are identical; the route stays for the OpenAPI document and for
apps built without the middleware.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from typing import Any

import orjson
from fastapi import APIRouter, FastAPI, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from loopml.checks import check_keys
from loopml.errors import LoopmlError, ValidationError
from loopml.serving.auth import ACTOR_HEADER, MAX_ACTOR_LENGTH

log = logging.getLogger("loopml.serving.endpoints")

router = APIRouter(prefix="/v1/endpoints", tags=["endpoints"])
_lock = threading.Lock()
#: Fields of a predict body; anything else is refused by name.
PREDICT_FIELDS = ("rows", "row", "request_id", "routing_key")
FEEDBACK_FIELDS = ("request_id", "label", "reward")
MAX_FEEDBACK_ITEMS = 10_000

_ROW = {"type": "object", "additionalProperties": True, "description": "column -> value"}
_PREDICT_BODY = {
    "required": True,
    "content": {
        "application/json": {
            "schema": {
                "type": "object",
                "properties": {
                    "rows": {"type": "array", "items": _ROW, "minItems": 1},
                    "row": _ROW,
                    "request_id": {"type": "string", "minLength": 1, "maxLength": 128},
                    "routing_key": {"type": ["string", "number"]},
                },
                "additionalProperties": False,
            },
            "example": {"rows": [{"amount": 12.5, "hour": 3}], "routing_key": "user-42"},
        }
    },
}
_FEEDBACK_ITEM = {
    "type": "object",
    "properties": {
        "request_id": {"type": "string", "minLength": 1},
        "label": {"type": ["number", "string", "boolean", "null"]},
        "reward": {"type": ["number", "null"]},
    },
    "required": ["request_id"],
    "additionalProperties": False,
}
_FEEDBACK_BODY = {
    "required": True,
    "content": {
        "application/json": {
            "schema": {
                "oneOf": [
                    _FEEDBACK_ITEM,
                    {
                        "type": "object",
                        "properties": {"items": {"type": "array", "items": _FEEDBACK_ITEM, "minItems": 1}},
                        "required": ["items"],
                        "additionalProperties": False,
                    },
                ]
            },
            "example": {"request_id": "3f2a9c...", "label": 1},
        }
    },
}


# ---------------------------------------------------------------------- runtime lifecycle (app lifespan)


def ensure_runtime(app: FastAPI) -> Any:
    """The app's EndpointRuntime, created (and started) on first use when the lifespan did not run."""
    runtime = getattr(app.state, "endpoint_runtime", None)
    if runtime is not None:
        return runtime
    with _lock:
        runtime = getattr(app.state, "endpoint_runtime", None)
        if runtime is None:
            runtime = _build_runtime(app)
            app.state.endpoint_runtime = runtime
    return runtime


def _build_runtime(app: FastAPI) -> Any:
    from loopml.serving.endpoints.runtime import EndpointRuntime, _inference_service
    from loopml.serving.endpoints.serving_metrics import EndpointMetrics

    lm = app.state.lm
    app_metrics = getattr(app.state, "metrics", None)
    metrics = EndpointMetrics(app_metrics.registry if app_metrics is not None else None)
    writer = None
    try:
        inference = _inference_service(lm)
        # small, frequent batches: a flush holds the GIL while it builds rows, so keep each one short
        writer = inference.writer(flush_rows=200, flush_interval=0.1) if inference is not None else None
    except Exception as exc:  # serving without a log beats not serving; say so loudly
        log.error("inference log unavailable (%s): predictions will not be logged", exc)
    app.state.endpoint_log_writer = writer
    return EndpointRuntime(lm, log_writer=writer, metrics=metrics).start()


def start_runtime(app: FastAPI) -> None:
    """Lifespan start: load endpoints before the first request (errors are logged, not raised)."""
    try:
        ensure_runtime(app)
    except Exception as exc:
        log.error("endpoint runtime did not start: %s (it is retried on the first predict)", exc)


def stop_runtime(app: FastAPI) -> None:
    """Lifespan stop: stop the watcher, drain shadows, flush the inference log."""
    runtime = getattr(app.state, "endpoint_runtime", None)
    if runtime is not None:
        app.state.endpoint_runtime = None
        runtime.drain_shadows(timeout=2.0)
        runtime.close()
    writer = getattr(app.state, "endpoint_log_writer", None)
    if writer is not None:
        app.state.endpoint_log_writer = None
        try:
            writer.close()
        except Exception as exc:
            log.warning("closing the inference log writer failed: %s", exc)


async def _runtime(request: Request) -> Any:
    runtime = getattr(request.app.state, "endpoint_runtime", None)
    if runtime is None:
        runtime = await run_in_threadpool(ensure_runtime, request.app)
    return runtime


# ---------------------------------------------------------------------- body parsing


def parse_json(body: bytes) -> Any:
    if not body:
        raise ValidationError('body is empty: send a JSON object like {"rows": [{...}]}', field="body")
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise ValidationError(
            f"body is not valid JSON ({exc}); NaN and Infinity are not JSON either: send null or a finite number",
            field="body",
        ) from None


def predict_payload(payload: Any) -> tuple[list[Any], str | None, Any]:
    """(rows, request_id, routing_key) from ``{"rows": [...]}`` or ``{"row": {...}}``."""
    if not isinstance(payload, dict):
        raise ValidationError(
            f"body must be a JSON object with 'rows' (a list of objects) or 'row'; got {type(payload).__name__}",
            field="body",
        )
    check_keys(payload, PREDICT_FIELDS, owner="a predict body")
    if "rows" in payload and "row" in payload:
        raise ValidationError("send either 'rows' (a list) or 'row' (one object), not both", field="rows")
    if "rows" in payload:
        rows = payload["rows"]
        if not isinstance(rows, list):
            raise ValidationError(
                f"rows must be a list of objects; got {type(rows).__name__} (use 'row' for a single object)",
                field="rows",
            )
    elif "row" in payload:
        row = payload["row"]
        if not isinstance(row, dict):
            raise ValidationError(
                f"row must be an object (column -> value); got {type(row).__name__}", field="row"
            )
        rows = [row]
    else:
        raise ValidationError('rows is required: send {"rows": [{...}, ...]} or {"row": {...}}', field="rows")
    return rows, payload.get("request_id"), payload.get("routing_key")


def _actor(request: Request) -> str:
    actor = request.headers.get(ACTOR_HEADER, "").strip()
    if not actor:
        return "api"
    if len(actor) > MAX_ACTOR_LENGTH or not actor.isprintable():
        raise ValidationError(
            f"{ACTOR_HEADER} must be one printable line of at most {MAX_ACTOR_LENGTH} characters",
            field="actor",
        )
    return actor


def feedback_items(payload: Any) -> list[dict[str, Any]]:
    """Normalise a feedback body to a list of ``{"request_id", "label"?, "reward"?}`` items."""
    if not isinstance(payload, dict):
        raise ValidationError(
            f"body must be a JSON object ({{'request_id', 'label'|'reward'}} or {{'items': [...]}}); "
            f"got {type(payload).__name__}",
            field="body",
        )
    if "items" in payload:
        extra = [k for k in payload if k != "items"]
        if extra:
            raise ValidationError(f"{extra[0]!r}: not allowed next to 'items'", field=str(extra[0]) or "body")
        items = payload["items"]
        if not isinstance(items, list) or not items:
            raise ValidationError("items must be a non-empty list of feedback objects", field="items")
        if len(items) > MAX_FEEDBACK_ITEMS:
            raise ValidationError(
                f"items has {len(items)} entries; send at most {MAX_FEEDBACK_ITEMS} per request",
                field="items",
            )
        return [_feedback_item(item, f"items[{i}]") for i, item in enumerate(items)]
    return [_feedback_item(payload, "")]


def _feedback_item(item: Any, where: str) -> dict[str, Any]:
    prefix = f"{where}." if where else ""
    if not isinstance(item, Mapping):
        raise ValidationError(
            f"{where or 'body'} must be an object with request_id and label or reward", field=where or "body"
        )
    check_keys(item, FEEDBACK_FIELDS, where=where, owner="feedback")
    rid = item.get("request_id")
    if not isinstance(rid, str) or not rid:
        raise ValidationError(
            f"{prefix}request_id is required: the request_id a predict response returned",
            field=f"{prefix}request_id",
        )
    if item.get("label") is None and item.get("reward") is None:
        raise ValidationError(f"{prefix}label or {prefix}reward is required", field=f"{prefix}label")
    return {"request_id": rid, "label": item.get("label"), "reward": item.get("reward")}


def _json(data: Any, status_code: int = 200) -> Response:
    return Response(
        orjson.dumps(data, option=orjson.OPT_SERIALIZE_NUMPY),
        status_code=status_code,
        media_type="application/json",
    )


# ---------------------------------------------------------------------- the hot path

_PREFIX = "/v1/endpoints/"
_SUFFIX = "/predict"
_JSON_HEADERS = (b"content-type", b"application/json")


class PredictFastPath:
    """Pure ASGI middleware answering ``POST /v1/endpoints/{name}/predict`` directly.

    Every other request (and a predict path whose name holds a ``/``, which the route would not
    match either) goes on to the app unchanged.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "") if scope["type"] == "http" else ""
        if not (path.endswith(_SUFFIX) and path.startswith(_PREFIX) and scope.get("method") == "POST"):
            await self.app(scope, receive, send)
            return
        name = path[len(_PREFIX) : -len(_SUFFIX)]
        if not name or "/" in name:
            await self.app(scope, receive, send)
            return
        app = scope["app"]
        try:
            body = await _read_body(receive)
            if body is None:  # the client went away
                return
            payload = parse_json(body)
            rows, request_id, routing_key = predict_payload(payload)
            runtime = getattr(app.state, "endpoint_runtime", None)
            if runtime is None:
                runtime = await run_in_threadpool(ensure_runtime, app)
            result = await runtime.predict_async(name, rows, request_id=request_id, routing_key=routing_key)
            content = orjson.dumps(result.to_dict(), option=orjson.OPT_SERIALIZE_NUMPY)
        except Exception as exc:
            handler = _exception_handler(app, exc)
            if handler is None:
                raise
            response = await handler(Request(scope), exc)
            await response(scope, receive, send)
            return
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [_JSON_HEADERS, (b"content-length", str(len(content)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": content})


async def _read_body(receive: Receive) -> bytes | None:
    chunks = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks) if len(chunks) != 1 else chunks[0]


def _exception_handler(app: Any, exc: Exception) -> Any:
    """The app's handler for ``exc`` (most specific class first), as the route would have used."""
    handlers = getattr(app, "exception_handlers", {})
    for cls in type(exc).__mro__:
        handler = handlers.get(cls)
        if handler is not None:
            return handler
    return None


# ---------------------------------------------------------------------- routes


@router.post(
    "/{name}/predict",
    summary="Predict one or many rows with the endpoint's current policy",
    description=(
        'Body: `{"rows": [{column: value, ...}, ...]}` or `{"row": {...}}`, optional `request_id` and '
        "`routing_key` (sticky A/B assignment). Rows are checked against the serving model's signature; "
        "NaN/Infinity, missing, extra or wrongly typed columns and batches over `max_batch_rows` are a 422 "
        "naming the field. The response carries the outputs, the model version and arm that answered, the "
        "request id (for feedback), the server latency and `status` (`ok` or the fallback's status)."
    ),
    openapi_extra={"requestBody": _PREDICT_BODY},
    responses={
        404: {"description": "Unknown endpoint"},
        422: {"description": "Invalid input"},
        503: {"description": "No model could answer and the endpoint has no fallback"},
    },
)
async def predict(name: str, request: Request) -> Response:
    payload = parse_json(await request.body())
    rows, request_id, routing_key = predict_payload(payload)
    runtime = await _runtime(request)
    result = await runtime.predict_async(name, rows, request_id=request_id, routing_key=routing_key)
    return _json(result.to_dict())


@router.post(
    "/{name}/feedback",
    summary="Attach labels or rewards to logged predictions by request id",
    description=(
        'Body: `{"request_id": ..., "label": ...}` or `{"request_id": ..., "reward": 1.0}`, or '
        '`{"items": [...]}` for many. Works days later; an unknown request id is a 404 naming it.'
    ),
    openapi_extra={"requestBody": _FEEDBACK_BODY},
    responses={404: {"description": "Unknown request id"}, 422: {"description": "Invalid feedback"}},
)
async def feedback(name: str, request: Request) -> Response:
    payload = parse_json(await request.body())
    items = feedback_items(payload)
    actor = _actor(request)
    from loopml.serving.endpoints.runtime import _inference_service

    inference = _inference_service(request.app.state.lm)
    if inference is None:
        raise LoopmlError("the inference log is not installed in this build; feedback cannot be stored")
    if len(items) == 1 and "items" not in payload:
        item = items[0]
        got = await run_in_threadpool(
            lambda: inference.feedback(
                name, item["request_id"], label=item["label"], reward=item["reward"], actor=actor
            )
        )
        return _json({"feedback": [got.to_dict()]})
    many = await run_in_threadpool(lambda: inference.feedback_many(name, items, actor=actor))
    return _json({"feedback": [f.to_dict() for f in many]})


@router.get(
    "/{name}/status",
    summary="Runtime state of an endpoint in this server process",
    description="Loaded model version per arm (and why a newer one is not live), circuit states, cache hit rate, routing state.",
)
async def status(name: str, request: Request) -> Response:
    runtime = await _runtime(request)
    return _json(runtime.status(name))
