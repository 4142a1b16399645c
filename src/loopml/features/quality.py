"""Trust in features: online/offline skew checks, per-version statistics, the unused-feature audit, summaries.

The skew check compares, for sampled keys, what serving would return *now* with what the offline
point-in-time join returns *as of now* from the same definition. Any difference is a bug (a broken
materialisation, a write that bypassed the push API, a transformation that differs by environment),
and it is reported per feature with examples.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import orjson
import pandas as pd

from loopml.errors import ValidationError
from loopml.features.models import FeatureSkew, FeatureStats, SkewReport, UsageAudit, ViewSkew
from loopml.features.serving import _decode_datetime
from loopml.features.sources import describe
from loopml.storage.metadata import features as q
from loopml.storage.metadata.base import utcnow
from loopml.storage.offline import JoinSpec

if TYPE_CHECKING:
    from loopml.features.catalog import VersionRecord
    from loopml.features.store import FeatureStore

MAX_EXAMPLES = 5


def _batch_views(store: FeatureStore, views: str | Sequence[str] | None) -> list[VersionRecord]:
    names = (
        [v.name for v in store.catalog.views() if v.kind == "batch"]
        if views is None
        else ([views] if isinstance(views, str) else list(views))
    )
    records = [store.catalog.version(n) for n in names]
    for r in records:
        if r.kind != "batch":
            raise ValidationError(
                f"{r.view!r} is an on-demand feature; check the stored views it reads instead"
            )
    return records


def _same(a: Any, b: Any) -> bool:
    a_missing = a is None or (isinstance(a, float) and math.isnan(a)) or a is pd.NaT
    b_missing = b is None or (isinstance(b, float) and math.isnan(b)) or b is pd.NaT
    if a_missing or b_missing:
        return a_missing and b_missing
    if isinstance(a, int | float) and isinstance(b, int | float) and not isinstance(a, bool):
        return math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=1e-12)
    if isinstance(a, datetime) or isinstance(b, datetime):
        return (
            pd.Timestamp(a).tz_localize(None) == pd.Timestamp(b).tz_localize(None)
            if pd.Timestamp(a).tzinfo is None
            else pd.Timestamp(a) == pd.Timestamp(b)
        )
    return bool(a == b)


def check(store: FeatureStore, views: str | Sequence[str] | None, *, sample: int = 100) -> SkewReport:
    if not isinstance(sample, int) or isinstance(sample, bool) or sample < 1:
        raise ValidationError(f"sample must be a positive integer, got {sample!r}")
    out = []
    for record in _batch_views(store, views):
        out.append(_check_view(store, record, sample))
    return SkewReport(checked_at=utcnow(), views=out)


def _check_view(store: FeatureStore, record: VersionRecord, sample: int) -> ViewSkew:
    data = store.view_data(record)
    features = list(record.features)
    if not data.files:
        return ViewSkew(record.view, record.number, 0, 0, 0, [FeatureSkew(f, 0, 0) for f in features])
    key_dtype = record.spec["key_dtype"]
    texts = list(dict.fromkeys(store.online.sample_keys(record.table, max(1, sample // 2))))
    for k in store.engine.sample_keys(data, sample):
        if len(texts) >= sample:
            break
        if str(k) not in texts:
            texts.append(str(k))
    if not texts:
        return ViewSkew(record.view, record.number, 0, 0, 0, [FeatureSkew(f, 0, 0) for f in features])
    keys = [int(t) for t in texts] if key_dtype == "int" else texts
    now = time.time()
    stored = store.online.read(record.table, texts)
    at = pd.Timestamp(now, unit="s", tz="UTC")
    entity = pd.DataFrame({record.spec["join_key"]: keys, "__at": [at] * len(keys)})
    if key_dtype == "int":
        entity[record.spec["join_key"]] = entity[record.spec["join_key"]].astype("int64")
    join = JoinSpec(
        data=data,
        entity_column=record.spec["join_key"],
        ttl_seconds=record.ttl_seconds,
        outputs=tuple((f, f"__v_{f}") for f in features),
        ts_output="__ts",
    )
    offline = store.engine.point_in_time_join(entity, "__at", [join])
    ttl = record.ttl_seconds
    missing = stale = 0
    mismatches = {f: 0 for f in features}
    examples: dict[str, list[dict[str, Any]]] = {f: [] for f in features}
    compared = 0
    for i, sv in enumerate(stored):
        off_ts = offline["__ts"].iloc[i]
        off_live = not pd.isna(off_ts) and (ttl is None or now - pd.Timestamp(off_ts).timestamp() <= ttl)
        if sv is None:
            missing += int(off_live)
            continue
        on_ts = sv.event_ts
        if not pd.isna(off_ts) and on_ts + 1e-6 < pd.Timestamp(off_ts).timestamp():
            stale += 1
            continue
        live = ttl is None or now - on_ts <= ttl
        packed = orjson.loads(sv.value) if live else {}
        compared += 1
        for f in features:
            on = packed.get(f)
            if record.features[f] == "datetime":
                on = _decode_datetime(on)
            off = offline[f"__v_{f}"].iloc[i]
            off = None if pd.isna(off) else (off.item() if hasattr(off, "item") else off)
            if not _same(on, off):
                mismatches[f] += 1
                if len(examples[f]) < MAX_EXAMPLES:
                    examples[f].append({"key": keys[i], "online": _plain(on), "offline": _plain(off)})
    return ViewSkew(
        view=record.view,
        version=record.number,
        keys_sampled=len(texts),
        missing_online=missing,
        stale_online=stale,
        features=[FeatureSkew(f, compared, mismatches[f], examples[f]) for f in features],
    )


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    return value


# -- statistics -------------------------------------------------------------------------------------


def compute_stats(store: FeatureStore, view: str, *, version: int | None = None) -> FeatureStats:
    record = store.catalog.version(view, version)
    if record.kind != "batch":
        raise ValidationError(f"{view!r} is an on-demand feature: it has no stored rows to describe")
    data = store.view_data(record)
    if not data.files:
        raise ValidationError(f"feature view {view!r} has no rows yet; push rows or give it a source first")
    stats = orjson.loads(orjson.dumps(store.engine.column_stats(data), option=orjson.OPT_SERIALIZE_NUMPY))
    now = utcnow()
    with store.ctx.db.session() as s:
        row = s.get(q.FeatureViewVersionRow, record.id)
        assert row is not None
        row.stats, row.stats_at = stats, now
    return FeatureStats(view=view, version=record.number, computed_at=now, stats=stats)


def stored_stats(store: FeatureStore, view: str, *, version: int | None = None) -> FeatureStats | None:
    record = store.catalog.version(view, version)
    with store.ctx.db.session() as s:
        row = s.get(q.FeatureViewVersionRow, record.id)
        assert row is not None
        if row.stats is None or row.stats_at is None:
            return None
        return FeatureStats(view=view, version=record.number, computed_at=row.stats_at, stats=dict(row.stats))


# -- unused features ----------------------------------------------------------------------------------


def registered_model_columns(store: FeatureStore) -> dict[str, list[str]]:
    """``{"model/N": [input columns]}`` for every registered model version (empty if no registry)."""
    try:
        from loopml.storage.metadata import registry as reg
    except ImportError:
        return {}
    if not hasattr(reg, "list_models"):
        return {}
    out: dict[str, list[str]] = {}
    with store.ctx.db.session() as s:
        for model, *_ in reg.list_models(s):
            for version in reg.list_versions(s, model.id, limit=10_000):
                cols = (version.signature or {}).get("columns", [])
                out[f"{model.name}/{version.number}"] = [
                    c["name"] if isinstance(c, dict) else str(c) for c in cols
                ]
    return out


def audit(store: FeatureStore, signatures: dict[str, Sequence[str]] | None = None) -> UsageAudit:
    if signatures is not None and not isinstance(signatures, dict):
        raise ValidationError("signatures must be a dict of model -> list of input column names")
    models = {
        k: list(v)
        for k, v in (signatures if signatures is not None else registered_model_columns(store)).items()
    }
    columns = {c for cols in models.values() for c in cols}
    every: list[str] = []
    used: list[str] = []
    for info in store.catalog.views():
        for feature in info.features:
            ref = f"{info.name}:{feature}"
            every.append(ref)
            if {feature, ref, f"{info.name}__{feature}"} & columns:
                used.append(ref)
    unused = [f for f in every if f not in used]
    return UsageAudit(models=models, used=used, unused=unused, total=len(every))


# -- dashboard data -------------------------------------------------------------------------------------


def summary(store: FeatureStore) -> list[dict[str, Any]]:
    """Per view: definition, versions, freshness (materialisation, pushes) and latest statistics."""
    out = []
    now = datetime.now(UTC)
    for info in store.catalog.views():
        versions = store.catalog.versions(info.name)
        latest = versions[-1]
        with store.ctx.db.session() as s:
            runs = q.list_materialisations(s, latest.id, limit=5)
            last_ok = q.last_materialisation(s, latest.id)
            segments, pushed_rows, newest_push = q.log_summary(s, latest.view_id)
            stats_row = s.get(q.FeatureViewVersionRow, latest.id)
            stats = dict(stats_row.stats) if stats_row is not None and stats_row.stats else None
            stats_at = stats_row.stats_at if stats_row is not None else None
        newest = max(
            [t for t in (last_ok.watermark if last_ok else None, newest_push) if t is not None], default=None
        )
        out.append(
            {
                "name": info.name,
                "kind": info.kind,
                "entity": info.entity,
                "features": info.features,
                "ttl_seconds": info.ttl_seconds,
                "source": describe(latest.spec.get("source")),
                "latest_version": info.latest_version,
                "versions": [
                    {
                        "number": v.number,
                        "fingerprint": v.fingerprint[:12],
                        "created_at": v.created_at.isoformat(),
                        "created_by": v.created_by,
                    }
                    for v in versions
                ],
                "freshness": {
                    "last_materialised_at": last_ok.finished_at.isoformat()
                    if last_ok and last_ok.finished_at
                    else None,
                    "watermark": last_ok.watermark.isoformat() if last_ok and last_ok.watermark else None,
                    "newest_pushed_event": newest_push.isoformat() if newest_push else None,
                    "pushed_rows": pushed_rows,
                    "push_segments": segments,
                    "data_age_seconds": (now - newest).total_seconds() if newest else None,
                },
                "materialisations": [
                    {
                        "status": r.status,
                        "rows": r.rows_written,
                        "chunks": r.chunks,
                        "full": r.full,
                        "started_at": r.started_at.isoformat(),
                        "finished_at": r.finished_at.isoformat() if r.finished_at else None,
                        "error": r.error,
                    }
                    for r in runs
                ],
                "stats": stats,
                "stats_at": stats_at.isoformat() if stats_at else None,
            }
        )
    return out
