"""Queries for SLOs, their evaluations and alert rules, plus the reads their measurements need.

Why the measurement reads live here and not in the services: an SLO reads four other domains
(inference log, jobs, feature materialisations, pipeline runs). Each read is one aggregate in SQL
(counts, a percentile's raw column, a ``min``), so a 28-day error budget over millions of logged
requests costs one indexed scan instead of loading the log into Python.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import case, delete, func, literal, select, update
from sqlalchemy.orm import Session

from loopml.storage.metadata.base import UTCDateTime
from loopml.storage.metadata.features import FeatureViewRow, FeatureViewVersionRow, MaterialisationRow
from loopml.storage.metadata.inference import InferenceLogRow
from loopml.storage.metadata.monitoring import (
    AlertRuleRow,
    MonitorRow,
    MonitorWindowRow,
    SloEvaluationRow,
    SloRow,
)
from loopml.storage.metadata.pipelines import PipelineRunRow, ScheduleRow

_UTC = UTCDateTime()


def _as_utc(value: Any) -> datetime | None:
    """Aggregates (min/max) lose the column type on SQLite: parse stored text back to aware UTC."""
    if value is None:
        return None
    if not isinstance(value, datetime):
        value = datetime.fromisoformat(str(value))
    return _UTC.process_result_value(value, None)


# -- SLO definitions ---------------------------------------------------------------------------
def get_slo(session: Session, name: str) -> SloRow | None:
    return session.scalar(select(SloRow).where(SloRow.name == name))


def slo_names(session: Session) -> list[str]:
    return list(session.scalars(select(SloRow.name).order_by(SloRow.name)))


def list_slos(session: Session) -> list[SloRow]:
    return list(session.scalars(select(SloRow).order_by(SloRow.name)))


def insert_slo(session: Session, *, name: str, spec: dict[str, Any], now: datetime) -> SloRow:
    row = SloRow(name=name, spec=spec, created_at=now, updated_at=now)
    session.add(row)
    session.flush()
    return row


def update_slo(session: Session, name: str, *, spec: dict[str, Any], now: datetime) -> bool:
    result = session.execute(update(SloRow).where(SloRow.name == name).values(spec=spec, updated_at=now))
    return result.rowcount == 1


def delete_slo(session: Session, name: str) -> bool:
    """Delete an SLO; its evaluations go with it (explicitly: SQLite may run without FK cascades)."""
    row = get_slo(session, name)
    if row is None:
        return False
    session.execute(delete(SloEvaluationRow).where(SloEvaluationRow.slo_id == row.id))
    session.execute(delete(SloRow).where(SloRow.id == row.id))
    return True


# -- SLO evaluations ---------------------------------------------------------------------------
def insert_evaluation(
    session: Session,
    *,
    slo_id: int,
    at: datetime,
    value: float | None,
    ok: bool,
    budget_remaining: float | None,
    data: dict[str, Any],
) -> SloEvaluationRow:
    row = SloEvaluationRow(
        slo_id=slo_id, at=at, value=value, ok=ok, budget_remaining=budget_remaining, data=data
    )
    session.add(row)
    session.flush()
    return row


def evaluation_counts(session: Session, slo_id: int, *, since: datetime, until: datetime) -> tuple[int, int]:
    """(evaluations, evaluations not ok) with ``since <= at <= until``: the event-based budget."""
    bad = func.coalesce(func.sum(case((SloEvaluationRow.ok.is_(False), 1), else_=0)), 0)
    row = session.execute(
        select(func.count(), bad).where(
            SloEvaluationRow.slo_id == slo_id, SloEvaluationRow.at >= since, SloEvaluationRow.at <= until
        )
    ).one()
    return int(row[0]), int(row[1])


def list_evaluations(
    session: Session, slo_id: int, *, since: datetime | None = None, limit: int = 500
) -> list[SloEvaluationRow]:
    """The newest ``limit`` evaluations (since ``since``), returned oldest first."""
    stmt = select(SloEvaluationRow).where(SloEvaluationRow.slo_id == slo_id)
    if since is not None:
        stmt = stmt.where(SloEvaluationRow.at >= since)
    rows = list(
        session.scalars(stmt.order_by(SloEvaluationRow.at.desc(), SloEvaluationRow.id.desc()).limit(limit))
    )
    rows.reverse()
    return rows


def latest_evaluations(session: Session) -> dict[int, SloEvaluationRow]:
    """The newest evaluation of every SLO (one query, for the status table)."""
    newest = (
        select(func.max(SloEvaluationRow.id).label("id")).group_by(SloEvaluationRow.slo_id).subquery("newest")
    )
    rows = session.scalars(select(SloEvaluationRow).join(newest, newest.c.id == SloEvaluationRow.id))
    return {row.slo_id: row for row in rows}


# -- measurements ------------------------------------------------------------------------------
def request_counts(
    session: Session, endpoint: str, *, since: datetime, until: datetime, slower_than: float | None = None
) -> tuple[int, int, int]:
    """(requests, errors, requests slower than ``slower_than`` ms) logged in ``(since, until]``.

    An error is any status other than ``ok`` (a fallback answer is a failed request to its caller).
    """
    errors = func.coalesce(func.sum(case((InferenceLogRow.status != "ok", 1), else_=0)), 0)
    slow: Any = literal(0)
    if slower_than is not None:
        slow = func.coalesce(func.sum(case((InferenceLogRow.latency_ms > slower_than, 1), else_=0)), 0)
    row = session.execute(
        select(func.count(), errors, slow).where(
            InferenceLogRow.endpoint == endpoint, InferenceLogRow.at > since, InferenceLogRow.at <= until
        )
    ).one()
    return int(row[0]), int(row[1]), int(row[2])


def latency_percentile(
    session: Session, endpoint: str, *, since: datetime, until: datetime, pct: float, count: int
) -> float | None:
    """The ``pct``-th percentile of ``latency_ms`` in ``(since, until]`` (linear interpolation, like
    numpy), computed by the database: ``percentile_cont`` on PostgreSQL, the two neighbouring
    ranks (``ORDER BY ... LIMIT 2 OFFSET k``) on SQLite. ``count`` is the number of rows in range.
    """
    if count <= 0:
        return None
    where = (InferenceLogRow.endpoint == endpoint, InferenceLogRow.at > since, InferenceLogRow.at <= until)
    if session.get_bind().dialect.name == "postgresql":
        stmt = select(func.percentile_cont(pct / 100.0).within_group(InferenceLogRow.latency_ms)).where(
            *where
        )
        value = session.scalar(stmt)
        return None if value is None else float(value)
    rank = (count - 1) * pct / 100.0
    low = int(rank)
    stmt = select(InferenceLogRow.latency_ms).where(*where).order_by(InferenceLogRow.latency_ms)
    pair = [float(v) for v in session.scalars(stmt.limit(2).offset(low))]
    if not pair:
        return None
    high = pair[1] if len(pair) > 1 else pair[0]
    return pair[0] + (high - pair[0]) * (rank - low)


def last_materialised_at(session: Session, view: str) -> tuple[bool, datetime | None]:
    """(view exists, when its newest successful materialisation finished, any version)."""
    view_id = session.scalar(select(FeatureViewRow.id).where(FeatureViewRow.name == view))
    if view_id is None:
        return False, None
    value = session.scalar(
        select(func.max(MaterialisationRow.finished_at))
        .join(FeatureViewVersionRow, FeatureViewVersionRow.id == MaterialisationRow.view_version_id)
        .where(FeatureViewVersionRow.view_id == view_id, MaterialisationRow.status == "succeeded")
    )
    return True, _as_utc(value)


def feature_view_names(session: Session) -> list[str]:
    return list(session.scalars(select(FeatureViewRow.name).order_by(FeatureViewRow.name)))


def get_schedule(session: Session, pipeline: str) -> tuple[str, bool] | None:
    """(cron, enabled) of a pipeline's schedule, None when it has none."""
    row = session.get(ScheduleRow, pipeline)
    return None if row is None else (row.cron, bool(row.enabled))


def schedule_names(session: Session) -> list[str]:
    return list(session.scalars(select(ScheduleRow.pipeline).order_by(ScheduleRow.pipeline)))


def run_starts(session: Session, pipeline: str, *, since: datetime, until: datetime) -> list[datetime]:
    """Start times of the pipeline's runs that started in ``[since, until]``, oldest first."""
    stmt = (
        select(PipelineRunRow.started_at)
        .where(
            PipelineRunRow.pipeline == pipeline,
            PipelineRunRow.started_at.is_not(None),
            PipelineRunRow.started_at >= since,
            PipelineRunRow.started_at <= until,
        )
        .order_by(PipelineRunRow.started_at)
    )
    return [v for v in (_as_utc(s) for s in session.scalars(stmt)) if v is not None]


# -- monitor windows (what drift / performance rules read) ----------------------------------------
def monitor_endpoint(session: Session, monitor: str) -> str | None:
    return session.scalar(select(MonitorRow.endpoint).where(MonitorRow.name == monitor))


def monitor_names(session: Session) -> list[str]:
    return list(session.scalars(select(MonitorRow.name).order_by(MonitorRow.name)))


def last_windows(
    session: Session,
    monitor: str,
    *,
    column: str,
    min_count: int,
    limit: int,
    until: datetime | None = None,
) -> list[MonitorWindowRow]:
    """The newest ``limit`` windows of ``monitor`` whose ``column`` (drift or performance) is computed
    and whose row count (``rows`` for drift, ``labelled`` for performance) is at least ``min_count``;
    oldest first. The filter is in SQL so a rule over sparse windows still reads only ``limit`` rows.
    """
    payload = getattr(MonitorWindowRow, column)
    count = MonitorWindowRow.labelled if column == "performance" else MonitorWindowRow.rows
    stmt = (
        select(MonitorWindowRow)
        .join(MonitorRow, MonitorRow.id == MonitorWindowRow.monitor_id)
        .where(MonitorRow.name == monitor, payload.is_not(None), count >= min_count)
    )
    if until is not None:
        stmt = stmt.where(MonitorWindowRow.window_end <= until)
    rows = list(session.scalars(stmt.order_by(MonitorWindowRow.window_start.desc()).limit(limit)))
    rows.reverse()
    return rows


# -- alert rules -------------------------------------------------------------------------------
def get_rule(session: Session, name: str) -> AlertRuleRow | None:
    return session.scalar(select(AlertRuleRow).where(AlertRuleRow.name == name))


def list_rules(session: Session, *, enabled: bool | None = None) -> list[AlertRuleRow]:
    stmt = select(AlertRuleRow).order_by(AlertRuleRow.name)
    if enabled is not None:
        stmt = stmt.where(AlertRuleRow.enabled.is_(enabled))
    return list(session.scalars(stmt))


def rule_names(session: Session) -> list[str]:
    return list(session.scalars(select(AlertRuleRow.name).order_by(AlertRuleRow.name)))


def insert_rule(
    session: Session, *, name: str, spec: dict[str, Any], enabled: bool, now: datetime
) -> AlertRuleRow:
    row = AlertRuleRow(name=name, spec=spec, enabled=enabled, created_at=now, updated_at=now)
    session.add(row)
    session.flush()
    return row


def update_rule(session: Session, name: str, now: datetime, **values: Any) -> AlertRuleRow | None:
    session.execute(update(AlertRuleRow).where(AlertRuleRow.name == name).values(updated_at=now, **values))
    row = get_rule(session, name)
    if row is not None:
        session.refresh(row)
    return row


def delete_rule(session: Session, name: str) -> bool:
    return session.execute(delete(AlertRuleRow).where(AlertRuleRow.name == name)).rowcount == 1
