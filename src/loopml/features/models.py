"""Plain, frozen results the feature store returns (JSON-serialisable through ``to_dict()``)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

import pandas as pd


class _Dict:
    def to_dict(self) -> dict[str, Any]:
        return _jsonable(asdict(self))  # type: ignore[call-overload]


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, datetime):
        return value.isoformat()
    return value


@dataclass(frozen=True)
class EntityInfo(_Dict):
    name: str
    join_key: str
    dtype: str
    description: str
    created_at: datetime


@dataclass(frozen=True)
class FeatureViewVersion(_Dict):
    """One registered definition of a view (``number`` grows by one per changed definition)."""

    view: str
    kind: str
    number: int
    fingerprint: str
    entity: str | None
    features: dict[str, str]
    spec: dict[str, Any]
    created_at: datetime
    created_by: str
    created: bool = False  # True when this registration made the version (False: it already existed)

    @property
    def table(self) -> str:
        """Online store table name for this version."""
        return f"{self.view}@{self.number}"


@dataclass(frozen=True)
class FeatureViewInfo(_Dict):
    name: str
    kind: str
    entity: str | None
    latest_version: int
    features: dict[str, str]
    ttl_seconds: float | None
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class MaterialisationResult(_Dict):
    view: str
    version: int
    status: str  # succeeded | skipped | failed
    full: bool
    rows_written: int
    chunks: int
    watermark: datetime | None
    last_segment_id: int
    seconds: float
    message: str = ""


@dataclass(frozen=True)
class PushResult(_Dict):
    view: str
    rows: int
    segment_id: int
    digest: str
    online_rows: int


@dataclass(frozen=True)
class OnlineFeatures(_Dict):
    """Values for each requested key (column-oriented) and, per view, each value's age in seconds.

    ``age_seconds[view][i]`` is ``now - event time`` of the stored row for key ``i`` (``None``: no
    row). Values older than the view's TTL come back as ``None`` with their age, so callers can tell
    "expired" from "never seen". ``degraded`` is set when the store was unreachable and
    ``on_unavailable="missing"`` asked for empty values instead of an error.
    """

    keys: dict[str, list[Any]]
    values: dict[str, list[Any]]
    age_seconds: dict[str, list[float | None]]
    degraded: bool = False

    def rows(self) -> list[dict[str, Any]]:
        n = len(next(iter(self.keys.values()), []))
        names = list(self.values)
        return [
            {**{k: v[i] for k, v in self.keys.items()}, **{c: self.values[c][i] for c in names}}
            for i in range(n)
        ]

    def to_frame(self) -> pd.DataFrame:
        return pd.DataFrame({**self.keys, **self.values})


@dataclass(frozen=True)
class FeatureSkew(_Dict):
    feature: str
    compared: int
    mismatches: int
    examples: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class ViewSkew(_Dict):
    view: str
    version: int
    keys_sampled: int
    missing_online: int
    stale_online: int
    features: list[FeatureSkew]

    @property
    def ok(self) -> bool:
        return (
            self.missing_online == 0
            and self.stale_online == 0
            and all(f.mismatches == 0 for f in self.features)
        )


@dataclass(frozen=True)
class SkewReport(_Dict):
    checked_at: datetime
    views: list[ViewSkew]

    @property
    def ok(self) -> bool:
        return all(v.ok for v in self.views)


@dataclass(frozen=True)
class FeatureStats(_Dict):
    view: str
    version: int
    computed_at: datetime
    stats: dict[str, Any]


@dataclass(frozen=True)
class UsageAudit(_Dict):
    """Which registered features some registered model version uses, and which cost without use."""

    models: dict[str, list[str]]
    used: list[str]
    unused: list[str]
    total: int

    @property
    def unused_share(self) -> float:
        return len(self.unused) / self.total if self.total else 0.0
