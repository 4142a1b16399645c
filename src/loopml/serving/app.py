"""The HTTP application: admin API under ``/v1/``, dashboard under ``/ui/``, health and metrics.

``create_app`` builds one FastAPI app around one ``Loopml`` client, so every request reuses the
same connection pools and services. It accepts what a caller already has (a client, a context,
settings, or nothing: read ``loopml.toml`` / ``LOOPML_*``), which keeps tests, ``loopml serve`` and
embedding in another ASGI app on the same code path.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import RedirectResponse
from fastapi.staticfiles import StaticFiles
from starlette.responses import Response

from loopml.client import Loopml
from loopml.config import Settings, load_settings
from loopml.context import Context
from loopml.errors import LoopmlError
from loopml.serving.api import build_router
from loopml.serving.api.responses import JSONResponse
from loopml.serving.errors import install_error_handlers
from loopml.serving.metrics import JobQueueCollector, Metrics, PrometheusMiddleware

log = logging.getLogger("loopml.serving")

STATIC_DIR = Path(__file__).resolve().parent.parent / "web" / "static"
#: Routers contributed by other serving modules when they are installed (module, attribute).
OPTIONAL_ROUTERS: tuple[tuple[str, str], ...] = (("loopml.serving.endpoints", "router"),)
#: Reference systems that plug into the app: each module exposes ``api_router``, ``ui_router``
#: (FastAPI ``APIRouter``s), ``NAV`` (``[(label, href)]``) and optionally ``TEMPLATES_DIR``.
BUILTIN_APPS: tuple[str, ...] = ("loopml.apps.demand.web", "loopml.apps.moderation.web")


def create_app(
    source: Loopml | Context | Settings | None = None,
    *,
    routers: Sequence[APIRouter] = (),
    apps: Sequence[str] | None = None,
) -> FastAPI:
    """Build the app. A client passed in stays owned by the caller; one built here is closed on shutdown.

    ``apps`` names the app plug-in modules to mount (default ``BUILTIN_APPS``; ``()`` for none).
    """
    lm, owned = _client(source)
    plugins = load_apps(BUILTIN_APPS if apps is None else apps)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        try:
            lm.ctx.db.ensure_schema()
        except LoopmlError as exc:  # keep serving: /healthz reports the outage with a 503
            log.warning("metadata database not ready at start-up: %s", exc)
        runtime_hooks = _endpoint_runtime_hooks()
        if runtime_hooks is not None:
            runtime_hooks.start_runtime(app)
        yield
        if runtime_hooks is not None:
            runtime_hooks.stop_runtime(app)
        if owned:
            lm.close()

    from loopml import __version__

    app = FastAPI(
        title="loopml",
        version=__version__,
        description=(
            "Admin API and dashboard of a loopml installation. Reads are open; routes that change state "
            "need `Authorization: Bearer <token>` when the server has `api_token` set."
        ),
        default_response_class=JSONResponse,
        lifespan=lifespan,
    )
    app.state.lm = lm
    app.state.settings = lm.settings
    app.state.api_token = lm.settings.api_token
    metrics = Metrics(mounts=("/static",))
    metrics.add_collector(JobQueueCollector(lambda: lm.jobs))
    app.state.metrics = metrics

    install_error_handlers(app)
    app.add_middleware(PrometheusMiddleware, metrics=metrics, skip=_measured_by_endpoints)
    fast_path = getattr(_endpoint_runtime_hooks(), "PredictFastPath", None)
    if fast_path is not None:  # the predict hot path skips routing and the generic middleware
        app.add_middleware(fast_path)
    _add_system_routes(app)
    app.include_router(build_router())
    for router in (*_optional_routers(), *routers):
        app.include_router(router)
    for plugin in plugins:
        app.include_router(plugin.api_router)

    from loopml.web.routes import install_dashboard

    install_dashboard(app, apps=plugins)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    return app


def _measured_by_endpoints(path: str) -> bool:
    """``POST /v1/endpoints/{name}/predict`` exports its own series (``loopml_endpoint_*``)."""
    return path.endswith("/predict") and path.startswith("/v1/endpoints/")


def app_from_env() -> FastAPI:
    """Factory for ``uvicorn --factory`` and ``loopml serve``: settings from the working directory."""
    return create_app(load_settings())


def _client(source: Loopml | Context | Settings | None) -> tuple[Loopml, bool]:
    if isinstance(source, Loopml):
        return source, False
    if isinstance(source, Context):
        return Loopml.from_context(source), False
    if source is None or isinstance(source, Settings):
        return Loopml(source), True
    raise TypeError(f"create_app() takes a Loopml, Context or Settings, not {type(source).__name__}")


def load_apps(names: Sequence[str]) -> list[Any]:
    """Import the app plug-in modules; one that cannot be imported is logged and skipped.

    An app is an optional add-on: a missing extra (say LightGBM in a slim install) or a bug in one
    reference system must not take the admin API and the dashboard down with it.
    """
    found = []
    for name in names:
        try:
            module = importlib.import_module(name)
        except ImportError as exc:
            log.warning("app %s is not mounted: importing it failed (%s)", name, exc)
            continue
        missing = [
            attr
            for attr in ("api_router", "ui_router")
            if not isinstance(getattr(module, attr, None), APIRouter)
        ]
        if missing:
            log.warning("app %s is not mounted: it has no APIRouter %s", name, " / ".join(missing))
            continue
        found.append(module)
    return found


def _endpoint_runtime_hooks() -> Any:
    """The endpoint runtime's lifespan hooks (``start_runtime``/``stop_runtime``), when installed."""
    try:
        return importlib.import_module("loopml.serving.endpoints.predict_api")
    except ModuleNotFoundError:
        return None


def _optional_routers() -> list[APIRouter]:
    found = []
    for module_name, attribute in OPTIONAL_ROUTERS:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name != module_name:
                raise
            continue
        router = getattr(module, attribute, None)
        if isinstance(router, APIRouter):
            found.append(router)
    return found


def _add_system_routes(app: FastAPI) -> None:
    @app.get("/", include_in_schema=False)
    def root() -> RedirectResponse:
        return RedirectResponse("/ui/", status_code=307)

    @app.get("/healthz", tags=["system"], summary="Backend health: 200 when every backend answers, else 503")
    def healthz(request: Request) -> Response:
        lm: Loopml = request.app.state.lm
        backends = {name: _probe(check) for name, check in _health_checks(request.app, lm).items()}
        healthy = all(b["ok"] for b in backends.values() if b["status"] != "not installed")
        from loopml import __version__

        body = {"status": "ok" if healthy else "unavailable", "version": __version__, "backends": backends}
        return JSONResponse(body, status_code=200 if healthy else 503)

    @app.get("/metrics", tags=["system"], summary="Prometheus metrics (text exposition format)")
    def metrics(request: Request) -> Response:
        registry: Metrics = request.app.state.metrics
        return Response(registry.render(), media_type=registry.content_type)


def _health_checks(app: FastAPI, lm: Loopml) -> dict[str, Callable[[], str]]:
    checks: dict[str, Callable[[], str]] = {"metadata": lm.ctx.db.check, "artifacts": lm.ctx.artifacts.check}
    checks["online"] = lambda: _online_check(app, lm)
    return checks


class _NotInstalled(Exception):
    pass


def _online_check(app: FastAPI, lm: Loopml) -> str:
    store = getattr(app.state, "online_store", None)
    if store is None:
        try:
            from loopml.storage.online import open_online_store
        except ImportError as exc:
            raise _NotInstalled(f"loopml.storage.online is not available ({exc})") from None
        store = open_online_store(lm.settings.resolved_online_url)
        app.state.online_store = store
    return str(store.check())


def _probe(check: Callable[[], str]) -> dict[str, Any]:
    try:
        return {"ok": True, "status": "ok", "detail": check()}
    except _NotInstalled as exc:
        return {"ok": False, "status": "not installed", "detail": str(exc)}
    except LoopmlError as exc:
        return {"ok": False, "status": "unavailable", "detail": str(exc)}
    except Exception as exc:  # a health probe reports, it never raises
        return {"ok": False, "status": "unavailable", "detail": f"{type(exc).__name__}: {exc}"}
