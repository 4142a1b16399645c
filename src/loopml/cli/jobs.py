"""``loopml worker`` and ``loopml jobs list|show|stats|requeue|cancel|enqueue``: run and operate the job queue."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime, timedelta

import typer
from rich.logging import RichHandler
from rich.panel import Panel

from loopml.cli.common import ago, client, console, duration, err_console, table
from loopml.errors import ValidationError
from loopml.processes import WORKER_QUEUES
from loopml.storage.queue import STATUSES, Job

jobs_app = typer.Typer(help="Inspect and operate the durable job queue.", no_args_is_help=True)

_STATUS_STYLE = {
    "queued": "cyan",
    "running": "yellow",
    "succeeded": "green",
    "dead": "red",
    "cancelled": "dim",
}


def register(app: typer.Typer) -> None:
    """Add ``worker`` and the ``jobs`` group to the root app."""
    app.command("worker")(worker)
    app.add_typer(jobs_app, name="jobs")


def worker(
    concurrency: int = typer.Option(
        1, "--concurrency", "-c", min=1, max=256, help="Jobs run at once (threads)."
    ),
    queue: list[str] = typer.Option(
        list(WORKER_QUEUES),
        "--queue",
        "-q",
        help="Queue to take jobs from (repeatable; default: every built-in queue).",
    ),
    lease_seconds: float = typer.Option(
        60.0, min=1.0, help="Lease per claim; a crashed worker's jobs run again after it ends."
    ),
    grace_seconds: float = typer.Option(
        30.0, min=0.0, help="On SIGTERM/SIGINT, how long in-flight jobs may finish before they are released."
    ),
    log_level: str = typer.Option("info", help="debug, info, warning or error."),
) -> None:
    """Run jobs from the queue until SIGTERM/SIGINT (then finish or release in-flight jobs and exit 0)."""
    from loopml.worker import run_worker

    level = logging.getLevelName(log_level.upper())
    if not isinstance(level, int):
        raise ValidationError(f"--log-level {log_level!r}: use debug, info, warning or error")
    logging.basicConfig(
        level=level, format="%(message)s", handlers=[RichHandler(console=err_console, show_path=False)]
    )
    logging.getLogger("alembic").setLevel(logging.WARNING)  # schema upgrade chatter is not worker news
    lm = client()
    try:
        stats = run_worker(
            lm.ctx, concurrency, tuple(queue), lease_seconds=lease_seconds, grace_seconds=grace_seconds
        )
    finally:
        lm.close()
    err_console.print(
        f"worker stopped: {stats.succeeded} succeeded, {stats.failed} failed ({stats.dead} dead), "
        f"{stats.released} released"
    )


@jobs_app.command("list")
def list_jobs(
    status: str | None = typer.Option(None, help=f"Only this status: {', '.join(STATUSES)}."),
    kind: str | None = typer.Option(None, help="Only this job kind, e.g. pipeline.run."),
    queue: str | None = typer.Option(None, help="Only this queue."),
    limit: int = typer.Option(50, min=1, max=10_000, help="Newest N jobs."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """List jobs, newest first."""
    lm = client()
    try:
        jobs = lm.jobs.list(status=status, kind=kind, limit=limit, queue=queue)
    finally:
        lm.close()
    if as_json:
        console.print_json(json.dumps([job.to_dict() for job in jobs]))
        return
    rows = [
        [
            job.id,
            job.queue,
            job.kind,
            _status(job),
            f"{job.attempts}/{job.max_attempts}",
            job.priority,
            ago(job.created_at),
            _short(job.last_error),
        ]
        for job in jobs
    ]
    out = table(
        f"jobs ({len(jobs)})",
        ["id", "queue", "kind", "status", "attempts", "prio", "created", "last error"],
        rows,
    )
    console.print(out)


@jobs_app.command("show")
def show(job_id: int = typer.Argument(..., help="Job id (see `loopml jobs list`).")) -> None:
    """Show one job: payload, result, lease and the last error in full."""
    lm = client()
    try:
        job = lm.jobs.get(job_id)
    finally:
        lm.close()
    data = job.to_dict()
    rows = [
        [key, _status(job) if key == "status" else data[key]]
        for key in data
        if key not in ("payload", "result", "last_error")
    ]
    console.print(table(f"job {job.id}", ["field", "value"], rows))
    console.print(Panel(json.dumps(job.payload, indent=2), title="payload"))
    if job.result is not None:
        console.print(Panel(json.dumps(job.result, indent=2), title="result"))
    if job.last_error:
        console.print(Panel(job.last_error, title="last error", border_style="red"))


@jobs_app.command("requeue")
def requeue(
    job_id: int = typer.Argument(..., help="A dead or cancelled job's id."),
    reason: str | None = typer.Option(None, help="Why (kept in the audit log)."),
    actor: str = typer.Option("cli", help="Who (kept in the audit log)."),
) -> None:
    """Put a dead (or cancelled) job back in its queue with a fresh attempt budget."""
    lm = client()
    try:
        job = lm.jobs.requeue(job_id, actor=actor, reason=reason)
    finally:
        lm.close()
    console.print(f"job {job.id} ({job.kind}) is {_status(job)} again in queue {job.queue}")


@jobs_app.command("cancel")
def cancel(
    job_id: int = typer.Argument(..., help="A queued or dead job's id."),
    reason: str | None = typer.Option(None, help="Why (kept in the audit log)."),
    actor: str = typer.Option("cli", help="Who (kept in the audit log)."),
) -> None:
    """Cancel a queued (or dead) job so no worker runs it."""
    lm = client()
    try:
        job = lm.jobs.cancel(job_id, actor=actor, reason=reason)
    finally:
        lm.close()
    console.print(f"job {job.id} ({job.kind}) is {_status(job)}")


@jobs_app.command("enqueue")
def enqueue(
    kind: str = typer.Argument(..., help="Job kind, handled by a @job_handler(kind) function."),
    payload: str = typer.Option("{}", help='JSON object, e.g. \'{"name": "demand"}\'.'),
    queue: str = typer.Option("default", help="Queue name."),
    priority: int = typer.Option(0, help="Higher runs first."),
    delay: float = typer.Option(0.0, min=0.0, help="Seconds before the job is due."),
    max_attempts: int = typer.Option(5, min=1, help="Attempts before the job is dead-lettered."),
    key: str | None = typer.Option(None, "--idempotency-key", help="Same key again returns the same job."),
) -> None:
    """Add a job to a queue (mostly for operations and scripts; code uses lm.jobs.enqueue)."""
    try:
        data = json.loads(payload)
    except json.JSONDecodeError as exc:
        raise ValidationError(
            f"--payload is not valid JSON ({exc}); example: --payload '{{\"n\": 3}}'"
        ) from None
    if not isinstance(data, dict):
        raise ValidationError(f"--payload must be a JSON object, got {type(data).__name__}")
    not_before = datetime.now(UTC) + timedelta(seconds=delay) if delay else None
    lm = client()
    try:
        job = lm.jobs.enqueue(
            kind,
            data,
            queue=queue,
            priority=priority,
            not_before=not_before,
            max_attempts=max_attempts,
            idempotency_key=key,
        )
    finally:
        lm.close()
    console.print(f"job {job.id} ({job.kind}) {_status(job)} in queue {job.queue}")


@jobs_app.command("stats")
def stats(
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of tables."),
) -> None:
    """Counts per status and the age of the oldest waiting job, per queue."""
    lm = client()
    try:
        names = lm.jobs.queues()
        per_queue = {
            name: {**lm.jobs.stats(queue=name), "oldest_queued_age_s": lm.jobs.oldest_age_seconds(name)}
            for name in names
        }
    finally:
        lm.close()
    if as_json:
        console.print_json(json.dumps(per_queue))
        return
    if not per_queue:
        console.print("no jobs yet")
        return
    rows = []
    for name, counts in per_queue.items():
        age = counts["oldest_queued_age_s"]
        rows.append([name, *(counts[s] for s in STATUSES), "-" if age is None else duration(age)])
    console.print(table("job queues", ["queue", *STATUSES, "oldest queued"], rows))


def _status(job: Job) -> str:
    return f"[{_STATUS_STYLE.get(job.status, 'white')}]{job.status}[/]"


def _short(text: str | None, width: int = 60) -> str:
    if not text:
        return ""
    last = text.strip().splitlines()[-1]
    return last if len(last) <= width else last[: width - 1] + "…"
