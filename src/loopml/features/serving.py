"""Online reads and streaming pushes: the request-time half of the feature store.

``online_features`` is a hot path: the feature list resolves to a cached plan, all views' keys go to
the online store in one round trip (one SQL ``IN`` per view on SQLite, one MGET on Redis), and values
are decoded with orjson. When the store is unreachable, ``on_unavailable="missing"`` returns empty
values flagged ``degraded`` so the serving layer can answer with its fallback instead of failing.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson
import pandas as pd

from loopml.errors import BackendUnavailableError, ValidationError
from loopml.features import ondemand
from loopml.features.models import OnlineFeatures, PushResult
from loopml.features.schema import check_frame, check_key_values
from loopml.storage.metadata import features as q
from loopml.storage.metadata.core import record_event
from loopml.storage.offline import write_parquet

if TYPE_CHECKING:
    from loopml.features.store import FeatureStore

_MODES = ("raise", "missing")


def _key_columns(keys: Any) -> dict[str, list[Any]]:
    """Accept ``{"user_id": [1, 2]}`` or ``[{"user_id": 1}, {"user_id": 2}]``; return column lists."""
    if isinstance(keys, dict):
        cols = {
            k: (list(v) if isinstance(v, list | tuple) or hasattr(v, "tolist") else [v])
            for k, v in keys.items()
        }
    elif isinstance(keys, list | tuple) and all(isinstance(r, dict) for r in keys):
        names = list(keys[0]) if keys else []
        cols = {n: [] for n in names}
        for i, row in enumerate(keys):
            if set(row) != set(names):
                raise ValidationError(f"keys[{i}] has fields {sorted(row)}; every row needs {sorted(names)}")
            for n in names:
                cols[n].append(row[n])
    else:
        raise ValidationError(
            "keys must be a dict of key column -> values (e.g. {'user_id': [1, 2]}) or a list of dicts "
            f"(e.g. [{{'user_id': 1}}]); got {type(keys).__name__}"
        )
    lengths = {len(v) for v in cols.values()}
    if len(lengths) > 1:
        raise ValidationError(
            f"key columns have different lengths {sorted(lengths)}; give one value per row in each"
        )
    if not cols or lengths == {0}:
        raise ValidationError("keys is empty: pass at least one entity key, e.g. {'user_id': [1]}")
    return cols


def _decode_datetime(value: Any) -> Any:
    if isinstance(value, str):
        parsed = datetime.fromisoformat(value)
        return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)
    return value


def online_features(
    store: FeatureStore,
    keys: Any,
    features: Sequence[str],
    *,
    request: dict[str, Sequence[Any]] | None = None,
    on_unavailable: str = "raise",
    full_names: bool = False,
) -> OnlineFeatures:
    if on_unavailable not in _MODES:
        raise ValidationError(f"on_unavailable={on_unavailable!r}; use 'raise' or 'missing'")
    plan = store.plan(features, full_names=full_names)
    columns = _key_columns(keys)
    n = len(next(iter(columns.values())))
    reads = []
    for vp in plan.views:
        column = vp.join_key
        if column not in columns:
            raise ValidationError(
                f"keys have no {column!r} column, needed by view {vp.record.view!r} (entity "
                f"{vp.record.spec['entity']!r}); got key columns {sorted(columns)}"
            )
        reads.append(
            (
                vp.record.table,
                check_key_values(
                    columns[column], column=column, dtype=vp.key_dtype, entity=vp.record.spec["entity"]
                ),
            )
        )
    degraded = False
    try:
        stored = store.online.read_many(reads) if reads else []
    except BackendUnavailableError:
        if on_unavailable == "raise":
            raise
        degraded = True
        stored = [[None] * n for _ in reads]
    now = time.time()
    values: dict[str, list[Any]] = {}
    ages: dict[str, list[float | None]] = {}
    for vp, found in zip(plan.views, stored, strict=True):
        ttl = vp.record.ttl_seconds
        dtypes = vp.record.features
        cols: dict[str, list[Any]] = {out: [None] * n for _, out in vp.outputs}
        age: list[float | None] = [None] * n
        for i, sv in enumerate(found):
            if sv is None:
                continue
            a = now - sv.event_ts
            age[i] = a
            if ttl is not None and a > ttl:
                continue
            packed = orjson.loads(sv.value)
            for feature, out in vp.outputs:
                v = packed.get(feature)
                cols[out][i] = _decode_datetime(v) if dtypes[feature] == "datetime" else v
        values.update(cols)
        ages[vp.record.view] = age
    if plan.on_demand:
        fields: dict[str, list[Any]] = {}
        for name, vals in (request or {}).items():
            vals = list(vals) if isinstance(vals, list | tuple) or hasattr(vals, "tolist") else [vals]
            if len(vals) != n:
                raise ValidationError(
                    f"request field {name!r} has {len(vals)} values for {n} keys; give one per key"
                )
            fields[name] = vals
        for odf in plan.on_demand:  # plain columns in, plain lists out: no one-row DataFrames
            values.update(ondemand.online_values(odf, values, fields, n))
    return OnlineFeatures(
        keys=columns, values={c: values[c] for c in plan.columns}, age_seconds=ages, degraded=degraded
    )


def _orjson_default(value: Any) -> Any:
    if value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, pd.Timestamp):
        return value.isoformat()
    raise TypeError(f"cannot serialise {type(value).__name__}")


def pack_rows(
    frame: pd.DataFrame, key: str, event_time: str, features: Sequence[str]
) -> list[tuple[str, float, bytes]]:
    """(key text, event epoch seconds, packed JSON) per row, the online store's write format."""
    ts = pd.to_datetime(frame[event_time], utc=True)
    epoch = (ts.astype("datetime64[us, UTC]").astype("int64") / 1e6).tolist()
    keys = [str(k) for k in frame[key].tolist()]
    records = (
        frame[list(features)].astype(object).where(frame[list(features)].notna(), None).to_dict("records")
    )
    opts = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NAIVE_UTC
    return [
        (k, t, orjson.dumps(r, default=_orjson_default, option=opts))
        for k, t, r in zip(keys, epoch, records, strict=True)
    ]


def push(store: FeatureStore, view: str, frame: pd.DataFrame, *, actor: str = "system") -> PushResult:
    record = store.catalog.version(view)
    if record.kind != "batch":
        raise ValidationError(f"{view!r} is an on-demand feature; push to the stored views it reads instead")
    spec = record.spec
    clean = check_frame(
        frame,
        owner=f"pushed frame for view {view!r}",
        columns=record.features,
        key=(spec["join_key"], spec["key_dtype"]),
        time_column=spec["event_time"],
        fix=f"Push the view's output schema: {spec['join_key']}, {spec['event_time']} and its features.",
    )
    if clean.empty:
        raise ValidationError(f"pushed frame for view {view!r} has no rows")
    if clean[spec["event_time"]].isna().any():
        raise ValidationError(
            f"pushed frame for view {view!r}: column {spec['event_time']!r} has missing times"
        )
    # 1. Offline first: the push log is the record of truth; the online store can be rebuilt from it.
    with tempfile.TemporaryDirectory(prefix="loopml-push-") as tmp:
        path = Path(tmp) / "segment.parquet"
        stored = clean.copy()
        stored[spec["event_time"]] = stored[spec["event_time"]].dt.tz_localize(None)
        write_parquet(stored, path)
        digest = store.ctx.artifacts.put_file(path)
    times = clean[spec["event_time"]]
    with store.ctx.db.session() as s:
        segment = q.FeatureLogSegmentRow(
            view_id=record.view_id,
            version_number=record.number,
            digest=digest,
            row_count=len(clean),
            min_event_ts=times.min().to_pydatetime(),
            max_event_ts=times.max().to_pydatetime(),
        )
        s.add(segment)
        s.flush()
        segment_id = segment.id
        record_event(
            s,
            "feature_view.pushed",
            "feature_view",
            view,
            actor=actor,
            data={"rows": len(clean), "segment": segment_id},
        )
    # 2. Online: conditional writes, so a late-arriving (older) row never hides a newer value.
    rows = pack_rows(clean, spec["join_key"], spec["event_time"], list(record.features))
    try:
        written = store.online.write(record.table, rows)
    except BackendUnavailableError as exc:
        raise BackendUnavailableError(
            f"{exc} The {len(clean)} pushed rows were appended to the offline log (segment {segment_id}); "
            f"`loopml features materialize {view}` delivers them once the online store is back."
        ) from None
    return PushResult(view=view, rows=len(clean), segment_id=segment_id, digest=digest, online_rows=written)
