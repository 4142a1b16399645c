"""``/v1/slos`` and ``/v1/alert-rules``: define, evaluate and inspect SLOs and alert rules.

Bodies are the specs' JSON form (``SloSpec.from_dict`` / ``RuleSpec.from_dict``), so the HTTP API,
the Python API and the CLI refuse the same bad input with the same message and ``field``.
Reads are open; everything that writes (including an evaluation, which stores a reading and may
fire alerts) needs the token.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Path, Query
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field

from loopml.client import Loopml
from loopml.monitoring.slo import HISTORY_MAX
from loopml.serving.api.deps import get_client, service
from loopml.serving.api.responses import JSONResponse
from loopml.serving.auth import require_token

slos = APIRouter(prefix="/v1/slos", tags=["slos"])
rules = APIRouter(prefix="/v1/alert-rules", tags=["alert rules"])

Name = Annotated[str, Path(min_length=1, max_length=100, description="SLO or rule name.")]
SpecBody = Annotated[dict[str, Any], Body(description="The spec as JSON (see docs/slos.md).")]


# -- SLOs --------------------------------------------------------------------------------------
@slos.get("", summary="Every SLO with its spec")
def list_slos(lm: Loopml = Depends(get_client)) -> JSONResponse:
    return JSONResponse({"slos": service(lm, "slos").list()})


@slos.get("/status", summary="One line per SLO: latest value, ok, budget left, burn rate")
def slo_status(lm: Loopml = Depends(get_client)) -> JSONResponse:
    return JSONResponse({"status": service(lm, "slos").status()})


@slos.post("", status_code=201, summary="Define an SLO (409 when the name is taken)")
def create_slo(
    body: SpecBody, lm: Loopml = Depends(get_client), actor: str = Depends(require_token)
) -> JSONResponse:
    return JSONResponse(service(lm, "slos").create(body, actor=actor), status_code=201)


@slos.get("/{name}", summary="One SLO")
def get_slo(name: Name, lm: Loopml = Depends(get_client)) -> JSONResponse:
    return JSONResponse(service(lm, "slos").get(name))


@slos.put("/{name}", summary="Replace an SLO's spec (its history stays)")
def update_slo(
    name: Name, body: SpecBody, lm: Loopml = Depends(get_client), actor: str = Depends(require_token)
) -> JSONResponse:
    return JSONResponse(service(lm, "slos").update(name, body, actor=actor))


@slos.delete("/{name}", status_code=204, summary="Delete an SLO and its evaluations")
def delete_slo(name: Name, lm: Loopml = Depends(get_client), actor: str = Depends(require_token)) -> Response:
    service(lm, "slos").delete(name, actor=actor)
    return Response(status_code=204)


@slos.post("/{name}/evaluate", summary="Measure the SLO now and store the reading")
def evaluate_slo(
    name: Name, lm: Loopml = Depends(get_client), actor: str = Depends(require_token)
) -> JSONResponse:
    return JSONResponse(service(lm, "slos").evaluate(name))


@slos.get("/{name}/history", summary="Stored readings, oldest first")
def slo_history(
    name: Name,
    since: datetime | None = Query(None, description="Only readings at or after this ISO time."),
    limit: int = Query(500, ge=1, le=HISTORY_MAX),
    lm: Loopml = Depends(get_client),
) -> JSONResponse:
    return JSONResponse({"evaluations": service(lm, "slos").history(name, since=since, limit=limit)})


# -- alert rules -------------------------------------------------------------------------------
@rules.get("", summary="Every alert rule")
def list_rules(
    enabled: bool | None = Query(None, description="Only enabled (true) or disabled (false) rules."),
    lm: Loopml = Depends(get_client),
) -> JSONResponse:
    return JSONResponse({"rules": service(lm, "alert_rules").list(enabled=enabled)})


@rules.post("", status_code=201, summary="Define an alert rule (409 when the name is taken)")
def create_rule(
    body: SpecBody, lm: Loopml = Depends(get_client), actor: str = Depends(require_token)
) -> JSONResponse:
    return JSONResponse(service(lm, "alert_rules").create(body, actor=actor), status_code=201)


@rules.post("/evaluate", summary="Evaluate every enabled rule: fire or resolve their alerts")
def evaluate_rules(lm: Loopml = Depends(get_client), actor: str = Depends(require_token)) -> JSONResponse:
    return JSONResponse({"outcomes": service(lm, "alert_rules").evaluate()})


@rules.get("/{name}", summary="One alert rule")
def get_rule(name: Name, lm: Loopml = Depends(get_client)) -> JSONResponse:
    return JSONResponse(service(lm, "alert_rules").get(name))


class RulePatch(BaseModel):
    """Body of the patch route: switch a rule on or off."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(..., description="true evaluates the rule again, false stops evaluating it.")


@rules.patch("/{name}", summary="Enable or disable a rule")
def patch_rule(
    name: Name, body: RulePatch, lm: Loopml = Depends(get_client), actor: str = Depends(require_token)
) -> JSONResponse:
    svc = service(lm, "alert_rules")
    info = svc.enable(name, actor=actor) if body.enabled else svc.disable(name, actor=actor)
    return JSONResponse(info)


@rules.delete("/{name}", status_code=204, summary="Delete a rule (an alert it opened stays)")
def delete_rule(
    name: Name, lm: Loopml = Depends(get_client), actor: str = Depends(require_token)
) -> Response:
    service(lm, "alert_rules").delete(name, actor=actor)
    return Response(status_code=204)


router = APIRouter()
router.include_router(slos)
router.include_router(rules)
