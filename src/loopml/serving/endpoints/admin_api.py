"""``/v1/endpoints`` admin routes: create, change, inspect and delete endpoints; end canaries.

Reads are open like the rest of the API; every change needs the bearer token and is recorded with
the caller (``X-Loopml-Actor``) as actor. The spec travels as the JSON form of ``EndpointSpec``
(see docs/endpoints.md); it is validated by the same code as the Python API, so the HTTP error
names the same field (``policy.weights.b``).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Path, Query
from pydantic import BaseModel, ConfigDict, Field

from loopml.client import Loopml
from loopml.serving.api.deps import MAX_INT, get_client
from loopml.serving.api.responses import JSONResponse
from loopml.serving.auth import require_token
from loopml.serving.endpoints.service import HISTORY_MAX, REASON_MAX, Endpoints

router = APIRouter(prefix="/v1/endpoints", tags=["endpoints"])

NamePath = Path(..., min_length=1, max_length=64, description="Endpoint name, e.g. fraud.")
_SPEC_EXAMPLE = {
    "name": "fraud",
    "policy": {"kind": "canary", "baseline": "fraud@champion", "canary": "fraud/4", "weight": 0.1},
    "timeout_ms": 50,
    "fallback": {"value": 0.0},
}


def endpoints_service(lm: Loopml) -> Endpoints:
    """``lm.endpoints`` when the client has it, else a service on the client's context (stateless)."""
    existing = getattr(lm, "endpoints", None)
    return existing if isinstance(existing, Endpoints) else Endpoints(lm.ctx)


class SpecRequest(BaseModel):
    """Body of ``POST /v1/endpoints`` and ``PUT /v1/endpoints/{name}``."""

    model_config = ConfigDict(extra="forbid")

    spec: dict[str, Any] = Field(
        ...,
        description="The endpoint spec: name, policy {kind: single|canary|ab|shadow|bandit, ...}, timeout_ms, "
        "fallback, cache, max_batch_rows, features, description.",
        examples=[_SPEC_EXAMPLE],
    )
    reason: str | None = Field(None, max_length=REASON_MAX, description="Recorded in the audit trail.")
    expected_revision: int | None = Field(
        None, ge=1, le=MAX_INT, description="Refuse the change (409) unless the endpoint is at this revision."
    )


class PolicyRequest(BaseModel):
    """Body of ``PUT /v1/endpoints/{name}/policy``."""

    model_config = ConfigDict(extra="forbid")

    policy: dict[str, Any] = Field(
        ...,
        description="A policy object with 'kind' (single, canary, ab, shadow, bandit) and its fields.",
        examples=[{"kind": "shadow", "primary": "fraud@champion", "shadows": ["fraud/4"]}],
    )
    reason: str | None = Field(None, max_length=REASON_MAX, description="Recorded in the audit trail.")
    expected_revision: int | None = Field(
        None, ge=1, le=MAX_INT, description="Refuse the change (409) unless the endpoint is at this revision."
    )


class RollbackRequest(BaseModel):
    """Body of ``POST /v1/endpoints/{name}/rollback``."""

    model_config = ConfigDict(extra="forbid")

    reason: str | None = Field(None, max_length=REASON_MAX, description="Recorded in the audit trail.")
    canary: str | None = Field(
        None, min_length=1, max_length=200, description="Roll back only if this ref is still the canary."
    )


class PromoteRequest(BaseModel):
    """Body of ``POST /v1/endpoints/{name}/promote``."""

    model_config = ConfigDict(extra="forbid")

    reason: str | None = Field(None, max_length=REASON_MAX, description="Recorded in the audit trail.")
    promote_to_alias: str | None = Field(
        None,
        min_length=1,
        max_length=64,
        description="Also promote the canary's version to this registry alias (its gates apply).",
    )


@router.get("", summary="Every endpoint with its current spec and revision")
def list_endpoints(lm: Loopml = Depends(get_client)) -> JSONResponse:
    return JSONResponse({"endpoints": endpoints_service(lm).list()})


@router.post("", status_code=201, summary="Create an endpoint (every model ref must resolve)")
def create_endpoint(
    body: SpecRequest, lm: Loopml = Depends(get_client), actor: str = Depends(require_token)
) -> JSONResponse:
    info = endpoints_service(lm).create(body.spec, actor=actor, reason=body.reason)
    return JSONResponse(info, status_code=201)


@router.get("/{name}", summary="One endpoint")
def get_endpoint(name: str = NamePath, lm: Loopml = Depends(get_client)) -> JSONResponse:
    return JSONResponse(endpoints_service(lm).get(name))


@router.put("/{name}", summary="Replace an endpoint's spec (a new revision)")
def update_endpoint(
    body: SpecRequest,
    name: str = NamePath,
    lm: Loopml = Depends(get_client),
    actor: str = Depends(require_token),
) -> JSONResponse:
    info = endpoints_service(lm).update(
        name, body.spec, actor=actor, reason=body.reason, expected_revision=body.expected_revision
    )
    return JSONResponse(info)


@router.delete("/{name}", summary="Delete an endpoint (its history stays)")
def delete_endpoint(
    name: str = NamePath,
    reason: str | None = Query(None, max_length=REASON_MAX, description="Recorded in the audit trail."),
    lm: Loopml = Depends(get_client),
    actor: str = Depends(require_token),
) -> JSONResponse:
    endpoints_service(lm).delete(name, actor=actor, reason=reason)
    return JSONResponse({"deleted": name})


@router.put("/{name}/policy", summary="Change only the traffic policy")
def set_policy(
    body: PolicyRequest,
    name: str = NamePath,
    lm: Loopml = Depends(get_client),
    actor: str = Depends(require_token),
) -> JSONResponse:
    info = endpoints_service(lm).set_policy(
        name, body.policy, actor=actor, reason=body.reason, expected_revision=body.expected_revision
    )
    return JSONResponse(info)


@router.get("/{name}/history", summary="Revisions, newest first (who, when, why, the spec)")
def history(
    name: str = NamePath,
    limit: int = Query(50, ge=1, le=HISTORY_MAX),
    lm: Loopml = Depends(get_client),
) -> JSONResponse:
    return JSONResponse({"endpoint": name, "revisions": endpoints_service(lm).history(name, limit)})


@router.post("/{name}/rollback", summary="End a canary: all traffic back to the baseline")
def rollback(
    body: RollbackRequest | None = None,
    name: str = NamePath,
    lm: Loopml = Depends(get_client),
    actor: str = Depends(require_token),
) -> JSONResponse:
    body = body or RollbackRequest()
    info = endpoints_service(lm).rollback_canary(name, actor=actor, reason=body.reason, canary=body.canary)
    return JSONResponse(info)


@router.post("/{name}/promote", summary="Finish a canary: all traffic to the canary")
def promote(
    body: PromoteRequest | None = None,
    name: str = NamePath,
    lm: Loopml = Depends(get_client),
    actor: str = Depends(require_token),
) -> JSONResponse:
    body = body or PromoteRequest()
    info = endpoints_service(lm).promote_canary(
        name, actor=actor, reason=body.reason, promote_to_alias=body.promote_to_alias
    )
    return JSONResponse(info)
