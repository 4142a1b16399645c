"""``Alert``: an alert as stored, independent of the database row it came from."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from loopml.storage.metadata import alerts as a
from loopml.storage.metadata.base import UTCDateTime

SEVERITIES = a.SEVERITIES
STATUSES = a.STATUSES

_DATETIMES = ("created_at", "updated_at", "resolved_at", "last_fired_at")
_UTC = UTCDateTime()


@dataclass(frozen=True)
class Alert:
    """One incident: what is wrong (``title``, ``detail``, ``data``), how bad, and its life so far."""

    id: int
    key: str
    severity: str
    title: str
    detail: str
    source: str
    status: str
    data: dict[str, Any]
    created_at: datetime
    updated_at: datetime
    resolved_at: datetime | None
    fire_count: int
    last_fired_at: datetime

    @property
    def is_open(self) -> bool:
        return self.status == a.OPEN

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (datetimes as ISO 8601 strings)."""
        out = asdict(self)
        for key in _DATETIMES:
            if out[key] is not None:
                out[key] = out[key].isoformat()
        return out


def alert_from_row(row: Any) -> Alert:
    values = row._asdict()
    for key in _DATETIMES:
        # RETURNING on SQLite can hand back the stored text; normalise to aware UTC datetimes.
        value = values[key]
        if isinstance(value, str):
            value = datetime.fromisoformat(value)
        values[key] = _UTC.process_result_value(value, None)
    return Alert(**values)
