"""``Webhook``, ``Notification`` and ``Delivery``: what the notifier returns, independent of rows."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from datetime import datetime
from typing import Any, TypeVar

from loopml.storage.metadata.base import UTCDateTime

_UTC = UTCDateTime()
#: Field annotations (strings, under ``from __future__ import annotations``) of stored timestamps.
_TIMESTAMP_TYPES = ("datetime", "datetime | None")
T = TypeVar("T")


def aware(value: Any) -> datetime | None:
    """A stored timestamp as an aware UTC datetime (SQLite RETURNING may give text)."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return _UTC.process_result_value(value, None)


def _iso(out: dict[str, Any]) -> dict[str, Any]:
    return {k: v.isoformat() if isinstance(v, datetime) else v for k, v in out.items()}


@dataclass(frozen=True)
class Webhook:
    """A receiver of notifications. The secret itself is never handed out, only whether one is set."""

    id: int
    name: str
    url: str
    format: str
    topics: tuple[str, ...]
    has_secret: bool
    active: bool
    created_at: datetime
    updated_at: datetime

    def matches(self, topic: str) -> bool:
        """True when one of the webhook's topic prefixes (or ``*``) covers ``topic``."""
        return any(prefix == "*" or topic.startswith(prefix) for prefix in self.topics)

    def to_dict(self) -> dict[str, Any]:
        out = _iso(asdict(self))
        out["topics"] = list(self.topics)
        return out


@dataclass(frozen=True)
class Notification:
    """One thing someone should hear about, stored once per ``key``."""

    id: int
    key: str
    topic: str
    recipient: str
    title: str
    body: str
    data: dict[str, Any]
    created_at: datetime
    read_at: datetime | None

    @property
    def read(self) -> bool:
        return self.read_at is not None

    def to_dict(self) -> dict[str, Any]:
        return _iso(asdict(self))


@dataclass(frozen=True)
class Delivery:
    """One notification sent (or being sent) to one webhook, with the outcome of the last attempt."""

    id: int
    notification_id: int
    webhook_id: int
    webhook: str
    key: str
    topic: str
    status: str
    attempts: int
    last_error: str | None
    response_status: int | None
    job_id: int | None
    created_at: datetime
    updated_at: datetime
    delivered_at: datetime | None

    def to_dict(self) -> dict[str, Any]:
        return _iso(asdict(self))


def _from_row(cls: type[T], row: Any, **given: Any) -> T:
    """Build ``cls`` from a row whose columns carry the field names: every field not in ``given``
    is read from the row, timestamps made aware UTC (SQLite hands them back naive or as text)."""
    values = {
        f.name: aware(getattr(row, f.name)) if f.type in _TIMESTAMP_TYPES else getattr(row, f.name)
        for f in fields(cls)  # type: ignore[arg-type]
        if f.name not in given
    }
    return cls(**values, **given)


def webhook_from_row(row: Any) -> Webhook:
    return _from_row(
        Webhook, row, topics=tuple(row.topics or ()), has_secret=bool(row.secret), active=bool(row.active)
    )


def notification_from_row(row: Any) -> Notification:
    return _from_row(Notification, row, data=dict(row.data or {}))


def delivery_from_row(row: Any) -> Delivery:
    return _from_row(Delivery, row)
