"""Dashboard pages under ``/ui/``: server-rendered HTML over the same services as the JSON API.

Every page loads its data through ``lm.<service>``; a module that is missing from this build makes
its page show a "not available yet" panel instead of failing, and an unknown name (dataset, run,
model) renders the standard error page with a 404 that names what was not found.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

from fastapi import APIRouter, FastAPI, Query, Request
from fastapi.templating import Jinja2Templates
from jinja2 import ChoiceLoader, FileSystemLoader
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from loopml.client import Loopml
from loopml.serving.api.deps import MAX_INT, service
from loopml.serving.api.responses import to_jsonable
from loopml.serving.errors import ModuleUnavailableError
from loopml.web import endpoint_pages, pages
from loopml.web.format import install_filters

TEMPLATES_DIR = Path(__file__).resolve().parent / "templates"
NAV = (
    ("overview", "Overview", "/ui/"),
    ("health", "Health", "/ui/overview"),
    ("datasets", "Datasets", "/ui/datasets"),
    ("pipelines", "Pipelines", "/ui/pipelines"),
    ("runs", "Runs", "/ui/runs"),
    ("models", "Models", "/ui/models"),
    ("features", "Features", "/ui/features"),
    ("jobs", "Jobs", "/ui/jobs"),
    ("endpoints", "Endpoints", "/ui/endpoints"),
    ("alerts", "Alerts", "/ui/alerts"),
    ("monitors", "Monitors", "/ui/monitors"),
    ("slos", "SLOs", "/ui/slos"),
    ("loop", "Loop", "/ui/loop"),
)
T = TypeVar("T")

router = APIRouter(prefix="/ui", include_in_schema=False)


def install_dashboard(app: FastAPI, *, apps: Sequence[Any] = ()) -> None:
    """Attach the templates (also used by the HTML error handler) and the ``/ui`` routes to ``app``.

    Each app plug-in (see ``loopml.serving.app.BUILTIN_APPS``) adds its nav entries, its template
    directory (searched after the core one, so an app extends ``base.html`` but cannot replace it)
    and its ``ui_router``.
    """
    nav = list(NAV)
    search = [FileSystemLoader(str(TEMPLATES_DIR))]
    for plugin in apps:
        for label, href in getattr(plugin, "NAV", ()):
            nav.append((app_nav_key(href), label, href))
        directory = getattr(plugin, "TEMPLATES_DIR", None)
        if directory is not None and Path(directory).is_dir():
            search.append(FileSystemLoader(str(directory)))
    templates = Jinja2Templates(directory=str(TEMPLATES_DIR))
    templates.env.loader = ChoiceLoader(search)
    install_filters(templates.env)
    templates.env.globals["nav"] = tuple(nav)  # the error page renders without render()'s context
    app.state.templates = templates
    app.state.nav = tuple(nav)
    app.include_router(router)
    from loopml.web import monitoring_routes  # imports this module: include it once both exist

    app.include_router(monitoring_routes.router)
    for plugin in apps:
        app.include_router(plugin.ui_router)


def app_nav_key(href: str) -> str:
    """``/ui/demand`` -> ``demand``: the key a page passes as ``active`` to highlight its nav entry."""
    return href.removeprefix("/ui").strip("/").split("/")[0] or href


def available(lm: Loopml, name: str, load: Callable[[Any], T]) -> tuple[T | None, str | None]:
    """Run ``load(service)``; a missing module gives ``(None, message)`` for the page's empty state."""
    try:
        return load(service(lm, name)), None
    except ModuleUnavailableError as exc:
        return None, str(exc)


async def render(request: Request, template: str, active: str, **context: Any) -> Response:
    lm: Loopml = request.app.state.lm
    from loopml import __version__

    base = {
        "nav": getattr(request.app.state, "nav", NAV),
        "active": active,
        "version": __version__,
        "backend": "PostgreSQL" if lm.ctx.db.is_postgres else "SQLite",
        "now": datetime.now().astimezone(),
    }
    return request.app.state.templates.TemplateResponse(request, template, {**base, **context})


def _lm(request: Request) -> Loopml:
    return request.app.state.lm


@router.get("/")
async def overview(request: Request) -> Response:
    data = await run_in_threadpool(pages.overview, _lm(request))
    return await render(request, "overview.html", "overview", **data)


@router.get("/datasets")
async def datasets(request: Request) -> Response:
    lm = _lm(request)
    items, missing = await run_in_threadpool(available, lm, "datasets", lambda s: to_jsonable(s.list()))
    return await render(request, "datasets.html", "datasets", datasets=items or [], unavailable_msg=missing)


@router.get("/datasets/{name}")
async def dataset(
    request: Request,
    name: str,
    version: int | None = Query(None, ge=1, le=MAX_INT),
    limit: int = Query(100, ge=1, le=5000),
) -> Response:
    lm = _lm(request)
    service(lm, "datasets")
    data = await run_in_threadpool(pages.dataset, lm, name, version, limit)
    return await render(request, "dataset.html", "datasets", **data)


@router.get("/pipelines")
async def pipelines(request: Request, pipeline: str | None = None) -> Response:
    data = await run_in_threadpool(pages.pipelines, _lm(request), pipeline)
    return await render(request, "pipelines.html", "pipelines", **data)


@router.get("/pipelines/runs/{run_id}")
async def pipeline_run(request: Request, run_id: str) -> Response:
    lm = _lm(request)
    run = await run_in_threadpool(lambda: to_jsonable(service(lm, "pipelines").get_run(run_id)))
    return await render(request, "pipeline_run.html", "pipelines", run=run, steps=pages.steps_of(run))


@router.get("/runs")
async def runs(request: Request, experiment: str | None = None) -> Response:
    lm = _lm(request)
    items, missing = await run_in_threadpool(
        available, lm, "tracking", lambda s: to_jsonable(s.list_runs(experiment, limit=200))
    )
    return await render(request, "runs.html", "runs", runs=items or [], unavailable_msg=missing)


@router.get("/runs/{run_id}")
async def run(request: Request, run_id: str) -> Response:
    lm = _lm(request)
    data = await run_in_threadpool(pages.run, lm, run_id)
    return await render(request, "run.html", "runs", **data)


@router.get("/models")
async def models(request: Request) -> Response:
    lm = _lm(request)
    items, missing = await run_in_threadpool(available, lm, "registry", pages.model_list)
    return await render(request, "models.html", "models", models=items or [], unavailable_msg=missing)


@router.get("/models/{name}")
async def model(request: Request, name: str) -> Response:
    lm = _lm(request)
    service(lm, "registry")
    data = await run_in_threadpool(pages.model, lm, name)
    return await render(request, "model.html", "models", **data)


@router.get("/features")
async def features(request: Request) -> Response:
    lm = _lm(request)
    data, missing = await run_in_threadpool(available, lm, "features", pages.features)
    return await render(
        request, "features.html", "features", unavailable_msg=missing, **(data or {"views": []})
    )


@router.get("/jobs")
async def jobs(request: Request) -> Response:
    lm = _lm(request)
    data, missing = await run_in_threadpool(available, lm, "jobs", pages.jobs)
    return await render(request, "jobs.html", "jobs", unavailable_msg=missing, **(data or {}))


@router.get("/endpoints")
async def endpoints(request: Request) -> Response:
    lm = _lm(request)
    data, missing = await run_in_threadpool(
        available, lm, "endpoints", lambda _: endpoint_pages.endpoints(lm)
    )
    return await render(
        request, "endpoints.html", "endpoints", unavailable_msg=missing, **(data or {"endpoints": []})
    )


@router.get("/endpoints/{name}")
async def endpoint(
    request: Request,
    name: str,
    window: str = Query(endpoint_pages.DEFAULT_WINDOW, max_length=8),
    ab: str = Query(endpoint_pages.DEFAULT_AB_WINDOW, max_length=8),
) -> Response:
    lm = _lm(request)
    service(lm, "endpoints")
    data = await run_in_threadpool(endpoint_pages.endpoint, lm, name, window, ab)
    return await render(request, "endpoint.html", "endpoints", **data)


@router.get("/alerts")
async def alerts(
    request: Request,
    status: str | None = Query(None, max_length=20),
    severity: str | None = Query(None, max_length=20),
    source: str | None = Query(None, max_length=100),
) -> Response:
    lm = _lm(request)
    data, missing = await run_in_threadpool(
        available,
        lm,
        "alerts",
        lambda _: endpoint_pages.alerts(lm, status or None, severity or None, source or None),
    )
    return await render(request, "alerts.html", "alerts", unavailable_msg=missing, **(data or {}))
