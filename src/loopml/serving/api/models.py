"""``/v1/models``: registered models, versions, aliases and gate results; alias moves go through gates."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Path, Query
from pydantic import BaseModel, ConfigDict, Field

from loopml.client import Loopml
from loopml.serving.api.deps import MAX_INT, get_client, service
from loopml.serving.api.responses import JSONResponse
from loopml.serving.auth import require_token

router = APIRouter(prefix="/v1/models", tags=["models"])


class AliasRequest(BaseModel):
    """Body of ``POST /v1/models/{name}/aliases/{alias}``."""

    model_config = ConfigDict(extra="forbid")

    version: int = Field(..., ge=1, le=MAX_INT, description="Version number the alias should point to.")
    reason: str = Field(..., min_length=1, max_length=2000, description="Why (recorded in the audit trail).")
    force: bool = Field(False, description="Bypass the alias's release gates (needs a reason; audited).")


class PromoteRequest(BaseModel):
    """Body of ``POST /v1/models/{name}/promote``."""

    model_config = ConfigDict(extra="forbid")

    version: int = Field(..., ge=1, le=MAX_INT, description="Candidate version number.")
    alias: str = Field(
        "champion", min_length=1, max_length=64, description="Alias to move if every gate passes."
    )
    reason: str = Field(..., min_length=1, max_length=2000, description="Why (recorded in the audit trail).")


class RollbackRequest(BaseModel):
    """Body of ``POST /v1/models/{name}/aliases/{alias}/rollback``."""

    model_config = ConfigDict(extra="forbid")

    reason: str = Field(..., min_length=1, max_length=2000, description="Why (recorded in the audit trail).")


@router.get("", summary="Registered models with their latest version and aliases")
def list_models(lm: Loopml = Depends(get_client)) -> JSONResponse:
    return JSONResponse({"models": service(lm, "registry").list_models()})


@router.get("/{name}", summary="One model")
def get_model(name: str, lm: Loopml = Depends(get_client)) -> JSONResponse:
    return JSONResponse(service(lm, "registry").get_model(name))


@router.get("/{name}/versions", summary="Every version with flavor, signature, metrics and lineage")
def list_versions(name: str, lm: Loopml = Depends(get_client)) -> JSONResponse:
    return JSONResponse({"model": name, "versions": service(lm, "registry").versions(name)})


@router.get("/{name}/aliases", summary="Aliases and the versions they point to")
def list_aliases(name: str, lm: Loopml = Depends(get_client)) -> JSONResponse:
    return JSONResponse({"model": name, "aliases": service(lm, "registry").aliases(name)})


@router.get("/{name}/versions/{version}/gates", summary="Recorded release-gate results of one version")
def gate_results(
    name: str,
    version: int = Path(..., ge=1, le=MAX_INT, description="Version number."),
    alias: str | None = Query(None, description="Only evaluations for this alias."),
    lm: Loopml = Depends(get_client),
) -> JSONResponse:
    results = service(lm, "registry").gate_results(name, version, alias)
    return JSONResponse({"model": name, "version": version, "alias": alias, "results": results})


@router.get("/{name}/history", summary="Alias moves from the audit trail, newest first")
def history(
    name: str,
    alias: str | None = Query(None, description="Only moves of this alias."),
    limit: int = Query(50, ge=1, le=1000),
    lm: Loopml = Depends(get_client),
) -> JSONResponse:
    return JSONResponse({"model": name, "moves": service(lm, "registry").history(name, alias, limit=limit)})


@router.post("/{name}/aliases/{alias}", summary="Point an alias at a version (gated unless forced)")
def set_alias(
    name: str,
    alias: str,
    body: AliasRequest,
    lm: Loopml = Depends(get_client),
    actor: str = Depends(require_token),
) -> JSONResponse:
    registry = service(lm, "registry")
    return JSONResponse(
        registry.set_alias(name, alias, body.version, actor=actor, reason=body.reason, force=body.force)
    )


@router.post("/{name}/promote", summary="Evaluate the alias's gates for a version and move it if all pass")
def promote(
    name: str, body: PromoteRequest, lm: Loopml = Depends(get_client), actor: str = Depends(require_token)
) -> JSONResponse:
    return JSONResponse(
        service(lm, "registry").promote(name, body.version, body.alias, actor=actor, reason=body.reason)
    )


@router.post("/{name}/aliases/{alias}/rollback", summary="Move an alias back to its previous version")
def rollback(
    name: str,
    alias: str,
    body: RollbackRequest,
    lm: Loopml = Depends(get_client),
    actor: str = Depends(require_token),
) -> JSONResponse:
    return JSONResponse(service(lm, "registry").rollback(name, alias, actor=actor, reason=body.reason))
