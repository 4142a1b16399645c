"""``AsyncRequest``: one asynchronous-inference request as stored, independent of its database row."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from loopml.storage.metadata.base import UTCDateTime

_DATETIMES = ("created_at", "updated_at", "finished_at")
_UTC = UTCDateTime()


@dataclass(frozen=True)
class AsyncRequest:
    """A request's whole state: what came in (``input_digest``, ``meta``, ``tags``), where it is
    (``status``, ``revision``, ``job_id``) and what came out (``result``, ``error``, ``decided_by``)."""

    id: str
    kind: str
    status: str
    input_digest: str | None
    fingerprint: str | None
    meta: dict[str, Any]
    tags: list[str] = field(default_factory=list)
    result: dict[str, Any] | None = None
    error: str | None = None
    revision: int = 1
    job_id: int | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None
    finished_at: datetime | None = None
    decided_by: str | None = None

    @property
    def finished(self) -> bool:
        return self.finished_at is not None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (datetimes as ISO 8601 strings)."""
        out = asdict(self)
        for key in _DATETIMES:
            if out[key] is not None:
                out[key] = out[key].isoformat()
        return out


def request_from_row(row: Any, tags: list[str]) -> AsyncRequest:
    values = row._asdict()
    for key in _DATETIMES:
        value = values[key]
        if isinstance(value, str):
            value = datetime.fromisoformat(value)
        values[key] = _UTC.process_result_value(value, None)
    values["meta"] = values["meta"] or {}
    return AsyncRequest(tags=list(tags), **values)
