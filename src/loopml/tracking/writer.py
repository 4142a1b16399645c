"""The buffered batch writer: metric points go to memory, then to the database in one INSERT per batch.

Why: one transaction per point is what makes a ``log_metric`` loop slow (MLflow's sqlite store
does exactly that). Here ``append`` is a lock, a list append and a length check; a flush sends the
whole buffer as one multi-row INSERT in one transaction. A flush happens when

- the buffer reaches ``max_points`` (in the appending thread, so a fast producer is slowed down
  rather than growing memory without bound),
- ``interval`` seconds passed (a daemon thread, so a slow loop's points still show up live),
- on ``flush()`` / ``close()`` (run end) and at interpreter exit (``atexit``).

A failed flush puts the points back at the front of the buffer (nothing accepted is dropped) and
the next flush retries them; an explicit ``flush()`` re-raises the error.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from loopml.storage.batching import BatchWriter

Row = dict[str, Any]


class MetricWriter(BatchWriter[Row]):
    """Thread-safe buffer of metric rows in front of ``sink(rows)`` (which writes them in one batch)."""

    noun = "metric points"

    def __init__(
        self, sink: Callable[[list[Row]], None], *, max_points: int = 5000, interval: float = 2.0
    ) -> None:
        if max_points < 1:
            raise ValueError("max_points must be >= 1")
        if interval <= 0:
            raise ValueError("interval must be > 0 seconds")
        # batch_rows/flush_rows None: every flush sends the whole buffer as one INSERT
        super().__init__(sink, interval=interval, thread_name="loopml-metric-writer")
        self.max_points = max_points
        self.interval = interval

    def append(self, row: Row) -> None:
        if self._put([row]) >= self.max_points:
            self.flush()

    def extend(self, rows: Iterable[Row]) -> None:
        if self._put(list(rows)) >= self.max_points:
            self.flush()

    @property
    def points_written(self) -> int:
        return self._written
