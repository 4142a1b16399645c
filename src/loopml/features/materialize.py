"""Materialisation: copy the latest value per key from offline data to the online store, incrementally.

Each run remembers (per view version) the source data fingerprint, an event-time watermark and the
last push-log segment it read. The next run reads only source rows newer than the watermark (when the
source changed at all) and segments after the last one; ``full=True`` re-reads everything. DuckDB
computes "latest row per key" out of core and streams Arrow record batches of ``chunk_rows``, each
written to the online store before the next is fetched, so memory stays bounded by the chunk size and
DuckDB's memory limit, not by the number of rows. Rows older than the TTL are skipped: they would be
served as missing anyway.

``materialize_step`` is the function a pipeline step (or a scheduled job) calls.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import pandas as pd

from loopml.errors import ValidationError
from loopml.features.catalog import VersionRecord
from loopml.features.models import MaterialisationResult
from loopml.storage.metadata import features as q
from loopml.storage.metadata.base import utcnow
from loopml.storage.metadata.core import record_event

if TYPE_CHECKING:
    from loopml.context import Context
    from loopml.features.store import FeatureStore


def _view_names(store: FeatureStore, views: str | Sequence[str] | None) -> list[str]:
    if views is None:
        return [v.name for v in store.catalog.views() if v.kind == "batch"]
    names = [views] if isinstance(views, str) else list(views)
    for name in names:
        store.catalog.version(name)  # NotFoundError with a hint for unknown names
    return names


def materialize(
    store: FeatureStore,
    views: str | Sequence[str] | None = None,
    *,
    full: bool = False,
    chunk_rows: int = 50_000,
    until: datetime | None = None,
    progress: Callable[[str, int], None] | None = None,
    actor: str = "system",
) -> list[MaterialisationResult]:
    if not isinstance(chunk_rows, int) or isinstance(chunk_rows, bool) or chunk_rows < 1:
        raise ValidationError(f"chunk_rows must be a positive integer, got {chunk_rows!r}")
    results = []
    for name in _view_names(store, views):
        record = store.catalog.version(name)
        if record.kind != "batch":
            raise ValidationError(f"{name!r} is an on-demand feature; only stored views are materialised")
        results.append(
            _one(store, record, full=full, chunk_rows=chunk_rows, until=until, progress=progress, actor=actor)
        )
    return results


def _one(
    store: FeatureStore,
    record: VersionRecord,
    *,
    full: bool,
    chunk_rows: int,
    until: datetime | None,
    progress: Callable[[str, int], None] | None,
    actor: str,
) -> MaterialisationResult:
    started = time.perf_counter()
    with store.ctx.db.session() as s:
        last = None if full else q.last_materialisation(s, record.id)
        segments = q.log_segments(s, record.view_id, after_id=0 if last is None else last.last_segment_id)
    source_files, source_fp = store.source_files(record)
    source_changed = last is None or last.source_fingerprint != source_fp
    read_source = bool(source_files) and source_changed
    last_segment = segments[-1].id if segments else (last.last_segment_id if last else 0)
    if not read_source and not segments:
        return MaterialisationResult(
            view=record.view,
            version=record.number,
            status="skipped",
            full=full,
            rows_written=0,
            chunks=0,
            watermark=last.watermark if last else None,
            last_segment_id=last_segment,
            seconds=time.perf_counter() - started,
            message="up to date: no new source data and no new pushed rows",
        )
    files = (list(source_files) if read_source else []) + [
        str(store.ctx.artifacts.local_path(seg.digest, verify=False)) for seg in segments
    ]
    data = store._data(record, files)
    after = last.watermark if (last is not None and read_source) else None
    ttl = record.ttl_seconds
    if ttl is not None:
        horizon = (until or datetime.now(UTC)) - timedelta(seconds=ttl)
        after = horizon if after is None or horizon > after else after
    with store.ctx.db.session() as s:
        run = q.MaterialisationRow(
            view_version_id=record.id,
            status="running",
            full=full,
            source_fingerprint=source_fp,
            last_segment_id=last_segment,
            rows_written=0,
            chunks=0,
        )
        s.add(run)
        s.flush()
        run_id = run.id
    written = chunks = 0
    try:
        n_source = len(source_files) if read_source else 0
        batches = store.engine.latest_batches(
            data,
            after=pd.Timestamp(after) if after is not None else None,
            until=pd.Timestamp(until) if until is not None else None,
            chunk_rows=chunk_rows,
            files_after_ts=n_source,
        )
        for batch in batches:
            cols = batch.to_pydict()
            rows = zip(cols["key"], cols["event_ts"], (v.encode() for v in cols["value"]), strict=True)
            written += store.online.write(record.table, rows)
            chunks += 1
            if progress is not None:
                progress(record.view, batch.num_rows)
        if read_source:
            source_max = store.engine.max_event_time(store._data(record, source_files))
            watermark = (
                source_max.to_pydatetime() if source_max is not None else (last.watermark if last else None)
            )
        else:
            watermark = last.watermark if last else None
        if until is not None and watermark is not None and watermark > until:
            watermark = until
    except BaseException as exc:
        with store.ctx.db.session() as s:
            row = s.get(q.MaterialisationRow, run_id)
            assert row is not None
            row.status, row.error, row.finished_at = "failed", f"{type(exc).__name__}: {exc}", utcnow()
            row.rows_written, row.chunks = written, chunks
        raise
    with store.ctx.db.session() as s:
        row = s.get(q.MaterialisationRow, run_id)
        assert row is not None
        row.status, row.finished_at, row.watermark = "succeeded", utcnow(), watermark
        row.rows_written, row.chunks = written, chunks
        record_event(
            s,
            "feature_view.materialised",
            "feature_view",
            record.view,
            actor=actor,
            data={"version": record.number, "rows": written, "full": full},
        )
    return MaterialisationResult(
        view=record.view,
        version=record.number,
        status="succeeded",
        full=full,
        rows_written=written,
        chunks=chunks,
        watermark=watermark,
        last_segment_id=last_segment,
        seconds=time.perf_counter() - started,
    )


def materialize_step(
    ctx: Context, views: list[str] | None = None, full: bool = False, chunk_rows: int = 50_000
) -> dict[str, Any]:
    """Entry point for a pipeline step / scheduled job: materialise and return a JSON-able summary."""
    from loopml.features.store import FeatureStore

    store = FeatureStore(ctx)
    try:
        results = store.materialize(views, full=full, chunk_rows=chunk_rows, actor="pipeline")
    finally:
        store.close()
    return {"views": [r.to_dict() for r in results], "rows_written": sum(r.rows_written for r in results)}
