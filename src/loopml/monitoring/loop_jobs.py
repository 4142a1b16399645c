"""The ``loop.advance`` job: a worker moves a loop run on, one step per job, until it is finished.

Each job advances the run once (``inline=False``: a worker exists, so the retrain pipeline runs as
its own ``pipeline.run`` job on some worker) and, while the run is still ``running``, queues the
next job ``POLL_SECONDS`` later. A run waiting for approval ends the chain; ``Loop.approve`` starts
a new one. The idempotency key of the follow-up names the job that queued it, so a retried job
(lost lease, crash after the enqueue) never forks the chain into two.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from loopml.context import Context
from loopml.errors import NotFoundError, ValidationError
from loopml.storage.metadata.base import utcnow
from loopml.worker import PermanentError, job_handler

#: Seconds between two advances of a running run (waiting for shadow or canary traffic mostly).
POLL_SECONDS = 10.0


@job_handler("loop.advance")
def advance_job(ctx: Context, job: Any) -> dict[str, Any]:
    """Advance ``payload["run_id"]`` once; re-queue itself while the run is running."""
    from loopml.client import Loopml
    from loopml.monitoring.loop import ADVANCE_JOB
    from loopml.storage.metadata import loop as q

    run_id = (job.payload or {}).get("run_id")
    if isinstance(run_id, bool) or not isinstance(run_id, int):
        raise PermanentError(f"loop.advance needs payload {{'run_id': <int>}}; got {job.payload!r}")
    lm = Loopml.from_context(ctx)
    try:
        run = lm.loop.advance(run_id, inline=False)
    except (NotFoundError, ValidationError) as exc:
        raise PermanentError(str(exc)) from None
    queued = None
    if run.status == q.RUNNING:
        nxt = lm.jobs.enqueue(
            ADVANCE_JOB,
            {"run_id": run_id},
            idempotency_key=f"loop:{run_id}:after:{job.id}",
            not_before=utcnow() + timedelta(seconds=POLL_SECONDS),
        )
        queued = nxt.id
    return {"run_id": run_id, "status": run.status, "stage": run.stage, "next_job": queued}
