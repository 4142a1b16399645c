"""``/v1/webhooks``, ``/v1/notifications`` and ``/v1/webhook-deliveries``: the notifier over HTTP.

Reads are open; every change needs the API token (``require_token``) and is done as the actor the
request names. Webhook secrets are write-only: responses say ``has_secret``, never the secret.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query
from pydantic import BaseModel, ConfigDict, Field

from loopml.client import Loopml
from loopml.serving.api.deps import MAX_INT, get_client, service
from loopml.serving.api.responses import JSONResponse
from loopml.serving.auth import require_token

router = APIRouter(tags=["notifications"])

WebhookName = Annotated[str, Path(max_length=64, description="Webhook name.")]
RecordId = Annotated[int, Path(ge=1, le=MAX_INT)]


class WebhookCreate(BaseModel):
    """A new webhook; ``topics`` are prefixes such as ``alert.`` (``*`` = every topic)."""

    model_config = ConfigDict(extra="forbid")

    name: str
    url: str
    format: str = "json"
    topics: list[str] = Field(default_factory=lambda: ["*"])
    secret: str | None = None


class WebhookPatch(BaseModel):
    """Fields to change; ``"secret": null`` removes the signature, leaving it out keeps it."""

    model_config = ConfigDict(extra="forbid")

    url: str | None = None
    format: str | None = None
    topics: list[str] | None = None
    secret: str | None = None
    active: bool | None = None


@router.get("/v1/webhooks", summary="Webhooks by name (secrets are never shown)")
def list_webhooks(lm: Loopml = Depends(get_client)) -> JSONResponse:
    return JSONResponse({"webhooks": service(lm, "notify").list_webhooks()})


@router.post("/v1/webhooks", status_code=201, summary="Add a webhook (409 when the name exists)")
def add_webhook(
    body: WebhookCreate, lm: Loopml = Depends(get_client), actor: str = Depends(require_token)
) -> JSONResponse:
    webhook = service(lm, "notify").add_webhook(
        body.name, body.url, format=body.format, topics=body.topics, secret=body.secret, actor=actor
    )
    return JSONResponse(webhook, status_code=201)


@router.get("/v1/webhooks/{name}", summary="One webhook")
def get_webhook(name: WebhookName, lm: Loopml = Depends(get_client)) -> JSONResponse:
    return JSONResponse(service(lm, "notify").get_webhook(name))


@router.patch("/v1/webhooks/{name}", summary="Change a webhook's url, format, topics, secret or active flag")
def update_webhook(
    name: WebhookName,
    body: WebhookPatch,
    lm: Loopml = Depends(get_client),
    actor: str = Depends(require_token),
) -> JSONResponse:
    changes: dict[str, Any] = body.model_dump(exclude_unset=True)
    return JSONResponse(service(lm, "notify").update_webhook(name, actor=actor, **changes))


@router.delete("/v1/webhooks/{name}", summary="Remove a webhook and its delivery history")
def remove_webhook(
    name: WebhookName, lm: Loopml = Depends(get_client), actor: str = Depends(require_token)
) -> JSONResponse:
    service(lm, "notify").remove_webhook(name, actor=actor)
    return JSONResponse({"removed": name})


@router.post("/v1/webhooks/{name}/test", summary="Send a test notification now; answers with the delivery")
def test_webhook(
    name: WebhookName, lm: Loopml = Depends(get_client), actor: str = Depends(require_token)
) -> JSONResponse:
    return JSONResponse(service(lm, "notify").test_webhook(name, actor=actor))


@router.get("/v1/notifications", summary="Notifications, newest first")
def list_notifications(
    recipient: str | None = Query(None, description="Only notifications for this recipient."),
    topic: str | None = Query(None, description="Topic prefix, e.g. alert. or moderation.rejected."),
    unread: bool | None = Query(None, description="true: only unread; false: only read."),
    limit: int = Query(100, ge=1, le=1000),
    lm: Loopml = Depends(get_client),
) -> JSONResponse:
    found = service(lm, "notify").notifications(recipient=recipient, topic=topic, unread=unread, limit=limit)
    return JSONResponse({"notifications": found})


@router.get("/v1/notifications/{notification_id}", summary="One notification")
def get_notification(notification_id: RecordId, lm: Loopml = Depends(get_client)) -> JSONResponse:
    return JSONResponse(service(lm, "notify").get(notification_id))


@router.post("/v1/notifications/{notification_id}/read", summary="Mark a notification read (idempotent)")
def mark_read(
    notification_id: RecordId, lm: Loopml = Depends(get_client), actor: str = Depends(require_token)
) -> JSONResponse:
    return JSONResponse(service(lm, "notify").mark_read(notification_id))


@router.get("/v1/webhook-deliveries", summary="Webhook deliveries, newest first")
def list_deliveries(
    status: str | None = Query(None, description="pending, delivered or failed."),
    notification_id: int | None = Query(None, ge=1, le=MAX_INT),
    limit: int = Query(100, ge=1, le=1000),
    lm: Loopml = Depends(get_client),
) -> JSONResponse:
    found = service(lm, "notify").deliveries(status=status, notification_id=notification_id, limit=limit)
    return JSONResponse({"deliveries": found})


@router.post(
    "/v1/webhook-deliveries/{delivery_id}/retry", summary="Queue a failed delivery again (409 otherwise)"
)
def retry_delivery(
    delivery_id: RecordId, lm: Loopml = Depends(get_client), actor: str = Depends(require_token)
) -> JSONResponse:
    return JSONResponse(service(lm, "notify").retry(delivery_id, actor=actor))
