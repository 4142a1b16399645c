"""``/v1/jobs``: the durable queue's jobs, counts per status and dead-letter requeue."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query
from pydantic import BaseModel, ConfigDict, Field

from loopml.client import Loopml
from loopml.serving.api.deps import MAX_INT, get_client, service
from loopml.serving.api.responses import JSONResponse
from loopml.serving.auth import require_token

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])


@router.get("", summary="Jobs, newest first, optionally filtered by status and kind")
def list_jobs(
    status: str | None = Query(None, description="queued, running, succeeded, dead or cancelled."),
    kind: str | None = Query(None, description="Job kind, e.g. pipeline.run."),
    limit: int = Query(100, ge=1, le=1000),
    lm: Loopml = Depends(get_client),
) -> JSONResponse:
    return JSONResponse({"jobs": service(lm, "jobs").list(status=status, kind=kind, limit=limit)})


@router.get("/stats", summary="Job counts per status and the oldest queued job's age")
def stats(lm: Loopml = Depends(get_client)) -> JSONResponse:
    queue = service(lm, "jobs")
    return JSONResponse({"counts": queue.stats(), "oldest_queued_age_seconds": queue.oldest_age_seconds()})


#: Job ids are positive and fit a BIGINT; anything else is a 422 naming ``job_id``, not a driver error.
JobId = Annotated[int, Path(ge=1, le=MAX_INT, description="Job id.")]


@router.get("/{job_id}", summary="One job with its attempts, last error and result")
def get_job(job_id: JobId, lm: Loopml = Depends(get_client)) -> JSONResponse:
    return JSONResponse(service(lm, "jobs").get(job_id))


class ActionRequest(BaseModel):
    """Body of the requeue / cancel routes: why, for the audit trail."""

    model_config = ConfigDict(extra="forbid")

    reason: str | None = Field(None, max_length=2000, description="Recorded with the audit event.")


@router.post("/{job_id}/requeue", summary="Put a dead-letter job back in the queue")
def requeue(
    job_id: JobId,
    body: ActionRequest | None = None,
    lm: Loopml = Depends(get_client),
    actor: str = Depends(require_token),
) -> JSONResponse:
    return _act(lm, "requeue", job_id, body, actor)


@router.post("/{job_id}/cancel", summary="Cancel a queued job")
def cancel(
    job_id: JobId,
    body: ActionRequest | None = None,
    lm: Loopml = Depends(get_client),
    actor: str = Depends(require_token),
) -> JSONResponse:
    return _act(lm, "cancel", job_id, body, actor)


def _act(lm: Loopml, action: str, job_id: int, body: ActionRequest | None, actor: str) -> JSONResponse:
    """Run an audited job action (``requeue`` / ``cancel``) with the caller as actor."""
    method = getattr(service(lm, "jobs"), action)
    return JSONResponse(method(job_id, actor=actor, reason=(body or ActionRequest()).reason))
