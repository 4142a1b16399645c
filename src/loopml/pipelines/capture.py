"""Capture what a step prints and logs, per thread, into a capped buffer stored with its step run.

A worker runs several jobs in threads, so swapping ``sys.stdout`` for one step would steal the
output of the others. Instead one proxy is installed while any capture is active; it writes to
the buffer of the *calling thread* and passes everything else through. Logging records are
filtered the same way (by the thread that emitted them).
"""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, TextIO

MAX_LOG_CHARS = 64_000

_local = threading.local()
_lock = threading.Lock()
_active = 0
_original: TextIO | None = None
_original_level = logging.NOTSET


class CappedBuffer:
    """Keeps the last ``limit`` characters (the end of a log holds the error) and counts the rest."""

    def __init__(self, limit: int = MAX_LOG_CHARS) -> None:
        self.limit = limit
        self.parts: list[str] = []
        self.size = 0
        self.dropped = 0

    def write(self, text: str) -> None:
        if not text:
            return
        self.parts.append(text)
        self.size += len(text)
        if self.size > 2 * self.limit:
            self._compact()

    def _compact(self) -> None:
        joined = "".join(self.parts)
        keep = joined[-self.limit :]
        self.dropped += len(joined) - len(keep)
        self.parts = [keep]
        self.size = len(keep)

    def getvalue(self) -> str:
        if self.size > self.limit:
            self._compact()
        text = "".join(self.parts)
        if self.dropped:
            return f"[... {self.dropped} earlier characters dropped ...]\n" + text
        return text


class _ThreadStdout:
    """Stands in for sys.stdout: the calling thread's capture buffer if it has one, else the original."""

    def __init__(self, original: TextIO) -> None:
        self._original = original

    def write(self, text: str) -> int:
        buf = getattr(_local, "buffer", None)
        if buf is not None:
            buf.write(text)
            return len(text)
        return self._original.write(text)

    def flush(self) -> None:
        if getattr(_local, "buffer", None) is None:
            self._original.flush()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._original, name)


class _ThreadHandler(logging.Handler):
    def __init__(self, buffer: CappedBuffer, thread_id: int) -> None:
        super().__init__(logging.DEBUG)
        self.buffer = buffer
        self.thread_id = thread_id
        self.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        if record.thread != self.thread_id:
            return
        try:
            self.buffer.write(self.format(record) + "\n")
        except Exception:  # a broken log record must not fail the step
            self.handleError(record)


@contextmanager
def capture(level: int = logging.INFO) -> Iterator[CappedBuffer]:
    """Collect this thread's stdout and log records (>= ``level``) while the block runs."""
    global _active, _original, _original_level
    buffer = CappedBuffer()
    handler = _ThreadHandler(buffer, threading.get_ident())
    root = logging.getLogger()
    with _lock:
        if _active == 0:
            _original_level = root.level
            _original = sys.stdout
            sys.stdout = _ThreadStdout(sys.stdout)  # type: ignore[assignment]
        _active += 1
        root.addHandler(handler)
        if root.level > level or root.level == logging.NOTSET:
            root.setLevel(level)
    _local.buffer = buffer
    try:
        yield buffer
    finally:
        _local.buffer = None
        with _lock:
            root.removeHandler(handler)
            _active -= 1
            if _active == 0:
                root.setLevel(_original_level)
                if isinstance(sys.stdout, _ThreadStdout) and _original is not None:
                    sys.stdout = _original
                _original = None
