"""``InferenceLog`` (``lm.inference``): write, read and join the inference log and its feedback.

One instance serves every thread of a process. It owns the writers it hands out, so ``feedback``
for a request answered a moment ago in this process can wait for that record's flush instead of
answering 404.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import numpy as np
import orjson
import pandas as pd

from loopml.context import Context
from loopml.errors import NotFoundError, ValidationError
from loopml.serving.inference import outputs as out
from loopml.serving.inference.records import (
    ArmStats,
    Feedback,
    InferenceRecord,
    RewardStats,
    arm_key,
    check_label,
    check_reward,
    check_text,
)
from loopml.serving.inference.writer import Entry, LogWriter
from loopml.storage.metadata import inference as q

if TYPE_CHECKING:
    from loopml.serving.inference.archive import ArchiveResult, Progress

log = logging.getLogger(__name__)

TimeRef = datetime | timedelta | str | None

RECORD_COLUMNS = list(q.LOG_COLUMNS)
JOINED_COLUMNS = [
    "request_id",
    "at",
    "model",
    "version",
    "arm",
    "routing_key",
    "status",
    "latency_ms",
    "outputs",
    "output",
    "predicted",
    "label",
    "reward",
    "label_at",
    "reward_at",
]
LIMIT_MAX = 1_000_000
#: Output values kept per arm by ``window_stats`` (enough for a PSI, cheap to ship every few seconds).
WINDOW_SAMPLE = 5_000
FEEDBACK_BATCH_MAX = 10_000


class InferenceLog:
    """The inference log service: writers for the runtime, feedback, reads and aggregates."""

    #: How long an unknown request id is retried, for a record another process has not flushed yet
    #: (writers flush every 0.5 s by default).
    retry_delay = 0.6
    #: How long feedback waits for a record still buffered by a writer of this process.
    local_wait = 1.0

    def __init__(self, ctx: Context, *, retry_delay: float | None = None) -> None:
        self.ctx = ctx
        if retry_delay is not None:
            self.retry_delay = retry_delay
        self._writers: list[LogWriter] = []
        self._lock = threading.Lock()

    # -- writing ------------------------------------------------------------------------------
    def writer(
        self, *, flush_rows: int = 1000, flush_interval: float = 0.5, max_buffer: int | None = None
    ) -> LogWriter:
        """A background batch writer (one per runtime); ``close()`` of this service closes it too."""
        writer = LogWriter(
            self._write_entries, flush_rows=flush_rows, flush_interval=flush_interval, max_buffer=max_buffer
        )
        with self._lock:
            self._writers.append(writer)
        return writer

    def write(self, records: Iterable[InferenceRecord]) -> int:
        """Write records now, in one batch (tests, imports, batch jobs); returns the rows stored."""
        now = time.time()
        entries = []
        for record in records:
            if type(record) is not InferenceRecord:
                raise ValidationError(
                    f"write takes InferenceRecords, got {type(record).__name__}", field="records"
                )
            entries.append((record, now))
        return self._write_entries(entries)

    def _write_entries(self, entries: list[Entry]) -> int:
        rows = [_prepare(record, ts) for record, ts in entries]
        with self.ctx.db.session() as session:
            return q.insert_records(session, rows)

    def flush(self) -> int:
        """Write every writer's buffer now; returns the records written."""
        return sum(w.flush() for w in self._live_writers())

    def close(self) -> None:
        """Close every writer this service handed out (writing what they hold)."""
        with self._lock:
            writers, self._writers = self._writers, []
        for w in writers:
            w.close()

    def _live_writers(self) -> list[LogWriter]:
        with self._lock:
            return list(self._writers)

    # -- feedback -----------------------------------------------------------------------------
    def feedback(
        self,
        endpoint: str,
        request_id: str,
        *,
        label: Any = None,
        reward: float | int | None = None,
        actor: str = "system",
    ) -> Feedback:
        """Attach a label and/or a reward to a logged request (even days later).

        Sending feedback again for the same request adds a row: the newest label and the newest
        reward are the ones analysis uses, the earlier ones stay in ``feedback_history``.
        NotFoundError (404) when the request id is not logged for ``endpoint``.
        """
        return self.feedback_many(
            endpoint, [{"request_id": request_id, "label": label, "reward": reward}], actor=actor
        )[0]

    def feedback_many(
        self, endpoint: str, items: Sequence[Mapping[str, Any]], *, actor: str = "system"
    ) -> list[Feedback]:
        """Attach many labels/rewards at once; all or nothing (an unknown id rejects the batch)."""
        endpoint = check_text("endpoint", endpoint, q.ENDPOINT_MAX)
        actor = check_text("actor", actor, q.ACTOR_MAX)
        checked = _check_items(items)
        self._require_logged(endpoint, [c["request_id"] for c in checked])
        now = datetime.now(UTC)
        rows = [{**c, "at": now, "actor": actor} for c in checked]
        with self.ctx.db.session() as session:
            q.insert_feedback(session, rows)
        return [Feedback(endpoint=endpoint, **row) for row in rows]

    def _require_logged(self, endpoint: str, request_ids: list[str]) -> None:
        found = self._lookup(request_ids)
        missing = [r for r in request_ids if r not in found]
        if missing:
            waited = self._wait_local(missing)
            if not waited:
                time.sleep(self.retry_delay)  # another process may still hold it in its buffer
            found.update(self._lookup(missing))
            missing = [r for r in request_ids if r not in found]
        if missing:
            shown = ", ".join(repr(m) for m in missing[:5]) + (" ..." if len(missing) > 5 else "")
            raise NotFoundError(
                f"request_id {shown} is not in the inference log of endpoint {endpoint!r}; send the "
                "request_id a prediction returned (feedback can arrive days later, but only for logged requests)",
                field="request_id",
            )
        elsewhere = sorted({r for r in request_ids if found[r] != endpoint})
        if elsewhere:
            raise NotFoundError(
                f"request_id {elsewhere[0]!r} was logged by endpoint {found[elsewhere[0]]!r}, not {endpoint!r}; "
                "send the feedback to that endpoint",
                field="request_id",
            )

    def _lookup(self, request_ids: list[str]) -> dict[str, str]:
        with self.ctx.db.session() as session:
            return q.find_endpoints(session, request_ids)

    def _wait_local(self, request_ids: list[str]) -> bool:
        """Flush this process's writers that still hold one of the ids; True when one did."""
        holding = [w for w in self._live_writers() if any(w.contains(r) for r in request_ids)]
        deadline = time.monotonic() + self.local_wait
        for w in holding:
            while time.monotonic() < deadline:
                try:
                    w.flush()
                    break
                except Exception as exc:  # the database hiccupped; retry until the deadline
                    log.warning("loopml: flush for feedback failed: %s", exc)
                    time.sleep(0.05)
        return bool(holding)

    def feedback_history(self, request_id: str) -> list[Feedback]:
        """Every label/reward sent for a request, oldest first."""
        request_id = check_text("request_id", request_id, q.REQUEST_ID_MAX)
        with self.ctx.db.session() as session:
            record = q.get_record(session, request_id)
            if record is None:
                raise NotFoundError(
                    f"request_id {request_id!r} is not in the inference log", field="request_id"
                )
            rows = q.feedback_history(session, request_id)
        return [
            Feedback(request_id=r[1], endpoint=record[1], label=r[2], reward=r[3], at=r[4], actor=r[5])
            for r in rows
        ]

    # -- reads --------------------------------------------------------------------------------
    def get(self, request_id: str) -> InferenceRecord:
        """One logged request (NotFoundError when it is not logged, or not flushed yet)."""
        request_id = check_text("request_id", request_id, q.REQUEST_ID_MAX)
        with self.ctx.db.session() as session:
            row = q.get_record(session, request_id)
        if row is None:
            raise NotFoundError(
                f"request_id {request_id!r} is not in the inference log (records are written in batches: "
                "a request from the last second may not be flushed yet)",
                field="request_id",
            )
        return InferenceRecord(**dict(zip(q.LOG_COLUMNS, row, strict=True)))

    def records(
        self, endpoint: str, *, since: TimeRef = None, until: TimeRef = None, limit: int = 1000
    ) -> pd.DataFrame:
        """The newest ``limit`` records of ``endpoint`` in [since, until), in time order (oldest first)."""
        endpoint = check_text("endpoint", endpoint, q.ENDPOINT_MAX)
        limit = _check_limit(limit)
        start, end = _time("since", since), _time("until", until)
        with self.ctx.db.session() as session:
            rows = q.select_records(session, endpoint, since=start, until=end, limit=limit)
        rows.reverse()
        return pd.DataFrame(rows, columns=RECORD_COLUMNS)

    def count(self, endpoint: str | None = None) -> int:
        """Records stored (for ``endpoint``, or all)."""
        if endpoint is not None:
            endpoint = check_text("endpoint", endpoint, q.ENDPOINT_MAX)
        with self.ctx.db.session() as session:
            return q.count_records(session, endpoint)

    def joined(self, endpoint: str, *, since: TimeRef = None) -> pd.DataFrame:
        """Every prediction of ``endpoint`` with its newest label and reward (one SQL join), oldest first.

        ``output`` is the first row's score (probability or value) and ``predicted`` its label when
        the runtime logged one; ``label``/``reward`` are None for requests without feedback.
        """
        endpoint = check_text("endpoint", endpoint, q.ENDPOINT_MAX)
        start = _time("since", since)
        with self.ctx.db.session() as session:
            rows = q.select_joined(session, endpoint, since=start)
        parsed = orjson.loads("[" + ",".join([r[8] for r in rows]) + "]")  # one parse, not 100k
        firsts = [out.first(p) for p in parsed]
        frame = pd.DataFrame(
            {
                "request_id": [r[0] for r in rows],
                "at": [r[1] for r in rows],
                "model": [r[2] for r in rows],
                "version": [r[3] for r in rows],
                "arm": [r[4] for r in rows],
                "routing_key": [r[5] for r in rows],
                "status": [r[6] for r in rows],
                "latency_ms": np.array([r[7] for r in rows], dtype=float),
                "outputs": parsed,
                "output": np.array([_nan(out.score_of(f)) for f in firsts], dtype=float),
                "predicted": [out.label_of(f) for f in firsts],
                "label": [r[9] for r in rows],
                "reward": np.array([_nan(r[10]) for r in rows], dtype=float),
                "label_at": [r[11] for r in rows],
                "reward_at": [r[12] for r in rows],
            },
            columns=JOINED_COLUMNS,
        )
        return frame

    # -- archive ------------------------------------------------------------------------------
    def archive(
        self,
        *,
        before: TimeRef,
        endpoint: str | None = None,
        delete: bool = False,
        progress: Progress | None = None,
    ) -> ArchiveResult:
        """Move whole UTC days before ``before`` into the partitioned dataset ``inference_archive``.

        Idempotent; with ``delete=True`` the archived rows and their feedback leave the table only
        after the dataset version is committed (docs/inference.md). ``progress(stage, done, total)``
        is called per day (the CLI's bar).
        """
        from loopml.serving.inference.archive import archive

        if endpoint is not None:
            endpoint = check_text("endpoint", endpoint, q.ENDPOINT_MAX)
        if not isinstance(delete, bool):
            raise ValidationError(f"delete={delete!r}: use True or False", field="delete")
        cutoff = _time("before", before)
        if cutoff is None:
            raise ValidationError(
                "before is required: a datetime, an ISO string or a timedelta such as timedelta(days=7)",
                field="before",
            )
        return archive(self.ctx, before=cutoff, endpoint=endpoint, delete=delete, progress=progress)

    # -- aggregates for the runtime -----------------------------------------------------------
    def window_stats(
        self, endpoint: str, *, since: TimeRef, model: str | None = None, version: int | None = None
    ) -> dict[str, ArmStats]:
        """Per arm since ``since``: requests, errors (status other than ok), p50/p99 latency, output sample.

        ``model`` / ``version`` keep only requests served by that model (version): the canary watchdog
        judges each canary version on its own traffic, not on a predecessor's still in the window.
        """
        endpoint = check_text("endpoint", endpoint, q.ENDPOINT_MAX)
        start = _time("since", since)
        if start is None:
            raise ValidationError(
                "since is required (a datetime or a timedelta like timedelta(minutes=5))", field="since"
            )
        if model is not None:
            model = check_text("model", model, q.MODEL_MAX)
        if version is not None and (isinstance(version, bool) or not isinstance(version, int) or version < 1):
            raise ValidationError(f"version={version!r}: use a version number >= 1", field="version")
        with self.ctx.db.session() as session:
            rows = q.select_window(session, endpoint, since=start)
        if model is not None:
            rows = [r for r in rows if r[1] == model]
        if version is not None:
            rows = [r for r in rows if r[2] == version]
        groups: dict[str, list[tuple[Any, ...]]] = {}
        for row in rows:
            groups.setdefault(arm_key(row[0], row[1], row[2]), []).append(row)
        stats = {}
        for key, members in groups.items():
            latency = np.array([m[5] for m in members], dtype=float)
            ok = [m for m in members if m[3] == "ok"]
            sample = ok[-WINDOW_SAMPLE:]
            scores = [out.score_of(out.first(orjson.loads(m[6]))) for m in sample]
            values = np.array([s for s in scores if s is not None], dtype=float)
            p50, p99 = np.percentile(latency, [50, 99]).tolist() if latency.size else (None, None)
            stats[key] = ArmStats(
                n=len(members),
                errors=len(members) - len(ok),
                p50=p50,
                p99=p99,
                outputs=values,
                models=tuple(sorted({f"{m[1]}/{m[2]}" if m[2] is not None else m[1] for m in members})),
            )
        return stats

    def timeline(self, endpoint: str, *, since: TimeRef, bucket_seconds: int = 60) -> pd.DataFrame:
        """Per time bucket and arm: requests, errors, error rate, p50/p99 latency (the dashboard's charts).

        Buckets start at multiples of ``bucket_seconds`` since the epoch (minute buckets start on
        the minute), so two calls agree on their edges; the database computes the bucket and sends
        no JSON, which keeps 100k requests well under a second. Columns: ``bucket`` (UTC start),
        ``arm``, ``requests``, ``errors``, ``error_rate``, ``p50_ms``, ``p99_ms``; oldest first.
        """
        endpoint = check_text("endpoint", endpoint, q.ENDPOINT_MAX)
        start = _time("since", since)
        if start is None:
            raise ValidationError(
                "since is required (a datetime or a timedelta like timedelta(hours=1))", field="since"
            )
        if (
            isinstance(bucket_seconds, bool)
            or not isinstance(bucket_seconds, int)
            or not 1 <= bucket_seconds <= 7 * 86400
        ):
            raise ValidationError(
                f"bucket_seconds={bucket_seconds!r}: use an integer from 1 to {7 * 86400} (a week)",
                field="bucket_seconds",
            )
        with self.ctx.db.session() as session:
            rows = q.select_timeline(session, endpoint, since=start, bucket_seconds=bucket_seconds)
        columns = ["bucket", "arm", "requests", "errors", "error_rate", "p50_ms", "p99_ms"]
        if not rows:
            return pd.DataFrame(columns=columns)
        keys = {k: arm_key(*k) for k in {r[1:4] for r in rows}}
        raw = pd.DataFrame(
            {
                "bucket": np.array([r[0] for r in rows], dtype=np.int64),
                "arm": [keys[r[1:4]] for r in rows],
                "error": np.array([r[4] != "ok" for r in rows], dtype=np.int64),
                "latency_ms": np.array([r[5] for r in rows], dtype=float),
            }
        )
        grouped = raw.groupby(["bucket", "arm"], sort=True)
        latency = grouped["latency_ms"]
        frame = pd.DataFrame(
            {
                "requests": grouped.size(),
                "errors": grouped["error"].sum(),
                "p50_ms": latency.quantile(0.5),
                "p99_ms": latency.quantile(0.99),
            }
        ).reset_index()
        frame["error_rate"] = frame["errors"] / frame["requests"]
        frame["bucket"] = pd.to_datetime(frame["bucket"] * bucket_seconds, unit="s", utc=True)
        return frame[columns]

    def reward_stats(self, endpoint: str, *, since: TimeRef = None) -> dict[str, RewardStats]:
        """Per arm: pulls (requests), reward sum, successes and failures for a Beta posterior."""
        endpoint = check_text("endpoint", endpoint, q.ENDPOINT_MAX)
        start = _time("since", since)
        with self.ctx.db.session() as session:
            rows = q.select_reward_stats(session, endpoint, since=start)
        totals: dict[str, list[float]] = {}
        for arm, model, version, pulls, rewarded, reward_sum, clipped in rows:
            acc = totals.setdefault(arm_key(arm, model, version), [0, 0.0, 0.0, 0])
            acc[0] += int(pulls)
            acc[1] += float(reward_sum)
            acc[2] += float(clipped)
            acc[3] += int(rewarded)
        return {
            key: RewardStats(
                pulls=int(p), reward_sum=s, successes=c, failures=max(float(n) - c, 0.0), rewarded=int(n)
            )
            for key, (p, s, c, n) in totals.items()
        }


# -- helpers ----------------------------------------------------------------------------------
def _prepare(record: InferenceRecord, ts: float) -> tuple[Any, ...]:
    """A record as a row tuple in ``LOG_COLUMNS`` order. Never raises: one odd record must not block
    the batch it is in, so over-long names are cut and unserialisable values are logged as text."""
    at = record.at if record.at is not None else datetime.fromtimestamp(ts, UTC)
    latency = record.latency_ms
    try:
        latency = float(latency)
        if not math.isfinite(latency):
            latency = -1.0
    except (TypeError, ValueError):
        latency = -1.0
    version = (
        record.version if isinstance(record.version, int) and not isinstance(record.version, bool) else None
    )
    return (
        record.request_id,
        _cut(record.endpoint, q.ENDPOINT_MAX),
        _cut(record.model, q.MODEL_MAX),
        version,
        None if record.arm is None else _cut(record.arm, q.ARM_MAX),
        _json(record.inputs),
        _json(record.outputs),
        latency,
        _cut(record.status, q.STATUS_MAX),
        None if record.error is None else str(record.error),
        None if record.routing_key is None else _cut(record.routing_key, q.ROUTING_KEY_MAX),
        None if record.shadow is None else _json(record.shadow),
        at,
    )


def _cut(value: Any, max_len: int) -> str:
    text = value if isinstance(value, str) else str(value)
    return text[:max_len]


def _json(value: Any) -> str:
    try:
        return q.dumps(value)
    except (TypeError, ValueError) as exc:  # e.g. an int beyond 64 bits, a cycle
        return q.dumps({"unserialisable": repr(value)[:1000], "error": str(exc)})


def _nan(value: Any) -> float:
    return math.nan if value is None else float(value)


def _check_limit(limit: Any) -> int:
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= LIMIT_MAX:
        raise ValidationError(f"limit={limit!r}: use an integer from 1 to {LIMIT_MAX}", field="limit")
    return limit


def _time(name: str, value: TimeRef) -> datetime | None:
    """A point in time from a datetime (naive = UTC), a timedelta (that long ago) or an ISO string."""
    if value is None:
        return None
    if isinstance(value, timedelta):
        if value < timedelta(0):
            raise ValidationError(f"{name}={value}: a negative duration points to the future", field=name)
        return datetime.now(UTC) - value
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            raise ValidationError(
                f"{name}={value!r} is not an ISO 8601 time; use e.g. 2026-01-31T12:00:00+00:00", field=name
            ) from None
    if isinstance(value, pd.Timestamp):
        value = value.to_pydatetime()
    if not isinstance(value, datetime):
        raise ValidationError(
            f"{name} must be a datetime, a timedelta or an ISO string, got {type(value).__name__}", field=name
        )
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _check_items(items: Any) -> list[dict[str, Any]]:
    if isinstance(items, Mapping) or not isinstance(items, Sequence) or isinstance(items, (str, bytes)):
        raise ValidationError(
            "items must be a list of {request_id, label and/or reward} objects", field="items"
        )
    if not items:
        raise ValidationError(
            "items is empty; send at least one {request_id, label or reward}", field="items"
        )
    if len(items) > FEEDBACK_BATCH_MAX:
        raise ValidationError(
            f"items has {len(items)} entries; send at most {FEEDBACK_BATCH_MAX} per call", field="items"
        )
    checked = []
    seen: set[str] = set()
    for i, item in enumerate(items):
        where = f"items[{i}]" if len(items) > 1 else ""
        prefix = f"{where}." if where else ""
        if not isinstance(item, Mapping):
            raise ValidationError(
                f"{where or 'item'} must be an object, got {type(item).__name__}", field=where or "items"
            )
        unknown = sorted(set(item) - {"request_id", "label", "reward"})
        if unknown:
            raise ValidationError(
                f"{prefix}{unknown[0]} is not a feedback field; use request_id, label and/or reward",
                field=f"{prefix}{unknown[0]}",
            )
        rid = check_text(f"{prefix}request_id", item.get("request_id"), q.REQUEST_ID_MAX)
        label = check_label(item.get("label"), f"{prefix}label")
        reward = check_reward(item.get("reward"), f"{prefix}reward")
        if label is None and reward is None:
            raise ValidationError(
                f"{where or 'feedback'} has neither label nor reward; send one or both",
                field=f"{prefix}label",
            )
        if rid in seen:
            raise ValidationError(
                f"{prefix}request_id {rid!r} appears twice in one batch", field=f"{prefix}request_id"
            )
        seen.add(rid)
        checked.append({"request_id": rid, "label": label, "reward": reward})
    return checked
