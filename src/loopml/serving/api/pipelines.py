"""``/v1/pipelines``: registered pipelines, their runs with step records, and submitting a run."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, ConfigDict, Field

from loopml.client import Loopml
from loopml.serving.api.deps import get_client, service
from loopml.serving.api.responses import JSONResponse
from loopml.serving.auth import require_token

router = APIRouter(prefix="/v1/pipelines", tags=["pipelines"])


class SubmitRequest(BaseModel):
    """Body of ``POST /v1/pipelines/{name}/runs``."""

    model_config = ConfigDict(extra="forbid")

    params: dict[str, Any] = Field(default_factory=dict, description="Overrides of the pipeline's params.")
    idempotency_key: str | None = Field(
        None, max_length=255, description="Submitting twice with the same key returns the first job."
    )


@router.get("", summary="Registered pipelines with their steps and schedule")
def list_pipelines(lm: Loopml = Depends(get_client)) -> JSONResponse:
    return JSONResponse({"pipelines": service(lm, "pipelines").list()})


@router.get("/runs", summary="Pipeline runs, newest first")
def list_runs(
    pipeline: str | None = Query(None, description="Only runs of this pipeline."),
    limit: int = Query(50, ge=1, le=1000),
    lm: Loopml = Depends(get_client),
) -> JSONResponse:
    return JSONResponse({"runs": service(lm, "pipelines").runs(pipeline, limit=limit)})


@router.get("/runs/{run_id}", summary="One pipeline run with its steps, durations and logs")
def get_run(run_id: str, lm: Loopml = Depends(get_client)) -> JSONResponse:
    return JSONResponse(service(lm, "pipelines").get_run(run_id))


@router.get("/{name}", summary="One pipeline definition")
def get_pipeline(name: str, lm: Loopml = Depends(get_client)) -> JSONResponse:
    return JSONResponse(service(lm, "pipelines").get(name))


@router.post("/{name}/runs", status_code=202, summary="Queue a run (a durable job a worker executes)")
def submit(
    name: str,
    body: SubmitRequest | None = None,
    lm: Loopml = Depends(get_client),
    actor: str = Depends(require_token),
) -> JSONResponse:
    body = body or SubmitRequest()
    job = service(lm, "pipelines").submit(name, body.params or None, idempotency_key=body.idempotency_key)
    return JSONResponse({"job": job}, status_code=202)
