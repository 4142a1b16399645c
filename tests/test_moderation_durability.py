"""Durability under SIGKILL (issue 6, part 8): uploads accepted over HTTP while real `loopml worker`
processes screening and delivering webhooks are killed mid-run and restarted. Every accepted upload
still reaches a decided status, every upload has exactly one notification and one webhook delivery
in the store, every delivery is delivered, and the receiver saw every Idempotency-Key (at least
once: a worker killed between the POST and marking it delivered resends once; the receiver
dedupes by the key, and the test reports how many such resends happened).
"""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import skimage.data
from fastapi.testclient import TestClient
from PIL import Image

from loopml import Loopml, load_settings
from loopml.apps.moderation.config import ModerationConfig
from loopml.apps.moderation.models import HaarFaceDetector, example_input
from loopml.apps.moderation.screening import ensure_endpoint
from loopml.serving.app import create_app

pytest.importorskip("loopml.notify")

N = 60
DECIDED = ("published", "review", "rejected", "failed")
SOURCES = [skimage.data.chelsea(), skimage.data.coffee(), skimage.data.astronaut(), skimage.data.rocket()]


class Receiver(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.keys: Counter[str] = Counter()
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/hook"


class _Handler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("content-length") or 0))
        with self.server.lock:
            self.server.keys[self.headers.get("Idempotency-Key") or ""] += 1
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def upload_bytes(i: int) -> bytes:
    """Distinct variants of a few real photos (crop and tint differ per upload)."""
    src = Image.fromarray(SOURCES[i % len(SOURCES)]).convert("RGB")
    w, h = src.size
    dx, dy = (i * 7) % 40, (i * 11) % 40
    img = src.crop((dx, dy, w - 40 + dx, h - 40 + dy)).resize((320, 320 * (h - 40) // (w - 40)))
    img = Image.blend(img, Image.new("RGB", img.size, (i * 4 % 255, 0, 0)), 0.05)
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=85)
    return buf.getvalue()


def _wait(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def test_sigkilled_workers_lose_no_upload_and_notify_once(
    tmp_path: Path, metadata_url: str, receiver: Receiver, request: pytest.FixtureRequest
) -> None:
    home = tmp_path / "home"
    env = {
        **os.environ,
        "LOOPML_HOME": str(home),
        "LOOPML_METADATA_URL": metadata_url,
        "LOOPML_PIPELINE_MODULES": "[]",
    }
    lm = Loopml(load_settings(home=home, metadata_url=metadata_url))
    request.addfinalizer(lm.close)
    workers: list[subprocess.Popen[bytes]] = []

    def start() -> subprocess.Popen[bytes]:
        cmd = [
            sys.executable,
            "-m",
            "loopml.cli.main",
            "worker",
            "--log-level",
            "warning",
            "--queue",
            "moderation",
            "--queue",
            "notify",
            "--concurrency",
            "2",
            "--lease-seconds",
            "2",
        ]
        proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        workers.append(proc)
        return proc

    def decided() -> int:
        counts = lm.async_requests.counts("moderation")
        return sum(counts.get(s, 0) for s in DECIDED)

    try:
        version = lm.registry.register(
            "moderation-face", HaarFaceDetector(), flavor="python", input_example=example_input()
        )
        lm.registry.set_alias(
            "moderation-face", "champion", version.number, actor="test", reason="durability"
        )
        ensure_endpoint(lm, ModerationConfig())
        lm.notify.add_webhook("receiver", receiver.url, topics=("moderation.",))
        client = TestClient(create_app(lm, apps=("loopml.apps.moderation.web",)))
        ids: list[str] = []

        def accept(count: int) -> None:
            for _ in range(count):
                i = len(ids)
                res = client.post(
                    "/v1/contents",
                    files={"image": (f"p{i}.jpg", upload_bytes(i), "image/jpeg")},
                    data={"title": f"photo {i}", "uploader": f"user{i}", "tags": "durability"},
                )
                assert res.status_code == 202, res.text
                ids.append(res.json()["id"])

        accept(30)
        start(), start()
        interrupted: set[int] = set()
        for threshold in (8, 20, 34):
            _wait(lambda t=threshold: decided() >= t, 120, f"{threshold} decided uploads")
            victim = next(p for p in workers if p.poll() is None)
            tag = f":{victim.pid}:"

            def busy(tag: str = tag) -> set[int]:
                return {
                    j.id for j in lm.jobs.list(status="running", limit=1000) if tag in (j.worker_id or "")
                }

            _wait(lambda: bool(busy()), 60, "the victim to hold a job")
            victim.send_signal(signal.SIGKILL)  # mid-job: its leases expire and others take over
            victim.wait(10)
            interrupted |= busy()  # still leased to the dead worker: really cut off mid-run
            start()
            accept(10)  # load keeps arriving while workers die
        assert len(ids) == N
        _wait(lambda: decided() == N, 120, "every upload to be decided")
        _wait(
            lambda: len(lm.notify.deliveries(status="delivered", limit=1000)) >= N,
            60,
            "every webhook delivery to be delivered",
        )
    finally:
        for proc in workers:
            if proc.poll() is None:
                proc.kill()
            proc.wait(10)

    requests = [lm.async_requests.get(i) for i in ids]
    assert all(r.status in DECIDED for r in requests), Counter(r.status for r in requests)
    notes = lm.notify.notifications(topic="moderation.", limit=1000)
    per_upload = Counter(n.data["content_id"] for n in notes)
    assert per_upload == Counter(dict.fromkeys(ids, 1)), "exactly one notification per upload"
    deliveries = lm.notify.deliveries(limit=1000)
    assert len(deliveries) == N and all(d.status == "delivered" for d in deliveries)
    expected_keys = {f"moderation.decision:{i}/receiver" for i in ids}
    assert expected_keys <= set(receiver.keys), "the receiver missed a notification"
    resent = {k: c for k, c in receiver.keys.items() if c > 1}
    print(
        f"\ndurability: {N} uploads, 3 SIGKILLs, {len(interrupted)} jobs cut off mid-run, outcomes {Counter(r.status for r in requests)}, "
        f"webhook resends deduped by Idempotency-Key: {len(resent)}"
    )
    jobs = lm.jobs.list(queue="moderation", limit=1000) + lm.jobs.list(queue="notify", limit=1000)
    assert len(jobs) == 2 * N - sum(r.job_id is None for r in requests)
    assert all(j.status == "succeeded" for j in jobs), Counter(j.status for j in jobs)
    # the killed workers' jobs really were cut off mid-run and then finished by another worker
    assert interrupted and all(lm.jobs.get(i).attempts >= 2 for i in interrupted)
