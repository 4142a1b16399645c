"""``FeatureStore``: the one object training code, serving code and pipelines use for features.

Definitions live in Python and are registered with versions; offline rows are Parquet files read by
DuckDB; the latest values per key live in the online store (SQLite embedded, Redis in production).
The heavy lifting is in small modules (retrieval, serving, materialise, quality); this class wires
them to the context and keeps the shared handles (DuckDB engine, online store connection).
"""

from __future__ import annotations

import tempfile
import threading
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd

from loopml.context import Context
from loopml.errors import LoopmlError, NotFoundError, ValidationError
from loopml.features.catalog import Catalog, Plan, VersionRecord
from loopml.features.definitions import Entity, FeatureView, OnDemandFeature
from loopml.features.models import (
    EntityInfo,
    FeatureStats,
    FeatureViewInfo,
    FeatureViewVersion,
    MaterialisationResult,
    OnlineFeatures,
    PushResult,
    SkewReport,
    UsageAudit,
)
from loopml.features.schema import check_frame
from loopml.features.sources import ResolvedSource, resolve
from loopml.storage.metadata import features as q
from loopml.storage.metadata.core import record_event
from loopml.storage.offline import OfflineEngine, ViewData, write_parquet
from loopml.storage.online import OnlineStore, open_online_store

Definition = Entity | FeatureView | OnDemandFeature


class FeatureStore:
    """Register definitions, build training frames, materialise, serve online, push, check, audit.

    ``online`` overrides the online store from settings (a URL or an open ``OnlineStore``); tests use
    it to run the same scenario on SQLite and Redis. ``plan_cache_seconds`` bounds how long a serving
    process keeps using a resolved feature list before it notices a newly registered version.
    """

    def __init__(
        self,
        ctx: Context,
        *,
        online: str | OnlineStore | None = None,
        memory_limit: str = "512MB",
        plan_cache_seconds: float = 10.0,
    ) -> None:
        self.ctx = ctx
        self.catalog = Catalog(ctx)
        self._online_arg = online
        self._online: OnlineStore | None = online if isinstance(online, OnlineStore) else None
        self._engine: OfflineEngine | None = None
        self._memory_limit = memory_limit
        self._lock = threading.Lock()
        self.plan_cache_seconds = plan_cache_seconds
        self._plans: dict[tuple[tuple[str, ...], bool], tuple[float, Plan]] = {}

    # -- shared handles -------------------------------------------------------------------------
    @property
    def online(self) -> OnlineStore:
        """The online store, opened (and health-checked) on first use."""
        if self._online is None:
            with self._lock:
                if self._online is None:
                    url = self._online_arg if isinstance(self._online_arg, str) else None
                    self._online = open_online_store(url or self.ctx.settings.resolved_online_url)
        return self._online

    @property
    def engine(self) -> OfflineEngine:
        if self._engine is None:
            with self._lock:
                if self._engine is None:
                    tmp = self.ctx.settings.home_dir / "tmp" / "duckdb"
                    self._engine = OfflineEngine(tmp, memory_limit=self._memory_limit)
        return self._engine

    def close(self) -> None:
        if self._online is not None and not isinstance(self._online_arg, OnlineStore):
            self._online.close()
        if self._engine is not None:
            self._engine.close()

    # -- definitions ----------------------------------------------------------------------------
    def register(
        self, *definitions: Definition, actor: str = "system"
    ) -> list[EntityInfo | FeatureViewVersion]:
        """Register entities, feature views and on-demand features; a changed definition gets a new version."""
        if not definitions:
            raise ValidationError("register() needs at least one Entity, FeatureView or OnDemandFeature")
        out: list[EntityInfo | FeatureViewVersion] = []
        for d in definitions:
            if isinstance(d, Entity):
                out.append(self.catalog.register_entity(d, actor=actor))
            elif isinstance(d, FeatureView | OnDemandFeature):
                version = self.catalog.register_view(d, actor=actor)
                if version.created and isinstance(d, FeatureView) and d.source is not None:
                    self._link_source_version(version.view, version.number)
                out.append(version)
            else:
                raise ValidationError(
                    f"register() takes Entity, FeatureView or OnDemandFeature objects, got {type(d).__name__}"
                )
        self._plans.clear()
        return out

    def _link_source_version(self, view: str, number: int) -> None:
        """Lineage: remember which dataset version a new definition first resolved to (if any yet)."""
        record = self.catalog.version(view, number)
        try:
            resolved = resolve(self.ctx, record.spec["source"], dict(record.assets.get("frames", {})))
        except LoopmlError:
            return  # the dataset may not exist yet; retrieval reports that clearly when it is used
        if resolved.dataset_version_id is not None:
            with self.ctx.db.session() as s:
                row = s.get(q.FeatureViewVersionRow, record.id)
                if row is not None:
                    row.source_version_id = resolved.dataset_version_id

    def entities(self) -> list[EntityInfo]:
        return self.catalog.entities()

    def list_views(self) -> list[FeatureViewInfo]:
        return self.catalog.views()

    def get_view(self, name: str) -> FeatureViewInfo:
        for info in self.catalog.views():
            if info.name == name:
                return info
        self.catalog.version(name)  # raises NotFoundError with a hint
        raise NotFoundError(f"unknown feature view {name!r}")

    def versions(self, name: str) -> list[FeatureViewVersion]:
        return [r.public() for r in self.catalog.versions(name)]

    def plan(self, features: Sequence[str], *, full_names: bool = False) -> Plan:
        """Resolve feature references (cached for ``plan_cache_seconds``: serving calls this per request)."""
        import time

        if isinstance(features, str) or not isinstance(features, Sequence):
            return self.catalog.plan(features, full_names=full_names)  # raises a ValidationError with the fix
        key = (tuple(features), full_names)
        hit = self._plans.get(key)
        now = time.monotonic()
        if hit is not None and now - hit[0] < self.plan_cache_seconds:
            return hit[1]
        plan = self.catalog.plan(features, full_names=full_names)
        self._plans[key] = (now, plan)
        return plan

    # -- offline data ---------------------------------------------------------------------------
    def view_data(
        self, record: VersionRecord, *, segments: Sequence[q.FeatureLogSegmentRow] | None = None
    ) -> ViewData:
        """The Parquet files holding a version's rows: source (snapshot if transformed) then push log."""
        if record.kind != "batch":
            raise ValidationError(f"{record.view!r} is an on-demand feature; it has no stored rows")
        source_files, _ = self.source_files(record)
        if segments is None:
            with self.ctx.db.session() as s:
                segments = q.log_segments(s, record.view_id)
        files = list(source_files) + [
            str(self.ctx.artifacts.local_path(seg.digest, verify=False)) for seg in segments
        ]
        return self._data(record, files)

    def _data(self, record: VersionRecord, files: Sequence[str]) -> ViewData:
        return ViewData(
            files=tuple(files),
            key=str(record.spec["join_key"]),
            event_time=str(record.spec["event_time"]),
            key_dtype=str(record.spec["key_dtype"]),
            features=tuple(record.features.items()),
        )

    def source_files(self, record: VersionRecord) -> tuple[tuple[str, ...], str | None]:
        """(files, data fingerprint) of a version's source after its transformation (snapshot cached)."""
        spec = record.spec.get("source")
        if not spec:
            return (), None
        resolved = resolve(self.ctx, spec, dict(record.assets.get("frames", {})))
        if resolved.sql is None and not record.spec.get("transform"):
            self._check_source_schema(record, resolved.files)
            return resolved.files, resolved.fingerprint
        snapshot = record.assets.get("snapshot") or {}
        if snapshot.get("source_fingerprint") == resolved.fingerprint:
            return (
                str(self.ctx.artifacts.local_path(snapshot["digest"], verify=False)),
            ), resolved.fingerprint
        return self._build_snapshot(record, resolved), resolved.fingerprint

    def _check_source_schema(self, record: VersionRecord, files: Sequence[str]) -> None:
        have = self.engine.schema(files)
        need = [record.spec["join_key"], record.spec["event_time"], *record.features]
        missing = [c for c in need if c not in have]
        if missing:
            raise ValidationError(
                f"source of feature view {record.view!r} lacks column(s) {missing} (it has {sorted(have)[:20]}); "
                "rename the columns in the data, or add a transform / SqlSource that produces them"
            )

    def _build_snapshot(self, record: VersionRecord, resolved: ResolvedSource) -> tuple[str, ...]:
        """Run the SQL / Python transformation once per source fingerprint and keep the result as Parquet."""
        with tempfile.TemporaryDirectory(prefix="loopml-snapshot-") as tmp:
            path = Path(tmp) / "snapshot.parquet"
            tables = dict(resolved.tables) if resolved.sql else {"source": resolved.files}
            sql = resolved.sql or "SELECT * FROM source"
            if record.spec.get("transform"):
                fn = self.catalog.definition_fn(record)
                raw = self.engine.query_frame(sql, tables=tables)
                try:
                    result = fn(raw)
                except Exception as exc:
                    raise ValidationError(
                        f"transform of feature view {record.view!r} failed: {type(exc).__name__}: {exc}"
                    ) from exc
                frame = check_frame(
                    result,
                    owner=f"transform output of feature view {record.view!r}",
                    columns=record.features,
                    key=(record.spec["join_key"], record.spec["key_dtype"]),
                    time_column=record.spec["event_time"],
                    fix="The transform must return the key, the event time and every declared feature.",
                )
                write_parquet(frame, path)
                rows = len(frame)
            else:
                rows = self.engine.copy_to_parquet(sql, str(path), tables=tables)
                self._check_source_schema(record, [str(path)])
            digest = self.ctx.artifacts.put_file(path)
        assets = dict(record.assets)
        assets["snapshot"] = {"source_fingerprint": resolved.fingerprint, "digest": digest, "rows": rows}
        self.catalog.set_assets(record, assets)
        return (str(self.ctx.artifacts.local_path(digest, verify=False)),)

    # -- training -------------------------------------------------------------------------------
    def training_frame(
        self,
        entities: pd.DataFrame,
        features: Sequence[str],
        *,
        event_time: str = "event_ts",
        full_names: bool = False,
    ) -> pd.DataFrame:
        """Point-in-time correct features for each (entity key, time) row: no row sees its future."""
        from loopml.features.retrieval import training_frame

        return training_frame(self, entities, features, event_time=event_time, full_names=full_names)

    # -- online ---------------------------------------------------------------------------------
    def online_features(
        self,
        keys: dict[str, Sequence[Any]] | Sequence[dict[str, Any]],
        features: Sequence[str],
        *,
        request: dict[str, Sequence[Any]] | None = None,
        on_unavailable: str = "raise",
        full_names: bool = False,
    ) -> OnlineFeatures:
        """Latest values (and their age) for many keys in one round trip per request."""
        from loopml.features.serving import online_features

        return online_features(
            self, keys, features, request=request, on_unavailable=on_unavailable, full_names=full_names
        )

    def push(self, view: str, frame: pd.DataFrame, *, actor: str = "system") -> PushResult:
        """Write streaming updates: appended to the offline push log, then to the online store."""
        from loopml.features.serving import push

        return push(self, view, frame, actor=actor)

    # -- materialisation ------------------------------------------------------------------------
    def materialize(
        self,
        views: str | Sequence[str] | None = None,
        *,
        full: bool = False,
        chunk_rows: int = 50_000,
        until: datetime | None = None,
        progress: Callable[[str, int], None] | None = None,
        actor: str = "system",
    ) -> list[MaterialisationResult]:
        """Copy the latest value per key since the last run to the online store, in bounded chunks."""
        from loopml.features.materialize import materialize

        return materialize(
            self, views, full=full, chunk_rows=chunk_rows, until=until, progress=progress, actor=actor
        )

    # -- quality --------------------------------------------------------------------------------
    def check(self, views: str | Sequence[str] | None = None, *, sample: int = 100) -> SkewReport:
        """Sample keys and compare online values with the offline point-in-time values at the same time."""
        from loopml.features.quality import check

        return check(self, views, sample=sample)

    def compute_stats(self, view: str, *, version: int | None = None) -> FeatureStats:
        """Compute and store per-version feature statistics (read later by drift monitoring)."""
        from loopml.features.quality import compute_stats

        return compute_stats(self, view, version=version)

    def stats(self, view: str, *, version: int | None = None) -> FeatureStats | None:
        """Stored statistics of a version (``None`` when never computed)."""
        from loopml.features.quality import stored_stats

        return stored_stats(self, view, version=version)

    def audit(self, signatures: dict[str, Sequence[str]] | None = None) -> UsageAudit:
        """Features that no registered model version uses (they cost without helping)."""
        from loopml.features.quality import audit

        return audit(self, signatures)

    def summary(self) -> list[dict[str, Any]]:
        """Plain data for a dashboard page: views, versions, freshness and statistics."""
        from loopml.features.quality import summary

        return summary(self)

    def record(self, kind: str, view: str, *, actor: str, data: dict[str, Any]) -> None:
        with self.ctx.db.session() as s:
            record_event(s, kind, "feature_view", view, actor=actor, data=data)
