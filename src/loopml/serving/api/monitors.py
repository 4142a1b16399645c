"""``/v1/monitors``: define monitors, run them, and read their windows, drift and performance series.

Reads are open; creating, deleting and running need the API token (a run writes windows and moves
the watermark). Series come back as lists of ``{window_start, ...}`` objects, ready for a chart.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Path, Query

from loopml.client import Loopml
from loopml.serving.api.deps import get_client, service
from loopml.serving.api.responses import JSONResponse
from loopml.serving.auth import require_token

router = APIRouter(prefix="/v1/monitors", tags=["monitors"])

MonitorName = Annotated[str, Path(min_length=1, max_length=100, description="Monitor name.")]


@router.get("", summary="Every monitor with its spec, reference and watermark")
def list_monitors(
    endpoint: str | None = Query(None, description="Only monitors of this endpoint."),
    lm: Loopml = Depends(get_client),
) -> JSONResponse:
    return JSONResponse({"monitors": service(lm, "monitors").list(endpoint=endpoint)})


@router.post("", status_code=201, summary="Create a monitor from a spec (its reference is profiled now)")
def create_monitor(
    spec: dict[str, Any] = Body(
        ...,
        examples=[
            {
                "name": "fraud-hourly",
                "endpoint": "fraud",
                "reference": {"dataset": "fraud_train", "version": "latest"},
                "window_seconds": 3600,
            }
        ],
    ),
    lm: Loopml = Depends(get_client),
    actor: str = Depends(require_token),
) -> JSONResponse:
    return JSONResponse(service(lm, "monitors").create(spec, actor=actor), status_code=201)


@router.get("/{name}", summary="One monitor with its latest window")
def get_monitor(name: MonitorName, lm: Loopml = Depends(get_client)) -> JSONResponse:
    monitors = service(lm, "monitors")
    info = monitors.get(name)
    return JSONResponse({**info.to_dict(), "latest": monitors.latest(name)})


@router.delete("/{name}", summary="Delete a monitor and its windows (the audit events stay)")
def delete_monitor(
    name: MonitorName, lm: Loopml = Depends(get_client), actor: str = Depends(require_token)
) -> JSONResponse:
    service(lm, "monitors").delete(name, actor=actor)
    return JSONResponse({"deleted": name})


@router.post("/{name}/run", summary="Compute the closed windows after the watermark, refresh late labels")
def run_monitor(
    name: MonitorName,
    body: dict[str, Any] | None = Body(None, examples=[{"now": "2026-12-01T12:00:00+00:00"}]),
    lm: Loopml = Depends(get_client),
    actor: str = Depends(require_token),
) -> JSONResponse:
    from loopml.checks import check_keys

    body = body or {}
    check_keys(body, ("now",), owner="a run request")
    return JSONResponse(service(lm, "monitors").run(name, now=body.get("now")))


@router.get("/{name}/windows", summary="Computed windows, oldest first")
def windows(
    name: MonitorName,
    since: str | None = Query(None, description="ISO time: windows starting at or after it."),
    until: str | None = Query(None, description="ISO time: windows starting before it."),
    limit: int = Query(500, ge=1, le=100_000),
    lm: Loopml = Depends(get_client),
) -> JSONResponse:
    found = service(lm, "monitors").windows(name, since=since, until=until, limit=limit)
    return JSONResponse({"monitor": name, "windows": found})


@router.get("/{name}/drift", summary="One feature's drift statistic per window")
def drift(
    name: MonitorName,
    feature: str = Query(..., description="A watched input field, or 'prediction'."),
    lm: Loopml = Depends(get_client),
) -> JSONResponse:
    series = service(lm, "monitors").drift_series(name, feature)
    return JSONResponse({"monitor": name, "feature": feature, "series": series})


@router.get("/{name}/performance", summary="One metric per window, overall or for a slice")
def performance(
    name: MonitorName,
    metric: str = Query(..., description="e.g. auc, precision, recall, f1, accuracy, mae, rmse."),
    slice: str | None = Query(None, description="column=value, e.g. region=north."),
    lm: Loopml = Depends(get_client),
) -> JSONResponse:
    series = service(lm, "monitors").performance_series(name, metric, slice=slice)
    return JSONResponse({"monitor": name, "metric": metric, "slice": slice, "series": series})
