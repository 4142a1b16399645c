"""``lm.async_requests``: durable submit (row + tags + job in one transaction), compare-and-set
transitions with their notification in the same commit, and the queries the apps page through."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest

from loopml import Loopml
from loopml.errors import ConflictError, NotFoundError, ValidationError
from loopml.storage.metadata.base import utcnow


def _submit(lm: Loopml, **kw):
    args = {"data": b"hello", "job_kind": "test.process", "queue": "asynctest", "tags": ("a",)}
    args.update(kw)
    return lm.async_requests.submit("things", **args)


def test_submit_stores_input_row_tags_and_job_together(lm: Loopml) -> None:
    req = _submit(lm, meta={"title": "x"}, tags=("b", "a", "b"), fingerprint="ff00")
    assert (req.kind, req.status, req.revision, req.tags) == ("things", "queued", 1, ["a", "b"])
    assert req.input_digest.startswith("sha256:") and req.job_id is not None
    job = lm.jobs.get(req.job_id)
    assert (job.kind, job.queue, job.payload, job.idempotency_key) == (
        "test.process",
        "asynctest",
        {"request_id": req.id},
        f"async:{req.id}",
    )
    assert lm.async_requests.input_bytes(req.id) == b"hello"
    assert lm.async_requests.input_path(req.id).read_bytes() == b"hello"
    again = lm.async_requests.get(req.id)
    assert again == req and again.to_dict()["created_at"].endswith("+00:00")


def test_a_failing_submit_leaves_no_row_and_no_job(lm: Loopml) -> None:
    with pytest.raises(ValidationError) as err:
        _submit(lm, job_kind="Bad Kind")
    assert err.value.field == "job_kind"
    # the job insert fails inside the transaction (max_attempts refused by the queue): nothing stays
    with pytest.raises(ValidationError):
        _submit(lm, max_attempts=0)
    assert lm.async_requests.counts("things") == {}
    assert lm.jobs.list(queue="asynctest") == []


def test_transition_is_compare_and_set(lm: Loopml) -> None:
    req = _submit(lm, status="screening")
    done = lm.async_requests.transition(
        req.id, expected="screening", status="published", result={"score": 0.1}, final=True, actor="w1"
    )
    assert (done.status, done.revision, done.result, done.decided_by) == (
        "published",
        2,
        {"score": 0.1},
        "w1",
    )
    assert done.finished_at is not None and done.tags == ["a"]
    with pytest.raises(ConflictError) as err:
        lm.async_requests.transition(req.id, expected=("screening", "review"), status="rejected")
    assert "'published'" in str(err.value)
    with pytest.raises(NotFoundError):
        lm.async_requests.transition("0" * 32, expected="screening", status="rejected")


def test_concurrent_deciders_only_one_wins(lm: Loopml) -> None:
    req = _submit(lm, status="review")
    outcomes: list[str] = []

    def decide(status: str) -> None:
        try:
            lm.async_requests.transition(req.id, expected="review", status=status, final=True)
            outcomes.append("won")
        except ConflictError:
            outcomes.append("lost")

    threads = [threading.Thread(target=decide, args=(s,)) for s in ("published", "rejected") * 4]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["lost"] * 7 + ["won"]
    assert lm.async_requests.get(req.id).revision == 2


def test_list_pages_newest_first_with_tag_and_status_filters(lm: Loopml) -> None:
    made = [
        _submit(lm, tags=("cat",) if i % 2 else ("dog",), job_kind=None, status="published") for i in range(7)
    ]
    newest_first = [r.id for r in reversed(made)]
    seen, before, before_id = [], None, None
    while True:
        page = lm.async_requests.list(
            "things", status="published", before=before, before_id=before_id, limit=3
        )
        if not page:
            break
        seen += [r.id for r in page]
        before, before_id = page[-1].created_at, page[-1].id
    assert seen == newest_first
    cats = lm.async_requests.list("things", tag="cat")
    assert [r.id for r in cats] == [r.id for r in reversed(made) if "cat" in r.tags]
    assert lm.async_requests.list("things", status=("review",)) == []
    assert lm.async_requests.counts("things") == {"published": 7}


def test_fingerprints_and_oldest_age(lm: Loopml) -> None:
    assert lm.async_requests.oldest_age_seconds("things", "screening") is None
    a = _submit(lm, status="rejected", fingerprint="aa", job_kind=None, final=True)
    _submit(lm, status="rejected", job_kind=None)
    _submit(lm, status="screening")
    assert lm.async_requests.fingerprints("things", status="rejected") == [(a.id, "aa")]
    age = lm.async_requests.oldest_age_seconds("things", "screening")
    assert age is not None and 0 <= age < 60


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"meta": {"x": float("nan")}}, "meta"),
        ({"meta": "nope"}, "meta"),
        ({"tags": "cat"}, "tags"),
        ({"tags": [""]}, "tags"),
        ({"data": "text"}, "data"),
        ({"data": b"x", "input_digest": "sha256:" + "0" * 64}, "data"),
        ({"data": None, "input_digest": "md5:1"}, "input_digest"),
        ({"data": None, "input_digest": "sha256:" + "0" * 64}, "input_digest"),
        ({"status": "Screening"}, "status"),
        ({"notification": {"key": "k", "topic": "t", "title": "x", "colour": 1}}, "notification.colour"),
        ({"notification": {"key": "k"}}, "notification.topic"),
    ],
)
def test_bad_input_names_the_field(lm_sqlite: Loopml, kwargs: dict, field: str) -> None:
    with pytest.raises((ValidationError, NotFoundError)) as err:
        _submit(lm_sqlite, **kwargs)
    assert err.value.field == field


def test_bad_query_input(lm_sqlite: Loopml) -> None:
    svc = lm_sqlite.async_requests
    for call, field in [
        (lambda: svc.get("nope"), "id"),
        (lambda: svc.get("f" * 32), "id"),
        (lambda: svc.list("things", limit=0), "limit"),
        (lambda: svc.list("things", before="yesterday"), "before"),
        (lambda: svc.list("things", before_id="a" * 32), "before_id"),
        (lambda: svc.transition("a" * 32, expected=[], status="x"), "expected"),
    ]:
        with pytest.raises((ValidationError, NotFoundError)) as err:
            call()
        assert err.value.field == field
    assert svc.list("things", before=utcnow() + timedelta(days=1)) == []


def test_notification_commits_with_the_transition(lm: Loopml) -> None:
    pytest.importorskip("loopml.notify")
    req = _submit(lm, status="screening")
    note = {"key": f"decision:{req.id}", "topic": "things.done", "title": "done", "recipient": "ann"}
    # a notification the notifier refuses rolls the transition back with it
    with pytest.raises(ValidationError):
        lm.async_requests.transition(
            req.id, expected="screening", status="done", notification={**note, "topic": ""}
        )
    assert lm.async_requests.get(req.id).status == "screening"
    assert lm.notify.notifications(recipient="ann") == []
    lm.async_requests.transition(req.id, expected="screening", status="done", final=True, notification=note)
    with pytest.raises(ConflictError):  # a re-run decision neither moves the request nor notifies again
        lm.async_requests.transition(req.id, expected="screening", status="done", notification=note)
    assert [n.key for n in lm.notify.notifications(recipient="ann")] == [note["key"]]
