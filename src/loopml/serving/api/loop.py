"""``/v1/loop``: closed-loop runs (list, show with story, approve, reject, start) and action policies.

Reads are open; everything that changes state (start, approve, reject, policy changes) needs the
bearer token and records the actor from ``X-Loopml-Actor``. Starting a run here only creates it (and
its ``loop.advance`` job): a worker moves it on, or ``loopml loop advance`` by hand.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Path, Query
from pydantic import BaseModel, ConfigDict, Field

from loopml.client import Loopml
from loopml.serving.api.deps import MAX_INT, get_client, service
from loopml.serving.api.responses import JSONResponse
from loopml.serving.auth import require_token

router = APIRouter(prefix="/v1/loop", tags=["loop"])

RunId = Annotated[int, Path(ge=1, le=MAX_INT, description="Loop run id.")]
PolicyName = Annotated[str, Path(min_length=1, max_length=100, description="Action policy name.")]


class DecisionRequest(BaseModel):
    """Body of approve / reject: why, for the audit trail."""

    model_config = ConfigDict(extra="forbid")

    reason: str = Field("", max_length=2000, description="Recorded with the decision.")


class StartRequest(BaseModel):
    """Body of start: which policy, optionally the alert it answers, and why."""

    model_config = ConfigDict(extra="forbid")

    policy: str = Field(..., min_length=1, max_length=100, description="Action policy name.")
    alert_id: int | None = Field(None, ge=1, le=MAX_INT, description="The alert this run answers.")
    reason: str = Field("", max_length=2000, description="Recorded with the run.")


@router.get("/runs", summary="Loop runs, newest first")
def list_runs(
    status: str | None = Query(None, description="waiting_approval, running, promoted, rolled_back, ..."),
    policy: str | None = Query(None, description="Only runs of this action policy."),
    limit: int = Query(50, ge=1, le=1000),
    lm: Loopml = Depends(get_client),
) -> JSONResponse:
    runs = service(lm, "loop").list(status=status, policy=policy, limit=limit)
    return JSONResponse({"runs": runs})


@router.get("/runs/{run_id}", summary="One run with its steps and its story (alert to outcome)")
def get_run(run_id: RunId, lm: Loopml = Depends(get_client)) -> JSONResponse:
    loop = service(lm, "loop")
    run = loop.get(run_id)
    return JSONResponse({**run.to_dict(), "story": loop.story(run_id)})


@router.post("/runs/{run_id}/approve", summary="Approve a run waiting for a person (retrain or promotion)")
def approve(
    run_id: RunId,
    body: DecisionRequest | None = None,
    lm: Loopml = Depends(get_client),
    actor: str = Depends(require_token),
) -> JSONResponse:
    return _decide(service(lm, "loop").approve, run_id, body, actor)


@router.post(
    "/runs/{run_id}/reject", summary="Stop a run in progress; the endpoint goes back to its baseline"
)
def reject(
    run_id: RunId,
    body: DecisionRequest | None = None,
    lm: Loopml = Depends(get_client),
    actor: str = Depends(require_token),
) -> JSONResponse:
    return _decide(service(lm, "loop").reject, run_id, body, actor)


def _decide(
    decide: Callable[..., Any], run_id: int, body: DecisionRequest | None, actor: str
) -> JSONResponse:
    """Approve or reject (``decide`` is the bound service method): an empty reason is recorded as none."""
    reason = (body or DecisionRequest()).reason or None
    return JSONResponse(decide(run_id, actor=actor, reason=reason))


@router.post("/start", status_code=201, summary="Start a run of a policy by hand (409 if one is active)")
def start(
    body: StartRequest, lm: Loopml = Depends(get_client), actor: str = Depends(require_token)
) -> JSONResponse:
    run = service(lm, "loop").start(body.policy, alert=body.alert_id, actor=actor, reason=body.reason or None)
    return JSONResponse(run, status_code=201)


@router.get("/policies", summary="Action policies")
def list_policies(lm: Loopml = Depends(get_client)) -> JSONResponse:
    return JSONResponse({"policies": service(lm, "loop").list_policies()})


@router.get("/policies/{name}", summary="One action policy")
def get_policy(name: PolicyName, lm: Loopml = Depends(get_client)) -> JSONResponse:
    return JSONResponse(service(lm, "loop").get_policy(name))


@router.post("/policies", status_code=201, summary="Create an action policy (the ActionPolicy JSON)")
def create_policy(
    body: dict[str, Any] = Body(..., description="ActionPolicy.to_dict() shape; see docs/loop.md."),
    replace: bool = Query(False, description="Replace a policy with the same name instead of 409."),
    lm: Loopml = Depends(get_client),
    actor: str = Depends(require_token),
) -> JSONResponse:
    loop = service(lm, "loop")
    name = body.get("name")
    if replace and isinstance(name, str) and any(p.name == name for p in loop.list_policies()):
        return JSONResponse(loop.update_policy(name, body, actor=actor), status_code=200)
    return JSONResponse(loop.create_policy(body, actor=actor), status_code=201)


@router.delete("/policies/{name}", summary="Delete an action policy (its runs stay)")
def delete_policy(
    name: PolicyName, lm: Loopml = Depends(get_client), actor: str = Depends(require_token)
) -> JSONResponse:
    service(lm, "loop").delete_policy(name, actor=actor)
    return JSONResponse({"deleted": name})
