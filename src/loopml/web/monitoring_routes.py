"""Routes of the monitoring pages: ``/ui/overview``, ``/ui/monitors``, ``/ui/slos``, ``/ui/loop``.

Kept out of ``routes.py`` so the monitoring pages ship as one unit; ``install_dashboard`` includes
this router. Each handler gathers its data in ``monitoring_pages`` (in a thread pool) and renders a
template under ``templates/monitoring/``. A missing service shows "Not available yet"; an unknown
monitor or loop run is the standard 404 page; a bad query parameter a 422 page naming it.
"""

from __future__ import annotations

from fastapi import APIRouter, Path, Query, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from loopml.serving.api.deps import MAX_INT, service
from loopml.web import monitoring_pages as pages
from loopml.web.routes import available, render

router = APIRouter(prefix="/ui", include_in_schema=False)


@router.get("/overview")
async def overview(request: Request) -> Response:
    data = await run_in_threadpool(pages.health, request.app.state.lm)
    return await render(request, "monitoring/overview.html", "health", **data)


@router.get("/monitors")
async def monitors(request: Request) -> Response:
    lm = request.app.state.lm
    data, missing = await run_in_threadpool(available, lm, "monitors", lambda _: pages.monitors(lm))
    return await render(
        request, "monitoring/monitors.html", "monitors", unavailable_msg=missing, **(data or {"monitors": []})
    )


@router.get("/monitors/{name}")
async def monitor(
    request: Request,
    name: str,
    feature: str | None = Query(None, max_length=200),
    window: str | None = Query(None, max_length=40),
    metric: str | None = Query(None, max_length=100),
    limit: int = Query(pages.DEFAULT_WINDOWS, ge=1, le=pages.MAX_WINDOWS),
) -> Response:
    lm = request.app.state.lm
    service(lm, "monitors")
    data = await run_in_threadpool(
        lambda: pages.monitor(
            lm, name, feature=feature or None, window=window or None, metric=metric or None, limit=limit
        )
    )
    return await render(request, "monitoring/monitor.html", "monitors", **data)


@router.get("/slos")
async def slos(request: Request) -> Response:
    lm = request.app.state.lm
    data, missing = await run_in_threadpool(available, lm, "slos", lambda _: pages.slos(lm))
    return await render(
        request,
        "monitoring/slos.html",
        "slos",
        unavailable_msg=missing,
        **(data or {"slos": [], "budgets": None}),
    )


@router.get("/loop")
async def loop_runs(
    request: Request,
    status: str | None = Query(None, max_length=40),
    policy: str | None = Query(None, max_length=100),
) -> Response:
    lm = request.app.state.lm
    data, missing = await run_in_threadpool(
        available, lm, "loop", lambda _: pages.loop_runs(lm, status or None, policy or None)
    )
    return await render(
        request,
        "monitoring/loop.html",
        "loop",
        unavailable_msg=missing,
        **(data or {"runs": [], "policies": []}),
    )


@router.get("/loop/{run_id}")
async def loop_run(request: Request, run_id: int = Path(..., ge=1, le=MAX_INT)) -> Response:
    lm = request.app.state.lm
    service(lm, "loop")
    data = await run_in_threadpool(pages.loop_run, lm, run_id)
    return await render(request, "monitoring/loop_run.html", "loop", **data)
