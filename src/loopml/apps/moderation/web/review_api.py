"""``/v1/moderation/...``: the review queue, operator decisions and the capacity report as JSON.

Reads are open like every other read of the admin API; a decision changes state, so it needs the
bearer token when the server has one (``require_token``), and the reviewer recorded is the
``X-Loopml-Actor`` header (default ``api``). Errors are loopml errors: an unknown id is a 404, a
second decision on the same upload a 409 naming its status, a bad decision a 422 naming
``decision``.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, ConfigDict, Field

from loopml import Loopml
from loopml.serving.auth import require_token

router = APIRouter(prefix="/v1/moderation", tags=["moderation"])


def _lm(request: Request) -> Loopml:
    return request.app.state.lm


class DecisionBody(BaseModel):
    """Body of a review decision."""

    model_config = ConfigDict(extra="forbid")

    decision: Any = Field(..., description="approve (publish the upload) or reject (block it)")
    note: str = Field("", max_length=2000, description="Why; sent to the uploader and kept with the label.")


@router.get("/review", summary="Uploads waiting for an operator, oldest first")
async def queue(
    request: Request, limit: int = Query(50, ge=1, le=1000, description="at most this many items")
) -> dict[str, Any]:
    from loopml.apps.moderation import review

    lm = _lm(request)
    items = await run_in_threadpool(review.review_queue, lm, limit=limit)
    depth = await run_in_threadpool(review.queue_depth, lm)
    return {"items": [item.to_dict() for item in items], "depth": depth}


@router.post("/review/{content_id}", summary="Approve or reject an upload held for review (exactly once)")
async def decide(
    request: Request, content_id: str, body: DecisionBody, actor: str = Depends(require_token)
) -> dict[str, Any]:
    from loopml.apps.moderation import review
    from loopml.apps.moderation.config import load_config

    approve = review.parse_decision(body.decision)
    lm = _lm(request)
    cfg = load_config(lm)
    done = await run_in_threadpool(
        lambda: review.decide(
            lm, content_id, approve=approve, actor=actor, note=body.note, endpoint=cfg.endpoint
        )
    )
    return done.to_dict()


@router.get("/capacity", summary="Flagged uploads per week vs operator capacity, and the queue's age")
async def capacity(
    request: Request, weeks: int = Query(4, ge=1, le=52, description="how many ISO weeks, this one included")
) -> dict[str, Any]:
    from loopml.apps.moderation import review
    from loopml.apps.moderation.config import load_config

    lm = _lm(request)
    report = await run_in_threadpool(lambda: review.capacity_report(lm, load_config(lm), weeks=weeks))
    return report.to_dict()
