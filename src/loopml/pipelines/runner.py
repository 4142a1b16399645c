"""Execute one pipeline run: DAG order, cache lookups, retries, captured logs, resumable.

The runner is stateless between steps on purpose: everything it needs to continue is in the
metadata database (step statuses, output digests) and the artifact store (outputs). That is what
makes a run survive its worker: call ``execute_run`` again on the same run id and the steps that
finished are taken over, the step that was running when the process died runs again.

Each step receives its inputs *decoded from the stored bytes* (not the upstream Python object):
every consumer gets its own copy, and a fresh run sees exactly what a cached run would.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any

from loopml.context import Context
from loopml.errors import NotFoundError, ValidationError
from loopml.pipelines import outputs
from loopml.pipelines.capture import capture
from loopml.pipelines.definition import Pipeline, Step
from loopml.pipelines.models import StepRun, step_run_from_row
from loopml.storage.metadata import pipelines as m
from loopml.storage.metadata.base import utcnow

if TYPE_CHECKING:
    from loopml.client import Loopml

log = logging.getLogger("loopml.pipelines")

#: Called with the step's new state each time a step's status changes.
StepCallback = Callable[[StepRun], None]
MAX_ERROR_CHARS = 8000


@dataclass
class _Output:
    stored: outputs.StoredOutput
    data: bytes | None = None  # kept for the rest of this run once read or written


def cache_key(item: Step, input_digests: dict[str, str], params_used: dict[str, Any]) -> str:
    """hash(step name, code hash, upstream output digests, params the step reads)."""
    material = json.dumps(
        {"step": item.name, "code": item.code_hash, "inputs": input_digests, "params": params_used},
        sort_keys=True,
        separators=(",", ":"),
        default=str,
    )
    return hashlib.sha256(material.encode()).hexdigest()


class RunExecutor:
    """Runs the steps of one run in order; see ``execute_run``."""

    def __init__(
        self,
        ctx: Context,
        pipe: Pipeline,
        run_id: str,
        *,
        on_step: StepCallback | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.ctx = ctx
        self.pipe = pipe
        self.run_id = run_id
        self.on_step = on_step
        self.sleep = sleep
        self.outputs: dict[str, _Output] = {}

    @cached_property
    def client(self) -> Loopml:
        """The Loopml client steps receive as ``lm``: same settings and backends as this run."""
        from loopml.client import Loopml

        return Loopml.from_context(self.ctx)

    # -- bookkeeping --------------------------------------------------------------------------
    def _set(self, step: str, **values: Any) -> StepRun:
        """Write a step's new state in its own transaction (a dashboard sees it now) and report it."""
        with self.ctx.db.session() as session:
            m.update_step(session, self.run_id, step, **values)
            rows = [r for r in m.step_runs(session, self.run_id) if r.step == step]
        state = step_run_from_row(rows[0])
        if self.on_step is not None:
            try:
                self.on_step(state)
            except Exception:  # a broken progress display must not fail the run
                log.exception("step callback failed")
        return state

    def _input_bytes(self, step: str) -> bytes:
        out = self.outputs[step]
        if out.data is None:
            out.data = self.ctx.artifacts.get_bytes(out.stored.digest)
        return out.data

    # -- the run ------------------------------------------------------------------------------
    def execute(self) -> str:
        """Run (or resume) the run; returns its final status. Already finished runs are left alone."""
        with self.ctx.db.session() as session:
            run = m.get_run(session, self.run_id)
            if run is None:
                raise NotFoundError(
                    f"pipeline run {self.run_id!r} does not exist; list runs with `loopml pipelines runs`"
                )
            if run.status in m.RUN_FINISHED:
                return run.status
            params = dict(run.params or {})
            rows = {r.step: r for r in m.step_runs(session, self.run_id)}
            m.start_run(session, self.run_id, utcnow())
        if set(rows) != set(self.pipe.step_names):
            return self._finish(
                f"pipeline {self.pipe.name!r} changed since this run was queued (run has steps "
                f"{sorted(rows)}, the definition now has {sorted(self.pipe.step_names)}); submit a new run"
            )
        problems: list[str] = []
        for item in self.pipe.steps:
            problem = self._run_step(item, rows[item.name], params)
            if problem:
                problems.append(problem)
        return self._finish("; ".join(problems) if problems else None)

    def _finish(self, error: str | None) -> str:
        status = m.RUN_FAILED if error else m.RUN_SUCCEEDED
        with self.ctx.db.session() as session:
            m.update_run(session, self.run_id, status=status, finished_at=utcnow(), error=error)
        return status

    def _run_step(self, item: Step, row: Any, params: dict[str, Any]) -> str | None:
        """Resume, skip (cached) or execute one step; returns a problem description or None."""
        name = item.name
        upstream = self.pipe.upstream[name]
        missing = [u for u in upstream if u not in self.outputs]
        if missing:
            self._set(
                name,
                status=m.STEP_UPSTREAM_FAILED,
                error=f"not run: upstream {', '.join(missing)} did not succeed",
            )
            return f"step {name!r} not run (upstream failed)"
        if row.status in m.STEP_DONE and row.output_digest and self.ctx.artifacts.exists(row.output_digest):
            # A resumed run: this step finished before the worker died.
            self.outputs[name] = _Output(
                outputs.StoredOutput(row.output_digest, row.output_format, row.output_type or "")
            )
            if self.on_step is not None:
                self.on_step(step_run_from_row(row))
            return None
        input_digests = {u: self.outputs[u].stored.digest for u in upstream}
        used = self.pipe.params_used(item, params)
        key = cache_key(item, input_digests, used)
        if item.cache and self._reuse_cached(item, key, input_digests):
            return None
        return self._execute(item, row, params, key, input_digests, used)

    def _reuse_cached(self, item: Step, key: str, input_digests: dict[str, str]) -> bool:
        with self.ctx.db.session() as session:
            hit = m.find_cached_output(session, key)
            hit_values = (
                None if hit is None else (hit.output_digest, hit.output_format, hit.output_type, hit.run_id)
            )
        if hit_values is None or not self.ctx.artifacts.exists(hit_values[0]):
            return False
        digest, fmt, type_name, source_run = hit_values
        now = utcnow()
        self.outputs[item.name] = _Output(outputs.StoredOutput(digest, fmt, type_name or ""))
        self._set(
            item.name,
            status=m.STEP_SKIPPED,
            started_at=now,
            finished_at=now,
            duration_seconds=0.0,
            input_digests=input_digests,
            output_digest=digest,
            output_format=fmt,
            output_type=type_name,
            cache_key=key,
            cached_from=source_run,
            log=f"skipped: inputs unchanged, output reused from run {source_run}\n",
            error=None,
        )
        return True

    def _execute(
        self,
        item: Step,
        row: Any,
        params: dict[str, Any],
        key: str,
        input_digests: dict[str, str],
        used: dict[str, Any],
    ) -> str | None:
        name = item.name
        logs: list[str] = []
        started = utcnow()
        attempts = int(row.attempts or 0)
        if row.status in (m.STEP_RUNNING, m.STEP_RETRYING):
            logs.append(f"[resumed: attempt {attempts} was interrupted (worker stopped or crashed)]\n")
        error = ""
        for attempt in range(1, item.retries + 2):
            attempts += 1
            if attempt == 1:
                self._set(
                    name,
                    status=m.STEP_RUNNING,
                    attempts=attempts,
                    started_at=started,
                    input_digests=input_digests,
                    cache_key=key,
                    error=None,
                )
            else:
                self._set(name, status=m.STEP_RUNNING, attempts=attempts)
            t0 = time.perf_counter()
            retryable = True
            with capture() as buf:
                try:
                    kwargs = self._kwargs(item, params, used)
                    value = item.fn(**kwargs)
                    _check_output(item, value)
                    data, fmt = outputs.encode(value)
                    stored = outputs.StoredOutput(
                        self.ctx.artifacts.put_bytes(data), fmt, outputs.type_name(value)
                    )
                except ValidationError as exc:  # wrong types: the code must change, retrying cannot help
                    error, retryable = f"ValidationError: {exc}", False
                except Exception:  # the step's own failure is recorded and retried
                    error = traceback.format_exc()[-MAX_ERROR_CHARS:]
                else:
                    error = ""
            elapsed = time.perf_counter() - t0
            header = f"--- attempt {attempts} ---\n" if item.retries or attempts > 1 else ""
            logs.append(header + buf.getvalue())
            if not error:
                self.outputs[name] = _Output(stored, data)
                self._set(
                    name,
                    status=m.STEP_SUCCEEDED,
                    finished_at=utcnow(),
                    duration_seconds=elapsed,
                    output_digest=stored.digest,
                    output_format=stored.format,
                    output_type=stored.type_name,
                    log=_cap("".join(logs)),
                    error=None,
                )
                return None
            logs.append(error if error.endswith("\n") else error + "\n")
            last = attempt == item.retries + 1 or not retryable
            if last:
                self._set(
                    name,
                    status=m.STEP_FAILED,
                    finished_at=utcnow(),
                    duration_seconds=elapsed,
                    log=_cap("".join(logs)),
                    error=error,
                )
                summary = error.strip().splitlines()[-1] if error.strip() else "error"
                return f"step {name!r} failed after {attempts} attempt(s): {summary}"
            delay = item.backoff_seconds * (2 ** (attempt - 1))
            self._set(name, status=m.STEP_RETRYING, log=_cap("".join(logs)), error=error)
            log.info("step %s attempt %d failed, retrying in %.1fs", name, attempts, delay)
            if delay:
                self.sleep(delay)
        return None  # pragma: no cover - the loop always returns

    def _kwargs(self, item: Step, params: dict[str, Any], used: dict[str, Any]) -> dict[str, Any]:
        kwargs: dict[str, Any] = {}
        upstream = self.pipe.upstream[item.name]
        for param in item.inputs:
            if param == "lm":
                kwargs[param] = self.client
            elif param == "pipeline_run_id":
                kwargs[param] = self.run_id
            elif param in upstream:
                out = self.outputs[param]
                kwargs[param] = outputs.decode(self._input_bytes(param), out.stored.format)
            elif param in used:
                kwargs[param] = params[param]
        for param, kind in item.input_types().items():
            if param in kwargs and not _isinstance(kwargs[param], kind):
                source = f"the output of step {param!r}" if param in upstream else f"param {param!r}"
                raise ValidationError(
                    f"step {item.name!r} parameter {param!r} is annotated {kind.__name__} but {source} is "
                    f"{type(kwargs[param]).__name__}; fix the annotation or the upstream return value"
                )
        return kwargs


def _check_output(item: Step, value: Any) -> None:
    kind = item.output_type()
    if kind is not None and not _isinstance(value, kind):
        raise ValidationError(
            f"step {item.name!r} is annotated to return {kind.__name__} but returned {type(value).__name__}"
        )


def _isinstance(value: Any, kind: type) -> bool:
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return True
    return isinstance(value, kind)


def _cap(text: str, limit: int = 64_000) -> str:
    return (
        text
        if len(text) <= limit
        else f"[... {len(text) - limit} earlier characters dropped ...]\n" + text[-limit:]
    )


def execute_run(
    ctx: Context,
    pipe: Pipeline,
    run_id: str,
    *,
    on_step: StepCallback | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> str:
    """Run or resume ``run_id`` of ``pipe`` in this process; returns ``succeeded`` or ``failed``."""
    return RunExecutor(ctx, pipe, run_id, on_step=on_step, sleep=sleep).execute()
