"""``Monitors`` (``lm.monitors``): drift and delayed-label performance over the inference log, incrementally.

How a run stays incremental (issue 7: "compute over partitioned logs incrementally, not by
re-reading everything"):

1. The reference is profiled once and stored (``monitors.reference_digest``); a window costs only
   its own rows.
2. ``run`` computes only *closed* windows after ``monitors.watermark``, reading each window's rows
   once by the ``(endpoint, at)`` index, in chunks. Each window's row and the watermark move commit
   together (compare-and-set), so a crash or a second concurrent run never computes a window twice.
3. Labels arrive days later. Without reading any log rows, one grouped query finds the windows
   inside the label horizon whose records got a label after the window's ``updated_at``; only
   those are read again, and only their ``performance`` is recomputed (drift never changes).

``MonitorRun.rows_read`` counts every log row read, so the claim above is testable.
"""

from __future__ import annotations

import builtins
import logging
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

import pandas as pd

from loopml.checks import check_actor
from loopml.context import Context
from loopml.errors import ConflictError, LoopmlError, NotFoundError, ValidationError, did_you_mean
from loopml.monitoring import reference as ref
from loopml.monitoring.logframes import LABEL, SCORE, WindowData, first_log_time, read_window
from loopml.monitoring.performance import performance_report
from loopml.monitoring.spec import NAME_RE, PREDICTION, MonitorSpec, parse_time
from loopml.monitoring.windows import (
    MonitorInfo,
    MonitorRun,
    MonitorWindow,
    align,
    bucket_start,
    closed_windows,
)
from loopml.serving.inference.archive import LogArchive
from loopml.storage.metadata import inference as iq
from loopml.storage.metadata import monitoring as q
from loopml.storage.metadata.base import utcnow
from loopml.storage.metadata.core import record_event

log = logging.getLogger("loopml.monitoring")

SUBJECT = "monitor"
#: Windows one ``run`` computes at most (a monitor created over a year of hourly log catches up
#: over several runs instead of holding one call for an hour).
MAX_WINDOWS = 1000
WINDOWS_LIMIT_MAX = 100_000
#: Changing these would misalign or re-target every stored window: make a new monitor instead.
FIXED_FIELDS = ("endpoint", "window_seconds")


class Monitors:
    """The monitors service. Stateless apart from the context and a small profile cache."""

    #: Log rows fetched per round trip while reading a window.
    chunk_rows = 5000

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self._profiles: dict[str, Any] = {}
        self._archive = LogArchive(ctx)  # days archived and deleted from the table

    # -- definitions --------------------------------------------------------------------------
    def create(self, spec: MonitorSpec | Mapping[str, Any], *, actor: str = "system") -> MonitorInfo:
        """Add a monitor and profile its reference now (so a bad reference fails here, not at 3 am).

        The endpoint must exist or have logged records. A dataset reference with ``features=None``
        on an endpoint without traffic yet is profiled on the first run instead.
        """
        spec = _spec(spec)
        actor = check_actor(actor)
        self._require_endpoint(spec.endpoint)
        with self.ctx.db.session() as session:
            if q.get_monitor(session, spec.name) is not None:
                raise ConflictError(
                    f"monitor {spec.name!r} already exists; change it with update() or delete it first",
                    field="name",
                )
        digest = self._build_reference(spec, lazy=True)
        now = utcnow()
        with self.ctx.db.session() as session:
            row = q.insert_monitor(
                session, name=spec.name, endpoint=spec.endpoint, spec=spec.to_dict(), now=now
            )
            if digest is not None:
                row = q.update_monitor(session, row.id, reference_digest=digest)
            record_event(
                session, "monitor.created", SUBJECT, spec.name, actor=actor, data={"spec": spec.to_dict()}
            )
        return self._info(row)

    def update(
        self,
        name: str,
        spec: MonitorSpec | Mapping[str, Any],
        *,
        actor: str = "system",
        expected_revision: int | None = None,
    ) -> MonitorInfo:
        """Replace a monitor's spec (revision + 1); the reference is profiled again when its source,
        features or prediction flag changed. The endpoint and the window length cannot change."""
        current = self.get(name)
        if isinstance(spec, Mapping):
            spec = MonitorSpec.from_dict(spec, name=current.name)
        spec = _spec(spec)
        actor = check_actor(actor)
        if spec.name != current.name:
            raise ValidationError(f"spec.name {spec.name!r} differs from {current.name!r}", field="name")
        for key in FIXED_FIELDS:
            if getattr(spec, key) != getattr(current.spec, key):
                raise ValidationError(
                    f"{key} cannot change ({getattr(current.spec, key)!r} -> {getattr(spec, key)!r}): stored "
                    "windows would no longer match; create a new monitor instead",
                    field=key,
                )
        digest = current.reference_digest
        reprofile = any(
            getattr(spec, k) != getattr(current.spec, k) for k in ("reference", "features", "prediction")
        )
        if reprofile:
            digest = self._build_reference(spec, lazy=True)
        return self._store_spec(
            name, spec, digest, actor, "monitor.updated", {"spec": spec.to_dict()}, expected_revision
        )

    def set_reference(
        self,
        name: str,
        frame_or_dataset: pd.DataFrame | str,
        *,
        version: int | str = "latest",
        actor: str = "system",
    ) -> MonitorInfo:
        """Point the monitor at new reference data: a dataset name, or a DataFrame profiled now.

        Windows already computed keep their results (they were right against the old reference);
        later windows compare with the new one.
        """
        current = self.get(name)
        if isinstance(frame_or_dataset, str):
            spec = current.spec.with_changes(reference={"dataset": frame_or_dataset, "version": version})
            return self.update(name, spec, actor=actor)
        if not isinstance(frame_or_dataset, pd.DataFrame):
            raise ValidationError(
                f"reference must be a DataFrame or a dataset name, got {type(frame_or_dataset).__name__}",
                field="reference",
            )
        digest = ref.build(self.ctx, current.spec, frame_or_dataset)
        spec = current.spec.with_changes(reference={"frame": digest})
        return self._store_spec(
            name, spec, digest, check_actor(actor), "monitor.reference_set", {"digest": digest}
        )

    def _store_spec(
        self,
        name: str,
        spec: MonitorSpec,
        digest: str | None,
        actor: str,
        event: str,
        data: dict[str, Any],
        expected_revision: int | None = None,
    ) -> MonitorInfo:
        """Save a new spec and reference under the row lock (revision + 1) and audit it; with
        ``expected_revision``, refuse when someone changed the monitor since the caller read it."""
        with self.ctx.db.session() as session:
            row = q.get_monitor(session, name, lock=True)
            if row is None:
                raise self._not_found(name, session)
            if expected_revision is not None and row.revision != expected_revision:
                raise ConflictError(
                    f"monitor {name!r} is at revision {row.revision}, not {expected_revision}; re-read it and retry",
                    field="expected_revision",
                )
            row = q.update_monitor(
                session,
                row.id,
                spec=spec.to_dict(),
                revision=row.revision + 1,
                reference_digest=digest,
                updated_at=utcnow(),
            )
            record_event(session, event, SUBJECT, name, actor=actor, data=data)
        return self._info(row)

    def delete(self, name: str, *, actor: str = "system") -> None:
        """Delete a monitor and its windows (the audit events stay)."""
        name = _name(name)
        actor = check_actor(actor)
        with self.ctx.db.session() as session:
            row = q.get_monitor(session, name, lock=True)
            if row is None:
                raise self._not_found(name, session)
            q.delete_monitor(session, row.id)
            record_event(session, "monitor.deleted", SUBJECT, name, actor=actor)

    def get(self, name: str) -> MonitorInfo:
        name = _name(name)
        with self.ctx.db.session() as session:
            row = q.get_monitor(session, name)
            if row is None:
                raise self._not_found(name, session)
        return self._info(row)

    def list(self, *, endpoint: str | None = None) -> builtins.list[MonitorInfo]:
        """Every monitor (of ``endpoint``), by name."""
        with self.ctx.db.session() as session:
            rows = q.list_monitors(session, endpoint=endpoint)
        return [self._info(r) for r in rows]

    # -- computing ----------------------------------------------------------------------------
    def run(
        self, name: str, *, now: datetime | str | None = None, max_windows: int = MAX_WINDOWS
    ) -> MonitorRun:
        """Compute the closed windows after the watermark, then refresh performance for late labels.

        ``now`` (default: the clock) decides which windows are closed and where the label horizon
        starts; replaying history or testing passes it explicitly.
        """
        info = self.get(name)
        moment = utcnow() if now is None else parse_time(now, "now")
        if isinstance(max_windows, bool) or not isinstance(max_windows, int) or max_windows < 1:
            raise ValidationError(f"max_windows={max_windows!r}: use a positive integer", field="max_windows")
        spec = info.spec
        built = False
        if info.reference_digest is None:
            digest = self._build_reference(spec, lazy=True)
            if digest is None:
                return MonitorRun(monitor=name, watermark=info.watermark, error=None)
            with self.ctx.db.session() as session:
                row = q.get_monitor(session, name)
                q.update_monitor(session, row.id, reference_digest=digest)
            info = self.get(name)
            built = True
        manifest = ref.load_manifest(self.ctx, info.reference_digest)
        profile = self._profile(manifest)
        monitor_id = _id(self.ctx, name)
        computed, rows_read, drifted = self._compute_new(
            monitor_id, info, manifest, profile, moment, max_windows
        )
        recomputed, rows_again = self._refresh_performance(monitor_id, self.get(name), moment)
        final = self.get(name)
        pending = _pending(final.watermark, moment, spec.window_seconds)
        return MonitorRun(
            monitor=name,
            windows_computed=computed,
            windows_recomputed=recomputed,
            rows_read=rows_read + rows_again,
            watermark=final.watermark,
            reference_built=built,
            drifted_windows=drifted,
            pending_windows=pending,
        )

    def run_all(self, now: datetime | str | None = None) -> builtins.list[MonitorRun]:
        """Run every monitor; one monitor's failure is reported in its ``MonitorRun.error``, not raised."""
        runs = []
        for info in self.list():
            try:
                runs.append(self.run(info.name, now=now))
            except Exception as exc:  # one broken monitor must not stop the others
                log.exception("loopml: monitor %s failed", info.name)
                message = str(exc) if isinstance(exc, LoopmlError) else f"{type(exc).__name__}: {exc}"
                runs.append(MonitorRun(monitor=info.name, watermark=info.watermark, error=message))
        return runs

    def _compute_new(
        self,
        monitor_id: int,
        info: MonitorInfo,
        manifest: dict[str, Any],
        profile: Any,
        now: datetime,
        max_windows: int,
    ) -> tuple[int, int, builtins.list[str]]:
        spec = info.spec
        start = info.watermark
        if start is None:
            with self.ctx.db.session() as session:
                first = first_log_time(session, spec.endpoint, archive=self._archive)
            if first is None:
                return 0, 0, []
            start = align(first, spec.window_seconds)
        windows = closed_windows(start, now, spec.window_seconds, max_windows)
        state = {"watermark": info.watermark}
        computed = rows_read = 0
        drifted: builtins.list[str] = []
        empty: builtins.list[tuple[datetime, datetime]] = []
        next_at: datetime | None = None
        for window_start, window_end in windows:
            if next_at is None or next_at < window_start:
                with self.ctx.db.session() as session:
                    next_at = first_log_time(
                        session, spec.endpoint, since=window_start, archive=self._archive
                    )
                if next_at is None:  # nothing logged after this point: every remaining window is empty
                    next_at = windows[-1][1]
            if next_at >= window_end:  # a quiet window: stored as rows=0 without reading the log
                empty.append((window_start, window_end))
                computed += 1
                continue
            self._store_empty(monitor_id, info.name, state, empty)
            empty = []
            begun = utcnow()  # labels stamped after this are picked up by the next refresh
            with self.ctx.db.session() as session:
                data = read_window(
                    session,
                    spec.endpoint,
                    window_start,
                    window_end,
                    features=manifest["features"],
                    prediction=manifest["prediction"],
                    slices=spec.performance["slices"],
                    chunk_rows=self.chunk_rows,
                    archive=self._archive,
                )
            rows_read += data.rows
            drift = self._drift(info.name, spec, manifest, profile, data)
            labelled, performance = self._performance(info.name, spec, data)
            self._store(
                monitor_id,
                info.name,
                state,
                [(window_start, window_end, data.rows, labelled, drift, performance)],
                begun,
            )
            computed += 1
            if drift and drift.get("dataset_drifted"):
                drifted.append(window_start.isoformat())
        self._store_empty(monitor_id, info.name, state, empty)
        return computed, rows_read, drifted

    def _store_empty(
        self,
        monitor_id: int,
        name: str,
        state: dict[str, Any],
        empty: builtins.list[tuple[datetime, datetime]],
    ) -> None:
        if empty:
            rows = [(start, end, 0, 0, None, None) for start, end in empty]
            self._store(monitor_id, name, state, rows, utcnow())

    def _store(
        self,
        monitor_id: int,
        name: str,
        state: dict[str, Any],
        windows: builtins.list[tuple[Any, ...]],
        at: datetime,
    ) -> None:
        """Insert window rows and move the watermark past the last one, in one transaction."""
        with self.ctx.db.session() as session:
            last_end = windows[-1][1]
            if not q.advance_watermark(session, monitor_id, old=state["watermark"], new=last_end, now=at):
                raise ConflictError(
                    f"monitor {name!r} was advanced by another run while this one computed "
                    f"{windows[0][0].isoformat()}; the stored windows are intact, nothing to redo",
                    field="watermark",
                )
            for start, end, rows, labelled, drift, performance in windows:
                q.insert_window(
                    session,
                    monitor_id=monitor_id,
                    window_start=start,
                    window_end=end,
                    rows=rows,
                    labelled=labelled,
                    drift=drift,
                    performance=performance,
                    computed_at=at,
                )
        state["watermark"] = last_end

    def _refresh_performance(self, monitor_id: int, info: MonitorInfo, now: datetime) -> tuple[int, int]:
        spec = info.spec
        horizon = int(spec.performance["label_horizon_seconds"])
        if info.watermark is None or horizon <= 0:
            return 0, 0
        since = now - timedelta(seconds=horizon)
        with self.ctx.db.session() as session:
            fresh = q.window_freshness(session, monitor_id, since=since)
            if not fresh:
                return 0, 0
            buckets = iq.labelled_buckets(
                session,
                spec.endpoint,
                start=min(fresh),
                end=info.watermark,
                after=min(fresh.values()),
                bucket_seconds=spec.window_seconds,
            )
        stale = sorted(
            start
            for bucket, label_at in buckets
            if (start := bucket_start(bucket, spec.window_seconds)) in fresh and label_at > fresh[start]
        )
        rows_read = 0
        for window_start in stale:
            begun = utcnow()
            with self.ctx.db.session() as session:
                data = read_window(
                    session,
                    spec.endpoint,
                    window_start,
                    window_start + timedelta(seconds=spec.window_seconds),
                    features=(),
                    prediction=False,
                    slices=spec.performance["slices"],
                    drift=False,
                    chunk_rows=self.chunk_rows,
                    archive=self._archive,
                )
            rows_read += data.rows
            labelled, performance = self._performance(info.name, spec, data)
            with self.ctx.db.session() as session:
                q.update_window_performance(
                    session, monitor_id, window_start, labelled=labelled, performance=performance, at=begun
                )
        return len(stale), rows_read

    def _drift(
        self, name: str, spec: MonitorSpec, manifest: dict[str, Any], profile: Any, data: WindowData
    ) -> dict[str, Any] | None:
        from loopml.monitoring.drift import DriftConfig, compute_drift

        frame = data.drift
        if len(frame) < spec.min_rows:
            return None
        columns = manifest["columns"]
        present = [c for c in columns if c in frame.columns and frame[c].notna().any()]
        absent = [c for c in columns if c not in present]
        if not present:
            return None
        try:
            report = compute_drift(
                profile, frame[present].infer_objects(), columns=present, config=DriftConfig(**spec.drift)
            ).to_dict()
        except LoopmlError as exc:  # a window the engine cannot score must not block the monitor
            log.warning("loopml: monitor %s: drift skipped for a window: %s", name, exc)
            return None
        if absent:
            report["absent_features"] = absent
        return report

    def _performance(
        self, name: str, spec: MonitorSpec, data: WindowData
    ) -> tuple[int, dict[str, Any] | None]:
        frame = data.performance
        if not len(frame):
            return 0, None
        has = frame[LABEL].notna() & frame[SCORE].notna()
        labelled = int(has.sum())
        if labelled < spec.min_rows:
            return labelled, None
        perf = spec.performance
        try:
            report = performance_report(
                frame,
                task=perf["task"],
                label_col=LABEL,
                score_col=SCORE,
                slices=perf["slices"],
                threshold=perf["threshold"],
                min_slice_rows=perf["min_slice_rows"],
            )
        except LoopmlError as exc:
            log.warning("loopml: monitor %s: performance skipped for a window: %s", name, exc)
            return labelled, None
        return report["labelled"], report

    # -- reading results ----------------------------------------------------------------------
    def windows(
        self,
        name: str,
        *,
        since: datetime | str | None = None,
        until: datetime | str | None = None,
        limit: int = 500,
    ) -> builtins.list[MonitorWindow]:
        """The newest ``limit`` windows starting in [since, until), oldest first."""
        info = self.get(name)
        start = None if since is None else parse_time(since, "since")
        end = None if until is None else parse_time(until, "until")
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= WINDOWS_LIMIT_MAX:
            raise ValidationError(
                f"limit={limit!r}: use an integer from 1 to {WINDOWS_LIMIT_MAX}", field="limit"
            )
        with self.ctx.db.session() as session:
            rows = q.select_windows(session, _id(self.ctx, info.name), since=start, until=end, limit=limit)
        return [_window(info.name, r) for r in rows]

    def latest(self, name: str) -> MonitorWindow | None:
        found = self.windows(name, limit=1)
        return found[0] if found else None

    def drift_series(self, name: str, feature: str) -> pd.DataFrame:
        """Per window: ``window_start, statistic, threshold, drifted, test`` of one feature (or ``prediction``)."""
        info = self.get(name)
        known = self._columns(info)
        if not isinstance(feature, str) or feature not in known:
            raise ValidationError(
                f"feature={feature!r} is not watched by monitor {name!r}."
                + did_you_mean(str(feature), known),
                field="feature",
            )
        rows = []
        for w in self.windows(name, limit=WINDOWS_LIMIT_MAX):
            item = (w.drift or {}).get("features", {}).get(feature)
            if item is not None:
                rows.append(
                    [w.window_start, item["statistic"], item["threshold"], item["drifted"], item["test"]]
                )
        return pd.DataFrame(rows, columns=["window_start", "statistic", "threshold", "drifted", "test"])

    def performance_series(self, name: str, metric: str, *, slice: str | None = None) -> pd.DataFrame:
        """Per window with performance: ``window_start, value, n`` of one metric, overall or for a
        slice given as ``"column=value"``."""
        self.get(name)
        if not isinstance(metric, str) or not metric:
            raise ValidationError("metric must be a metric name such as auc or mae", field="metric")
        column = value = None
        if slice is not None:
            if not isinstance(slice, str) or "=" not in slice:
                raise ValidationError(
                    f"slice={slice!r}: write it as column=value, e.g. region=north", field="slice"
                )
            column, value = slice.split("=", 1)
        rows, seen = [], set()
        for w in self.windows(name, limit=WINDOWS_LIMIT_MAX):
            perf = w.performance
            if not perf:
                continue
            metrics = perf["metrics"] if column is None else perf["slices"].get(column, {}).get(value)
            if metrics is None:
                continue
            seen.update(metrics)
            if metric in metrics:
                rows.append([w.window_start, metrics[metric], metrics.get("n", perf["labelled"])])
        if seen and metric not in seen:
            raise ValidationError(
                f"metric={metric!r} is not computed by this monitor." + did_you_mean(metric, sorted(seen)),
                field="metric",
            )
        return pd.DataFrame(rows, columns=["window_start", "value", "n"])

    # -- helpers ------------------------------------------------------------------------------
    def _columns(self, info: MonitorInfo) -> builtins.list[str]:
        if info.reference is not None:
            return list(info.reference.get("columns", []))
        return list(info.spec.features or []) + ([PREDICTION] if info.spec.prediction else [])

    def _profile(self, manifest: dict[str, Any]) -> Any:
        digest = manifest["profile"]
        if digest not in self._profiles:
            if len(self._profiles) > 32:
                self._profiles.clear()
            self._profiles[digest] = ref.load_profile(self.ctx, manifest)
        return self._profiles[digest]

    def _build_reference(self, spec: MonitorSpec, *, lazy: bool) -> str | None:
        """Profile the reference; with ``lazy``, None when it cannot be known yet (dataset reference,
        ``features=None`` and no traffic to tell inputs from other columns)."""
        if spec.reference_kind == "frame":
            return spec.reference["frame"]
        unknown_inputs = lazy and spec.reference_kind == "dataset" and spec.features is None
        if unknown_inputs and not ref.input_fields(self.ctx, spec.endpoint):
            ref.reference_frame(self.ctx, spec)  # still fail now on an unknown dataset
            return None
        return ref.build(self.ctx, spec)

    def _require_endpoint(self, endpoint: str) -> None:
        with self.ctx.db.session() as session:
            if first_log_time(session, endpoint, archive=self._archive) is not None:
                return
        try:
            from loopml.serving.endpoints.service import Endpoints

            Endpoints(self.ctx).get(endpoint)
        except NotFoundError:
            raise NotFoundError(
                f"endpoint {endpoint!r} does not exist and has no logged predictions; create it first "
                "(loopml endpoints create) or fix the name",
                field="endpoint",
            ) from None

    def _info(self, row: Any) -> MonitorInfo:
        manifest = None
        if row.reference_digest is not None:
            try:
                manifest = ref.load_manifest(self.ctx, row.reference_digest)
            except LoopmlError:
                manifest = None
        return MonitorInfo(
            name=row.name,
            endpoint=row.endpoint,
            spec=MonitorSpec.from_dict(row.spec),
            revision=row.revision,
            reference_digest=row.reference_digest,
            reference=manifest,
            watermark=row.watermark,
            last_run_at=row.last_run_at,
            created_at=row.created_at,
            updated_at=row.updated_at,
        )

    def _not_found(self, name: str, session: Any) -> NotFoundError:
        known = [r.name for r in q.list_monitors(session)]
        return NotFoundError(f"monitor {name!r} does not exist." + did_you_mean(name, known), field="name")


def _spec(spec: Any) -> MonitorSpec:
    if isinstance(spec, Mapping):
        return MonitorSpec.from_dict(spec)
    if not isinstance(spec, MonitorSpec):
        raise ValidationError(
            f"spec must be a MonitorSpec or a dict, got {type(spec).__name__}", field="spec"
        )
    return spec


def _name(name: Any) -> str:
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise ValidationError(f"name={name!r} is not a monitor name", field="name")
    return name


def _id(ctx: Context, name: str) -> int:
    with ctx.db.session() as session:
        row = q.get_monitor(session, name)
    if row is None:
        raise NotFoundError(f"monitor {name!r} does not exist", field="name")
    return int(row.id)


def _window(monitor: str, row: Any) -> MonitorWindow:
    return MonitorWindow(
        monitor=monitor,
        window_start=row.window_start,
        window_end=row.window_end,
        rows=row.rows,
        labelled=row.labelled,
        drift=row.drift,
        performance=row.performance,
        computed_at=row.computed_at,
        updated_at=row.updated_at,
    )


def _pending(watermark: datetime | None, now: datetime, window_seconds: int) -> int:
    """Closed windows not computed yet (a run capped by ``max_windows`` leaves some)."""
    if watermark is None:
        return 0
    return max(int((now - watermark).total_seconds() // window_seconds), 0)
