"""The ``notify.deliver`` job: one send attempt per run, the queue supplies retries and backoff.

Imported by the worker (``BUILTIN_HANDLER_MODULES``). A retryable failure raises so the job is
retried with the queue's exponential backoff; a refused request (4xx) or a vanished delivery is a
``PermanentError`` and is dead-lettered at once. On the job's last attempt the delivery is marked
``failed`` so ``loopml webhooks deliveries --status failed`` shows what needs an operator.
"""

from __future__ import annotations

from typing import Any

from loopml.context import Context
from loopml.errors import NotFoundError
from loopml.notify.service import JOB_KIND, Notifier
from loopml.storage.metadata.notify import DELIVERED, FAILED
from loopml.storage.queue import Job
from loopml.worker import PermanentError, job_handler


class DeliveryFailed(Exception):
    """A retryable failure (timeout, 5xx, 429, connection refused): the queue tries again later."""


@job_handler(JOB_KIND)
def deliver(ctx: Context, job: Job) -> dict[str, Any]:
    delivery_id = job.payload.get("delivery_id")
    if isinstance(delivery_id, bool) or not isinstance(delivery_id, int) or delivery_id < 1:
        raise PermanentError(f"payload delivery_id={delivery_id!r} is not a delivery id")
    try:
        result = Notifier(ctx).deliver_now(delivery_id, last_attempt=job.attempts >= job.max_attempts)
    except NotFoundError as exc:  # the webhook (and with it the delivery) was removed
        raise PermanentError(str(exc)) from None
    if result.status == DELIVERED:
        return {
            "delivery_id": delivery_id,
            "status": result.status,
            "response_status": result.response_status,
        }
    if result.status == FAILED:
        raise PermanentError(f"delivery {delivery_id} to {result.webhook!r} failed: {result.last_error}")
    raise DeliveryFailed(f"delivery {delivery_id} to {result.webhook!r}: {result.last_error}")
