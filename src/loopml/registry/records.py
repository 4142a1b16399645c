"""What the registry returns: frozen, JSON-serialisable records (never ORM objects)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def json_safe(value: Any) -> Any:
    """NaN/inf become strings and tuples lists, so ``to_dict()`` is always valid JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    return value


@dataclass(frozen=True)
class ModelVersion:
    """One immutable registered version: artifact + flavor + signature + metrics + lineage."""

    id: int
    model: str
    number: int
    flavor: str
    digest: str
    signature: dict[str, Any]
    metrics: dict[str, Any]
    lineage: dict[str, Any]
    run_id: str | None
    status: str
    description: str
    created_at: datetime
    created_by: str
    flavor_meta: dict[str, Any] = field(default_factory=dict)
    aliases: tuple[str, ...] = ()

    @property
    def ref(self) -> str:
        return f"{self.model}/{self.number}"

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["created_at"] = _iso(self.created_at)
        out["aliases"] = list(self.aliases)
        out["ref"] = self.ref
        return json_safe(out)


@dataclass(frozen=True)
class ModelInfo:
    """A model name with its version count, latest version and current aliases."""

    id: int
    name: str
    description: str
    created_at: datetime
    version_count: int
    latest_version: int | None
    aliases: dict[str, int] = field(default_factory=dict)
    protected: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["created_at"] = _iso(self.created_at)
        out["protected"] = list(self.protected)
        return out


@dataclass(frozen=True)
class AliasInfo:
    alias: str
    version: int
    updated_at: datetime
    updated_by: str
    protected: bool
    gates: tuple[dict[str, Any], ...] = ()

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["updated_at"] = _iso(self.updated_at)
        out["gates"] = list(self.gates)
        return out


@dataclass(frozen=True)
class GateResult:
    """The outcome of one gate for one candidate; ``details`` holds the figures behind the verdict."""

    gate: str
    passed: bool
    summary: str
    details: dict[str, Any] = field(default_factory=dict)
    dataset_version_id: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return json_safe(asdict(self))


@dataclass(frozen=True)
class GateReport:
    """Every gate evaluated for one promotion, and whether the alias moved."""

    model: str
    version: int
    alias: str
    passed: bool
    moved: bool
    evaluation_id: str
    results: tuple[GateResult, ...] = ()
    previous_version: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "version": self.version,
            "alias": self.alias,
            "passed": self.passed,
            "moved": self.moved,
            "evaluation_id": self.evaluation_id,
            "previous_version": self.previous_version,
            "results": [r.to_dict() for r in self.results],
        }

    def render(self) -> str:
        """Plain-text report (used in ConflictError messages and logs; the CLI draws a Rich table)."""
        head = (
            f"{self.model}/{self.version} -> {self.alias}: "
            f"{'all gates passed' if self.passed else 'BLOCKED by release gates'}"
        )
        lines = [head]
        for r in self.results:
            lines.append(f"  [{'pass' if r.passed else 'FAIL'}] {r.gate}: {r.summary}")
        if not self.results:
            lines.append("  (alias is not protected: no gates)")
        return "\n".join(lines)


@dataclass(frozen=True)
class AliasMove:
    """One alias change as recorded in the audit trail."""

    model: str
    alias: str
    from_version: int | None
    to_version: int
    actor: str
    reason: str | None
    forced: bool
    kind: str
    at: datetime
    evaluation_id: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["at"] = _iso(self.at)
        return out


@dataclass(frozen=True)
class Protection:
    """The gates a protected alias only moves through."""

    model: str
    alias: str
    gates: tuple[dict[str, Any], ...]
    created_at: datetime
    created_by: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "alias": self.alias,
            "gates": list(self.gates),
            "created_at": _iso(self.created_at),
            "created_by": self.created_by,
        }
