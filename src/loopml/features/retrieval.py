"""Offline retrieval: ``training_frame(entities, features)`` as a point-in-time join with TTL.

Each entity row gets, per view, the newest value whose event time is <= the row's time and not older
than the view's TTL. On-demand features are then computed from those values plus the request columns
of the entity frame, with the very function serving uses.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import pandas as pd
from pandas.api import types as pdt

from loopml.errors import ValidationError
from loopml.features import ondemand
from loopml.features.catalog import OnDemandPlan
from loopml.storage.offline import JoinSpec

if TYPE_CHECKING:
    from loopml.features.store import FeatureStore


def training_frame(
    store: FeatureStore,
    entities: pd.DataFrame,
    features: Sequence[str],
    *,
    event_time: str = "event_ts",
    full_names: bool = False,
) -> pd.DataFrame:
    if not isinstance(entities, pd.DataFrame):
        raise ValidationError(
            f"entities must be a pandas DataFrame of keys and times, got {type(entities).__name__}"
        )
    if event_time not in entities.columns:
        raise ValidationError(
            f"entity frame has no time column {event_time!r} (columns: {list(entities.columns)[:20]}); add it or "
            "pass event_time='<your column>' so each row is joined as of its own time"
        )
    times = entities[event_time]
    if not pdt.is_datetime64_any_dtype(times):
        try:
            pd.to_datetime(times, utc=True)
        except (ValueError, TypeError):
            raise ValidationError(
                f"entity frame column {event_time!r} must hold timestamps (got {times.dtype})"
            ) from None
    if times.isna().any():
        raise ValidationError(f"entity frame column {event_time!r} has missing times; every row needs one")
    plan = store.plan(features, full_names=full_names)
    joins = []
    for vp in plan.views:
        key = vp.join_key
        if key not in entities.columns:
            raise ValidationError(
                f"entity frame has no key column {key!r} needed by view {vp.record.view!r} "
                f"(entity {vp.record.spec['entity']!r}); columns are {list(entities.columns)[:20]}"
            )
        _check_key_column(entities[key], key, vp.key_dtype, vp.record.spec["entity"])
        data = store.view_data(vp.record)
        if not data.files:
            raise ValidationError(
                f"feature view {vp.record.view!r} has no rows yet (no source and nothing pushed); "
                "push rows or give the view a source"
            )
        joins.append(
            JoinSpec(
                data=data, entity_column=key, ttl_seconds=vp.record.ttl_seconds, outputs=tuple(vp.outputs)
            )
        )
    clash = [o for vp in plan.views for _, o in vp.outputs if o in entities.columns]
    if clash:
        raise ValidationError(
            f"entity frame already has column(s) {clash}; rename them or use full_names=True"
        )
    frame = store.engine.point_in_time_join(entities, event_time, joins) if joins else entities.copy()
    for odf in plan.on_demand:
        frame = apply_on_demand(odf, frame, request_source="entity frame")
    wanted = list(entities.columns) + plan.columns
    return frame[wanted]


def _check_key_column(series: pd.Series, column: str, dtype: str, entity: str) -> None:
    ok = (
        pdt.is_integer_dtype(series) and not pdt.is_bool_dtype(series)
        if dtype == "int"
        else (pdt.is_string_dtype(series) and series.dropna().map(lambda v: isinstance(v, str)).all())
    )
    if not ok:
        raise ValidationError(
            f"entity frame key column {column!r} is {series.dtype}; entity {entity!r} has {dtype} keys. "
            f"Convert it, e.g. frame[{column!r}] = frame[{column!r}].astype({'int' if dtype == 'int' else 'str'})"
        )


def apply_on_demand(odf: OnDemandPlan, frame: pd.DataFrame, *, request_source: str) -> pd.DataFrame:
    """Run an on-demand feature's function on ``frame`` (stored inputs + request columns) and attach outputs.

    A function annotated to take a mapping gets plain numpy columns, exactly as serving passes them
    (see ``ondemand``); any other gets a DataFrame.
    """
    name = odf.record.view
    missing = [c for c in odf.request if c not in frame.columns]
    if missing:
        raise ValidationError(
            f"on-demand feature {name!r} needs request field(s) {missing}; add them to the {request_source}"
        )
    if ondemand.takes_columns(odf.fn):
        inputs: Any = ondemand.frame_columns(odf, frame)
    else:
        inputs = pd.DataFrame({inner: frame[out].to_numpy() for inner, out in odf.inputs})
        for col in odf.request:
            inputs[col] = frame[col].to_numpy()
    result = ondemand.result_frame(odf, ondemand.call(odf, inputs), len(frame))
    out = frame.copy(deep=False)
    for inner, col in odf.outputs:
        out[col] = result[inner].to_numpy()
    return out
