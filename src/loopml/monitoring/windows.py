"""Monitor records (``MonitorInfo``, ``MonitorWindow``, ``MonitorRun``) and window arithmetic.

Windows are aligned to the epoch (an hourly window starts on the hour, a daily one at 00:00 UTC), so
two runs, two processes and the database's own bucketing (``floor(epoch / window_seconds)``) agree
on every edge without sharing state. A window is *closed* once ``now`` has passed its end: only
closed windows are computed, so a stored window never changes its drift again.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from loopml.monitoring.spec import MonitorSpec

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def align(at: datetime, window_seconds: int) -> datetime:
    """The start of the window that contains ``at``."""
    seconds = int((at - EPOCH).total_seconds() // window_seconds) * window_seconds
    return EPOCH + timedelta(seconds=seconds)


def bucket_start(bucket: int, window_seconds: int) -> datetime:
    """The start of window number ``bucket`` (what ``labelled_buckets`` returns)."""
    return EPOCH + timedelta(seconds=bucket * window_seconds)


def closed_windows(
    start: datetime, now: datetime, window_seconds: int, limit: int
) -> list[tuple[datetime, datetime]]:
    """``(start, end)`` of up to ``limit`` consecutive windows from ``start`` that ended by ``now``."""
    out = []
    step = timedelta(seconds=window_seconds)
    begin = align(start, window_seconds)
    while begin + step <= now and len(out) < limit:
        out.append((begin, begin + step))
        begin += step
    return out


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


@dataclass(frozen=True)
class MonitorInfo:
    """A monitor as stored: its spec, revision, reference and how far it has computed."""

    name: str
    endpoint: str
    spec: MonitorSpec
    revision: int
    reference_digest: str | None
    reference: dict[str, Any] | None
    watermark: datetime | None
    last_run_at: datetime | None
    created_at: datetime
    updated_at: datetime

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "endpoint": self.endpoint,
            "spec": self.spec.to_dict(),
            "revision": self.revision,
            "reference_digest": self.reference_digest,
            "reference": self.reference,
            "watermark": _iso(self.watermark),
            "last_run_at": _iso(self.last_run_at),
            "created_at": _iso(self.created_at),
            "updated_at": _iso(self.updated_at),
        }


@dataclass(frozen=True)
class MonitorWindow:
    """One closed window: rows seen, labelled rows, the drift report and the performance report.

    ``drift`` is ``DriftReport.to_dict()`` (None when the window had fewer than ``min_rows`` rows);
    ``performance`` is ``performance_report(...)`` (None until ``min_rows`` labels arrived).
    ``computed_at`` is when the window was first computed, ``updated_at`` when its performance was
    last recomputed for late labels.
    """

    monitor: str
    window_start: datetime
    window_end: datetime
    rows: int
    labelled: int
    drift: dict[str, Any] | None
    performance: dict[str, Any] | None
    computed_at: datetime
    updated_at: datetime | None = None

    @property
    def drifted_features(self) -> list[str]:
        return list((self.drift or {}).get("drifted_features", []))

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        for key in ("window_start", "window_end", "computed_at", "updated_at"):
            out[key] = _iso(out[key])
        return out


@dataclass(frozen=True)
class MonitorRun:
    """What one ``run`` did: windows computed and recomputed, rows read, and any error."""

    monitor: str
    windows_computed: int = 0
    windows_recomputed: int = 0
    rows_read: int = 0
    watermark: datetime | None = None
    reference_built: bool = False
    drifted_windows: list[str] = field(default_factory=list)
    pending_windows: int = 0
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["watermark"] = _iso(self.watermark)
        out["ok"] = self.ok
        return out
