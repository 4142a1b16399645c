"""A circuit breaker per endpoint arm: stop calling a model that keeps failing, probe it after a pause.

closed --(N consecutive failures)--> open --(cool-down elapsed)--> half-open --(probe ok)--> closed
                                                                        \\--(probe fails)--> open

While open, requests get the endpoint's fallback immediately instead of waiting for a timeout each,
which is what protects the caller's latency budget when a model (or its feature backend) is down.
Only one probe is let through in half-open state; concurrent requests keep getting the fallback.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from loopml.errors import ValidationError

CLOSED = "closed"
OPEN = "open"
HALF_OPEN = "half_open"
#: Gauge values exported on /metrics (``loopml_endpoint_circuit_state``).
STATE_VALUES = {CLOSED: 0.0, HALF_OPEN: 1.0, OPEN: 2.0}


class CircuitBreaker:
    """Thread-safe; ``allow()`` before a call, then ``record_success()`` or ``record_failure()``."""

    def __init__(
        self,
        failure_threshold: int = 5,
        cooldown_seconds: float = 30.0,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if (
            isinstance(failure_threshold, bool)
            or not isinstance(failure_threshold, int)
            or failure_threshold < 1
        ):
            raise ValidationError(
                f"failure_threshold={failure_threshold!r} must be an integer >= 1", field="failure_threshold"
            )
        if not isinstance(cooldown_seconds, int | float) or not cooldown_seconds >= 0:
            raise ValidationError(
                f"cooldown_seconds={cooldown_seconds!r} must be a number >= 0", field="cooldown_seconds"
            )
        self.failure_threshold = failure_threshold
        self.cooldown_seconds = float(cooldown_seconds)
        self._clock = clock
        self._lock = threading.Lock()
        self._state = CLOSED
        self._failures = 0
        self._opened_at = 0.0
        self._probe_in_flight = False
        self.opened_count = 0

    @property
    def state(self) -> str:
        with self._lock:
            if self._state == OPEN and self._clock() - self._opened_at >= self.cooldown_seconds:
                return HALF_OPEN
            return self._state

    def allow(self) -> bool:
        """True when a call may go to the model now (closed, or the single half-open probe)."""
        if self._state == CLOSED:  # lock-free fast path: a stale read only delays opening by one call
            return True
        with self._lock:
            if self._state == OPEN:
                if self._clock() - self._opened_at < self.cooldown_seconds:
                    return False
                self._state = HALF_OPEN
                self._probe_in_flight = False
            if self._state == HALF_OPEN:
                if self._probe_in_flight:
                    return False
                self._probe_in_flight = True
                return True
            return True

    def record_success(self) -> None:
        if self._state == CLOSED and self._failures == 0:
            return
        with self._lock:
            self._failures = 0
            self._state = CLOSED
            self._probe_in_flight = False

    def record_neutral(self) -> None:
        """The call ended without saying anything about the model (e.g. bad input): free the probe slot."""
        if self._probe_in_flight:
            with self._lock:
                self._probe_in_flight = False

    def record_failure(self) -> None:
        with self._lock:
            self._failures += 1
            if self._state == HALF_OPEN or self._failures >= self.failure_threshold:
                if self._state != OPEN:
                    self.opened_count += 1
                self._state = OPEN
                self._opened_at = self._clock()
                self._probe_in_flight = False

    def snapshot(self) -> dict[str, object]:
        return {
            "state": self.state,
            "consecutive_failures": self._failures,
            "opened_count": self.opened_count,
            "failure_threshold": self.failure_threshold,
            "cooldown_seconds": self.cooldown_seconds,
        }
