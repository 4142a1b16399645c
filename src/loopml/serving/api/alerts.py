"""``/v1/alerts``: list and inspect alerts, and resolve one (token-protected, audited)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query
from pydantic import BaseModel, ConfigDict, Field

from loopml.client import Loopml
from loopml.serving.api.deps import MAX_INT, get_client, service
from loopml.serving.api.responses import JSONResponse
from loopml.serving.auth import require_token

router = APIRouter(prefix="/v1/alerts", tags=["alerts"])


@router.get("", summary="Alerts, most recently fired first, optionally filtered")
def list_alerts(
    status: str | None = Query(None, description="open or resolved."),
    severity: str | None = Query(None, description="info, warning or critical."),
    source: str | None = Query(None, description="What raised the alert, e.g. demand.publish."),
    limit: int = Query(100, ge=1, le=1000),
    lm: Loopml = Depends(get_client),
) -> JSONResponse:
    alerts = service(lm, "alerts").list(status=status, severity=severity, source=source, limit=limit)
    return JSONResponse({"alerts": alerts})


#: Alert ids are positive and fit a BIGINT; anything else is a 422 naming ``alert_id``.
AlertId = Annotated[int, Path(ge=1, le=MAX_INT, description="Alert id.")]


@router.get("/{alert_id}", summary="One alert with its detail, data and fire count")
def get_alert(alert_id: AlertId, lm: Loopml = Depends(get_client)) -> JSONResponse:
    return JSONResponse(service(lm, "alerts").get(alert_id))


class ResolveRequest(BaseModel):
    """Body of the resolve route: why, for the audit trail."""

    model_config = ConfigDict(extra="forbid")

    reason: str = Field("", max_length=2000, description="Recorded with the audit event.")


@router.post("/{alert_id}/resolve", summary="Resolve an open alert (409 when it is resolved already)")
def resolve(
    alert_id: AlertId,
    body: ResolveRequest | None = None,
    lm: Loopml = Depends(get_client),
    actor: str = Depends(require_token),
) -> JSONResponse:
    reason = (body or ResolveRequest()).reason
    return JSONResponse(service(lm, "alerts").resolve_id(alert_id, reason=reason, actor=actor))
