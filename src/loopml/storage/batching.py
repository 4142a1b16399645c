"""``BatchWriter``: a thread-safe buffer in front of a database sink that writes in batches.

Why one piece: the metric writer (tracking) and the inference-log writer (serving) both promise
the same things - the producer only takes a lock and appends, a background thread writes, a failed
batch goes back to the front of the buffer so nothing accepted is lost or reordered, one batch is
in flight at a time, and ``close()`` / interpreter exit write what is left. Keeping that logic once
means a fix to it (say, to the requeue on failure) reaches both.

What differs stays in the subclasses: what an item is, when the producer flushes or wakes the
thread (``_put`` returns the buffer size so they can decide), and the batch sizes.
"""

from __future__ import annotations

import atexit
import logging
import threading
import time
import weakref
from collections.abc import Callable
from typing import Generic, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")

#: Writes one batch; returns how many items it stored (``None``: all of them).
BatchSink = Callable[[list[T]], int | None]


class BatchWriter(Generic[T]):
    """Buffer + background flusher around ``sink(batch)``.

    ``batch_rows`` caps a background batch (``None``: the whole buffer in one batch) and the thread
    yields between batches, so request threads wanting the GIL go first; ``flush_rows`` caps a
    batch of an explicit ``flush()``/``close()``, where the caller wants it done. The thread starts
    on the first ``_put`` (or when a subclass calls ``_start_thread``) and wakes every ``interval``
    seconds or when a subclass sets ``_wake``. After a failed background flush it waits another
    ``interval`` before retrying, so a producer that keeps waking it cannot spin on a dead database.
    """

    #: What the items are, for log lines ("metric points").
    noun = "items"

    def __init__(
        self,
        sink: BatchSink[T],
        *,
        interval: float,
        batch_rows: int | None = None,
        flush_rows: int | None = None,
        thread_name: str = "loopml-batch-writer",
    ) -> None:
        self._sink = sink
        self._interval = float(interval)
        self._batch_rows = batch_rows
        self._flush_rows = flush_rows
        self._thread_name = thread_name
        self._buffer: list[T] = []
        self._inflight: list[T] = []
        self._lock = threading.Lock()  # guards _buffer and _inflight
        self._write_lock = threading.Lock()  # one batch in flight at a time, in order
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._closed = False
        self._written = 0
        self._skipped = 0
        self.batches_written = 0
        self.failed_flushes = 0
        self.last_error: BaseException | None = None
        _register_atexit(self)

    # -- producer side ------------------------------------------------------------------------
    def _put(self, items: list[T]) -> int:
        """Buffer ``items``; returns the buffer size so the caller can flush or wake the thread."""
        with self._lock:
            self._buffer.extend(items)
            size = len(self._buffer)
        if self._thread is None:
            self._start_thread()
        return size

    @property
    def pending(self) -> int:
        """Items accepted but not yet written (buffered or in the batch being written)."""
        with self._lock:
            return len(self._buffer) + len(self._inflight)

    # -- flushing -----------------------------------------------------------------------------
    def flush(self) -> int:
        """Write everything buffered now; returns the items stored. Raises when the sink fails."""
        return self._flush(self._flush_rows, pause=False)

    def _flush(self, chunk: int | None, *, pause: bool) -> int:
        written = 0
        with self._write_lock:
            first = True
            while True:
                if pause and not first:
                    time.sleep(0)  # let request threads run between two batches
                first = False
                with self._lock:
                    if not self._buffer:
                        return written
                    if chunk is None:
                        batch, self._buffer = self._buffer, []
                    else:
                        batch = self._buffer[:chunk]
                        del self._buffer[: len(batch)]
                    self._inflight = batch
                try:
                    stored = self._sink(batch)
                except BaseException as exc:
                    with self._lock:
                        self._buffer[:0] = batch  # back to the front: order and items preserved
                        self._inflight = []
                    self.failed_flushes += 1
                    self.last_error = exc
                    raise
                with self._lock:
                    self._inflight = []
                stored = len(batch) if stored is None else stored
                self.batches_written += 1
                self._written += stored
                self._skipped += len(batch) - stored
                written += stored

    def _start_thread(self) -> None:
        with self._lock:
            if self._thread is not None or self._closed:
                return
            self._thread = threading.Thread(target=self._loop, name=self._thread_name, daemon=True)
            self._thread.start()

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self._interval)
            self._wake.clear()
            if self._stop.is_set():
                break
            with self._lock:
                if not self._buffer:
                    continue
            try:
                self._flush(self._batch_rows, pause=True)
            except Exception as exc:  # keep the thread alive; the items stay buffered for the next try
                log.warning(
                    "loopml: %s flush failed (%d waiting), retrying in %.1fs: %s",
                    self.noun,
                    self.pending,
                    self._interval,
                    exc,
                )
                self._stop.wait(self._interval)

    def close(self) -> None:
        """Stop the background thread and write what is left (idempotent). Raises if that write fails."""
        self._closed = True
        self._stop.set()
        self._wake.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=max(5.0, self._interval * 2))
        self.flush()


_writers: weakref.WeakSet[BatchWriter] = weakref.WeakSet()
_atexit_lock = threading.Lock()
_atexit_installed = False


def _register_atexit(writer: BatchWriter) -> None:
    global _atexit_installed
    with _atexit_lock:
        _writers.add(writer)
        if not _atexit_installed:
            atexit.register(flush_all_at_exit)
            _atexit_installed = True


def flush_all_at_exit() -> None:
    """Write every live writer's buffer at interpreter exit; errors are logged (nobody to raise to)."""
    for writer in list(_writers):
        try:
            writer.close()
        except Exception as exc:
            log.error("loopml: %d %s could not be written at exit: %s", writer.pending, writer.noun, exc)
