"""The buffered writer on its own (no database): batching, ordering, failures and threads."""

from __future__ import annotations

import threading
import time

import pytest

from loopml.tracking.writer import MetricWriter


class Sink:
    def __init__(self) -> None:
        self.batches: list[list[dict]] = []
        self.fail_next = 0

    def __call__(self, rows: list[dict]) -> None:
        if self.fail_next:
            self.fail_next -= 1
            raise ConnectionError("database went away")
        self.batches.append(list(rows))


def test_size_trigger_writes_whole_batches() -> None:
    sink = Sink()
    writer = MetricWriter(sink, max_points=3, interval=3600)
    for i in range(7):
        writer.append({"i": i})
    assert [len(b) for b in sink.batches] == [3, 3]
    assert writer.pending == 1
    writer.close()
    assert [r["i"] for b in sink.batches for r in b] == list(range(7))
    assert (writer.batches_written, writer.points_written) == (3, 7)


def test_a_failed_flush_keeps_points_in_order_for_the_next_attempt() -> None:
    sink = Sink()
    writer = MetricWriter(sink, max_points=1000, interval=3600)
    writer.extend([{"i": 0}, {"i": 1}])
    sink.fail_next = 1
    with pytest.raises(ConnectionError):
        writer.flush()
    assert writer.pending == 2
    writer.append({"i": 2})
    assert writer.flush() == 3
    assert [r["i"] for r in sink.batches[0]] == [0, 1, 2]
    writer.close()


def test_background_thread_retries_after_a_failure() -> None:
    sink = Sink()
    sink.fail_next = 2
    writer = MetricWriter(sink, max_points=1000, interval=0.02)
    writer.append({"i": 0})
    deadline = time.monotonic() + 10
    while not sink.batches and time.monotonic() < deadline:
        time.sleep(0.01)
    assert sink.batches == [[{"i": 0}]]
    assert isinstance(writer.last_error, ConnectionError)
    writer.close()


def test_concurrent_producers_lose_nothing() -> None:
    sink = Sink()
    writer = MetricWriter(sink, max_points=97, interval=0.01)

    def produce(offset: int) -> None:
        for i in range(2000):
            writer.append({"i": offset + i})

    threads = [threading.Thread(target=produce, args=(k * 10_000,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    writer.close()
    seen = sorted(r["i"] for b in sink.batches for r in b)
    assert seen == sorted(k * 10_000 + i for k in range(4) for i in range(2000))


@pytest.mark.parametrize(
    ("kwargs", "needle"), [({"max_points": 0}, "max_points"), ({"interval": 0}, "interval")]
)
def test_invalid_settings(kwargs: dict, needle: str) -> None:
    with pytest.raises(ValueError, match=needle):
        MetricWriter(Sink(), **kwargs)
