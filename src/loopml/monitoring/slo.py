"""Service level objectives with error budgets (``lm.slos``).

An SLO says what "good" is for one thing users feel (a p99 latency, an error rate, how long work
waits in a queue, how stale a dataset is, whether a scheduled pipeline ran) and how much "bad" is
acceptable over a period (the error budget). Evaluating an SLO measures its value over the last
window, stores the reading in ``slo_evaluations`` and reports how much budget is left, so alert
rules (``lm.alert_rules``, source ``slo``) can page on a fast burn instead of on every blip.
The measurements and the budget formulas are in ``loopml.monitoring.slo_sources``.
"""

from __future__ import annotations

import builtins
import logging
import math
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any

from loopml.checks import check_choice, check_keys, check_number
from loopml.context import Context
from loopml.errors import ConflictError, LoopmlError, NotFoundError, ValidationError, did_you_mean
from loopml.monitoring import slo_sources as src
from loopml.monitoring.spec_checks import (
    as_utc,
    check_description,
    check_name,
    check_now,
    check_same_name,
    spec_fields,
)
from loopml.storage.metadata import monitoring_rules as q
from loopml.storage.metadata.base import utcnow
from loopml.storage.metadata.core import record_event

log = logging.getLogger("loopml.slos")

KINDS = src.KINDS
#: Window bounds: a minute (anything shorter is noise) to 90 days.
WINDOW_MIN, WINDOW_MAX = 60, 90 * 86400
DEFAULT_BUDGET = {"good_ratio": 0.99, "period_days": 28}
HISTORY_MAX = 10_000

#: Allowed and required target keys per kind (one of the ``choice`` keys is required).
_TARGET_KEYS: dict[str, dict[str, tuple[str, ...]]] = {
    "latency": {"allowed": ("endpoint", "percentile"), "required": ("endpoint",)},
    "error_rate": {"allowed": ("endpoint",), "required": ("endpoint",)},
    "queue_age": {"allowed": ("queue", "async_kind", "status"), "choice": ("queue", "async_kind")},
    "freshness": {"allowed": ("dataset", "feature_view"), "choice": ("dataset", "feature_view")},
    "schedule": {"allowed": ("pipeline", "grace_seconds"), "required": ("pipeline",)},
}
_OBJECTIVE_UNIT = {
    "latency": "milliseconds",
    "error_rate": "a share of requests from 0 to 1",
    "queue_age": "seconds",
    "freshness": "seconds",
    "schedule": "missed ticks",
}


def _label(value: Any, field: str, max_len: int = 200) -> str:
    if not isinstance(value, str) or not value.strip() or not value.isprintable() or len(value) > max_len:
        raise ValidationError(
            f"{field}={value!r}: use a non-empty one-line name of at most {max_len} characters", field=field
        )
    return value


def _target(kind: str, target: Any) -> dict[str, Any]:
    if not isinstance(target, dict):
        raise ValidationError(
            f"target must be a dict for kind {kind!r}, e.g. {_example(kind)}; got {target!r}", field="target"
        )
    keys = _TARGET_KEYS[kind]
    check_keys(
        target, keys["allowed"], where="target", owner=f"a {kind} SLO", required=keys.get("required", ())
    )
    choice = keys.get("choice")
    if choice and sum(k in target for k in choice) != 1:
        raise ValidationError(
            f"target: give exactly one of {' or '.join(choice)} for a {kind} SLO, e.g. {_example(kind)}",
            field="target",
        )
    out: dict[str, Any] = {}
    for key, value in target.items():
        if key == "percentile":
            out[key] = check_number(
                value, "target.percentile", low=0, high=100, low_open=True, hint="e.g. 99"
            )
        elif key == "status" and "async_kind" not in target:
            raise ValidationError(
                "target.status applies to async_kind (the request status that means waiting)",
                field="target.status",
            )
        elif key == "grace_seconds":
            out[key] = check_number(value, "target.grace_seconds", low=0, high=WINDOW_MAX, hint="e.g. 300")
        else:
            out[key] = _label(value, f"target.{key}")
    if kind == "latency":
        out.setdefault("percentile", 99.0)
    return out


def _example(kind: str) -> str:
    return {
        "latency": '{"endpoint": "fraud", "percentile": 99}',
        "error_rate": '{"endpoint": "fraud"}',
        "queue_age": '{"queue": "default"}',
        "freshness": '{"dataset": "transactions"}',
        "schedule": '{"pipeline": "demand.weekly", "grace_seconds": 600}',
    }[kind]


def _budget(value: Any) -> dict[str, float]:
    if not isinstance(value, dict):
        raise ValidationError(f"budget must be a dict like {DEFAULT_BUDGET}; got {value!r}", field="budget")
    check_keys(value, ("good_ratio", "period_days"), where="budget", owner="the error budget")
    merged = {**DEFAULT_BUDGET, **value}
    return {
        "good_ratio": check_number(
            merged["good_ratio"],
            "budget.good_ratio",
            low=0,
            high=1,
            low_open=True,
            high_open=True,
            hint="the share of good events promised, e.g. 0.99",
        ),
        "period_days": check_number(
            merged["period_days"], "budget.period_days", low=0, high=365, low_open=True
        ),
    }


@dataclass(frozen=True)
class SloSpec:
    """An SLO definition. ``objective`` is in the kind's unit (ms, share, seconds, missed ticks);
    a reading is good when ``value <= objective``. ``window_seconds`` is how far back one reading
    looks; ``budget`` is the promise (``good_ratio``) over ``period_days``."""

    name: str
    kind: str
    target: dict[str, Any]
    objective: float
    window_seconds: int = 3600
    budget: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_BUDGET))
    description: str = ""

    def __init__(
        self,
        name: str,
        kind: str,
        *,
        target: dict[str, Any],
        objective: float,
        window_seconds: int = 3600,
        budget: dict[str, float] | None = None,
        description: str = "",
    ) -> None:
        kind = check_choice(kind, "kind", KINDS, hint="see docs/slos.md for what each measures")
        objective = check_number(
            objective, "objective", low=0, hint=f"a {kind} objective is in {_OBJECTIVE_UNIT[kind]}"
        )
        if kind == "error_rate" and objective > 1:
            raise ValidationError(
                f"objective must be between 0 and 1 for an error_rate SLO (0.01 = 1 %); got {objective!r}",
                field="objective",
            )
        values = {
            "name": check_name(name),
            "kind": kind,
            "target": _target(kind, target),
            "objective": objective,
            "window_seconds": check_number(
                window_seconds,
                "window_seconds",
                low=WINDOW_MIN,
                high=WINDOW_MAX,
                integer=True,
                whole_floats=True,
            ),
            "budget": _budget(DEFAULT_BUDGET if budget is None else budget),
            "description": check_description(description),
        }
        for key, value in values.items():
            object.__setattr__(self, key, value)

    @property
    def window(self) -> timedelta:
        return timedelta(seconds=self.window_seconds)

    @property
    def period(self) -> timedelta:
        return timedelta(days=self.budget["period_days"])

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Any, *, name: str | None = None) -> SloSpec:
        """Build from JSON (an HTTP body, a stored spec); unknown keys are refused by name."""
        data = spec_fields(data, name=name, what="an SLO spec")
        allowed = ("name", "kind", "target", "objective", "window_seconds", "budget", "description")
        check_keys(data, allowed, owner="an SLO spec", required=("name", "kind", "target", "objective"))
        return cls(data.pop("name"), data.pop("kind"), **data)


@dataclass(frozen=True)
class SloEvaluation:
    """One reading of an SLO: ``value`` (None = nothing to measure in the window), whether it met
    the objective, the budget left over the period (1.0 untouched, < 0 exhausted) and the burn rate."""

    slo: str
    at: datetime
    value: float | None
    ok: bool
    budget_remaining: float | None
    burn_rate: float | None
    data: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["at"] = self.at.isoformat()
        return out


@dataclass(frozen=True)
class SloInfo:
    """A stored SLO: its spec and when it was created / changed."""

    spec: SloSpec
    created_at: datetime
    updated_at: datetime

    @property
    def name(self) -> str:
        return self.spec.name

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.spec.to_dict(),
            "created_at": self.created_at.isoformat(),
            "updated_at": self.updated_at.isoformat(),
        }


class Slos:
    """The SLO service. Stateless apart from the context, so one instance serves all threads."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    # -- definitions -------------------------------------------------------------------------
    def create(self, spec: SloSpec | dict[str, Any], *, actor: str = "system") -> SloInfo:
        """Define an SLO (``ConflictError`` when the name is taken)."""
        spec = self._spec(spec)
        now = utcnow()
        with self.ctx.db.session() as session:
            if q.get_slo(session, spec.name) is not None:
                raise ConflictError(
                    f"SLO {spec.name!r} exists already; use update() or delete it first", field="name"
                )
            row = q.insert_slo(session, name=spec.name, spec=spec.to_dict(), now=now)
            record_event(session, "slo.created", "slo", spec.name, actor=actor, data=spec.to_dict())
            return _info(row)

    def update(self, name: str, spec: SloSpec | dict[str, Any], *, actor: str = "system") -> SloInfo:
        """Replace an SLO's definition; its history stays (a changed objective applies from now on)."""
        name = check_name(name)
        spec = self._spec(spec, name=name)
        check_same_name(spec.name, name, "SLO")
        with self.ctx.db.session() as session:
            if not q.update_slo(session, name, spec=spec.to_dict(), now=utcnow()):
                raise self._not_found(session, name)
            record_event(session, "slo.updated", "slo", name, actor=actor, data=spec.to_dict())
            return _info(q.get_slo(session, name))

    def delete(self, name: str, *, actor: str = "system") -> None:
        """Delete an SLO and its evaluation history."""
        name = check_name(name)
        with self.ctx.db.session() as session:
            if not q.delete_slo(session, name):
                raise self._not_found(session, name)
            record_event(session, "slo.deleted", "slo", name, actor=actor)

    def get(self, name: str) -> SloInfo:
        name = check_name(name)
        with self.ctx.db.session() as session:
            row = q.get_slo(session, name)
            if row is None:
                raise self._not_found(session, name)
            return _info(row)

    def list(self) -> builtins.list[SloInfo]:
        with self.ctx.db.session() as session:
            return [_info(row) for row in q.list_slos(session)]

    # -- evaluation --------------------------------------------------------------------------
    def evaluate(self, name: str, *, now: datetime | None = None) -> SloEvaluation:
        """Measure the SLO over its window ending at ``now``, store the reading and return it."""
        now = check_now(now)
        spec = self.get(name).spec
        good_ratio = spec.budget["good_ratio"]
        measured = src.measure(self.ctx, spec.kind, spec.target, spec.objective, spec.window, now)
        ok = measured.value is None or measured.value <= spec.objective
        if spec.kind == "freshness" and measured.value is None:
            ok = False  # never delivered is as stale as it gets
        data: dict[str, Any] = {"kind": spec.kind, "objective": spec.objective, **measured.data}
        if spec.kind in src.REQUEST_KINDS:
            total, bad = src.request_budget(
                self.ctx, spec.kind, spec.target, spec.objective, since=now - spec.period, until=now
            )
            burn = src.burn_rate(measured.requests or 0, measured.bad_requests or 0, good_ratio)
        with self.ctx.db.session() as session:
            row = q.get_slo(session, spec.name)
            if row is None:
                raise self._not_found(session, spec.name)
            if spec.kind not in src.REQUEST_KINDS:
                # Event-based: this evaluation plus the stored ones in the period / the window.
                total, bad = q.evaluation_counts(session, row.id, since=now - spec.period, until=now)
                total, bad = total + 1, bad + (0 if ok else 1)
                w_total, w_bad = q.evaluation_counts(session, row.id, since=now - spec.window, until=now)
                burn = src.burn_rate(w_total + 1, w_bad + (0 if ok else 1), good_ratio)
            remaining = src.budget_remaining(total, bad, good_ratio)
            data.update(budget_events=total, budget_bad=bad, burn_rate=burn)
            value = measured.value if measured.value is None or math.isfinite(measured.value) else None
            q.insert_evaluation(
                session, slo_id=row.id, at=now, value=value, ok=ok, budget_remaining=remaining, data=data
            )
        return SloEvaluation(spec.name, now, value, ok, remaining, burn, data)

    def evaluate_all(self, now: datetime | None = None) -> builtins.list[SloEvaluation]:
        """Evaluate every SLO; one that cannot be measured (its dataset was deleted ...) is logged
        and skipped so it does not hide the others."""
        now = check_now(now)
        out = []
        for info in self.list():
            try:
                out.append(self.evaluate(info.name, now=now))
            except LoopmlError as exc:
                log.warning("SLO %s not evaluated: %s", info.name, exc)
        return out

    def history(
        self, name: str, *, since: datetime | None = None, limit: int = 500
    ) -> builtins.list[SloEvaluation]:
        """Stored readings, oldest first (the newest ``limit`` since ``since``)."""
        name = check_name(name)
        limit = check_number(limit, "limit", low=1, high=HISTORY_MAX, integer=True)
        since = None if since is None else check_now(since, "since")
        with self.ctx.db.session() as session:
            row = q.get_slo(session, name)
            if row is None:
                raise self._not_found(session, name)
            rows = q.list_evaluations(session, row.id, since=since, limit=limit)
            return [_evaluation(name, r) for r in rows]

    def status(self) -> builtins.list[dict[str, Any]]:
        """One line per SLO for a dashboard: latest value, ok and budget left (None if never evaluated)."""
        with self.ctx.db.session() as session:
            slos = q.list_slos(session)
            latest = q.latest_evaluations(session)
            out = []
            for row in slos:
                spec = row.spec
                ev = latest.get(row.id)
                out.append(
                    {
                        "name": row.name,
                        "kind": spec["kind"],
                        "target": spec["target"],
                        "objective": spec["objective"],
                        "good_ratio": spec["budget"]["good_ratio"],
                        "value": None if ev is None else ev.value,
                        "ok": None if ev is None else ev.ok,
                        "budget_remaining": None if ev is None else ev.budget_remaining,
                        "burn_rate": None if ev is None else ev.data.get("burn_rate"),
                        "evaluated_at": None if ev is None else as_utc(ev.at).isoformat(),
                    }
                )
            return out

    # -- helpers -----------------------------------------------------------------------------
    @staticmethod
    def _spec(spec: Any, *, name: str | None = None) -> SloSpec:
        if isinstance(spec, SloSpec):
            return spec
        return SloSpec.from_dict(spec, name=name)

    @staticmethod
    def _not_found(session: Any, name: str) -> NotFoundError:
        return NotFoundError(
            f"SLO {name!r} does not exist." + did_you_mean(name, q.slo_names(session)), field="name"
        )


def _info(row: Any) -> SloInfo:
    return SloInfo(SloSpec.from_dict(row.spec), as_utc(row.created_at), as_utc(row.updated_at))


def _evaluation(name: str, row: Any) -> SloEvaluation:
    data = dict(row.data or {})
    return SloEvaluation(
        name, as_utc(row.at), row.value, bool(row.ok), row.budget_remaining, data.get("burn_rate"), data
    )
