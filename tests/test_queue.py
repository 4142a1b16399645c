"""The durable job queue's contract, on SQLite and PostgreSQL (the `lm` fixture runs both)."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta

import pytest

from loopml import Loopml
from loopml.errors import ConflictError, NotFoundError, ValidationError
from loopml.storage.metadata.core import list_events


def test_enqueue_defaults_and_round_trip(lm: Loopml) -> None:
    job = lm.jobs.enqueue("train", {"model": "fraud", "n": 3})
    assert (job.status, job.queue, job.attempts, job.max_attempts, job.priority) == (
        "queued",
        "default",
        0,
        5,
        0,
    )
    assert job.created_at.tzinfo is not None and job.not_before <= datetime.now(UTC)
    fetched = lm.jobs.get(job.id)
    assert fetched == job
    as_dict = fetched.to_dict()
    assert as_dict["payload"] == {"model": "fraud", "n": 3} and isinstance(as_dict["created_at"], str)


def test_idempotency_key_returns_the_existing_job(lm: Loopml) -> None:
    first = lm.jobs.enqueue("train", {"a": 1}, idempotency_key="nightly-2024-01-01")
    again = lm.jobs.enqueue("train", {"a": 1}, idempotency_key="nightly-2024-01-01")
    assert again.id == first.id
    assert lm.jobs.stats()["queued"] == 1
    with pytest.raises(ConflictError, match="idempotency_key 'nightly-2024-01-01' already belongs to job"):
        lm.jobs.enqueue("train", {"a": 2}, idempotency_key="nightly-2024-01-01")
    # Jobs without a key never collide.
    assert lm.jobs.enqueue("train").id != lm.jobs.enqueue("train").id


def test_enqueue_in_a_session_commits_or_rolls_back_with_the_callers_rows(lm: Loopml) -> None:
    from loopml.storage.metadata.core import record_event

    db = lm.ctx.db

    def submitted() -> list[str]:
        with db.session() as session:
            return [e.subject_id for e in list_events(session, subject_type="request")]

    with pytest.raises(RuntimeError, match="caller failed"), db.session() as session:
        record_event(session, "request.submitted", "request", "r1")
        job = lm.jobs.enqueue("moderate", {"request": "r1"}, idempotency_key="moderate-r1", session=session)
        assert job.status == "queued" and job.idempotency_key == "moderate-r1"
        raise RuntimeError("caller failed")
    assert lm.jobs.list() == [] and submitted() == []

    with db.session() as session:
        record_event(session, "request.submitted", "request", "r1")
        job = lm.jobs.enqueue("moderate", {"request": "r1"}, idempotency_key="moderate-r1", session=session)
        # The same key again in the same transaction: the same job, exactly as without a session.
        again = lm.jobs.enqueue("moderate", {"request": "r1"}, idempotency_key="moderate-r1", session=session)
        assert again.id == job.id
        with pytest.raises(ConflictError, match="already belongs to job"):
            lm.jobs.enqueue("moderate", {"request": "r2"}, idempotency_key="moderate-r1", session=session)
    assert lm.jobs.get(job.id) == job and lm.jobs.stats()["queued"] == 1 and submitted() == ["r1"]
    # The committed key is found again by a later enqueue without a session.
    assert lm.jobs.enqueue("moderate", {"request": "r1"}, idempotency_key="moderate-r1").id == job.id
    with pytest.raises(ValidationError, match="session="):
        lm.jobs.enqueue("moderate", session="not a session")  # type: ignore[arg-type]


def test_concurrent_enqueues_with_one_key_make_one_job(lm: Loopml) -> None:
    ids: list[int] = []
    errors: list[Exception] = []

    def submit() -> None:
        try:
            ids.append(lm.jobs.enqueue("report", {"day": 1}, idempotency_key="report-day-1").id)
        except Exception as exc:
            errors.append(exc)

    threads = [threading.Thread(target=submit) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and len(set(ids)) == 1 and len(ids) == 6


def test_claim_orders_by_priority_then_age_and_respects_not_before(lm: Loopml) -> None:
    low = lm.jobs.enqueue("k", priority=0)
    high = lm.jobs.enqueue("k", priority=10)
    later = lm.jobs.enqueue("k", priority=99, not_before=datetime.now(UTC) + timedelta(hours=1))
    other_queue = lm.jobs.enqueue("k", queue="gpu", priority=50)
    low2 = lm.jobs.enqueue("k", priority=0)
    claimed = lm.jobs.claim("w1", limit=10)
    assert [j.id for j in claimed] == [high.id, low.id, low2.id]
    assert all(j.status == "running" and j.worker_id == "w1" and j.attempts == 1 for j in claimed)
    assert all(j.lease_until is not None and j.lease_until > datetime.now(UTC) for j in claimed)
    assert lm.jobs.get(later.id).status == "queued"
    assert [j.id for j in lm.jobs.claim("w2", queues=["gpu", "default"], limit=10)] == [other_queue.id]
    assert lm.jobs.claim("w3", queues=("default", "gpu")) == []


def test_concurrent_claimers_never_share_a_job(lm: Loopml) -> None:
    total = 60
    for i in range(total):
        lm.jobs.enqueue("k", {"i": i})
    seen: dict[str, list[int]] = {}

    def drain(worker_id: str) -> None:
        mine: list[int] = []
        while batch := lm.jobs.claim(worker_id, limit=3):
            for job in batch:
                mine.append(job.id)
                lm.jobs.ack(job.id, worker_id)
        seen[worker_id] = mine

    threads = [threading.Thread(target=drain, args=(f"w{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    all_ids = [i for ids in seen.values() for i in ids]
    assert len(all_ids) == total and len(set(all_ids)) == total
    assert lm.jobs.stats()["succeeded"] == total


def test_ack_records_result_and_only_the_owner_can_finish(lm: Loopml) -> None:
    job = lm.jobs.enqueue("k")
    (claimed,) = lm.jobs.claim("owner")
    with pytest.raises(ConflictError, match="worker 'intruder' no longer holds it, 'owner' does"):
        lm.jobs.ack(job.id, "intruder")
    assert lm.jobs.heartbeat(job.id, "intruder") is False
    with pytest.raises(ConflictError):
        lm.jobs.fail(job.id, "intruder", "x")
    with pytest.raises(ConflictError):
        lm.jobs.release(job.id, "intruder")
    done = lm.jobs.ack(claimed.id, "owner", {"auc": 0.91})
    assert (done.status, done.result, done.lease_until) == ("succeeded", {"auc": 0.91}, None)
    assert done.finished_at is not None
    with pytest.raises(ConflictError, match="it is succeeded, not running"):
        lm.jobs.ack(job.id, "owner")
    with pytest.raises(NotFoundError, match="job 999999 does not exist"):
        lm.jobs.ack(999999, "owner")


def test_heartbeat_extends_the_lease(lm: Loopml) -> None:
    lm.jobs.enqueue("k")
    (job,) = lm.jobs.claim("w", lease_seconds=5)
    assert lm.jobs.heartbeat(job.id, "w", lease_seconds=600) is True
    after = lm.jobs.get(job.id)
    assert after.lease_until is not None and after.lease_until > datetime.now(UTC) + timedelta(seconds=500)


def test_expired_lease_is_claimed_again_and_the_slow_worker_cannot_ack(lm: Loopml) -> None:
    lm.jobs.reap_interval = 0
    job = lm.jobs.enqueue("k")
    lm.jobs.claim("slow", lease_seconds=0.2)
    time.sleep(0.35)
    (again,) = lm.jobs.claim("fast", lease_seconds=30)
    assert again.id == job.id and again.attempts == 2 and again.worker_id == "fast"
    assert "lease expired after attempt 1 of 5 (worker slow" in (again.last_error or "")
    assert lm.jobs.heartbeat(job.id, "slow") is False
    with pytest.raises(ConflictError, match="'fast' does"):
        lm.jobs.ack(job.id, "slow", {"from": "slow"})
    assert lm.jobs.ack(job.id, "fast", {"from": "fast"}).result == {"from": "fast"}


def test_expired_lease_on_the_last_attempt_dead_letters(lm: Loopml) -> None:
    lm.jobs.reap_interval = 0
    job = lm.jobs.enqueue("k", max_attempts=2)
    for worker in ("a", "b"):
        assert [j.id for j in lm.jobs.claim(worker, lease_seconds=0.1)] == [job.id]
        time.sleep(0.2)
    assert lm.jobs.claim("c") == []
    dead = lm.jobs.get(job.id)
    assert dead.status == "dead" and dead.attempts == 2
    assert dead.last_error is not None and "lease expired after attempt 2 of 2 (worker b" in dead.last_error


def test_fail_retries_with_exponential_backoff_then_dead_letters(lm: Loopml) -> None:
    lm.jobs.backoff_base = 10.0
    job = lm.jobs.enqueue("k", max_attempts=3)
    delays = []
    for attempt in (1, 2):
        (claimed,) = lm.jobs.claim("w")
        assert claimed.attempts == attempt
        failed = lm.jobs.fail(job.id, "w", f"boom {attempt}")
        assert (
            failed.status == "queued" and failed.worker_id is None and failed.last_error == f"boom {attempt}"
        )
        delays.append((failed.not_before - failed.updated_at).total_seconds())
        assert lm.jobs.claim("w") == []  # not due yet
        _make_due(lm, job.id)
    # equal jitter: base*2**(n-1) halved plus up to the other half
    assert 5.0 <= delays[0] <= 10.0 and 10.0 <= delays[1] <= 20.0
    lm.jobs.claim("w")
    dead = lm.jobs.fail(job.id, "w", "boom 3")
    assert dead.status == "dead" and dead.attempts == 3 and dead.finished_at is not None
    with lm.ctx.db.session() as session:
        events = list_events(session, subject_type="job", subject_id=str(job.id))
    assert [e.kind for e in events] == ["job.dead"]


def test_backoff_is_capped() -> None:
    from loopml.storage.queue import JobQueue

    queue = JobQueue.__new__(JobQueue)
    queue.backoff_base, queue.backoff_cap = 1.0, 8.0
    assert all(4.0 <= queue.backoff_seconds(20) <= 8.0 for _ in range(50))
    assert all(0.5 <= queue.backoff_seconds(1) <= 1.0 for _ in range(50))


def test_fail_without_retry_dead_letters_at_once_and_requeue_revives(lm: Loopml) -> None:
    job = lm.jobs.enqueue("k")
    lm.jobs.claim("w")
    assert lm.jobs.fail(job.id, "w", "bad payload", retry=False).status == "dead"
    with pytest.raises(ConflictError, match="only dead or cancelled jobs can be"):
        lm.jobs.requeue(lm.jobs.enqueue("other").id)
    revived = lm.jobs.requeue(job.id, actor="ana", reason="fixed the input")
    assert (revived.status, revived.attempts, revived.finished_at) == ("queued", 0, None)
    # due again now, so it queues behind the job enqueued before the requeue
    assert [j.id for j in lm.jobs.claim("w2", limit=5)][-1] == job.id
    with lm.ctx.db.session() as session:
        kinds = [(e.kind, e.actor) for e in list_events(session, subject_type="job", subject_id=str(job.id))]
    assert kinds == [("job.requeued", "ana"), ("job.dead", "w")]


def test_release_returns_the_job_without_spending_an_attempt(lm: Loopml) -> None:
    job = lm.jobs.enqueue("k")
    lm.jobs.claim("w")
    released = lm.jobs.release(job.id, "w")
    assert (released.status, released.attempts, released.worker_id) == ("queued", 0, None)
    assert lm.jobs.claim("w2")[0].attempts == 1


def test_cancel_only_queued_or_dead(lm: Loopml) -> None:
    job = lm.jobs.enqueue("k")
    assert lm.jobs.cancel(job.id, reason="not needed").status == "cancelled"
    assert lm.jobs.claim("w") == []
    running = lm.jobs.enqueue("k")
    lm.jobs.claim("w")
    with pytest.raises(ConflictError, match="it is running; only queued or dead jobs can be"):
        lm.jobs.cancel(running.id)
    with pytest.raises(NotFoundError):
        lm.jobs.cancel(424242)


def test_list_stats_and_oldest_age(lm: Loopml) -> None:
    assert lm.jobs.oldest_age_seconds() is None
    a = lm.jobs.enqueue("train")
    lm.jobs.enqueue("score", queue="batch")
    lm.jobs.enqueue("train", not_before=datetime.now(UTC) + timedelta(hours=1))
    lm.jobs.claim("w", limit=1)  # takes `a`
    assert lm.jobs.stats() == {"queued": 2, "running": 1, "succeeded": 0, "dead": 0, "cancelled": 0}
    assert lm.jobs.stats(queue="batch")["queued"] == 1
    assert lm.jobs.queues() == ["batch", "default"]
    assert [j.kind for j in lm.jobs.list(status="queued")] == ["train", "score"]
    assert [j.id for j in lm.jobs.list(kind="train", status="running")] == [a.id]
    assert [j.queue for j in lm.jobs.list(queue="batch")] == ["batch"]
    assert len(lm.jobs.list(limit=1)) == 1
    # the delayed job is not waiting yet; the running one has waited since it was created
    assert lm.jobs.oldest_age_seconds("default") is None
    time.sleep(0.05)
    age = lm.jobs.oldest_age_seconds("batch")
    assert age is not None and 0.05 <= age < 30
    running_age = lm.jobs.oldest_age_seconds("default", status="running")
    assert running_age is not None and running_age >= 0.05


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda lm: lm.jobs.enqueue("", {}), "kind=''"),
        (lambda lm: lm.jobs.enqueue(3, {}), "kind=3"),
        (lambda lm: lm.jobs.enqueue("k", [1, 2]), "payload must be a dict"),
        (lambda lm: lm.jobs.enqueue("k", {"f": object()}), "payload is not JSON-serialisable"),
        (lambda lm: lm.jobs.enqueue("k", {"x": float("nan")}), "payload is not JSON-serialisable"),
        (lambda lm: lm.jobs.enqueue("k", queue=""), "queue=''"),
        (lambda lm: lm.jobs.enqueue("k", priority="high"), "priority='high'"),
        (lambda lm: lm.jobs.enqueue("k", max_attempts=0), "max_attempts=0"),
        (lambda lm: lm.jobs.enqueue("k", not_before="tomorrow"), "not_before='tomorrow'"),
        (lambda lm: lm.jobs.enqueue("k", idempotency_key="x" * 300), "idempotency_key is 300 characters"),
        (lambda lm: lm.jobs.claim("w", limit=0), "limit=0"),
        (lambda lm: lm.jobs.claim("w", queues=()), "queues is empty"),
        (lambda lm: lm.jobs.claim("", limit=1), "worker_id=''"),
        (lambda lm: lm.jobs.claim("w", lease_seconds=-1), "lease_seconds=-1"),
        (lambda lm: lm.jobs.get("7"), "job_id='7'"),
        (lambda lm: lm.jobs.list(status="done"), "status='done': use one of queued"),
        (lambda lm: lm.jobs.ack(1, "w", result=[1]), "result must be a dict"),
    ],
)
def test_bad_input_is_a_validation_error_naming_the_field(lm_sqlite: Loopml, call, message: str) -> None:
    with pytest.raises(ValidationError, match=_escape(message)):
        call(lm_sqlite)


def test_get_unknown_job(lm: Loopml) -> None:
    with pytest.raises(NotFoundError, match="job 12345 does not exist; `loopml jobs list`"):
        lm.jobs.get(12345)


def _make_due(lm: Loopml, job_id: int) -> None:
    """Skip a backoff wait by moving not_before into the past (test-only shortcut)."""
    from sqlalchemy import update

    from loopml.storage.metadata.jobs import JobRow

    with lm.ctx.db.session() as session:
        session.execute(
            update(JobRow)
            .where(JobRow.id == job_id)
            .values(not_before=datetime.now(UTC) - timedelta(seconds=1))
        )


def _escape(text: str) -> str:
    import re

    return re.escape(text)


def test_ack_many_acks_only_jobs_the_worker_still_owns(lm: Loopml) -> None:
    lm.jobs.reap_interval = 0
    ids = [lm.jobs.enqueue("k").id for _ in range(3)]
    lm.jobs.claim("w", limit=3, lease_seconds=0.2)
    time.sleep(0.3)
    (stolen,) = lm.jobs.claim("other", limit=1)  # the reap requeued all three; `other` takes the first
    assert stolen.id == ids[0]
    for job_id in ids[1:]:  # `w` claims the other two again
        assert lm.jobs.get(job_id).status == "queued"
    lm.jobs.claim("w", limit=2)
    acked = lm.jobs.ack_many("w", [(ids[0], None), (ids[1], None), (ids[2], {"rows": 7})])
    assert sorted(acked) == ids[1:]
    assert lm.jobs.get(ids[0]).status == "running" and lm.jobs.get(ids[0]).worker_id == "other"
    assert lm.jobs.get(ids[1]).result is None and lm.jobs.get(ids[2]).result == {"rows": 7}
    assert lm.jobs.ack_many("w", []) == []
    with pytest.raises(ValidationError, match="result must be a dict"):
        lm.jobs.ack_many("w", [(ids[0], "done")])
