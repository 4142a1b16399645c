"""Queries behind ``lm.inference.archive``: count the log by UTC day, read a day with its feedback, delete it.

Why a separate module: the archive is the only writer that *removes* inference-log rows, so its
statements live apart from the hot-path ones in ``inference.py``. Days are grouped by the database
(``to_char`` on PostgreSQL, the stored ISO text on SQLite), so counting a year of log sends back
one row per endpoint and day, never the records.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any

from sqlalchemy import Text, delete, func, select
from sqlalchemy.orm import Session

from loopml.storage.metadata.inference import LOG_COLUMNS, InferenceFeedbackRow, InferenceLogRow

_L = InferenceLogRow.__table__
_F = InferenceFeedbackRow.__table__

#: Columns ``iter_day_rows`` yields, in order (JSON columns as text, label as JSON text).
ARCHIVE_COLUMNS = (*LOG_COLUMNS, "label", "reward", "label_at", "reward_at")


def _day(session: Session) -> Any:
    if session.get_bind().dialect.name == "postgresql":
        return func.to_char(func.timezone("UTC", _L.c.at), "YYYY-MM-DD")
    return func.substr(_L.c.at, 1, 10)  # SQLite stores naive UTC ISO text


def day_counts(
    session: Session, *, before: datetime, endpoint: str | None = None
) -> list[tuple[str, str, int]]:
    """``(endpoint, 'YYYY-MM-DD', rows)`` for every UTC day with records before ``before``, in order."""
    day = _day(session).label("day")
    stmt = select(_L.c.endpoint, day, func.count()).where(_L.c.at < before)
    if endpoint is not None:
        stmt = stmt.where(_L.c.endpoint == endpoint)
    stmt = stmt.group_by(_L.c.endpoint, day).order_by(_L.c.endpoint, day)
    return [(e, str(d), int(n)) for e, d, n in session.execute(stmt)]


def count_range(session: Session, endpoint: str, start: datetime, end: datetime) -> int:
    """Records of ``endpoint`` in [start, end) (one ``(endpoint, at)`` index range count)."""
    stmt = select(func.count()).where(_L.c.endpoint == endpoint, _L.c.at >= start, _L.c.at < end)
    return int(session.execute(stmt).scalar_one())


def iter_day_rows(
    session: Session, endpoint: str, start: datetime, end: datetime, *, chunk_rows: int = 5000
) -> Iterator[list[tuple[Any, ...]]]:
    """Chunks of ``ARCHIVE_COLUMNS`` tuples for [start, end), oldest first, with the newest label and reward."""
    latest = (
        select(
            _F.c.request_id.label("request_id"),
            func.max(_F.c.id).filter(_F.c.label.is_not(None)).label("label_id"),
            func.max(_F.c.id).filter(_F.c.reward.is_not(None)).label("reward_id"),
        )
        .group_by(_F.c.request_id)
        .subquery("latest")
    )
    fl = _F.alias("fl")
    fr = _F.alias("fr")
    stmt = (
        select(
            _L.c.request_id,
            _L.c.endpoint,
            _L.c.model,
            _L.c.version,
            _L.c.arm,
            _L.c.inputs.cast(Text),
            _L.c.outputs.cast(Text),
            _L.c.latency_ms,
            _L.c.status,
            _L.c.error,
            _L.c.routing_key,
            _L.c.shadow.cast(Text),
            _L.c.at,
            fl.c.label.cast(Text),
            fr.c.reward,
            fl.c.at,
            fr.c.at,
        )
        .select_from(_L)
        .outerjoin(latest, latest.c.request_id == _L.c.request_id)
        .outerjoin(fl, fl.c.id == latest.c.label_id)
        .outerjoin(fr, fr.c.id == latest.c.reward_id)
        .where(_L.c.endpoint == endpoint, _L.c.at >= start, _L.c.at < end)
        .order_by(_L.c.at, _L.c.id)
        .execution_options(yield_per=chunk_rows)
    )
    for part in session.execute(stmt).partitions(chunk_rows):
        yield [tuple(r) for r in part]


def delete_range(session: Session, endpoint: str, start: datetime, end: datetime) -> int:
    """Delete ``endpoint``'s records in [start, end) and their feedback (feedback first); returns records."""
    ids = select(_L.c.request_id).where(_L.c.endpoint == endpoint, _L.c.at >= start, _L.c.at < end)
    session.execute(delete(_F).where(_F.c.request_id.in_(ids)))
    result = session.execute(delete(_L).where(_L.c.endpoint == endpoint, _L.c.at >= start, _L.c.at < end))
    return int(result.rowcount or 0)
