"""``Pipelines`` (``lm.pipelines``): find pipelines, run them here or as durable jobs, read run records."""

from __future__ import annotations

import hashlib
import importlib
import os
import sys
import uuid
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from loopml.context import Context
from loopml.errors import ConfigError, NotFoundError, ValidationError, did_you_mean
from loopml.pipelines import outputs
from loopml.pipelines.definition import Pipeline, register, registered
from loopml.pipelines.models import (
    PipelineInfo,
    PipelineRun,
    Schedule,
    StepInfo,
    run_from_row,
    schedule_from_row,
)
from loopml.pipelines.params import resolve_params
from loopml.pipelines.runner import StepCallback, execute_run
from loopml.storage.metadata import pipelines as m
from loopml.storage.metadata.core import record_event

if TYPE_CHECKING:
    from loopml.storage.queue import Job

JOB_KIND = "pipeline.run"
LOCAL_MODULE = "pipelines"


#: Pipelines every project has (imported before the project's own modules).
BUILTIN_MODULES = ("loopml.features.pipelines", "loopml.monitoring.jobs")


def load_pipeline_modules(ctx: Context) -> list[str]:
    """Import the modules that define pipelines; returns their names.

    ``settings.pipeline_modules`` when set; otherwise a project-local ``pipelines.py`` in the
    working directory (what ``loopml init`` scaffolds). The working directory goes on ``sys.path``
    because the ``loopml`` console script does not put it there.
    """
    for builtin in BUILTIN_MODULES:
        importlib.import_module(builtin)
    cwd = os.getcwd()
    if cwd not in sys.path:
        sys.path.insert(0, cwd)
    names = list(ctx.settings.pipeline_modules)
    if not names and (Path(cwd) / f"{LOCAL_MODULE}.py").is_file():
        names = [LOCAL_MODULE]
    for name in names:
        try:
            importlib.import_module(name)
        except ImportError as exc:
            raise ConfigError(
                f"pipeline_modules lists {name!r} but it cannot be imported ({exc}); fix the name in "
                f"loopml.toml / LOOPML_PIPELINE_MODULES or run from the project directory ({cwd})"
            ) from None
    return names


def run_id_for(idempotency_key: str | None) -> str:
    """A new uuid hex, or one derived from the idempotency key so a repeated submit is the same run."""
    if idempotency_key is None:
        return uuid.uuid4().hex
    return hashlib.sha256(idempotency_key.encode()).hexdigest()[:32]


class Pipelines:
    """The pipelines service. ``run`` executes in this process; ``submit`` queues a ``pipeline.run`` job."""

    def __init__(self, ctx: Context, *, load_modules: bool = True) -> None:
        self.ctx = ctx
        if load_modules:
            load_pipeline_modules(ctx)

    # -- definitions --------------------------------------------------------------------------
    def definition(self, name: str | Pipeline) -> Pipeline:
        """The registered ``Pipeline`` object (a ``Pipeline`` passed in is registered first)."""
        if isinstance(name, Pipeline):
            return register(name)
        if not isinstance(name, str):
            raise ValidationError(f"pipeline must be a name or a Pipeline, got {type(name).__name__}")
        known = registered()
        if name not in known:
            where = ", ".join(self.ctx.settings.pipeline_modules) or f"{LOCAL_MODULE}.py in {os.getcwd()}"
            raise NotFoundError(
                f"pipeline {name!r} is not defined (looked in {where})."
                + did_you_mean(name, list(known))
                + " Define it with @pipeline(...) in a module listed in pipeline_modules."
            )
        return known[name]

    def list(self) -> list[PipelineInfo]:
        """Every registered pipeline, by name, with its latest run."""
        pipes = sorted(registered().values(), key=lambda p: p.name)
        with self.ctx.db.session() as session:
            last = {
                name: (row.id, row.status, row.created_at)
                for name, row in m.last_runs_by_pipeline(session, [p.name for p in pipes]).items()
            }
        return [_info(p, last.get(p.name)) for p in pipes]

    def get(self, name: str) -> PipelineInfo:
        pipe = self.definition(name)
        with self.ctx.db.session() as session:
            row = m.last_runs_by_pipeline(session, [pipe.name]).get(pipe.name)
            last = (row.id, row.status, row.created_at) if row is not None else None
        return _info(pipe, last)

    def resolve_params(self, name: str | Pipeline, params: dict[str, Any] | None = None) -> dict[str, Any]:
        """The params a run would get (defaults + overrides, converted); raises on unknown or mistyped ones."""
        pipe = self.definition(name)
        return resolve_params(pipe.name, pipe.params, params)

    # -- running ------------------------------------------------------------------------------
    def run(
        self,
        name: str | Pipeline,
        params: dict[str, Any] | None = None,
        *,
        trigger: str = "manual",
        on_step: StepCallback | None = None,
    ) -> PipelineRun:
        """Run a pipeline now, in this process, and return the finished run record.

        Step failures do not raise: they are in the returned run (``status == "failed"``, each
        step's ``error`` and ``log``). Bad names and params raise before anything is recorded.
        """
        pipe = self.definition(name)
        resolved = resolve_params(pipe.name, pipe.params, params)
        run_id = run_id_for(None)
        self._create_run(pipe, run_id, resolved, _trigger(trigger))
        execute_run(self.ctx, pipe, run_id, on_step=on_step)
        return self.get_run(run_id)

    def submit(
        self,
        name: str | Pipeline,
        params: dict[str, Any] | None = None,
        idempotency_key: str | None = None,
        *,
        trigger: str = "api",
        queue: str = "default",
        schedule_slot: datetime | None = None,
    ) -> Job:
        """Queue a run as a ``pipeline.run`` job (a worker executes it, and resumes it after a crash).

        The run record exists (status ``queued``) when this returns; ``job.payload["run_id"]`` is
        its id. The same ``idempotency_key`` returns the same job and run instead of a second one.
        """
        from loopml.storage.queue import JobQueue

        pipe = self.definition(name)
        resolved = resolve_params(pipe.name, pipe.params, params)
        trigger = _trigger(trigger)
        payload = {
            "run_id": run_id_for(idempotency_key),
            "pipeline": pipe.name,
            "params": resolved,
            "trigger": trigger,
            "module": pipe.module,
            "schedule_slot": schedule_slot.isoformat() if schedule_slot else None,
        }
        job = JobQueue(self.ctx).enqueue(JOB_KIND, payload, idempotency_key=idempotency_key, queue=queue)
        self.ensure_run_for_job(pipe, job)
        return job

    def ensure_run_for_job(self, pipe: Pipeline, job: Job) -> str:
        """Create the run record a job describes if it does not exist yet; returns the run id.

        Called by ``submit`` and again by the job handler, so a submitter that died between
        enqueue and insert (or a worker faster than the submitter) still gets one run record.
        """
        payload = job.payload
        slot = payload.get("schedule_slot")
        run_id = str(payload["run_id"])
        self._create_run(
            pipe,
            run_id,
            dict(payload.get("params") or {}),
            str(payload.get("trigger") or "api"),
            job_id=job.id,
            schedule_slot=datetime.fromisoformat(slot) if slot else None,
        )
        return run_id

    def _create_run(
        self,
        pipe: Pipeline,
        run_id: str,
        params: dict[str, Any],
        trigger: str,
        *,
        job_id: int | None = None,
        schedule_slot: datetime | None = None,
    ) -> None:
        with self.ctx.db.session() as session:
            created = m.insert_run_if_missing(
                session,
                run_id=run_id,
                pipeline=pipe.name,
                params=params,
                trigger=trigger,
                steps=list(pipe.step_names),
                job_id=job_id,
                schedule_slot=schedule_slot,
            )
            if created:
                record_event(
                    session,
                    "pipeline.run_created",
                    "pipeline_run",
                    run_id,
                    data={
                        "pipeline": pipe.name,
                        "trigger": trigger,
                        "job_id": job_id,
                    },
                )
            elif job_id is not None:
                m.set_run_job(session, run_id, job_id)

    def execute(self, run_id: str, *, on_step: StepCallback | None = None) -> PipelineRun:
        """Run or resume an existing run record in this process (what the job handler calls)."""
        run = self.get_run(run_id)
        execute_run(self.ctx, self.definition(run.pipeline), run_id, on_step=on_step)
        return self.get_run(run_id)

    # -- records ------------------------------------------------------------------------------
    def runs(
        self, name: str | None = None, limit: int = 50, *, status: str | None = None
    ) -> list[PipelineRun]:
        """Newest runs first, optionally of one pipeline (which need not be defined here any more)."""
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= 10_000:
            raise ValidationError(f"limit={limit!r}: use an int between 1 and 10000")
        if status is not None and status not in m.RUN_STATUSES:
            raise ValidationError(f"status={status!r}: use one of {', '.join(m.RUN_STATUSES)}")
        with self.ctx.db.session() as session:
            rows = m.list_runs(session, pipeline=name, status=status, limit=limit)
            steps = m.step_runs_for(session, [r.id for r in rows])
            return [run_from_row(r, steps[r.id]) for r in rows]

    def get_run(self, run_id: str) -> PipelineRun:
        if not isinstance(run_id, str) or not run_id:
            raise ValidationError(
                f"run_id={run_id!r}: pass the 32-character id shown by `loopml pipelines runs`"
            )
        with self.ctx.db.session() as session:
            row = m.get_run(session, run_id)
            if row is None:
                raise NotFoundError(
                    f"pipeline run {run_id!r} does not exist; list runs with `loopml pipelines runs`"
                )
            return run_from_row(row, m.step_runs(session, run_id))

    def output(self, run_id: str, step: str) -> Any:
        """Load the stored output of ``step`` in run ``run_id`` (a DataFrame, array, JSON value ...)."""
        run = self.get_run(run_id)
        names = [s.step for s in run.steps]
        if step not in names:
            raise NotFoundError(f"run {run_id} has no step {step!r}." + did_you_mean(step, names))
        state = run.step(step)
        if not state.output_digest or not state.output_format:
            raise NotFoundError(
                f"step {step!r} of run {run_id} has no output (status {state.label}); it did not succeed"
            )
        return outputs.load(self.ctx.artifacts, state.output_digest, state.output_format)

    # -- schedules ----------------------------------------------------------------------------
    def schedules(self) -> list[Schedule]:
        """Stored schedules (synced from the definitions by the scheduler), by pipeline name."""
        from loopml.pipelines.scheduler import sync_schedules

        sync_schedules(self.ctx)
        with self.ctx.db.session() as session:
            return [schedule_from_row(r) for r in m.list_schedules(session)]

    def set_schedule_enabled(self, name: str, enabled: bool, *, actor: str = "system") -> Schedule:
        """Pause or resume a pipeline's schedule (kept across restarts, unlike the definition)."""
        from loopml.pipelines.scheduler import sync_schedules

        if not isinstance(enabled, bool):
            raise ValidationError(f"enabled={enabled!r}: use True or False")
        sync_schedules(self.ctx)
        with self.ctx.db.session() as session:
            row = m.get_schedule(session, name)
            if row is None:
                known = [r.pipeline for r in m.list_schedules(session)]
                raise NotFoundError(
                    f"pipeline {name!r} has no schedule."
                    + did_you_mean(name, known)
                    + " Give it one with @pipeline(..., schedule='0 6 * * *')."
                )
            m.update_schedule(session, name, enabled=enabled)
            record_event(
                session,
                "pipeline.schedule_" + ("resumed" if enabled else "paused"),
                "schedule",
                name,
                actor=actor,
            )
            row = m.get_schedule(session, name)
            session.refresh(row)
            return schedule_from_row(row)


def _trigger(trigger: str) -> str:
    if trigger not in m.TRIGGERS:
        raise ValidationError(f"trigger={trigger!r}: use one of {', '.join(m.TRIGGERS)}")
    return trigger


def _info(pipe: Pipeline, last: tuple[str, str, datetime] | None) -> PipelineInfo:
    steps = tuple(
        StepInfo(
            name=s.name,
            upstream=pipe.upstream[s.name],
            params=tuple(p for p in s.inputs if p in pipe.params),
            retries=s.retries,
            cache=s.cache,
        )
        for s in pipe.steps
    )
    return PipelineInfo(
        name=pipe.name,
        description=pipe.description,
        steps=steps,
        params=dict(pipe.params),
        schedule=pipe.schedule,
        module=pipe.module,
        last_run_id=last[0] if last else None,
        last_status=last[1] if last else None,
        last_run_at=last[2] if last else None,
    )
