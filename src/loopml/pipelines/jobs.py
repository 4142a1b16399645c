"""The ``pipeline.run`` job handler: what a worker does with a submitted run.

Calling it twice for the same job is safe and is exactly how a crash is survived: the queue gives
a job whose worker died to another worker, and ``execute_run`` resumes the run, reusing every
step that had finished. A run that already finished is returned as is.
"""

from __future__ import annotations

import contextlib
import importlib
from typing import Any

from loopml.context import Context
from loopml.errors import NotFoundError
from loopml.pipelines.definition import registered
from loopml.pipelines.service import JOB_KIND, Pipelines
from loopml.storage.metadata import pipelines as m
from loopml.storage.metadata.base import utcnow
from loopml.storage.queue import Job
from loopml.worker import PermanentError, job_handler


@job_handler(JOB_KIND)
def run_pipeline_job(ctx: Context, job: Job) -> dict[str, Any]:
    """Execute (or resume) the run named in ``job.payload``; returns ``{"run_id", "status"}``."""
    payload = job.payload
    run_id, name = payload.get("run_id"), payload.get("pipeline")
    if not isinstance(run_id, str) or not isinstance(name, str):
        raise PermanentError(
            f"pipeline.run job {job.id}: payload needs 'run_id' and 'pipeline' strings, got {payload!r}"
        )
    service = Pipelines(ctx)
    module = payload.get("module")
    if name not in registered() and isinstance(module, str) and module:
        # The submitter's module: lets a worker run pipelines not listed in pipeline_modules.
        with contextlib.suppress(ImportError):
            importlib.import_module(module)
    try:
        pipe = service.definition(name)
    except NotFoundError as exc:
        _fail_run(ctx, run_id, f"worker could not load the pipeline: {exc}")
        raise PermanentError(str(exc)) from None
    service.ensure_run_for_job(pipe, job)
    # Step failures are recorded in the run, not raised. What does raise here is infrastructure
    # trouble (database, artifact store): the queue retries the job and the run resumes.
    run = service.execute(run_id)
    return {"run_id": run.id, "status": run.status, "error": run.error}


def _fail_run(ctx: Context, run_id: str, error: str) -> None:
    with ctx.db.session() as session:
        if m.get_run(session, run_id) is not None:
            m.update_run(session, run_id, status=m.RUN_FAILED, finished_at=utcnow(), error=error)
