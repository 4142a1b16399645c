"""``/ui/demand...``: the pages a store-operations manager opens on Wednesday morning.

Overview (next week's plan, and why to trust it), one store (forecast vs actual, its plan as a heat
map), the A/B comparison and the plan for every store. Each page is assembled in a worker thread
from ``pages`` and rendered with the dashboard's layout (``loopml.web.render``).
"""

from __future__ import annotations

from types import ModuleType

from fastapi import APIRouter, Query, Request, Response
from fastapi.concurrency import run_in_threadpool

from loopml import Loopml
from loopml.errors import ValidationError
from loopml.web import render

router = APIRouter(prefix="/ui/demand", include_in_schema=False)
ACTIVE = "demand"
MAX_STORE = 2**63 - 1


def _lm(request: Request) -> Loopml:
    return request.app.state.lm


def _pages() -> ModuleType:
    """Imported on first use: the page builders pull in the data layer (pandera), the server need not."""
    from loopml.apps.demand.web import pages

    return pages


@router.get("")
@router.get("/")
async def overview(request: Request) -> Response:
    data = await run_in_threadpool(_pages().overview_data, _lm(request))
    return await render(request, "demand/overview.html", ACTIVE, title="Demand", **data)


@router.get("/stores/{store_id}")
async def store(request: Request, store_id: int, week: str | None = Query(None)) -> Response:
    if store_id < 1 or store_id > MAX_STORE:
        raise ValidationError(f"store={store_id}: store ids are positive integers, e.g. 12.", field="store")
    data = await run_in_threadpool(_pages().store_data, _lm(request), store_id, week)
    return await render(request, "demand/store.html", ACTIVE, title=f"Store {store_id}", **data)


@router.get("/ab")
async def ab(request: Request) -> Response:
    data = await run_in_threadpool(_pages().ab_data, _lm(request))
    return await render(request, "demand/ab.html", ACTIVE, title="Demand A/B", **data)


@router.get("/staffing")
async def staffing(request: Request, week: str | None = Query(None)) -> Response:
    data = await run_in_threadpool(_pages().staffing_data, _lm(request), week)
    return await render(request, "demand/staffing.html", ACTIVE, title="Staffing plan", **data)
