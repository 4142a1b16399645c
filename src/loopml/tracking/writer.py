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

import atexit
import logging
import threading
import weakref
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)

Row = dict[str, Any]


class MetricWriter:
    """Thread-safe buffer of metric rows in front of ``sink(rows)`` (which writes them in one batch)."""

    def __init__(
        self, sink: Callable[[list[Row]], None], *, max_points: int = 5000, interval: float = 2.0
    ) -> None:
        if max_points < 1:
            raise ValueError("max_points must be >= 1")
        if interval <= 0:
            raise ValueError("interval must be > 0 seconds")
        self._sink = sink
        self.max_points = max_points
        self.interval = interval
        self._buffer: list[Row] = []
        self._lock = threading.Lock()  # guards _buffer
        self._write_lock = threading.Lock()  # one batch in flight at a time, in order
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._closed = False
        self.batches_written = 0
        self.points_written = 0
        self.last_error: BaseException | None = None
        _register_atexit(self)

    # -- producer side ------------------------------------------------------------------------
    def append(self, row: Row) -> None:
        with self._lock:
            self._buffer.append(row)
            full = len(self._buffer) >= self.max_points
        if self._thread is None:
            self._start_thread()
        if full:
            self.flush()

    def extend(self, rows: list[Row]) -> None:
        with self._lock:
            self._buffer.extend(rows)
            full = len(self._buffer) >= self.max_points
        if self._thread is None:
            self._start_thread()
        if full:
            self.flush()

    @property
    def pending(self) -> int:
        with self._lock:
            return len(self._buffer)

    # -- flushing -----------------------------------------------------------------------------
    def flush(self) -> int:
        """Write everything buffered now; returns the number of points written. Raises on failure."""
        written = 0
        with self._write_lock:
            while True:
                with self._lock:
                    if not self._buffer:
                        return written
                    batch, self._buffer = self._buffer, []
                try:
                    self._sink(batch)
                except BaseException as exc:
                    with self._lock:
                        self._buffer[:0] = batch  # back to the front: order and points preserved
                    self.last_error = exc
                    raise
                self.batches_written += 1
                self.points_written += len(batch)
                written += len(batch)

    def _start_thread(self) -> None:
        with self._lock:
            if self._thread is not None or self._closed:
                return
            self._thread = threading.Thread(target=self._loop, name="loopml-metric-writer", daemon=True)
            self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            if not self.pending:
                continue
            try:
                self.flush()
            except Exception as exc:  # keep the thread alive; the points stay buffered for the next try
                log.warning("loopml: metric flush failed, will retry in %.1fs: %s", self.interval, exc)

    def close(self) -> None:
        """Stop the background thread and write what is left (idempotent)."""
        self._closed = True
        self._stop.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=max(5.0, self.interval * 2))
        self.flush()


_writers: weakref.WeakSet[MetricWriter] = weakref.WeakSet()
_atexit_lock = threading.Lock()
_atexit_installed = False


def _register_atexit(writer: MetricWriter) -> None:
    global _atexit_installed
    with _atexit_lock:
        _writers.add(writer)
        if not _atexit_installed:
            atexit.register(flush_all_at_exit)
            _atexit_installed = True


def flush_all_at_exit() -> None:
    """Flush every live writer; errors are logged because nothing can be raised to the user any more."""
    for writer in list(_writers):
        try:
            writer.close()
        except Exception as exc:
            log.error("loopml: %d metric points could not be written at exit: %s", writer.pending, exc)
