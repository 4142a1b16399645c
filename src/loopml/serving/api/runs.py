"""``/v1/runs``: tracked runs, their params and metric histories, side-by-side comparison."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query

from loopml.client import Loopml
from loopml.errors import ValidationError
from loopml.serving.api.deps import get_client, service
from loopml.serving.api.responses import JSONResponse

router = APIRouter(prefix="/v1/runs", tags=["runs"])


@router.get("", summary="Runs, newest first, optionally of one experiment")
def list_runs(
    experiment: str | None = Query(None, description="Experiment name."),
    limit: int = Query(50, ge=1, le=1000),
    lm: Loopml = Depends(get_client),
) -> JSONResponse:
    return JSONResponse({"runs": service(lm, "tracking").list_runs(experiment, limit=limit)})


@router.get("/compare", summary="Params that differ and metrics side by side for 2+ runs")
def compare(
    ids: list[str] = Query(..., description="Run ids; repeat the parameter: ?ids=a&ids=b."),
    lm: Loopml = Depends(get_client),
) -> JSONResponse:
    run_ids = [part for value in ids for part in value.split(",") if part.strip()]
    if len(run_ids) < 2:
        raise ValidationError(f"ids={run_ids!r}: compare needs at least two run ids; pass ?ids=A&ids=B.")
    return JSONResponse(service(lm, "tracking").compare(run_ids))


@router.get("/{run_id}", summary="One run: params, latest metrics, tags, artifacts, inputs")
def get_run(run_id: str, lm: Loopml = Depends(get_client)) -> JSONResponse:
    return JSONResponse(service(lm, "tracking").get_run(run_id))


@router.get("/{run_id}/metrics/{key}", summary="The full history of one metric, ordered by step")
def metric_history(run_id: str, key: str, lm: Loopml = Depends(get_client)) -> JSONResponse:
    return JSONResponse(
        {"run_id": run_id, "key": key, "points": service(lm, "tracking").metric_history(run_id, key)}
    )
