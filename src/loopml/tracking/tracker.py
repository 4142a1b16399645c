"""``Tracker``: starts runs and answers questions about them (``lm.tracking``).

One tracker owns one buffered metric writer shared by all its runs, so many small runs (a
hyper-parameter sweep) still write in a few large batches. Reads flush first: a script that logs
and then asks ``metric_history`` sees its own points.
"""

from __future__ import annotations

import atexit
import sys
import threading
import uuid
import weakref
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from loopml.context import Context
from loopml.errors import NotFoundError, ValidationError, did_you_mean
from loopml.storage.metadata import tracking as store
from loopml.tracking.compare import check_goals, compare_runs, infer_goal
from loopml.tracking.git import detect_git
from loopml.tracking.models import ArtifactRef, Experiment, MetricPoint, MetricSummary, Run, RunComparison
from loopml.tracking.run import ActiveRun
from loopml.tracking.validation import check_key
from loopml.tracking.writer import MetricWriter

DEFAULT_FLUSH_EVERY = 5000
DEFAULT_FLUSH_INTERVAL = 2.0
MAX_LIST_LIMIT = 10_000


class Tracker:
    """Experiment tracking on the metadata database: ``with lm.tracking.start_run("churn") as run: ...``."""

    def __init__(
        self,
        ctx: Context,
        *,
        flush_every: int = DEFAULT_FLUSH_EVERY,
        flush_interval: float = DEFAULT_FLUSH_INTERVAL,
        record_git: bool = True,
    ) -> None:
        if not isinstance(flush_every, int) or flush_every < 1:
            raise ValidationError(f"flush_every={flush_every!r}: must be a positive number of points.")
        if not isinstance(flush_interval, int | float) or flush_interval <= 0:
            raise ValidationError(f"flush_interval={flush_interval!r}: must be > 0 seconds.")
        self._ctx = ctx
        self._db = ctx.db
        self._writer = MetricWriter(
            self._write_points, max_points=flush_every, interval=float(flush_interval)
        )
        self._record_git = record_git
        self._active: dict[str, ActiveRun] = {}
        self._active_lock = threading.Lock()
        ref = weakref.ref(self)
        atexit.register(_end_open_runs_at_exit, ref)

    # -- writing ------------------------------------------------------------------------------
    def _write_points(self, rows: list[dict[str, Any]]) -> None:
        with self._db.session() as session:
            store.insert_metric_points(session, rows)

    def start_run(
        self,
        experiment: str,
        name: str | None = None,
        params: dict[str, Any] | None = None,
        tags: dict[str, Any] | None = None,
        pipeline_run_id: str | None = None,
    ) -> ActiveRun:
        """Open a run in ``experiment`` (created on first use), recording the git commit of the cwd."""
        check_key(experiment, "experiment")
        if name is not None and (not isinstance(name, str) or len(name) > 255):
            raise ValidationError(f"run name {name!r} must be a string of at most 255 characters.")
        if pipeline_run_id is not None and (
            not isinstance(pipeline_run_id, str) or len(pipeline_run_id) > 32
        ):
            raise ValidationError(
                f"pipeline_run_id {pipeline_run_id!r} must be a pipeline run id (a 32-char string) or None."
            )
        for what, value in (("params", params), ("tags", tags)):
            if value is not None and not isinstance(value, dict):
                raise ValidationError(f"start_run({what}=...) must be a dict, got {type(value).__name__}.")
        git = detect_git() if self._record_git else None
        all_tags: dict[str, Any] = {}
        if git is not None:
            all_tags["git.dirty"] = "true" if git.dirty else "false"
            if git.branch:
                all_tags["git.branch"] = git.branch
        all_tags.update(tags or {})
        run_id = uuid.uuid4().hex
        with self._db.session() as session:
            exp = store.get_or_create_experiment(session, experiment)
            store.create_run(
                session,
                run_id=run_id,
                experiment_id=exp.id,
                name=name,
                git_sha=git.sha if git else None,
                pipeline_run_id=pipeline_run_id,
                start_time=datetime.now(UTC),
            )
        active = ActiveRun(self, run_id, experiment, name)
        with self._active_lock:
            self._active[run_id] = active
        try:
            if params:
                active.log_params(params)
            if all_tags:
                active.set_tags(all_tags)
        except BaseException as exc:
            active.end("failed", f"{type(exc).__name__}: {exc}")
            raise
        return active

    def flush(self) -> int:
        """Write every buffered metric point now; returns how many were written."""
        return self._writer.flush()

    def close(self) -> None:
        """Stop the background flusher and write what is left."""
        self._writer.close()

    def _forget(self, run: ActiveRun) -> None:
        with self._active_lock:
            self._active.pop(run.id, None)

    def active_runs(self) -> list[ActiveRun]:
        with self._active_lock:
            return list(self._active.values())

    # -- reading ------------------------------------------------------------------------------
    def get_run(self, run_id: str) -> Run:
        """A run with params, tags, metric summaries, artifacts and inputs (unique id prefixes work)."""
        _check_run_id(run_id)
        self.flush()
        with self._db.session() as session:
            row, exp = store.get_run(session, run_id)
            return self._build(session, [(row, exp)], full=True)[0]

    def list_runs(
        self, experiment: str | None = None, limit: int = 50, status: str | None = None
    ) -> list[Run]:
        """Newest first, with params, tags and metric summaries (artifacts/inputs via ``get_run``)."""
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_LIST_LIMIT:
            raise ValidationError(f"limit={limit!r}: must be an integer from 1 to {MAX_LIST_LIMIT}.")
        if status is not None and status not in store.RUN_STATUSES:
            raise ValidationError(f"status={status!r}: use one of {', '.join(store.RUN_STATUSES)}.")
        self.flush()
        with self._db.session() as session:
            exp_id = store.find_experiment(session, experiment).id if experiment is not None else None
            rows = store.list_runs(session, experiment_id=exp_id, status=status, limit=limit)
            return self._build(session, rows, full=False)

    def list_experiments(self) -> list[Experiment]:
        with self._db.session() as session:
            return [
                Experiment(id=e.id, name=e.name, created_at=e.created_at, run_count=n)
                for e, n in store.list_experiments(session)
            ]

    def metric_history(self, run_id: str, key: str) -> list[MetricPoint]:
        """Every point of ``key`` in ``run_id``, ordered by step."""
        _check_run_id(run_id)
        self.flush()
        with self._db.session() as session:
            run, _ = store.get_run(session, run_id)
            points = store.metric_history(session, run.id, key)
            if not points:
                known = store.metric_keys(session, run.id)
                raise NotFoundError(f"run {run.id} has no metric {key!r}.{did_you_mean(key, known)}")
        return [MetricPoint(step=s, value=v, ts=ts) for s, v, ts in points]

    def compare(self, run_ids: Sequence[str], goals: Mapping[str, str] | None = None) -> RunComparison:
        """Params that differ and final/best metrics of two or more runs, side by side.

        ``goals`` sets the direction of "best" per metric (``{"auc": "max"}``); otherwise it is
        inferred from the name (loss/error/latency-like keys are minimised).
        """
        if isinstance(run_ids, str) or not isinstance(run_ids, Sequence):
            raise ValidationError("compare(run_ids): pass a list of run ids, e.g. compare([a.id, b.id]).")
        chosen = check_goals(goals)
        runs = [self.get_run(rid) for rid in run_ids]
        unique = list({r.id: r for r in runs}.values())
        if len(unique) < 2:
            raise ValidationError(f"compare needs at least two different runs, got {list(run_ids)!r}.")
        best: dict[str, dict[str, float | None]] = {}
        for run in unique:
            best[run.id] = {}
            for key, summary in run.metrics.items():
                goal = chosen.get(key) or infer_goal(key)
                value = summary.min if goal == "min" else summary.max
                best[run.id][key] = None if value != value else value
        return compare_runs(unique, best, chosen)

    def artifact(self, run_id: str, name: str) -> bytes:
        """The bytes of a run's artifact (verified against its digest)."""
        _check_run_id(run_id)
        with self._db.session() as session:
            run, _ = store.get_run(session, run_id)
            digest = store.get_artifact(session, run.id, name).digest
        return self._ctx.artifacts.get_bytes(digest)

    def runs_for_dataset_version(self, dataset_version_id: int) -> list[str]:
        """Reverse lineage: ids of the runs that logged this dataset version as an input."""
        if isinstance(dataset_version_id, bool) or not isinstance(dataset_version_id, int):
            raise ValidationError(f"dataset_version_id={dataset_version_id!r}: must be an integer id.")
        with self._db.session() as session:
            return store.runs_for_dataset_version(session, dataset_version_id)

    def _build(self, session: Any, rows: list[tuple[Any, str]], *, full: bool) -> list[Run]:
        ids = [r.id for r, _ in rows]
        params = store.params_for_runs(session, ids)
        summaries = store.metric_summaries(session, ids)
        out = []
        for row, exp in rows:
            extra: dict[str, Any] = {}
            if full:
                extra["artifacts"] = tuple(
                    ArtifactRef(name=a.name, digest=a.digest, size=a.size)
                    for a in store.get_artifacts(session, row.id)
                )
                extra["inputs"] = tuple(store.get_inputs(session, row.id))
            out.append(
                Run(
                    id=row.id,
                    experiment=exp,
                    name=row.name,
                    status=row.status,
                    start_time=row.start_time,
                    end_time=row.end_time,
                    git_sha=row.git_sha,
                    pipeline_run_id=row.pipeline_run_id,
                    error=row.error,
                    params=params.get(row.id, {}),
                    tags=store.get_tags(session, row.id),
                    metrics={
                        k: MetricSummary(key=k, **v) for k, v in sorted(summaries.get(row.id, {}).items())
                    },
                    **extra,
                )
            )
        return out


def _check_run_id(run_id: Any) -> None:
    if not isinstance(run_id, str) or not run_id:
        raise ValidationError(f"run id must be a non-empty string, got {run_id!r}.")


def _end_open_runs_at_exit(ref: weakref.ReferenceType[Tracker]) -> None:
    """At interpreter exit: flush, then close runs nobody ended (failed if the script died of an exception)."""
    tracker = ref()
    if tracker is None:
        return
    crashed = getattr(sys, "last_value", None) is not None
    try:
        tracker.close()
    finally:
        for run in tracker.active_runs():
            try:
                if crashed:
                    exc = sys.last_value
                    run.end("failed", f"{type(exc).__name__}: {exc} (uncaught, at interpreter exit)")
                else:
                    run.end("finished")
            except Exception:  # the database may be gone at exit; nothing left to tell the user
                continue
