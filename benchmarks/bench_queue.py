"""Job queue throughput: enqueue + claim + ack with 2 worker processes, SQLite and PostgreSQL, one run.

Run: ``.venv/bin/python benchmarks/bench_queue.py [--jobs 3000]``

For each backend a fresh metadata database is created and migrated. The main process enqueues
``--jobs`` jobs, one transaction per job, from 4 threads (like concurrent requests in an API server:
PostgreSQL commits concurrent transactions in one WAL flush) while two worker processes run
``loopml.worker.Worker`` with a no-op handler: lease-based batch claim, batched acks. The clock runs
from the first enqueue until every job is ``succeeded``.

The baseline is the queue a user would write first with an ORM: ``SELECT`` the oldest queued row,
then ``UPDATE ... WHERE id=? AND status='queued'`` (the guard is needed, or two workers run the same
job), one job per claim. Its "collisions" are claims lost to the other worker.

Any "database is locked" (or other database error) in any process is counted and shown; the
target is zero. Writes its section to docs/benchmarks/queue.md.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import platform
import socket
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parent.parent
PG_ADMIN_URL = os.environ.get("LOOPML_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
WORKERS = 2
CONCURRENCY = 8
#: Enqueueing threads in the main process, like concurrent requests in an API server.
PRODUCERS = 4
console = Console()


@dataclass
class Result:
    backend: str
    queue: str
    jobs: int
    seconds: float
    errors: int
    enqueue_seconds: float
    collisions: int = 0

    @property
    def rate(self) -> float:
        return self.jobs / self.seconds


# -- worker processes --------------------------------------------------------------------------
def _loopml_worker(url: str, home: str, stop: Any, out: Any) -> None:
    from loopml.config import load_settings
    from loopml.context import Context
    from loopml.worker import Worker

    ctx = Context.from_settings(load_settings(home=home, metadata_url=url))
    worker = Worker(
        ctx,
        concurrency=CONCURRENCY,
        handlers={"bench.noop": lambda _ctx, _job: None},
        poll_min=0.002,
        poll_max=0.05,
    )
    local_stop = threading.Event()
    threading.Thread(target=lambda: (stop.wait(), local_stop.set()), daemon=True).start()
    stats = worker.run(local_stop)
    out.put(stats.db_errors)
    ctx.close()


def _naive_worker(url: str, stop: Any, out: Any) -> None:
    from sqlalchemy import select, update

    from loopml.storage.metadata import Database
    from loopml.storage.metadata.base import utcnow
    from loopml.storage.metadata.jobs import JobRow

    db = Database(url)
    name = f"naive-{os.getpid()}"
    errors = collisions = 0
    while not stop.is_set():
        try:
            with db.session() as s:
                job_id = s.scalar(
                    select(JobRow.id)
                    .where(JobRow.status == "queued", JobRow.not_before <= utcnow())
                    .order_by(JobRow.priority.desc(), JobRow.id)
                    .limit(1)
                )
                if job_id is None:
                    got = False
                else:
                    got = (
                        s.execute(
                            update(JobRow)
                            .where(JobRow.id == job_id, JobRow.status == "queued")
                            .values(status="running", worker_id=name, attempts=JobRow.attempts + 1)
                        ).rowcount
                        == 1
                    )
                    collisions += not got
            if job_id is None:
                time.sleep(0.002)
                continue
            if got:
                with db.session() as s:
                    s.execute(
                        update(JobRow)
                        .where(JobRow.id == job_id, JobRow.worker_id == name)
                        .values(status="succeeded", finished_at=utcnow())
                    )
        except Exception as exc:  # counted: the point of the run is that this stays 0
            errors += 1
            if errors < 3:
                print(f"naive worker error: {exc}", file=sys.stderr)
    out.put((errors, collisions))
    db.dispose()


# -- one measured run ----------------------------------------------------------------------------
def run_one(backend: str, url: str, home: str, kind: str, jobs: int) -> Result:
    from loopml.config import load_settings
    from loopml.context import Context
    from loopml.storage.queue import JobQueue

    ctx = Context.from_settings(load_settings(home=home, metadata_url=url))
    ctx.db.upgrade()
    queue = JobQueue(ctx)
    spawn = mp.get_context("spawn")
    stop, out = spawn.Event(), spawn.Queue()
    if kind == "loopml":
        procs = [spawn.Process(target=_loopml_worker, args=(url, home, stop, out)) for _ in range(WORKERS)]
    else:
        procs = [spawn.Process(target=_naive_worker, args=(url, stop, out)) for _ in range(WORKERS)]
    for p in procs:
        p.start()
    time.sleep(3.0)  # let both workers import and connect before the clock starts
    producer_errors: list[str] = []

    def produce(part: range) -> None:
        for i in part:
            try:
                queue.enqueue("bench.noop", {"i": i})
            except Exception as exc:  # counted: must stay 0
                producer_errors.append(str(exc))

    producers = [
        threading.Thread(target=produce, args=(range(k, jobs, PRODUCERS),)) for k in range(PRODUCERS)
    ]
    start = time.perf_counter()
    for t in producers:
        t.start()
    for t in producers:
        t.join()
    enqueued_at = time.perf_counter() - start
    for message in producer_errors[:3]:
        console.print(f"[red]enqueue error:[/] {message}")
    while queue.stats()["succeeded"] < jobs - len(producer_errors):
        time.sleep(0.01)
    elapsed = time.perf_counter() - start
    stop.set()
    reports = [out.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(30)
    ctx.close()
    if kind == "loopml":
        return Result(
            backend,
            kind,
            jobs,
            elapsed,
            errors=len(producer_errors) + sum(reports),
            enqueue_seconds=enqueued_at,
        )
    return Result(
        backend,
        kind,
        jobs,
        elapsed,
        errors=len(producer_errors) + sum(e for e, _ in reports),
        enqueue_seconds=enqueued_at,
        collisions=sum(c for _, c in reports),
    )


def _pg_reachable() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 5432), timeout=1):
            return True
    except OSError:
        return False


def _pg_database() -> tuple[str, Any]:
    from sqlalchemy import create_engine, text

    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    name = f"loopml_bench_{uuid.uuid4().hex[:8]}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))

    def drop() -> None:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()

    return PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}", drop


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=3000, help="jobs per run (default 3000)")
    parser.add_argument("--no-baseline", action="store_true", help="skip the naive SELECT-then-UPDATE queue")
    args = parser.parse_args()
    kinds = ["loopml"] if args.no_baseline else ["loopml", "naive"]
    results: list[Result] = []
    with tempfile.TemporaryDirectory(prefix="loopml-bench-queue-") as tmp:
        for kind in kinds:
            home = f"{tmp}/sqlite-{kind}"
            url = f"sqlite:///{home}/loopml.db"
            Path(home).mkdir()
            console.print(f"sqlite / {kind}: {args.jobs} jobs ...")
            results.append(run_one("sqlite", url, home, kind, args.jobs))
        if _pg_reachable():
            for kind in kinds:
                url, drop = _pg_database()
                try:
                    console.print(f"postgresql / {kind}: {args.jobs} jobs ...")
                    results.append(run_one("postgresql", url, f"{tmp}/pg-{kind}", kind, args.jobs))
                finally:
                    drop()
        else:
            console.print("[yellow]PostgreSQL not reachable at 127.0.0.1:5432: skipped[/]")
    report(results, args.jobs)


def report(results: list[Result], jobs: int) -> None:
    targets = {"sqlite": 1000, "postgresql": 2000}
    rate = {(r.backend, r.queue): r.rate for r in results}
    table = Table(title=f"job queue: enqueue + claim + ack, {WORKERS} worker processes, {jobs} jobs")
    for col in (
        "backend",
        "queue",
        "jobs/s",
        "vs naive",
        "target",
        "enqueue done at",
        "db errors",
        "collisions",
    ):
        table.add_column(col, justify="right" if col not in ("backend", "queue") else "left")
    lines = []
    for r in results:
        naive = rate.get((r.backend, "naive"))
        ratio = f"{r.rate / naive:.1f}x" if naive and r.queue == "loopml" else "-"
        target = f">= {targets[r.backend]}" if r.queue == "loopml" else "-"
        verdict = ("ok" if r.rate >= targets[r.backend] else "MISSED") if r.queue == "loopml" else ""
        row = [r.backend, r.queue, f"{r.rate:,.0f}", ratio, f"{target} {verdict}".strip()]
        row += [f"{r.enqueue_seconds / r.seconds:.0%} of the run", str(r.errors)]
        row.append(str(r.collisions) if r.queue == "naive" else "-")
        table.add_row(*row)
        lines.append("| " + " | ".join(row) + " |")
    console.print(table)
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    machine = (
        f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"load average at the end {load} (other work on the host slows every row alike)"
    )
    md = [
        "## Job queue (`benchmarks/bench_queue.py`)",
        "",
        f"Enqueue + claim + ack of {jobs} no-op jobs: the main process enqueues one job per transaction "
        f"from {PRODUCERS} threads (concurrent API requests) while "
        f"{WORKERS} worker processes (`loopml.worker.Worker`, concurrency {CONCURRENCY}, batch claim, jobs that finish together acked in one transaction) "
        "drain the queue. Clock: first enqueue to last `succeeded`. Baseline (`naive`): the ORM queue a user "
        "writes first, `SELECT` the oldest queued row then `UPDATE ... WHERE id=? AND status='queued'`, one job "
        "per claim; collisions are claims lost to the other worker. Targets: >= 1,000 jobs/s on SQLite, "
        ">= 2,000 on PostgreSQL. `db errors` counts every database error in any process "
        '("database is locked" included); it must be 0.',
        "",
        f"Machine: {machine}. PostgreSQL on the same host.",
        "",
        "| backend | queue | jobs/s | vs naive | target | enqueue done at | db errors | collisions |",
        "|---|---|---|---|---|---|---|---|",
        *lines,
        "",
    ]
    out = ROOT / "docs" / "benchmarks" / "queue.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(md))
    console.print(f"wrote {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
