"""Job handler ``moderation.screen`` (queue ``moderation``): imported by every ``loopml worker``.

The payload is ``{"request_id": <content id>}`` as written by ``lm.async_requests.submit``; the
work itself is ``screening.Screener.screen``. A request that is not a moderation upload, or that
no longer exists, can never succeed: ``PermanentError`` sends the job to dead at once instead of
retrying it for nothing.
"""

from __future__ import annotations

from typing import Any

from loopml.errors import NotFoundError, ValidationError
from loopml.worker import PermanentError, job_handler

JOB_KIND = "moderation.screen"


@job_handler(JOB_KIND)
def screen_job(ctx: Any, job: Any) -> dict[str, Any]:
    from loopml.apps.moderation.screening import screener_for

    request_id = (job.payload or {}).get("request_id")
    if not isinstance(request_id, str):
        raise PermanentError(f"job {job.id}: payload has no request_id (got {job.payload!r})")
    try:
        return screener_for(ctx).screen(request_id)
    except (NotFoundError, ValidationError) as exc:
        if getattr(exc, "field", None) in ("id", "request_id"):
            raise PermanentError(f"request {request_id}: {exc}") from exc
        raise
