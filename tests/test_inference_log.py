"""The inference log: batched writer, feedback by request id, reads, joins and aggregates (SQLite and PostgreSQL)."""

from __future__ import annotations

import math
import os
import subprocess
import sys
import textwrap
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from loopml import Loopml
from loopml.errors import NotFoundError, ValidationError
from loopml.serving.inference import InferenceLog, InferenceRecord, LogWriter


def rec(
    i: int, *, endpoint: str = "fraud", arm: str | None = "a", status: str = "ok", **kw
) -> InferenceRecord:
    values = {
        "request_id": f"r{i}",
        "endpoint": endpoint,
        "model": "fraud@champion",
        "version": 1 if arm in (None, "a") else 2,
        "arm": arm,
        "inputs": [{"amount": float(i), "hour": i % 24}],
        "outputs": [{"label": int(i % 2), "probability": (i % 10) / 10}],
        "latency_ms": float(i % 7),
        "status": status,
    }
    values.update(kw)
    return InferenceRecord(**values)


@pytest.fixture
def log(lm: Loopml) -> InferenceLog:
    service = InferenceLog(lm.ctx, retry_delay=0.01)
    yield service
    service.close()


def _wait_for(predicate, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.02)


# -- writing ----------------------------------------------------------------------------------
def test_writer_batches_records_and_reads_them_back(log: InferenceLog) -> None:
    writer = log.writer(flush_rows=100, flush_interval=30)
    shadow = [{"model": "fraud/2", "outputs": [0.4], "latency_ms": 1.5}]
    for i in range(250):
        writer.append(rec(i, shadow=shadow if i == 7 else None, routing_key=f"user-{i % 3}"))
    writer.close()
    assert log.count("fraud") == 250
    assert writer.stats()["records_written"] == 250 and writer.pending == 0
    got = log.get("r7")
    assert got.inputs == [{"amount": 7.0, "hour": 7}]
    assert got.outputs == [{"label": 1, "probability": 0.7}]
    assert got.shadow == shadow and got.routing_key == "user-1" and got.version == 1
    assert got.at.tzinfo is not None
    assert log.get("r8").shadow is None
    frame = log.records("fraud", limit=10)
    assert list(frame["request_id"]) == [f"r{i}" for i in range(240, 250)]  # the newest, oldest first
    assert frame["at"].is_monotonic_increasing


def test_the_background_thread_flushes_on_the_interval(log: InferenceLog) -> None:
    writer = log.writer(flush_rows=1000, flush_interval=0.05)
    writer.append(rec(1))
    _wait_for(lambda: log.count("fraud") == 1)
    assert writer.pending == 0


def test_a_duplicate_request_id_is_skipped_not_fatal(log: InferenceLog) -> None:
    writer = log.writer(flush_rows=10, flush_interval=30)
    writer.append(rec(1, latency_ms=1.0))
    writer.flush()
    writer.extend([rec(1, latency_ms=99.0), rec(2)])  # r1 again in a batch with a new record
    assert writer.flush() == 1
    assert writer.duplicates_skipped == 1
    assert log.get("r1").latency_ms == 1.0  # the first write wins
    assert log.count() == 2


def test_odd_values_are_logged_not_refused(log: InferenceLog) -> None:
    weird = rec(
        1,
        inputs=[{"x": np.float32(1.5), "big": 2**70, "when": datetime(2026, 1, 1, tzinfo=UTC)}],
        outputs=[np.float64(0.5)],
        latency_ms=math.nan,
        arm="x" * 500,
    )
    assert log.write([weird]) == 1
    got = log.get("r1")
    assert got.outputs == [0.5] and got.latency_ms == -1.0 and len(got.arm) == 100
    assert "unserialisable" in got.inputs


def test_records_filters_and_rejects_bad_arguments(log: InferenceLog) -> None:
    past = datetime(2026, 1, 1, tzinfo=UTC)
    log.write([rec(i, at=past + timedelta(minutes=i)) for i in range(10)])
    frame = log.records(
        "fraud", since=past + timedelta(minutes=3), until=(past + timedelta(minutes=6)).isoformat()
    )
    assert list(frame["request_id"]) == ["r3", "r4", "r5"]
    assert log.records("other").empty
    with pytest.raises(ValidationError) as err:
        log.records("fraud", limit=0)
    assert err.value.field == "limit"
    with pytest.raises(ValidationError) as err:
        log.records("fraud", since="yesterday")
    assert err.value.field == "since"
    with pytest.raises(ValidationError) as err:
        log.records("fraud", since=timedelta(minutes=-5))
    assert err.value.field == "since"
    with pytest.raises(ValidationError) as err:
        log.records("", limit=5)
    assert err.value.field == "endpoint"
    with pytest.raises(NotFoundError) as err:
        log.get("nope")
    assert err.value.field == "request_id"


def test_record_and_writer_validation() -> None:
    with pytest.raises(ValidationError) as err:
        rec(1, request_id="")
    assert err.value.field == "request_id"
    with pytest.raises(ValidationError) as err:
        rec(1, request_id="x" * 129)
    assert err.value.field == "request_id"
    for kwargs, field in (
        ({"flush_rows": 0}, "flush_rows"),
        ({"flush_interval": -1}, "flush_interval"),
        ({"flush_rows": 10, "max_buffer": 5}, "max_buffer"),
    ):
        with pytest.raises(ValidationError) as err:
            LogWriter(lambda batch: len(batch), **kwargs)
        assert err.value.field == field
    writer = LogWriter(lambda batch: len(batch))
    with pytest.raises(ValidationError) as err:
        writer.append({"request_id": "r1"})
    assert err.value.field == "record"
    writer.close()
    with pytest.raises(ValidationError, match="closed"):
        writer.append(rec(1))


def test_a_failing_database_keeps_every_record_and_applies_backpressure() -> None:
    """No database here: a sink that fails, then recovers. Nothing accepted is lost or reordered."""
    stored: list[str] = []
    healthy = threading.Event()

    def sink(batch):
        if not healthy.is_set():
            raise ConnectionError("database down")
        stored.extend(entry[0].request_id for entry in batch)
        return len(batch)

    writer = LogWriter(sink, flush_rows=5, flush_interval=0.02, max_buffer=20)
    for i in range(60):  # past max_buffer: append flushes in this thread, fails, and keeps the records
        writer.append(rec(i))
    assert writer.pending == 60 and writer.failed_flushes >= 1
    healthy.set()
    _wait_for(lambda: writer.pending == 0)
    writer.close()
    assert stored == [f"r{i}" for i in range(60)]


# -- feedback ---------------------------------------------------------------------------------
def test_feedback_newest_wins_and_history_is_kept(log: InferenceLog) -> None:
    log.write([rec(1), rec(2), rec(3)])
    first = log.feedback("fraud", "r1", label=0, actor="ops")
    assert first.label == 0 and first.reward is None and first.actor == "ops"
    log.feedback("fraud", "r1", label=1)  # a chargeback arrived: corrects the label
    log.feedback("fraud", "r1", reward=0.5)  # a reward-only message keeps the newest label
    log.feedback_many(
        "fraud", [{"request_id": "r2", "label": True, "reward": 1}, {"request_id": "r3", "label": "x"}]
    )
    history = log.feedback_history("r1")
    assert [(f.label, f.reward) for f in history] == [(0, None), (1, None), (None, 0.5)]
    frame = log.joined("fraud").set_index("request_id")
    assert frame.loc["r1", "label"] == 1 and frame.loc["r1", "reward"] == 0.5
    assert frame.loc["r2", "label"] is True and frame.loc["r2", "reward"] == 1.0
    assert frame.loc["r3", "label"] == "x" and math.isnan(frame.loc["r3", "reward"])
    assert frame.loc["r1", "output"] == pytest.approx(0.1) and frame.loc["r1", "predicted"] == 1


def test_feedback_for_unknown_or_foreign_requests_is_404(log: InferenceLog) -> None:
    log.write([rec(1), rec(2, endpoint="other")])
    with pytest.raises(NotFoundError) as err:
        log.feedback("fraud", "missing", label=1)
    assert err.value.field == "request_id" and "missing" in str(err.value)
    with pytest.raises(NotFoundError, match="endpoint 'other'"):
        log.feedback("fraud", "r2", label=1)
    with pytest.raises(NotFoundError):  # all or nothing
        log.feedback_many("fraud", [{"request_id": "r1", "label": 1}, {"request_id": "nope", "label": 1}])
    assert log.feedback_history("r1") == []


@pytest.mark.parametrize(
    ("item", "field"),
    [
        ({"request_id": "r1", "label": {"a": 1}}, "label"),
        ({"request_id": "r1", "label": [1]}, "label"),
        ({"request_id": "r1", "label": math.nan}, "label"),
        ({"request_id": "r1", "reward": math.inf}, "reward"),
        ({"request_id": "r1", "reward": "1"}, "reward"),
        ({"request_id": "r1", "reward": True}, "reward"),
        ({"request_id": "r1"}, "label"),
        ({"request_id": "", "label": 1}, "request_id"),
        ({"request_id": "x" * 200, "label": 1}, "request_id"),
        ({"request_id": 12, "label": 1}, "request_id"),
        ({"request_id": "r1", "label": 1, "score": 3}, "score"),
    ],
)
def test_feedback_validation_names_the_field(log: InferenceLog, item: dict, field: str) -> None:
    with pytest.raises(ValidationError) as err:
        log.feedback_many("fraud", [item])
    assert err.value.field == field


def test_feedback_batch_validation(log: InferenceLog) -> None:
    for items, field in (
        ({"request_id": "r1"}, "items"),
        ([], "items"),
        ("r1", "items"),
        ([{"request_id": "r1", "label": 1}, {"request_id": "r1", "label": 0}], "items[1].request_id"),
        ([{"request_id": "r1", "label": 1}, 5], "items[1]"),
    ):
        with pytest.raises(ValidationError) as err:
            log.feedback_many("fraud", items)
        assert err.value.field == field
    with pytest.raises(ValidationError) as err:
        log.feedback("fraud", "r1", label=1, actor="")
    assert err.value.field == "actor"


def test_feedback_waits_for_a_record_still_in_this_process_buffer(log: InferenceLog) -> None:
    writer = log.writer(flush_rows=1000, flush_interval=60)
    writer.append(rec(42))
    assert log.count() == 0
    fb = log.feedback("fraud", "r42", label=1)  # would be a 404 without the flush-wait
    assert fb.request_id == "r42" and log.count() == 1


# -- aggregates -------------------------------------------------------------------------------
def test_window_stats_per_arm(log: InferenceLog) -> None:
    now = datetime.now(UTC)
    old = [rec(1000 + i, at=now - timedelta(hours=2)) for i in range(5)]
    recent = [rec(i, arm="a") for i in range(40)] + [rec(100 + i, arm="b") for i in range(20)]
    recent += [rec(200 + i, arm="b", status="fallback", error="timeout", outputs=[None]) for i in range(5)]
    log.write(old + recent)
    stats = log.window_stats("fraud", since=timedelta(minutes=10))
    assert set(stats) == {"a", "b"}
    assert (stats["a"].n, stats["a"].errors) == (40, 0)
    assert (stats["b"].n, stats["b"].errors) == (25, 5) and stats["b"].error_rate == pytest.approx(0.2)
    assert stats["a"].outputs.size == 40 and 0 <= stats["a"].outputs.min() <= stats["a"].outputs.max() <= 0.9
    assert stats["a"].p50 <= stats["a"].p99 <= 6
    assert stats["a"].models == ("fraud@champion/1",)
    assert stats["a"].to_dict()["outputs_sampled"] == 40
    assert log.window_stats("fraud", since=now + timedelta(hours=1)) == {}
    with pytest.raises(ValidationError) as err:
        log.window_stats("fraud", since=None)
    assert err.value.field == "since"


def test_reward_stats_for_thompson_sampling(log: InferenceLog) -> None:
    log.write(
        [rec(i, arm="a") for i in range(10)]
        + [rec(100 + i, arm="b") for i in range(4)]
        + [rec(500, arm=None)]
    )
    log.feedback_many("fraud", [{"request_id": f"r{i}", "reward": 1.0} for i in range(3)])
    log.feedback("fraud", "r3", reward=0.0)
    log.feedback("fraud", "r100", reward=1.0)
    log.feedback("fraud", "r100", reward=0.25)  # corrected: the newest reward counts
    log.feedback("fraud", "r101", reward=3.0)  # clipped to 1 for the Beta posterior, summed as is
    stats = log.reward_stats("fraud")
    a, b = stats["a"], stats["b"]
    assert (a.pulls, a.reward_sum, a.successes, a.failures, a.rewarded) == (10, 3.0, 3.0, 1.0, 4)
    assert b.pulls == 4 and b.reward_sum == pytest.approx(3.25)
    assert b.successes == pytest.approx(1.25) and b.failures == pytest.approx(0.75)
    pulls, reward_sum, successes, failures, rewarded = stats["fraud/1"]  # no arm: by model version
    assert (pulls, reward_sum, successes, failures, rewarded) == (1, 0.0, 0.0, 0.0, 0)
    assert log.reward_stats("fraud", since=timedelta(seconds=0)).get("a") is None


def test_joined_since_and_empty(log: InferenceLog) -> None:
    assert log.joined("fraud").empty
    past = datetime(2026, 1, 1, tzinfo=UTC)
    log.write([rec(1, at=past), rec(2, at=past + timedelta(days=3))])
    frame = log.joined("fraud", since=past + timedelta(days=1))
    assert list(frame["request_id"]) == ["r2"]


# -- crash behaviour ----------------------------------------------------------------------------
def _child(lm: Loopml, body: str) -> None:
    script = textwrap.dedent(
        f"""
        import os
        from loopml import Loopml, load_settings
        from loopml.serving.inference import InferenceLog, InferenceRecord
        lm = Loopml(load_settings(home={str(lm.settings.home)!r}, metadata_url={lm.settings.resolved_metadata_url!r}))
        log = InferenceLog(lm.ctx)
        w = log.writer(flush_rows=1000, flush_interval=60)
        def rec(i):
            return InferenceRecord(f"c{{i}}", "crash", "m/1", 1, None, [{{}}], [0.5], 1.0, "ok")
        """
    ) + textwrap.dedent(body)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1] / "src")}
    subprocess.run([sys.executable, "-c", script], check=False, env=env, timeout=60)


def test_a_crash_loses_only_the_unflushed_buffer_and_a_normal_exit_loses_nothing(lm_sqlite: Loopml) -> None:
    log = InferenceLog(lm_sqlite.ctx)
    _child(
        lm_sqlite,
        "for i in range(200): w.append(rec(i))\nw.flush()\nfor i in range(200, 250): w.append(rec(i))\nos._exit(9)\n",
    )
    assert log.count("crash") == 200  # the 50 records still buffered at the crash are gone
    _child(
        lm_sqlite, "for i in range(1000, 1100): w.append(rec(i))\n"
    )  # exits without close(): atexit writes
    assert log.count("crash") == 300
