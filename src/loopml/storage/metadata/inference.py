"""The inference log (one row per prediction request) and the feedback attached to it later.

Why these shapes:

- ``inference_log`` is the high-volume table. It is written only by ``insert_records``: one
  ``executemany`` per writer flush on SQLite (JSON pre-serialised with orjson, so SQLAlchemy does no
  per-row work) and ``COPY ... FROM STDIN`` on PostgreSQL. ``request_id`` is unique, so feedback can
  name a request; a duplicate id in a batch is skipped (the first write wins) instead of failing the
  whole batch forever.
- ``inference_feedback`` keeps every label/reward ever sent (history), with a foreign key to the
  request. Readers take the newest label and the newest reward per request, so sending feedback
  twice corrects it while the earlier value stays on record.
- ``joined`` is one SQL statement: the log left-joined to the newest label and the newest reward.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import (
    JSON,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    and_,
    cast,
    func,
    insert,
    select,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, Session, mapped_column

from loopml.storage.metadata.base import Base, BigId, JSONType, UTCDateTime

#: Column limits, shared with the service's input checks so both fail the same way.
REQUEST_ID_MAX = 128
ENDPOINT_MAX = 200
MODEL_MAX = 300
ARM_MAX = 100
STATUS_MAX = 16
ROUTING_KEY_MAX = 256
ACTOR_MAX = 255

#: A JSON column where Python ``None`` is SQL NULL (not the JSON text ``null``): "no label" must be
#: distinguishable in SQL from a label, so the newest-label query can skip reward-only feedback.
NullableJSON = JSON(none_as_null=True).with_variant(JSONB(none_as_null=True), "postgresql")


class InferenceLogRow(Base):
    __tablename__ = "inference_log"
    __table_args__ = (Index("ix_inference_log_endpoint_at", "endpoint", "at"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    request_id: Mapped[str] = mapped_column(String(REQUEST_ID_MAX), nullable=False, unique=True)
    endpoint: Mapped[str] = mapped_column(String(ENDPOINT_MAX), nullable=False)
    model: Mapped[str] = mapped_column(String(MODEL_MAX), nullable=False)
    version: Mapped[int | None] = mapped_column(Integer)
    arm: Mapped[str | None] = mapped_column(String(ARM_MAX))
    inputs: Mapped[Any] = mapped_column(JSONType, nullable=False)
    outputs: Mapped[Any] = mapped_column(JSONType, nullable=False)
    latency_ms: Mapped[float] = mapped_column(Float, nullable=False)
    status: Mapped[str] = mapped_column(String(STATUS_MAX), nullable=False)
    error: Mapped[str | None] = mapped_column(Text)
    routing_key: Mapped[str | None] = mapped_column(String(ROUTING_KEY_MAX))
    shadow: Mapped[Any] = mapped_column(NullableJSON, nullable=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)


class InferenceFeedbackRow(Base):
    __tablename__ = "inference_feedback"
    __table_args__ = (Index("ix_inference_feedback_request_id", "request_id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    request_id: Mapped[str] = mapped_column(
        String(REQUEST_ID_MAX),
        ForeignKey("inference_log.request_id", ondelete="CASCADE"),
        nullable=False,
    )
    label: Mapped[Any] = mapped_column(NullableJSON, nullable=True)
    reward: Mapped[float | None] = mapped_column(Float)
    at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    actor: Mapped[str] = mapped_column(String(ACTOR_MAX), nullable=False)


_L = InferenceLogRow.__table__
_F = InferenceFeedbackRow.__table__

#: The order of the values in a prepared log row (see ``prepare_row``) and of the COPY columns.
LOG_COLUMNS = (
    "request_id",
    "endpoint",
    "model",
    "version",
    "arm",
    "inputs",
    "outputs",
    "latency_ms",
    "status",
    "error",
    "routing_key",
    "shadow",
    "at",
)
#: Columns ``select_records`` returns, in order.
RECORD_COLUMNS = tuple(_L.c[name] for name in LOG_COLUMNS)

_OPTS = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS


def dumps(value: Any) -> str:
    """orjson text for a JSON column; unknown types become their ``str`` (a log must not refuse a row)."""
    return orjson.dumps(value, default=str, option=_OPTS).decode()


# -- writes -----------------------------------------------------------------------------------
def insert_records(session: Session, rows: Sequence[tuple[Any, ...]]) -> int:
    """Insert prepared rows (tuples in ``LOG_COLUMNS`` order, JSON already as text); returns rows written.

    Rows whose ``request_id`` is already stored are skipped. SQLite: one ``INSERT OR IGNORE``
    executemany. PostgreSQL: ``COPY`` (the fast path); if the batch hits a duplicate id, the COPY is
    rolled back to a savepoint and the batch goes through ``INSERT ... ON CONFLICT DO NOTHING``.
    """
    if not rows:
        return 0
    connection = session.connection()
    if connection.dialect.name == "postgresql":
        return _insert_postgres(session, rows)
    dialect = connection.dialect
    at_bind = _L.c.at.type.dialect_impl(dialect).bind_processor(dialect)  # the same text SQLAlchemy stores
    columns = ", ".join(LOG_COLUMNS)
    marks = ", ".join("?" for _ in LOG_COLUMNS)
    params = [(*row[:-1], at_bind(row[-1])) for row in rows] if at_bind else list(rows)
    result = connection.exec_driver_sql(
        f"INSERT OR IGNORE INTO inference_log ({columns}) VALUES ({marks})", params
    )
    return max(int(result.rowcount or 0), 0)


def _insert_postgres(session: Session, rows: Sequence[tuple[Any, ...]]) -> int:
    import psycopg

    try:
        with session.begin_nested():
            raw = session.connection().connection.dbapi_connection
            with (
                raw.cursor() as cursor,
                cursor.copy(f"COPY inference_log ({', '.join(LOG_COLUMNS)}) FROM STDIN") as copy,
            ):
                for row in rows:
                    copy.write_row(row)
        return len(rows)
    except psycopg.errors.UniqueViolation:
        pass
    from sqlalchemy.dialects.postgresql import insert as pg_insert

    values = [_decoded(row) for row in rows]
    stmt = pg_insert(_L).on_conflict_do_nothing(index_elements=[_L.c.request_id]).returning(_L.c.id)
    return len(session.connection().execute(stmt, values).all())


def _decoded(row: tuple[Any, ...]) -> dict[str, Any]:
    out = dict(zip(LOG_COLUMNS, row, strict=True))
    for name in ("inputs", "outputs", "shadow"):
        if out[name] is not None:
            out[name] = orjson.loads(out[name])
    return out


def insert_feedback(session: Session, rows: Sequence[dict[str, Any]]) -> None:
    """Insert feedback rows (``request_id, label, reward, at, actor``) in one executemany."""
    if rows:
        session.execute(insert(_F), list(rows))


# -- reads ------------------------------------------------------------------------------------
def find_endpoints(session: Session, request_ids: Sequence[str]) -> dict[str, str]:
    """``request_id -> endpoint`` for the ids that are logged (in chunks, so any number of ids works)."""
    found: dict[str, str] = {}
    ids = list(dict.fromkeys(request_ids))
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        stmt = select(_L.c.request_id, _L.c.endpoint).where(_L.c.request_id.in_(chunk))
        found.update({rid: ep for rid, ep in session.execute(stmt)})
    return found


def select_records(
    session: Session,
    endpoint: str | None,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int = 1000,
) -> list[tuple[Any, ...]]:
    """The newest ``limit`` records of ``endpoint`` in [since, until), newest first."""
    stmt = select(*RECORD_COLUMNS).order_by(_L.c.at.desc(), _L.c.id.desc()).limit(limit)
    if endpoint is not None:
        stmt = stmt.where(_L.c.endpoint == endpoint)
    if since is not None:
        stmt = stmt.where(_L.c.at >= since)
    if until is not None:
        stmt = stmt.where(_L.c.at < until)
    return [tuple(r) for r in session.execute(stmt)]


def get_record(session: Session, request_id: str) -> tuple[Any, ...] | None:
    row = session.execute(select(*RECORD_COLUMNS).where(_L.c.request_id == request_id)).first()
    return None if row is None else tuple(row)


def feedback_history(session: Session, request_id: str) -> list[tuple[Any, ...]]:
    """Every feedback row of a request, oldest first: ``(id, request_id, label, reward, at, actor)``."""
    stmt = (
        select(_F.c.id, _F.c.request_id, _F.c.label, _F.c.reward, _F.c.at, _F.c.actor)
        .where(_F.c.request_id == request_id)
        .order_by(_F.c.id)
    )
    return [tuple(r) for r in session.execute(stmt)]


def _latest_feedback_ids() -> Any:
    """Per request: the id of the newest feedback carrying a label, and of the newest carrying a reward."""
    return (
        select(
            _F.c.request_id.label("request_id"),
            func.max(_F.c.id).filter(_F.c.label.is_not(None)).label("label_id"),
            func.max(_F.c.id).filter(_F.c.reward.is_not(None)).label("reward_id"),
        )
        .group_by(_F.c.request_id)
        .subquery("latest")
    )


def select_joined(session: Session, endpoint: str, *, since: datetime | None = None) -> list[tuple[Any, ...]]:
    """Predictions with their newest label and reward, oldest first, in one statement.

    Columns: ``request_id, at, model, version, arm, routing_key, status, latency_ms, outputs (JSON
    text), label, reward, label_at, reward_at``. ``outputs`` stays text so the caller parses 100k
    rows with orjson instead of a per-row ``json.loads``.
    """
    latest = _latest_feedback_ids()
    fl = _F.alias("fl")
    fr = _F.alias("fr")
    stmt = (
        select(
            _L.c.request_id,
            _L.c.at,
            _L.c.model,
            _L.c.version,
            _L.c.arm,
            _L.c.routing_key,
            _L.c.status,
            _L.c.latency_ms,
            _L.c.outputs.cast(Text),
            fl.c.label,
            fr.c.reward,
            fl.c.at,
            fr.c.at,
        )
        .select_from(_L)
        .outerjoin(latest, latest.c.request_id == _L.c.request_id)
        .outerjoin(fl, fl.c.id == latest.c.label_id)
        .outerjoin(fr, fr.c.id == latest.c.reward_id)
        .where(_L.c.endpoint == endpoint)
        .order_by(_L.c.at, _L.c.id)
    )
    if since is not None:
        stmt = stmt.where(_L.c.at >= since)
    return [tuple(r) for r in session.execute(stmt)]


def select_window(session: Session, endpoint: str, *, since: datetime) -> list[tuple[Any, ...]]:
    """``arm, model, version, status, error, latency_ms, outputs (JSON text)`` since ``since``."""
    outputs_text = _L.c.outputs.cast(Text)
    stmt = select(
        _L.c.arm, _L.c.model, _L.c.version, _L.c.status, _L.c.error, _L.c.latency_ms, outputs_text
    ).where(and_(_L.c.endpoint == endpoint, _L.c.at >= since))
    return [tuple(r) for r in session.execute(stmt)]


def select_timeline(
    session: Session, endpoint: str, *, since: datetime, bucket_seconds: int
) -> list[tuple[Any, ...]]:
    """``bucket, arm, model, version, status, latency_ms`` since ``since``; no JSON, no datetimes.

    ``bucket`` is ``floor(epoch seconds / bucket_seconds)`` computed by the database, so 100k rows
    come back as plain numbers (no per-row timestamp parsing) and the caller groups them.
    """
    if session.get_bind().dialect.name == "postgresql":
        bucket = func.floor(func.extract("epoch", _L.c.at) / bucket_seconds)
    else:  # SQLite stores naive UTC text; julianday parses it (fractional seconds included)
        # (CAST truncates, which is floor for times after 1970; floor() needs SQLite's math extension)
        bucket = cast((func.julianday(_L.c.at) - 2440587.5) * 86400.0 / bucket_seconds, Integer)
    stmt = select(
        bucket.label("bucket"), _L.c.arm, _L.c.model, _L.c.version, _L.c.status, _L.c.latency_ms
    ).where(and_(_L.c.endpoint == endpoint, _L.c.at >= since))
    return [tuple(r) for r in session.execute(stmt)]


def select_reward_stats(
    session: Session, endpoint: str, *, since: datetime | None = None
) -> list[tuple[Any, ...]]:
    """Per (arm, model, version): pulls, rewarded requests, reward sum, sum of rewards clipped to [0, 1]."""
    latest = (
        select(_F.c.request_id, func.max(_F.c.id).label("reward_id"))
        .where(_F.c.reward.is_not(None))
        .group_by(_F.c.request_id)
        .subquery("latest_reward")
    )
    fr = _F.alias("fr")
    clipped = func.min(func.max(fr.c.reward, 0.0), 1.0)
    if session.get_bind().dialect.name == "postgresql":
        clipped = func.least(func.greatest(fr.c.reward, 0.0), 1.0)
    stmt = (
        select(
            _L.c.arm,
            _L.c.model,
            _L.c.version,
            func.count(),
            func.count(fr.c.reward),
            func.coalesce(func.sum(fr.c.reward), 0.0),
            func.coalesce(func.sum(clipped), 0.0),
        )
        .select_from(_L)
        .outerjoin(latest, latest.c.request_id == _L.c.request_id)
        .outerjoin(fr, fr.c.id == latest.c.reward_id)
        .where(_L.c.endpoint == endpoint)
        .group_by(_L.c.arm, _L.c.model, _L.c.version)
    )
    if since is not None:
        stmt = stmt.where(_L.c.at >= since)
    return [tuple(r) for r in session.execute(stmt)]


def count_records(session: Session, endpoint: str | None = None) -> int:
    stmt = select(func.count()).select_from(_L)
    if endpoint is not None:
        stmt = stmt.where(_L.c.endpoint == endpoint)
    return int(session.execute(stmt).scalar_one())


# -- reads for monitors ------------------------------------------------------------------------
def first_log_time(session: Session, endpoint: str, *, since: datetime | None = None) -> datetime | None:
    """The time of the oldest record of ``endpoint`` (at or after ``since``); one index probe."""
    stmt = select(func.min(_L.c.at)).where(_L.c.endpoint == endpoint)
    if since is not None:
        stmt = stmt.where(_L.c.at >= since)
    return session.execute(stmt).scalar()


def iter_log_rows(
    session: Session,
    endpoint: str,
    *,
    start: datetime,
    end: datetime,
    labels: bool = True,
    chunk_rows: int = 5000,
) -> Any:
    """Yield lists of ``(at, status, inputs text, outputs text, label text | None)`` in [start, end).

    Reads by the ``(endpoint, at)`` index in chunks of ``chunk_rows`` (a server-side cursor on
    PostgreSQL), so a large window never sits in memory as ORM rows. JSON stays text for one orjson
    parse per chunk. ``label`` is the newest label of the request (a correlated lookup by the
    feedback ``request_id`` index), or None; with ``labels=False`` it is always None.
    """
    columns: list[Any] = [_L.c.at, _L.c.status, _L.c.inputs.cast(Text), _L.c.outputs.cast(Text)]
    if labels:
        newest = (
            select(_F.c.label.cast(Text))
            .where(_F.c.request_id == _L.c.request_id, _F.c.label.is_not(None))
            .order_by(_F.c.id.desc())
            .limit(1)
            .scalar_subquery()
        )
        columns.append(newest)
    stmt = (
        select(*columns)
        .where(_L.c.endpoint == endpoint, _L.c.at >= start, _L.c.at < end)
        .order_by(_L.c.at, _L.c.id)
        .execution_options(yield_per=chunk_rows)
    )
    for part in session.execute(stmt).partitions(chunk_rows):
        yield [tuple(r) if labels else (*r, None) for r in part]


def labelled_buckets(
    session: Session,
    endpoint: str,
    *,
    start: datetime,
    end: datetime,
    after: datetime,
    bucket_seconds: int,
) -> list[tuple[int, datetime]]:
    """``(bucket, newest label time)`` for records in [start, end) that got a label after ``after``.

    ``bucket`` is ``floor(epoch seconds / bucket_seconds)`` of the record's time, so a monitor maps
    it to its window without reading the records: only windows with new labels are recomputed.
    """
    if session.get_bind().dialect.name == "postgresql":
        bucket = func.floor(func.extract("epoch", _L.c.at) / bucket_seconds)
    else:
        # whole epoch seconds, integer division: exact at window edges (julianday floats are not)
        bucket = cast(func.strftime("%s", _L.c.at), Integer) // bucket_seconds
    stmt = (
        select(bucket.label("bucket"), func.max(_F.c.at))
        .select_from(_F)
        .join(_L, _L.c.request_id == _F.c.request_id)
        .where(
            _L.c.endpoint == endpoint,
            _L.c.at >= start,
            _L.c.at < end,
            _F.c.at > after,
            _F.c.label.is_not(None),
        )
        .group_by(bucket)
    )
    return [(int(b), at) for b, at in session.execute(stmt)]
