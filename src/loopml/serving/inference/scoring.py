"""``score_dataset``: batch scoring of a dataset version with a registered model.

Why through ``lm.registry.load``: the batch path then verifies the artifact's digest and checks the
input against the model signature exactly like the online endpoint does, so a batch score and an
online answer for the same row agree. The scores become a dataset version with a contract, so they
are versioned, validated and joinable like any other data.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from loopml.errors import ValidationError

NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,127}$")
#: Columns the scorer writes; an id column may not take one of these names.
PREDICTION = "prediction"
PROBABILITY = "probability"
MODEL_VERSION = "model_version"
ROW = "row"
BATCH_ROWS_MAX = 10_000_000


def score_dataset(
    lm: Any,
    model_ref: str,
    dataset: str,
    *,
    version: int | str = "latest",
    output: str | None = None,
    batch_rows: int = 50_000,
    id_columns: Sequence[str] = (),
    actor: str = "system",
) -> Any:
    """Score ``dataset@version`` with ``model_ref`` and ingest the scores as a dataset; returns its version.

    Output columns: ``id_columns`` (default: the source contract's ``unique_key``, else ``row``, the
    row position in the source version), ``prediction`` (label or value), ``probability`` (binary
    classifiers: the positive class) or ``proba_<class>`` (multi-class), and ``model_version``.
    Extra columns in the source (ids, labels) are ignored by the model; a missing feature column is
    a ValidationError naming it. The default output name is ``<dataset>_<model>_scores``.
    """
    if not isinstance(model_ref, str) or not model_ref.strip():
        raise ValidationError(
            f"model_ref={model_ref!r}: give a registry ref like fraud@champion", field="model_ref"
        )
    if not isinstance(dataset, str) or not dataset.strip():
        raise ValidationError(f"dataset={dataset!r}: give a dataset name", field="dataset")
    if (
        isinstance(batch_rows, bool)
        or not isinstance(batch_rows, int)
        or not 1 <= batch_rows <= BATCH_ROWS_MAX
    ):
        raise ValidationError(
            f"batch_rows={batch_rows!r}: use an integer from 1 to {BATCH_ROWS_MAX}", field="batch_rows"
        )
    if isinstance(id_columns, str) or not all(isinstance(c, str) for c in id_columns):
        raise ValidationError(
            f"id_columns={id_columns!r}: give a list of column names, e.g. ['transaction_id']",
            field="id_columns",
        )
    model = lm.registry.load(model_ref)
    model_name = model.version.model
    name = output if output is not None else f"{dataset}_{model_name}_scores"[:128]
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise ValidationError(
            f"output={name!r}: a dataset name starts with a letter, then letters, digits, '_' or '-' (max 128)",
            field="output",
        )
    source = lm.datasets.version(dataset, version)
    frame = lm.datasets.read(dataset, source.number)
    if frame.empty:
        raise ValidationError(f"dataset {source.ref} has no rows to score", field="dataset")
    contract = source.contract or {}
    ids = _id_columns(list(id_columns), contract, frame)

    out = (
        frame[ids].reset_index(drop=True)
        if ids
        else pd.DataFrame({ROW: np.arange(len(frame), dtype=np.int64)})
    )
    columns = (
        _id_specs(ids, contract) if ids else [{"name": ROW, "dtype": "int", "nullable": False, "min": 0}]
    )
    predictions, probabilities = _predict(model, frame, batch_rows)
    out[PREDICTION] = predictions
    columns.append({"name": PREDICTION, "dtype": _dtype(predictions), "nullable": False})
    for col, values in probabilities.items():
        out[col] = values
        columns.append({"name": col, "dtype": "float", "nullable": False, "min": 0.0, "max": 1.0})
    out[MODEL_VERSION] = np.full(len(out), model.version.number, dtype=np.int64)
    columns.append({"name": MODEL_VERSION, "dtype": "int", "nullable": False})
    source_key = list(contract.get("unique_key") or [])
    unique_key = source_key if source_key and all(c in ids for c in source_key) else []
    new_contract = {"columns": columns, "unique_key": unique_key, "max_bad_share": 0.0}
    result = lm.datasets.ingest(name, out, contract=new_contract, actor=actor)
    return result.version


def _id_columns(requested: list[str], contract: dict[str, Any], frame: pd.DataFrame) -> list[str]:
    ids = requested or [c for c in contract.get("unique_key") or [] if c in frame.columns]
    missing = [c for c in ids if c not in frame.columns]
    if missing:
        raise ValidationError(
            f"id column {missing[0]!r} is not in the dataset; columns: {', '.join(map(str, frame.columns))}",
            field="id_columns",
        )
    taken = [c for c in ids if c in (PREDICTION, PROBABILITY, MODEL_VERSION) or c.startswith("proba_")]
    if taken:
        raise ValidationError(
            f"id column {taken[0]!r} clashes with a column the scorer writes; rename it", field="id_columns"
        )
    return list(dict.fromkeys(ids))


def _id_specs(ids: list[str], contract: dict[str, Any]) -> list[dict[str, Any]]:
    """The id columns' declarations, copied from the source contract (same rules, same dtypes)."""
    by_name = {c["name"]: c for c in contract.get("columns", [])}
    return [dict(by_name.get(c, {"name": c, "dtype": "str", "nullable": True})) for c in ids]


def _predict(model: Any, frame: pd.DataFrame, batch_rows: int) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    labels, probas = [], []
    for start in range(0, len(frame), batch_rows):
        chunk = frame.iloc[start : start + batch_rows]
        if model.is_classifier:
            proba = np.asarray(model.predict_proba(chunk, strict=False), dtype=float)
            probas.append(proba)
            labels.append(np.asarray(model.classes, dtype=object)[np.argmax(proba, axis=1)])
        else:
            labels.append(np.asarray(model.predict(chunk, strict=False)))
    predictions = np.concatenate(labels)
    if predictions.dtype.kind == "f" and not np.isfinite(predictions).all():
        bad = int(np.flatnonzero(~np.isfinite(predictions))[0])
        raise ValidationError(
            f"the model returned NaN or infinity for row {bad}; check that row's features", field="prediction"
        )
    if not probas:
        return predictions, {}
    proba = np.concatenate(probas)
    if not np.isfinite(proba).all():
        bad = int(np.flatnonzero(~np.isfinite(proba).all(axis=1))[0])
        raise ValidationError(f"the model returned NaN probabilities for row {bad}", field="probability")
    predictions = _native(predictions)
    classes = list(model.classes)
    if len(classes) == 2:
        return predictions, {PROBABILITY: proba[:, 1]}
    return predictions, {f"proba_{_slug(c)}": proba[:, i] for i, c in enumerate(classes)}


def _native(values: np.ndarray) -> np.ndarray:
    """Object arrays of numpy scalars -> a typed array (so the contract dtype is int/bool/float/str)."""
    items = [v.item() if isinstance(v, np.generic) else v for v in values]
    if all(isinstance(v, bool) for v in items):
        return np.array(items, dtype=bool)
    if all(isinstance(v, int) and not isinstance(v, bool) for v in items):
        return np.array(items, dtype=np.int64)
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in items):
        return np.array(items, dtype=float)
    return np.array([str(v) for v in items], dtype=object)


def _dtype(values: np.ndarray) -> str:
    kind = values.dtype.kind
    return {"b": "bool", "i": "int", "u": "int", "f": "float"}.get(kind, "str")


def _slug(value: Any) -> str:
    text = re.sub(r"[^A-Za-z0-9_]+", "_", str(value)).strip("_")
    return text or str(abs(hash(value)) % 10**6)
