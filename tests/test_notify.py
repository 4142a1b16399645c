"""Notifier on SQLite and PostgreSQL, against a real HTTP receiver on 127.0.0.1: webhooks, one
notification per key, topic filters, delivery by a real Worker with retries and backoff, permanent
4xx failures, HMAC signatures, joining the caller's transaction, and the alerts hook."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from loopml import Loopml
from loopml.errors import ConflictError, NotFoundError, ValidationError
from loopml.notify import Delivery, Notification, Notifier, Webhook
from loopml.notify import jobs as notify_jobs  # registers the notify.deliver handler
from loopml.notify.formats import verify
from loopml.storage.queue import JobQueue
from loopml.worker import Worker


class Receiver:
    """A threaded HTTP server that records every POST and answers from a script of statuses."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.script: list[int] = []  # statuses to answer next, then 200
        self.default = 200
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with receiver._lock:
                    receiver.requests.append({"path": self.path, "headers": dict(self.headers), "body": body})
                    status = receiver.script.pop(0) if receiver.script else receiver.default
                reply = b'{"ok": true}' if status < 300 else b"receiver says no"
                self.send_response(status)
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}{path}"

    def bodies(self) -> list[dict[str, Any]]:
        with self._lock:
            return [json.loads(r["body"]) for r in self.requests]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(name="receiver")  # named, so test_notify_api.py can import it under another name
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    yield server
    server.close()


@pytest.fixture
def notifier(lm: Loopml) -> Notifier:
    return lm.notify


def closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/nobody-listens"


def run_worker_until(lm: Loopml, done: Callable[[], bool], timeout: float = 30.0) -> None:
    """A real Worker thread on the ``notify`` queue (fast backoff) until ``done()`` holds."""
    queue = JobQueue(lm.ctx)
    queue.backoff_base = 0.02
    worker = Worker(lm.ctx, queues=("notify",), concurrency=2, poll_min=0.01, poll_max=0.05, job_queue=queue)
    stop = threading.Event()
    thread = threading.Thread(target=worker.run, args=(stop,))
    thread.start()
    try:
        deadline = time.monotonic() + timeout
        while not done():
            assert time.monotonic() < deadline, "worker did not finish in time"
            time.sleep(0.02)
    finally:
        stop.set()
        thread.join(30)
    assert not thread.is_alive()


def statuses(notifier: Notifier) -> list[str]:
    return sorted(d.status for d in notifier.deliveries())


def notify_jobs_list(lm: Loopml) -> list[Any]:
    return lm.jobs.list(queue="notify")


def test_webhook_crud_audit_and_secret_never_shown(lm: Loopml, notifier: Notifier) -> None:
    hook = notifier.add_webhook(
        "ops", "https://hooks.example.com/x", topics=["alert."], secret="zq-s3cret-77", actor="ana"
    )
    assert isinstance(hook, Webhook)
    assert (hook.name, hook.format, hook.topics, hook.has_secret, hook.active) == (
        "ops",
        "json",
        ("alert.",),
        True,
        True,
    )
    assert "secret" not in hook.to_dict() and "zq-s3cret-77" not in json.dumps(hook.to_dict())
    with pytest.raises(ConflictError) as info:
        notifier.add_webhook("ops", "https://other.example.com")
    assert info.value.field == "name"
    notifier.add_webhook("chat", "http://127.0.0.1:9/slack", format="slack", topics="moderation.")
    assert [w.name for w in notifier.list_webhooks()] == ["chat", "ops"]
    assert notifier.get_webhook("chat").topics == ("moderation.",)

    changed = notifier.update_webhook("ops", url="https://hooks.example.com/y", active=False)
    assert (changed.url, changed.active, changed.has_secret) == ("https://hooks.example.com/y", False, True)
    assert notifier.update_webhook("ops", secret=None).has_secret is False
    notifier.remove_webhook("chat")
    with pytest.raises(NotFoundError, match="Did you mean: ops") as info:
        notifier.get_webhook("opz")
    assert info.value.field == "name"
    from loopml.storage.metadata.core import list_events

    with lm.ctx.db.session() as session:
        kinds = [
            (e.kind, e.subject_id, e.actor) for e in reversed(list_events(session, subject_type="webhook"))
        ]
    assert kinds[0] == ("webhook.added", "ops", "ana")
    assert [k for k, _, _ in kinds] == [
        "webhook.added",
        "webhook.added",
        "webhook.updated",
        "webhook.updated",
        "webhook.removed",
    ]


BAD_WEBHOOKS = [
    ({"name": "1bad"}, "name"),
    ({"name": "has space"}, "name"),
    ({"name": "x" * 65}, "name"),
    ({"url": "ftp://example.com/x"}, "url"),
    ({"url": "example.com/hook"}, "url"),
    ({"url": "http:///nohost"}, "url"),
    ({"url": "http://example.com/a b"}, "url"),
    ({"url": "http://example.com:99999/"}, "url"),
    ({"url": 42}, "url"),
    ({"format": "xml"}, "format"),
    ({"topics": []}, "topics"),
    ({"topics": ["alert opened"]}, "topics"),
    ({"topics": [3]}, "topics"),
    ({"topics": {"a": 1}}, "topics"),
    ({"secret": ""}, "secret"),
    ({"secret": "s" * 201}, "secret"),
    ({"actor": ""}, "actor"),
]


def test_add_webhook_rejects_bad_input(lm_sqlite: Loopml) -> None:
    """Pure input checks: one backend is enough."""
    notifier = lm_sqlite.notify
    for kwargs, field in BAD_WEBHOOKS:
        args = {"name": "ok", "url": "https://example.com/hook", **kwargs}
        with pytest.raises(ValidationError) as info:
            notifier.add_webhook(args.pop("name"), args.pop("url"), **args)
        assert info.value.field == field and field in str(info.value), (kwargs, str(info.value))
    assert notifier.list_webhooks() == []


def test_other_entry_points_reject_bad_input(notifier: Notifier) -> None:
    notifier.add_webhook("ops", "https://example.com/hook")
    for call, field in [
        (lambda: notifier.notify("", topic="a.b", title="t"), "key"),
        (lambda: notifier.notify("k\n", topic="a.b", title="t"), "key"),
        (lambda: notifier.notify("k" * 256, topic="a.b", title="t"), "key"),
        (lambda: notifier.notify("k", topic="", title="t"), "topic"),
        (lambda: notifier.notify("k", topic="a b", title="t"), "topic"),
        (lambda: notifier.notify("k", topic="a.b", title=" "), "title"),
        (lambda: notifier.notify("k", topic="a.b", title="t" * 501), "title"),
        (lambda: notifier.notify("k", topic="a.b", title="t", body=None), "body"),
        (lambda: notifier.notify("k", topic="a.b", title="t", data={"x": float("nan")}), "data"),
        (lambda: notifier.notify("k", topic="a.b", title="t", data=[1]), "data"),
        (lambda: notifier.notify("k", topic="a.b", title="t", recipient="u\t1"), "recipient"),
        (lambda: notifier.update_webhook("ops", format="xml"), "format"),
        (lambda: notifier.update_webhook("ops", active="yes"), "active"),
        (lambda: notifier.notifications(limit=0), "limit"),
        (lambda: notifier.notifications(unread="no"), "unread"),
        (lambda: notifier.deliveries(status="lost"), "status"),
        (lambda: notifier.get(0), "notification_id"),
        (lambda: notifier.mark_read("1"), "notification_id"),
        (lambda: notifier.retry(True), "delivery_id"),
        (lambda: notifier.deliver_now(-1), "delivery_id"),
    ]:
        with pytest.raises(ValidationError) as info:
            call()
        assert info.value.field == field, (field, str(info.value))
    assert notifier.notifications() == []
    for call, field in [
        (lambda: notifier.update_webhook("nope", active=False), "name"),
        (lambda: notifier.remove_webhook("nope"), "name"),
        (lambda: notifier.test_webhook("nope"), "name"),
        (lambda: notifier.get(999), "notification_id"),
        (lambda: notifier.mark_read(999), "notification_id"),
        (lambda: notifier.retry(999), "delivery_id"),
        (lambda: notifier.deliver_now(999), "delivery_id"),
    ]:
        with pytest.raises(NotFoundError) as info:
            call()
        assert info.value.field == field


def test_one_notification_per_key_and_topic_filters(
    lm: Loopml, notifier: Notifier, receiver: Receiver
) -> None:
    notifier.add_webhook("all", receiver.url("/all"))
    notifier.add_webhook("alerts", receiver.url("/alerts"), topics=["alert."])
    notifier.add_webhook("mod", receiver.url("/mod"), topics=["moderation.", "loop."])
    notifier.add_webhook("paused", receiver.url("/paused"))
    notifier.update_webhook("paused", active=False)

    first = notifier.notify(
        "mod:42:rejected", topic="moderation.rejected", title="Upload rejected", recipient="u7"
    )
    assert isinstance(first, Notification) and first.recipient == "u7" and not first.read
    again = notifier.notify("mod:42:rejected", topic="moderation.rejected", title="different text")
    assert again == first
    notifier.notify("alert:1:opened", topic="alert.opened", title="[critical] late", data={"alert_id": 1})

    by_notification = {
        x.key: sorted(d.webhook for d in notifier.deliveries(notification_id=x.id))
        for x in notifier.notifications()
    }
    assert by_notification == {"mod:42:rejected": ["all", "mod"], "alert:1:opened": ["alerts", "all"]}
    jobs = notify_jobs_list(lm)
    assert len(jobs) == 4 and {j.kind for j in jobs} == {"notify.deliver"}
    assert {j.max_attempts for j in jobs} == {8}
    assert {d.job_id for d in notifier.deliveries()} == {j.id for j in jobs}
    assert [x.key for x in notifier.notifications(topic="moderation.")] == ["mod:42:rejected"]
    assert [x.key for x in notifier.notifications(recipient="u7")] == ["mod:42:rejected"]

    read = notifier.mark_read(first.id)
    assert read.read and notifier.mark_read(first.id).read_at == read.read_at
    assert [x.key for x in notifier.notifications(unread=True)] == ["alert:1:opened"]
    assert notifier.get(first.id) == read


def test_worker_delivers_signed_json_with_idempotency_key(
    lm: Loopml, notifier: Notifier, receiver: Receiver
) -> None:
    notifier.add_webhook("ops", receiver.url(), secret="shh")
    note = notifier.notify(
        "order:9",
        topic="demand.published",
        title="Plan published",
        body="week 49",
        recipient="ops",
        data={"n": 3},
    )
    run_worker_until(lm, lambda: statuses(notifier) == ["delivered"])
    [request] = receiver.requests
    assert request["path"] == "/hook"
    headers = {k.lower(): v for k, v in request["headers"].items()}
    assert headers["idempotency-key"] == "order:9/ops"
    assert headers["x-loopml-topic"] == "demand.published"
    assert headers["content-type"] == "application/json"
    assert verify("shh", request["body"], headers["x-loopml-signature"])
    assert not verify("wrong", request["body"], headers["x-loopml-signature"])
    body = json.loads(request["body"])
    assert body == {
        "key": "order:9",
        "topic": "demand.published",
        "title": "Plan published",
        "body": "week 49",
        "recipient": "ops",
        "data": {"n": 3},
        "created_at": note.created_at.isoformat(),
    }
    assert datetime.fromisoformat(body["created_at"]).tzinfo is not None
    [delivery] = notifier.deliveries()
    assert isinstance(delivery, Delivery)
    assert (delivery.status, delivery.attempts, delivery.response_status, delivery.last_error) == (
        "delivered",
        1,
        200,
        None,
    )
    assert delivery.delivered_at is not None and delivery.key == "order:9" and delivery.webhook == "ops"
    assert lm.jobs.get(delivery.job_id).status == "succeeded"
    # a delivered delivery is never sent again, whoever asks
    assert notifier.deliver_now(delivery.id).status == "delivered"
    assert len(receiver.requests) == 1


def test_unsigned_webhook_sends_no_signature_and_slack_format(
    lm: Loopml, notifier: Notifier, receiver: Receiver
) -> None:
    notifier.add_webhook("chat", receiver.url("/slack"), format="slack")
    notifier.notify(
        "a:1",
        topic="alert.opened",
        title="[critical] <drift> & co",
        body="psi 0.4",
        data={"severity": "critical", "nested": {"x": 1}},
    )
    [delivery] = notifier.deliveries()
    assert notifier.deliver_now(delivery.id).status == "delivered"
    [request] = receiver.requests
    assert "x-loopml-signature" not in {k.lower() for k in request["headers"]}
    body = json.loads(request["body"])
    assert body["text"] == "*[critical] &lt;drift&gt; &amp; co*\npsi 0.4"
    kinds = [b["type"] for b in body["blocks"]]
    assert kinds == ["section", "section", "section", "context"]
    assert body["blocks"][2]["fields"] == [{"type": "mrkdwn", "text": "*severity*\ncritical"}]
    assert "alert.opened" in body["blocks"][3]["elements"][0]["text"]


def test_5xx_and_connection_errors_retry_with_backoff_until_delivered(
    lm: Loopml, notifier: Notifier, receiver: Receiver
) -> None:
    receiver.script = [503, 429, 500]
    notifier.add_webhook("flaky", receiver.url(), topics=["t."])
    notifier.notify("k1", topic="t.x", title="hello")
    run_worker_until(lm, lambda: statuses(notifier) == ["delivered"])
    [delivery] = notifier.deliveries()
    assert (delivery.attempts, delivery.response_status) == (4, 200)
    assert delivery.last_error.startswith("HTTP 500")  # the last failure stays visible
    assert len(receiver.requests) == 4
    assert {r["headers"]["Idempotency-Key"] for r in receiver.requests} == {"k1/flaky"}
    job = lm.jobs.get(delivery.job_id)
    assert (job.status, job.attempts) == ("succeeded", 4)

    notifier.add_webhook("down", closed_port_url(), topics=["d."])
    notifier.notify("k2", topic="d.x", title="nobody home")
    [pending] = notifier.deliveries(status="pending")
    outcome = notifier.deliver_now(pending.id)
    assert outcome.status == "pending" and outcome.attempts == 1 and outcome.response_status is None
    assert "ConnectError" in outcome.last_error
    gave_up = notifier.deliver_now(pending.id, last_attempt=True)
    assert gave_up.status == "failed" and gave_up.last_error.startswith("gave up after the last attempt")


def test_4xx_fails_for_good_and_retry_sends_again(lm: Loopml, notifier: Notifier, receiver: Receiver) -> None:
    receiver.script = [400]
    notifier.add_webhook("strict", receiver.url())
    notifier.notify("k", topic="t.x", title="hello")
    run_worker_until(lm, lambda: statuses(notifier) == ["failed"])
    [failed] = notifier.deliveries(status="failed")
    assert (failed.attempts, failed.response_status) == (1, 400)
    assert "HTTP 400: receiver says no" in failed.last_error and "retry" in failed.last_error
    assert lm.jobs.get(failed.job_id).status == "dead"
    assert len(receiver.requests) == 1

    retried = notifier.retry(failed.id, actor="ana")
    assert retried.status == "pending" and retried.job_id != failed.job_id
    with pytest.raises(ConflictError, match="only failed deliveries") as info:
        notifier.retry(failed.id)
    assert info.value.field == "delivery_id"
    run_worker_until(lm, lambda: statuses(notifier) == ["delivered"])
    assert notifier.get_delivery(failed.id).attempts == 2 and len(receiver.requests) == 2


def test_removed_webhook_dead_letters_its_pending_job(
    lm: Loopml, notifier: Notifier, receiver: Receiver
) -> None:
    notifier.add_webhook("gone", receiver.url())
    notifier.notify("k", topic="t.x", title="hello")
    [job] = notify_jobs_list(lm)
    notifier.remove_webhook("gone")
    assert notifier.deliveries() == []
    run_worker_until(lm, lambda: lm.jobs.get(job.id).status == "dead")
    assert "does not exist" in lm.jobs.get(job.id).last_error and receiver.requests == []


def test_inactive_webhook_is_not_sent_to(notifier: Notifier, receiver: Receiver) -> None:
    notifier.add_webhook("ops", receiver.url())
    notifier.notify("k", topic="t.x", title="hello")
    notifier.update_webhook("ops", active=False)
    [delivery] = notifier.deliveries()
    outcome = notifier.deliver_now(delivery.id)
    assert outcome.status == "failed" and "inactive" in outcome.last_error and receiver.requests == []


def test_notify_joins_the_callers_transaction(lm: Loopml, notifier: Notifier, receiver: Receiver) -> None:
    notifier.add_webhook("ops", receiver.url())

    class Boom(Exception):
        pass

    with pytest.raises(Boom), lm.ctx.db.session() as session:
        notifier.notify("decision:1", topic="moderation.rejected", title="rejected", session=session)
        raise Boom
    assert notifier.notifications() == [] and notifier.deliveries() == [] and notify_jobs_list(lm) == []

    with lm.ctx.db.session() as session:
        made = notifier.notify("decision:1", topic="moderation.rejected", title="rejected", session=session)
        again = notifier.notify("decision:1", topic="moderation.rejected", title="rejected", session=session)
        assert again == made
    assert [x.key for x in notifier.notifications()] == ["decision:1"]
    assert len(notifier.deliveries()) == 1 and len(notify_jobs_list(lm)) == 1


def test_concurrent_notify_of_one_key_stores_one(notifier: Notifier, receiver: Receiver) -> None:
    notifier.add_webhook("ops", receiver.url())
    errors: list[BaseException] = []

    def send() -> None:
        try:
            for _ in range(5):
                notifier.notify("same", topic="t.x", title="once")
        except BaseException as exc:  # asserted below
            errors.append(exc)

    threads = [threading.Thread(target=send) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(notifier.notifications()) == 1 and len(notifier.deliveries()) == 1


def test_alert_open_and_resolve_notify_once_each(lm: Loopml, notifier: Notifier, receiver: Receiver) -> None:
    notifier.add_webhook("oncall", receiver.url(), topics=["alert."])
    notifier.add_webhook("mod", receiver.url("/mod"), topics=["moderation."])
    alert = lm.alerts.fire(
        "drift:fraud", severity="critical", title="fraud drift", detail="psi 0.41", source="mon"
    )
    lm.alerts.fire("drift:fraud", severity="critical", title="fraud drift")  # repeat: no new notification
    lm.alerts.resolve("drift:fraud", reason="retrained")
    lm.alerts.resolve("drift:fraud")  # nothing open: nothing sent
    run_worker_until(lm, lambda: statuses(notifier) == ["delivered", "delivered"])
    bodies = sorted(receiver.bodies(), key=lambda b: b["topic"])
    assert [(b["key"], b["topic"], b["title"], b["body"]) for b in bodies] == [
        (f"alert:{alert.id}:opened", "alert.opened", "[critical] fraud drift", "psi 0.41"),
        (f"alert:{alert.id}:resolved", "alert.resolved", "[critical] resolved: fraud drift", "retrained"),
    ]
    assert bodies[0]["data"] == {
        "alert_id": alert.id,
        "key": "drift:fraud",
        "severity": "critical",
        "source": "mon",
    }
    assert {r["path"] for r in receiver.requests} == {"/hook"}

    second = lm.alerts.fire("drift:fraud", severity="warning", title="fraud drift again")
    lm.alerts.resolve_id(second.id, reason="ok")
    keys = [x.key for x in notifier.notifications(topic="alert.")]
    assert keys[:2] == [f"alert:{second.id}:resolved", f"alert:{second.id}:opened"] and len(keys) == 4


def test_a_rolled_back_alert_notifies_nobody(lm: Loopml, notifier: Notifier) -> None:
    notifier.add_webhook("oncall", "https://example.com/hook", topics=["alert."])
    with pytest.raises(ValidationError):
        lm.alerts.fire("k", title="x", data={"bad": float("inf")})
    assert notifier.notifications() == [] and notify_jobs_list(lm) == []


def test_handler_is_registered() -> None:
    from loopml.worker import registered_handlers

    assert registered_handlers()["notify.deliver"] is notify_jobs.deliver
