"""``LoopRun`` / ``LoopStep`` / ``PolicyInfo``: the closed loop's records, independent of database rows."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from loopml.monitoring.actions import ActionPolicy
from loopml.storage.metadata import loop as q


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


@dataclass(frozen=True)
class LoopStep:
    """One transition of a run: which step, ok | waiting | failed | skipped, why (``detail``), figures (``data``)."""

    id: int
    run_id: int
    step: str
    status: str
    detail: str
    data: dict[str, Any]
    at: datetime

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "run_id": self.run_id,
            "step": self.step,
            "status": self.status,
            "detail": self.detail,
            "data": self.data,
            "at": self.at.isoformat(),
        }


@dataclass(frozen=True)
class LoopRun:
    """One pass of the loop for one policy: where it is (``status``, ``stage``), what it releases, and why."""

    id: int
    policy: str
    status: str
    stage: str
    alert_id: int | None
    alert_key: str | None
    endpoint: str | None
    model: str | None
    baseline: str | None
    candidate: str | None
    pipeline_run_id: str | None
    outcome: str | None
    data: dict[str, Any]
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None
    decided_by: str | None
    steps: tuple[LoopStep, ...] = field(default=())

    @property
    def active(self) -> bool:
        return self.status in q.ACTIVE_STATUSES

    @property
    def terminal(self) -> bool:
        return not self.active

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "policy": self.policy,
            "status": self.status,
            "stage": self.stage,
            "alert_id": self.alert_id,
            "alert_key": self.alert_key,
            "endpoint": self.endpoint,
            "model": self.model,
            "baseline": self.baseline,
            "candidate": self.candidate,
            "pipeline_run_id": self.pipeline_run_id,
            "outcome": self.outcome,
            "data": self.data,
            "created_at": self.created_at.isoformat(),
            "updated_at": self.updated_at.isoformat(),
            "finished_at": _iso(self.finished_at),
            "decided_by": self.decided_by,
            "steps": [s.to_dict() for s in self.steps],
        }


@dataclass(frozen=True)
class PolicyInfo:
    """A stored policy with its timestamps."""

    policy: ActionPolicy
    created_at: datetime
    updated_at: datetime

    @property
    def name(self) -> str:
        return self.policy.name

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.policy.to_dict(),
            "created_at": self.created_at.isoformat(),
            "updated_at": self.updated_at.isoformat(),
        }


def step_from_row(row: q.LoopStepRow) -> LoopStep:
    return LoopStep(
        id=row.id,
        run_id=row.loop_run_id,
        step=row.step,
        status=row.status,
        detail=row.detail,
        data=dict(row.data or {}),
        at=row.at,
    )


def run_from_row(row: q.LoopRunRow, steps: list[q.LoopStepRow] | None = None) -> LoopRun:
    return LoopRun(
        id=row.id,
        policy=row.policy,
        status=row.status,
        stage=row.stage,
        alert_id=row.alert_id,
        alert_key=row.alert_key,
        endpoint=row.endpoint,
        model=row.model,
        baseline=row.baseline,
        candidate=row.candidate,
        pipeline_run_id=row.pipeline_run_id,
        outcome=row.outcome,
        data=dict(row.data or {}),
        created_at=row.created_at,
        updated_at=row.updated_at,
        finished_at=row.finished_at,
        decided_by=row.decided_by,
        steps=tuple(step_from_row(s) for s in steps or ()),
    )


def policy_from_row(row: q.ActionPolicyRow) -> PolicyInfo:
    policy = ActionPolicy.from_dict({**row.spec, "name": row.name, "enabled": bool(row.enabled)})
    return PolicyInfo(policy=policy, created_at=row.created_at, updated_at=row.updated_at)
