"""Plumbing of the closed-loop story: a simulated-clock log writer, a webhook receiver, a notify worker.

- ``SimClockWriter`` stamps each inference record with the replay's clock (the transaction's time),
  so the monitor's windows are simulated days: a replay logs event time, as a backfill would.
- ``WebhookReceiver`` is what an operator's Slack would be: a real HTTP server on 127.0.0.1 that
  records every POST, so the story can show the Slack-format alert messages it received.
- ``notify_worker`` runs a real ``Worker`` on the ``notify`` queue in a thread: alert deliveries go
  through the durable queue with retries, exactly as under ``loopml up``.
"""

from __future__ import annotations

import dataclasses
import json
import threading
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pandas as pd

import loopml.notify.jobs  # noqa: F401 - registers the notify.deliver handler for the worker
from loopml.apps.fraud.replay import Replay
from loopml.serving.inference import InferenceRecord, LogWriter
from loopml.worker import Worker


class SimClockWriter:
    """A ``LogWriter`` front that sets ``at`` from ``clock()`` (a naive-UTC or aware timestamp).

    Records that already carry ``at`` keep it. Shadow records are appended by the runtime's shadow
    pool a moment after their request, so they may be stamped a few simulated transactions later.
    """

    def __init__(self, inner: LogWriter, clock: Callable[[], Any]) -> None:
        self.inner = inner
        self.clock = clock

    def _stamp(self, record: InferenceRecord) -> InferenceRecord:
        if record.at is not None:
            return record
        return dataclasses.replace(record, at=as_utc(self.clock()))

    def append(self, record: InferenceRecord) -> None:
        self.inner.append(self._stamp(record))

    def extend(self, records: Iterable[InferenceRecord]) -> None:
        self.inner.extend(self._stamp(r) for r in records)

    def __getattr__(self, name: str) -> Any:  # flush, close, contains, stats, pending ...
        return getattr(self.inner, name)


class LoopReplay(Replay):
    """The fraud replay, delivering chargebacks in batches once per ``label_every`` of simulated time.

    A card issuer receives chargebacks in batches too; one feedback call per transaction would spend
    the demo's time on SQLite commits instead of on the loop.
    """

    label_every = pd.Timedelta(hours=1)

    def deliver_labels(self, now: pd.Timestamp | None = None) -> int:
        if now is not None:
            due = getattr(self, "_next_labels", None)
            if due is not None and pd.Timestamp(now) < due:
                return 0
            self._next_labels = pd.Timestamp(now) + self.label_every
        return super().deliver_labels(now)


def as_utc(value: Any) -> datetime:
    ts = pd.Timestamp(value)
    ts = ts.tz_localize(UTC) if ts.tzinfo is None else ts.tz_convert(UTC)
    return ts.to_pydatetime()


class WebhookReceiver:
    """An HTTP server on 127.0.0.1 (free port) recording each POST's JSON body and headers."""

    def __init__(self) -> None:
        self._messages: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                try:
                    body = json.loads(raw or b"null")
                except ValueError:
                    body = {"raw": raw.decode("utf-8", "replace")}
                with receiver._lock:
                    receiver._messages.append(
                        {
                            "topic": self.headers.get("X-Loopml-Topic"),
                            "idempotency_key": self.headers.get("Idempotency-Key"),
                            "body": body,
                        }
                    )
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: Any) -> None:  # quiet: the story prints what matters
                return

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="loop-demo-webhook", daemon=True
        )

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/slack"

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def messages(self) -> list[dict[str, Any]]:
        """Received messages, deduplicated by Idempotency-Key (a redelivery is the same message)."""
        with self._lock:
            seen, out = set(), []
            for m in self._messages:
                key = m["idempotency_key"] or id(m)
                if key in seen:
                    continue
                seen.add(key)
                out.append(m)
            return out


def notify_worker(lm: Any, stop: threading.Event) -> threading.Thread:
    """A real worker on the ``notify`` queue, in a daemon thread until ``stop`` is set."""
    worker = Worker(lm.ctx, queues=("notify",), concurrency=2, poll_min=0.02, poll_max=0.2)
    thread = threading.Thread(target=worker.run, args=(stop,), name="loop-demo-notify", daemon=True)
    thread.start()
    return thread
