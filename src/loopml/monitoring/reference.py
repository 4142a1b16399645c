"""A monitor's reference: the data "normal" looks like, profiled once and kept in the artifact store.

Each window costs only its own side because the reference side (sorted samples, bin edges, category
shares) is computed once by ``ReferenceProfile.build`` and stored. ``monitors.reference_digest``
points at a small JSON manifest, not at the profile itself, so ``show`` can say what the reference
is (source, rows, columns, whether the model output is part of it) without loading the profile:

``{"format": "loopml.monitor-reference/1", "profile": "sha256:...", "columns": [...],
"features": [...], "prediction": bool, "rows": n, "source": {...}, "built_at": iso}``
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import orjson
import pandas as pd

from loopml.context import Context
from loopml.errors import ValidationError
from loopml.monitoring.logframes import read_window
from loopml.monitoring.spec import PREDICTION, MonitorSpec, parse_time
from loopml.serving.inference.archive import LogArchive
from loopml.storage.metadata import inference as q

FORMAT = "loopml.monitor-reference/1"
#: Log records sampled to learn which input fields an endpoint receives (``features=None``).
FIELD_SAMPLE = 1000


def input_fields(ctx: Context, endpoint: str) -> list[str]:
    """Input field names seen in the endpoint's newest records (empty when nothing is logged yet)."""
    with ctx.db.session() as session:
        rows = q.select_records(session, endpoint, limit=FIELD_SAMPLE)
    seen: dict[str, None] = {}
    for row in rows:
        inputs = row[q.LOG_COLUMNS.index("inputs")]
        for item in inputs if isinstance(inputs, list) else [inputs]:
            if isinstance(item, dict):
                seen.update(dict.fromkeys(item))
    return list(seen)


def reference_frame(ctx: Context, spec: MonitorSpec) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The reference rows for ``spec`` and a description of where they came from."""
    ref = spec.reference or {}
    if "dataset" in ref:
        from loopml.data import DatasetStore

        store = DatasetStore(ctx)
        version = store.version(ref["dataset"], ref["version"])
        frame = store.read(ref["dataset"], version.number)
        source = {"dataset": ref["dataset"], "version": version.number}
        if spec.features is not None:
            missing = [f for f in spec.features if f not in frame.columns]
            if missing:
                raise ValidationError(
                    f"features {missing} are not columns of dataset {version.ref}; columns: "
                    f"{', '.join(map(str, frame.columns))}",
                    field="features",
                )
        return frame, source
    if "frame" in ref:
        raise ValidationError(
            "this monitor's reference is a frame given to set_reference(); give it again with the new features",
            field="reference",
        )
    since = parse_time(ref["since"], "reference.since")
    until = parse_time(ref["until"], "reference.until")
    with ctx.db.session() as session:
        data = read_window(
            session,
            spec.endpoint,
            since,
            until,
            features=spec.features,
            prediction=spec.prediction,
            labels=False,
            archive=LogArchive(ctx),
        )
    return data.drift, {"since": ref["since"], "until": ref["until"], "requests": data.rows}


def choose_columns(
    frame: pd.DataFrame, spec: MonitorSpec, known_inputs: Sequence[str]
) -> tuple[list[str], bool]:
    """(features, prediction): the watched input columns present in ``frame``, and whether it has outputs."""
    if spec.features is not None:
        features = list(spec.features)
    elif known_inputs:  # sorted: JSONB (PostgreSQL) does not keep the order fields were sent in
        features = sorted(c for c in frame.columns if c in set(known_inputs) and c != PREDICTION)
    else:
        features = sorted(c for c in frame.columns if c != PREDICTION)
    features = [f for f in features if f in frame.columns and frame[f].notna().any()]
    prediction = spec.prediction and PREDICTION in frame.columns and bool(frame[PREDICTION].notna().any())
    return features, prediction


def build(ctx: Context, spec: MonitorSpec, frame: pd.DataFrame | None = None) -> str:
    """Profile the reference (``frame``, else the spec's source) and store it; returns the manifest digest.

    ValidationError (``reference``) when the reference has no usable rows or columns.
    """
    from loopml.monitoring.drift import ReferenceProfile

    if frame is None:
        frame, source = reference_frame(ctx, spec)
        known = input_fields(ctx, spec.endpoint) if spec.features is None and "dataset" in source else []
    else:
        if not isinstance(frame, pd.DataFrame):
            raise ValidationError(
                f"reference must be a DataFrame or a dataset name, got {type(frame).__name__}",
                field="reference",
            )
        source, known = {"frame": True, "rows": len(frame)}, []
    if not len(frame):
        raise ValidationError(
            f"the reference {source} holds no rows; point it at data the endpoint has seen", field="reference"
        )
    features, prediction = choose_columns(frame, spec, known)
    columns = features + ([PREDICTION] if prediction else [])
    if not columns:
        raise ValidationError(
            f"the reference {source} has none of the watched columns; list features= or use another reference",
            field="reference",
        )
    kinds = {k: v for k, v in (spec.drift.get("kinds") or {}).items() if k in columns}
    profile = ReferenceProfile.from_frame(frame[columns].infer_objects(), columns=columns, kinds=kinds)
    profile_digest = ctx.artifacts.put_bytes(profile.to_bytes())
    manifest = {
        "format": FORMAT,
        "profile": profile_digest,
        "columns": columns,
        "features": features,
        "prediction": prediction,
        "rows": len(frame),
        "source": source,
        "built_at": datetime.now(UTC).isoformat(),
    }
    return ctx.artifacts.put_bytes(orjson.dumps(manifest, option=orjson.OPT_SORT_KEYS))


def load_manifest(ctx: Context, digest: str) -> dict[str, Any]:
    """The reference manifest (``NotFoundError`` from the artifact store when it was removed)."""
    return orjson.loads(ctx.artifacts.get_bytes(digest))


def load_profile(ctx: Context, manifest: dict[str, Any]) -> Any:
    from loopml.monitoring.drift import ReferenceProfile

    return ReferenceProfile.from_bytes(ctx.artifacts.get_bytes(manifest["profile"]))
