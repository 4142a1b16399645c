"""What the dataset service returns: frozen, JSON-serialisable records (never ORM objects)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from datetime import date, datetime
from typing import Any

import numpy as np
import pandas as pd

from loopml.errors import ValidationError


@dataclass(frozen=True)
class DatasetInfo:
    """A named dataset: its current contract and where its version history stands."""

    id: int
    name: str
    description: str
    contract: dict[str, Any]
    latest_version: int | None
    version_count: int
    created_at: datetime
    updated_at: datetime
    #: True once the dataset received a partitioned ingest (its versions are partition manifests)
    partitioned: bool = False

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["created_at"] = self.created_at.isoformat()
        out["updated_at"] = self.updated_at.isoformat()
        if not self.partitioned:
            del out["partitioned"]  # plain datasets keep their original shape
        return out


@dataclass(frozen=True)
class DatasetVersion:
    """One immutable version: a Parquet blob (by content digest) plus its statistics and contract."""

    id: int
    dataset: str
    number: int
    digest: str
    row_count: int
    stats: dict[str, dict[str, Any]]
    created_at: datetime
    uri: str
    contract: dict[str, Any] = field(default_factory=dict)
    rows_in: int = 0
    rows_quarantined: int = 0
    size_bytes: int = 0
    source: str | None = None
    actor: str = "system"
    #: partitioned datasets: how many partitions the manifest has (None for a plain version)
    partition_count: int | None = None
    #: partitioned datasets: the keys this version's ingest wrote (its ``stats`` cover only these rows)
    partitions_delivered: list[str] | None = None

    @property
    def ref(self) -> str:
        """``name@N``: how SQL queries, lineage and the CLI refer to this version."""
        return f"{self.dataset}@{self.number}"

    @property
    def partitioned(self) -> bool:
        """True when ``digest`` names a partition manifest rather than one Parquet file."""
        return self.partition_count is not None

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["created_at"] = self.created_at.isoformat()
        out["ref"] = self.ref
        if not self.partitioned:
            del out["partition_count"], out["partitions_delivered"]
        return out


@dataclass(frozen=True)
class PartitionInfo:
    """One partition of a partitioned version: its key, row count and Parquet blob."""

    key: str
    rows: int
    digest: str
    size_bytes: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class CheckSummary:
    """How many rows failed one check on one column, with a few offending values."""

    column: str
    check: str
    rows: int
    examples: list[Any]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class IngestReport:
    """Everything an ingest decided, readable by people (``render()``) and machines (``to_dict()``)."""

    dataset: str
    attempt: str
    source: str
    rows_in: int
    rows_ok: int
    rows_quarantined: int
    max_bad_share: float
    accepted: bool
    checks: list[CheckSummary]
    warnings: list[str] = field(default_factory=list)
    version: int | None = None
    new_version: bool = False
    newest: str | None = None
    stale: bool | None = None
    #: partitioned ingests: the keys written by this ingest, and the partition count of the version
    partitions: list[str] | None = None
    partition_count: int | None = None

    @property
    def bad_share(self) -> float:
        return self.rows_quarantined / self.rows_in if self.rows_in else 0.0

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["bad_share"] = round(self.bad_share, 6)
        if self.partitions is None:
            del out["partitions"], out["partition_count"]
        return out

    def render(self) -> str:
        """A plain-text report: verdict, counts, then each failed check with example values."""
        if self.accepted:
            what = f"version {self.version}" + (
                "" if self.new_version else " (unchanged: same rows as the latest version)"
            )
            head = f"ingest of {self.dataset!r} from {self.source} accepted as {what}"
        else:
            head = f"ingest of {self.dataset!r} from {self.source} REFUSED"
        lines = [
            head,
            f"  rows in: {self.rows_in}, ok: {self.rows_ok}, quarantined: {self.rows_quarantined} "
            f"({self.bad_share:.2%} bad; the contract allows {self.max_bad_share:.2%})",
        ]
        if self.checks:
            lines.append("  failed checks:")
            for c in self.checks:
                examples = ", ".join(repr(v) for v in c.examples)
                lines.append(f"    - {c.column}: {c.check} failed on {c.rows} row(s), e.g. {examples}")
        if self.partitions is not None:
            lines.append(
                f"  partitions: {describe_keys(self.partitions)}"
                + (f"; the version has {self.partition_count}" if self.partition_count is not None else "")
            )
        lines.extend(f"  warning: {w}" for w in self.warnings)
        if not self.accepted:
            lines.append(
                f"  the rows are kept in quarantine (attempt {self.attempt}): "
                f"loopml datasets quarantine {self.dataset}. Fix the source, or relax the contract "
                "(define) if the data is right and the contract is wrong."
            )
        return "\n".join(lines)


@dataclass(frozen=True)
class IngestResult:
    """``ingest()``'s answer: the version the good rows are in and the report of what was quarantined."""

    version: DatasetVersion
    rows_in: int
    rows_ok: int
    rows_quarantined: int
    report: IngestReport

    @property
    def created(self) -> bool:
        """False when the rows were identical to the latest version, which is returned instead."""
        return self.report.new_version

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": self.version.to_dict(),
            "rows_in": self.rows_in,
            "rows_ok": self.rows_ok,
            "rows_quarantined": self.rows_quarantined,
            "report": self.report.to_dict(),
        }


@dataclass(frozen=True)
class Freshness:
    """How old the newest row of the latest version is, against the contract's ``max_age``."""

    dataset: str
    version: int | None
    column: str
    newest: str | None
    age_seconds: float | None
    max_age_seconds: float | None
    stale: bool
    checked_at: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class IngestRefusedError(ValidationError):
    """The share of bad rows is above the contract's limit; ``.report`` says which checks failed."""

    def __init__(self, report: IngestReport) -> None:
        super().__init__(report.render())
        self.report = report


def describe_keys(keys: list[str], *, shown: int = 3) -> str:
    """``'2026-11-29'``, or ``'1100 (2023-01-02 .. 2026-01-05)'`` for long lists."""
    if len(keys) <= shown:
        return ", ".join(keys) if keys else "none"
    return f"{len(keys)} ({keys[0]} .. {keys[-1]})"


def jsonable(value: Any) -> Any:
    """Turn pandas/numpy scalars, timestamps and missing values into plain JSON values."""
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float):
        return None if math.isnan(value) else (str(value) if math.isinf(value) else value)
    if isinstance(value, (str, int, bool)):
        return value
    if isinstance(value, (pd.Timestamp, datetime, date)):
        return value.isoformat()
    return str(value)
