"""Alert rules (``lm.alert_rules``): turn monitor windows and SLO readings into alerts.

A rule names one number (a drift statistic, a performance metric, an SLO's budget ...), a
comparison and a threshold. ``evaluate`` reads the newest ``for_windows`` windows (or SLO
evaluations); when the condition holds on all of them it fires ``rule:<name>`` through
``lm.alerts`` (deduplicated while open, so a rule evaluated every few minutes bumps one alert),
and when the condition no longer holds it resolves that alert. ``for_windows > 1`` asks for a
persistent problem (three drifted windows in a row, not one noisy hour). Missing data neither
fires nor resolves: no evidence is not evidence of health.
"""

from __future__ import annotations

import builtins
import operator
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from loopml.alerts import SEVERITIES, Alerts
from loopml.checks import check_choice, check_keys, check_number
from loopml.context import Context
from loopml.errors import ConflictError, NotFoundError, ValidationError, did_you_mean
from loopml.monitoring.spec import PREDICTION
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

SOURCES = ("drift", "performance", "slo")
OPS: dict[str, Callable[[float, float], bool]] = {
    ">": operator.gt,
    ">=": operator.ge,
    "<": operator.lt,
    "<=": operator.le,
    "==": operator.eq,
    "!=": operator.ne,
}
DRIFT_METRICS = ("share_drifted", "dataset_drifted", "prediction")
DRIFT_PREFIXES = ("feature:", "drifted:")
SLO_METRICS = ("ok", "value", "budget_remaining", "burn_rate")
#: The drift report's column name for the model output.
PREDICTION_KEY = PREDICTION
FOR_WINDOWS_MAX = 1000
_IDENT = re.compile(r"^[A-Za-z0-9_.\-]{1,100}$")
_GAP = re.compile(r"^gap:([^:]{1,100}):([A-Za-z0-9_.\-]{1,100})$")
EVENT_PREFIX = "alert_rule"


def _metric(source: str, metric: Any) -> str:
    if not isinstance(metric, str) or not metric:
        raise ValidationError(f"metric must be a non-empty string; got {metric!r}", field="metric")
    if source == "drift":
        if metric in DRIFT_METRICS:
            return metric
        for prefix in DRIFT_PREFIXES:
            if metric.startswith(prefix) and 0 < len(metric) - len(prefix) <= 200:
                return metric
        raise ValidationError(
            f"metric={metric!r} is not a drift metric: use share_drifted, dataset_drifted, prediction, "
            "feature:<column> (its statistic) or drifted:<column> (1/0)",
            field="metric",
        )
    if source == "slo":
        return check_choice(metric, "metric", SLO_METRICS, hint="the SLO reading to compare")
    if _IDENT.match(metric) or _GAP.match(metric):
        return metric
    raise ValidationError(
        f"metric={metric!r} is not a performance metric: use a metric name (auc, precision, recall, "
        "mae, wape ...) or gap:<slice column>:<metric>",
        field="metric",
    )


@dataclass(frozen=True)
class RuleSpec:
    """When to alert: ``metric op threshold`` on the last ``for_windows`` windows of ``monitor``
    (sources ``drift``, ``performance``) or readings of ``slo`` (source ``slo``). ``min_rows``
    skips windows with fewer rows (drift) or labelled rows (performance) than that."""

    name: str
    source: str
    monitor: str | None
    slo: str | None
    metric: str
    op: str
    threshold: float
    for_windows: int = 1
    severity: str = "warning"
    min_rows: int = 0
    description: str = ""

    def __init__(
        self,
        name: str,
        source: str,
        *,
        monitor: str | None = None,
        slo: str | None = None,
        metric: str,
        op: str,
        threshold: float,
        for_windows: int = 1,
        severity: str = "warning",
        min_rows: int = 0,
        description: str = "",
    ) -> None:
        source = check_choice(source, "source", SOURCES)
        if source == "slo":
            if slo is None or monitor is not None:
                raise ValidationError(
                    "an slo rule names the SLO (slo='checkout-latency') and no monitor", field="slo"
                )
            slo = check_name(slo, "slo")
        else:
            if monitor is None or slo is not None:
                raise ValidationError(
                    f"a {source} rule names the monitor (monitor='fraud') and no slo", field="monitor"
                )
            monitor = check_name(monitor, "monitor")
        min_rows = check_number(min_rows, "min_rows", low=0, high=2**31 - 1, integer=True, whole_floats=True)
        if source == "slo" and min_rows:
            raise ValidationError(
                "min_rows applies to monitor windows; leave it 0 for an slo rule", field="min_rows"
            )
        values = {
            "name": check_name(name),
            "source": source,
            "monitor": monitor,
            "slo": slo,
            "metric": _metric(source, metric),
            "op": check_choice(op, "op", tuple(OPS)),
            "threshold": check_number(threshold, "threshold"),
            "for_windows": check_number(
                for_windows, "for_windows", low=1, high=FOR_WINDOWS_MAX, integer=True, whole_floats=True
            ),
            "severity": check_choice(severity, "severity", SEVERITIES),
            "min_rows": min_rows,
            "description": check_description(description),
        }
        for key, value in values.items():
            object.__setattr__(self, key, value)

    @property
    def key(self) -> str:
        """The alert key this rule fires and resolves."""
        return f"rule:{self.name}"

    def holds(self, value: float) -> bool:
        return OPS[self.op](value, self.threshold)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Any, *, name: str | None = None) -> RuleSpec:
        """Build from JSON (an HTTP body, a stored spec); unknown keys are refused by name."""
        data = spec_fields(data, name=name, what="a rule spec")
        check_keys(
            data,
            [f for f in cls.__dataclass_fields__],
            owner="an alert rule",
            required=("name", "source", "metric", "op", "threshold"),
        )
        return cls(data.pop("name"), data.pop("source"), **data)


@dataclass(frozen=True)
class RuleInfo:
    spec: RuleSpec
    enabled: bool
    created_at: datetime
    updated_at: datetime

    @property
    def name(self) -> str:
        return self.spec.name

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.spec.to_dict(),
            "enabled": self.enabled,
            "created_at": self.created_at.isoformat(),
            "updated_at": self.updated_at.isoformat(),
        }


@dataclass(frozen=True)
class RuleOutcome:
    """What one evaluation of a rule did: ``fired`` (alert opened or bumped), ``resolved``, ``ok``
    (condition false, nothing open) or ``no_data`` (too few windows carrying the metric)."""

    rule: str
    state: str
    value: float | None
    alert_id: int | None = None
    window_start: datetime | None = None

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["window_start"] = None if self.window_start is None else self.window_start.isoformat()
        return out


def default_rules(monitor_name: str) -> list[RuleSpec]:
    """A starting set for a monitor: dataset drift, prediction drift and an AUC drop."""
    return [
        RuleSpec(
            f"{monitor_name}.dataset_drift",
            "drift",
            monitor=monitor_name,
            metric="dataset_drifted",
            op="==",
            threshold=1,
            for_windows=2,
            severity="warning",
            description="Most features drifted in two windows in a row.",
        ),
        RuleSpec(
            f"{monitor_name}.prediction_drift",
            "drift",
            monitor=monitor_name,
            metric=f"drifted:{PREDICTION_KEY}",
            op="==",
            threshold=1,
            for_windows=1,
            severity="warning",
            description="The prediction distribution moved away from the reference.",
        ),
        RuleSpec(
            f"{monitor_name}.auc_drop",
            "performance",
            monitor=monitor_name,
            metric="auc",
            op="<",
            threshold=0.7,
            for_windows=1,
            severity="critical",
            min_rows=100,
            description="AUC on labelled feedback fell below 0.7.",
        ),
    ]


def metric_value(spec: RuleSpec, payload: dict[str, Any] | None) -> float | None:
    """The rule's number in one window's drift / performance dict or one SLO reading; None if absent."""
    if not isinstance(payload, dict):
        return None
    metric = spec.metric
    if spec.source == "drift":
        features = payload.get("features") or {}
        if metric in ("share_drifted", "dataset_drifted"):
            return _number(payload.get(metric))
        if metric == "prediction":
            entry = features.get(PREDICTION_KEY) or payload.get("prediction")
            return _number(entry.get("statistic")) if isinstance(entry, dict) else None
        prefix, _, column = metric.partition(":")
        entry = features.get(column)
        if not isinstance(entry, dict):
            return None
        return _number(entry.get("statistic" if prefix == "feature" else "drifted"))
    if spec.source == "performance":
        match = _GAP.match(metric)
        if match:
            gaps = payload.get("gaps") or {}
            entry = gaps.get(match.group(1)) if isinstance(gaps, dict) else None
            return _number(entry.get(match.group(2))) if isinstance(entry, dict) else _number(entry)
        return _number((payload.get("metrics") or {}).get(metric))
    return _number(payload.get(metric))


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return 1.0 if value else 0.0
    if isinstance(value, int | float) and value == value and abs(value) != float("inf"):
        return float(value)
    return None


class AlertRules:
    """The alert rules service (``lm.alert_rules``)."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.alerts = Alerts(ctx)

    # -- definitions -------------------------------------------------------------------------
    def create(
        self, spec: RuleSpec | dict[str, Any], *, enabled: bool = True, actor: str = "system"
    ) -> RuleInfo:
        """Define a rule (``ConflictError`` when the name is taken; ``NotFoundError`` for an unknown
        monitor or SLO, so a typo does not give a rule that never fires)."""
        spec = _spec(spec)
        with self.ctx.db.session() as session:
            if q.get_rule(session, spec.name) is not None:
                raise ConflictError(
                    f"alert rule {spec.name!r} exists already; update or delete it", field="name"
                )
            self._check_subject(session, spec)
            row = q.insert_rule(
                session, name=spec.name, spec=spec.to_dict(), enabled=bool(enabled), now=utcnow()
            )
            record_event(
                session, f"{EVENT_PREFIX}.created", EVENT_PREFIX, spec.name, actor=actor, data=spec.to_dict()
            )
            return _info(row)

    def update(self, name: str, spec: RuleSpec | dict[str, Any], *, actor: str = "system") -> RuleInfo:
        name = check_name(name)
        spec = _spec(spec, name=name)
        check_same_name(spec.name, name, "alert rule")
        with self.ctx.db.session() as session:
            self._check_subject(session, spec)
            row = q.update_rule(session, name, utcnow(), spec=spec.to_dict())
            if row is None:
                raise self._not_found(session, name)
            record_event(
                session, f"{EVENT_PREFIX}.updated", EVENT_PREFIX, name, actor=actor, data=spec.to_dict()
            )
            return _info(row)

    def enable(self, name: str, *, actor: str = "system") -> RuleInfo:
        return self._set_enabled(name, True, actor)

    def disable(self, name: str, *, actor: str = "system") -> RuleInfo:
        """Stop evaluating a rule; an alert it opened stays open until someone resolves it."""
        return self._set_enabled(name, False, actor)

    def delete(self, name: str, *, actor: str = "system") -> None:
        name = check_name(name)
        with self.ctx.db.session() as session:
            if not q.delete_rule(session, name):
                raise self._not_found(session, name)
            record_event(session, f"{EVENT_PREFIX}.deleted", EVENT_PREFIX, name, actor=actor)

    def get(self, name: str) -> RuleInfo:
        name = check_name(name)
        with self.ctx.db.session() as session:
            row = q.get_rule(session, name)
            if row is None:
                raise self._not_found(session, name)
            return _info(row)

    def list(self, *, enabled: bool | None = None) -> builtins.list[RuleInfo]:
        with self.ctx.db.session() as session:
            return [_info(row) for row in q.list_rules(session, enabled=enabled)]

    # -- evaluation --------------------------------------------------------------------------
    def evaluate(
        self, *, now: datetime | None = None, names: builtins.list[str] | None = None
    ) -> builtins.list[RuleOutcome]:
        """Evaluate every enabled rule (or ``names``) against windows that ended by ``now``."""
        until = None if now is None else check_now(now)
        infos = self.list(enabled=True) if names is None else [self.get(n) for n in names]
        return [self._evaluate_one(info.spec, until) for info in infos]

    def _evaluate_one(self, spec: RuleSpec, until: datetime | None) -> RuleOutcome:
        readings, endpoint = self._readings(spec, until)
        values = [metric_value(spec, payload) for _, payload in readings]
        latest = values[-1] if values else None
        start = readings[-1][0] if readings else None
        if latest is None or len(values) < spec.for_windows:
            return RuleOutcome(spec.name, "no_data", latest, None, start)
        if all(v is not None and spec.holds(v) for v in values):
            alert = self.alerts.fire(
                spec.key,
                severity=spec.severity,
                title=f"{spec.name}: {spec.metric} {spec.op} {spec.threshold:g} (now {latest:.3g})",
                detail=self._detail(spec, values, readings),
                source="monitoring",
                data={
                    "rule": spec.name,
                    "source": spec.source,
                    "monitor": spec.monitor,
                    "endpoint": endpoint,
                    "slo": spec.slo,
                    "metric": spec.metric,
                    "value": latest,
                    "threshold": spec.threshold,
                    "window_start": None if start is None else start.isoformat(),
                },
            )
            return RuleOutcome(spec.name, "fired", latest, alert.id, start)
        if spec.holds(latest):  # held now but not for long enough: leave an open alert alone
            return RuleOutcome(spec.name, "ok", latest, None, start)
        resolved = self.alerts.resolve(
            spec.key, reason=f"{spec.metric} = {latest:.3g}, no longer {spec.op} {spec.threshold:g}"
        )
        if resolved is not None:
            return RuleOutcome(spec.name, "resolved", latest, resolved.id, start)
        return RuleOutcome(spec.name, "ok", latest, None, start)

    def _readings(
        self, spec: RuleSpec, until: datetime | None
    ) -> tuple[builtins.list[tuple[datetime, dict[str, Any] | None]], str | None]:
        """The last ``for_windows`` (start, payload) pairs, oldest first, and the endpoint concerned."""
        with self.ctx.db.session() as session:
            if spec.source == "slo":
                row = q.get_slo(session, spec.slo or "")
                if row is None:
                    return [], None
                evs = q.list_evaluations(session, row.id, limit=spec.for_windows)
                if until is not None:
                    evs = [e for e in evs if as_utc(e.at) <= until]
                readings = [
                    (
                        as_utc(e.at),
                        {
                            **(e.data or {}),
                            "ok": e.ok,
                            "value": e.value,
                            "budget_remaining": e.budget_remaining,
                        },
                    )
                    for e in evs
                ]
                return readings, (row.spec.get("target") or {}).get("endpoint")
            rows = q.last_windows(
                session,
                spec.monitor or "",
                column=spec.source,
                min_count=spec.min_rows,
                limit=spec.for_windows,
                until=until,
            )
            endpoint = q.monitor_endpoint(session, spec.monitor or "")
            return [(as_utc(r.window_start), getattr(r, spec.source)) for r in rows], endpoint

    @staticmethod
    def _detail(spec: RuleSpec, values: builtins.list[float | None], readings: builtins.list[Any]) -> str:
        subject = f"monitor {spec.monitor}" if spec.monitor else f"SLO {spec.slo}"
        lines = [
            f"{spec.metric} {spec.op} {spec.threshold:g} held on the last {len(values)} "
            f"{'window' if spec.source != 'slo' else 'reading'}(s) of {subject}:"
        ]
        lines += [
            f"  {start.isoformat()}: {value:.4g}"
            for (start, _), value in zip(readings, values, strict=True)
            if value is not None
        ]
        if spec.description:
            lines.append(spec.description)
        return "\n".join(lines)

    def _check_subject(self, session: Any, spec: RuleSpec) -> None:
        if spec.source == "slo":
            if q.get_slo(session, spec.slo or "") is None:
                raise NotFoundError(
                    f"slo={spec.slo!r} does not exist." + did_you_mean(spec.slo or "", q.slo_names(session)),
                    field="slo",
                )
        elif q.monitor_endpoint(session, spec.monitor or "") is None:
            raise NotFoundError(
                f"monitor={spec.monitor!r} does not exist."
                + did_you_mean(spec.monitor or "", q.monitor_names(session)),
                field="monitor",
            )

    def _set_enabled(self, name: str, enabled: bool, actor: str) -> RuleInfo:
        name = check_name(name)
        with self.ctx.db.session() as session:
            row = q.update_rule(session, name, utcnow(), enabled=enabled)
            if row is None:
                raise self._not_found(session, name)
            kind = "enabled" if enabled else "disabled"
            record_event(session, f"{EVENT_PREFIX}.{kind}", EVENT_PREFIX, name, actor=actor)
            return _info(row)

    @staticmethod
    def _not_found(session: Any, name: str) -> NotFoundError:
        return NotFoundError(
            f"alert rule {name!r} does not exist." + did_you_mean(name, q.rule_names(session)), field="name"
        )


def _spec(spec: Any, *, name: str | None = None) -> RuleSpec:
    return spec if isinstance(spec, RuleSpec) else RuleSpec.from_dict(spec, name=name)


def _info(row: Any) -> RuleInfo:
    return RuleInfo(
        RuleSpec.from_dict(row.spec), bool(row.enabled), as_utc(row.created_at), as_utc(row.updated_at)
    )
