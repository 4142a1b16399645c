"""Model performance on labelled predictions: classification and regression metrics, per slice.

Labels arrive late (a chargeback after weeks, a moderator's verdict the next morning), so monitors
compute these numbers per window and again when new labels land. The functions here are pure (no
database): a frame in, plain JSON-ready numbers out, so the same code scores a monitor window, a
test fixture or a notebook frame. AUC is the rank (Mann-Whitney) form with average ranks for ties,
which is exactly what ``sklearn.metrics.roc_auc_score`` returns; precision with no predicted
positive is 0.0, as scikit-learn's default ``zero_division`` gives.

``performance_report`` also reports fairness-style *gaps*: per slice column, the largest minus the
smallest value of each metric over the slices big enough to trust (``min_slice_rows``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from loopml.checks import check_choice, check_number
from loopml.errors import ValidationError

TASKS = ("auto", "classification", "regression")
CLASSIFICATION_METRICS = (
    "precision",
    "recall",
    "f1",
    "accuracy",
    "auc",
    "positives",
    "predicted_positive_rate",
)
REGRESSION_METRICS = ("mae", "rmse", "wape", "bias")
#: Metrics whose spread across slices is a "gap" (counts are not: a big slice is not unfair).
GAP_EXCLUDED = ("n", "positives")
#: Slice values kept per column (an id-like column would otherwise make thousands of slices).
MAX_SLICES = 50


def _vector(values: Any, field: str) -> np.ndarray:
    try:
        array = np.asarray(values, dtype=float)
    except (TypeError, ValueError):
        raise ValidationError(f"{field} must hold numbers only", field=field) from None
    if array.ndim != 1:
        raise ValidationError(f"{field} must be one-dimensional, got shape {array.shape}", field=field)
    if not np.isfinite(array).all():
        raise ValidationError(f"{field} has NaN or infinite values; drop unlabelled rows first", field=field)
    return array


def _pair(y_true: Any, other: Any, other_field: str) -> tuple[np.ndarray, np.ndarray]:
    truth = _vector(y_true, "y_true")
    values = _vector(other, other_field)
    if truth.shape != values.shape:
        raise ValidationError(
            f"y_true has {truth.size} values but {other_field} has {values.size}; pass aligned arrays",
            field=other_field,
        )
    if truth.size == 0:
        raise ValidationError("y_true is empty; metrics need at least one labelled row", field="y_true")
    return truth, values


def _rank_auc(truth: np.ndarray, score: np.ndarray) -> float | None:
    positives = int(truth.sum())
    negatives = truth.size - positives
    if positives == 0 or negatives == 0:
        return None  # undefined with one class (scikit-learn raises); None keeps the window readable
    ranks = pd.Series(score).rank(method="average").to_numpy()
    return float((ranks[truth == 1].sum() - positives * (positives + 1) / 2) / (positives * negatives))


def classification_metrics(y_true: Any, score: Any, *, threshold: float = 0.5) -> dict[str, Any]:
    """Binary metrics for 0/1 labels and scores (probabilities, or 0/1 predictions).

    A row is predicted positive when ``score >= threshold``. ``auc`` is None when only one class
    is present. Returns ``n``, ``precision``, ``recall``, ``f1``, ``accuracy``, ``auc``,
    ``positives`` (labelled positives) and ``predicted_positive_rate``.
    """
    threshold = check_number(threshold, "threshold")
    truth, values = _pair(y_true, score, "score")
    if not np.isin(truth, (0.0, 1.0)).all():
        bad = truth[~np.isin(truth, (0.0, 1.0))][0]
        raise ValidationError(
            f"y_true must be 0/1 labels for classification, got {bad!r}; use task='regression' for numbers",
            field="y_true",
        )
    predicted = values >= threshold
    actual = truth == 1
    tp = int(np.count_nonzero(predicted & actual))
    fp = int(np.count_nonzero(predicted & ~actual))
    fn = int(np.count_nonzero(~predicted & actual))
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {
        "n": int(truth.size),
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "accuracy": float(np.count_nonzero(predicted == actual) / truth.size),
        "auc": _rank_auc(truth, values),
        "positives": int(actual.sum()),
        "predicted_positive_rate": float(predicted.mean()),
    }


def regression_metrics(y_true: Any, y_pred: Any) -> dict[str, Any]:
    """``mae``, ``rmse``, ``wape`` (sum |error| / sum |truth|; None when the truth sums to 0) and
    ``bias`` (mean of prediction - truth: positive means the model over-predicts)."""
    truth, pred = _pair(y_true, y_pred, "y_pred")
    error = pred - truth
    scale = float(np.abs(truth).sum())
    return {
        "n": int(truth.size),
        "mae": float(np.abs(error).mean()),
        "rmse": float(math.sqrt(float(np.square(error).mean()))),
        "wape": float(np.abs(error).sum() / scale) if scale > 0 else None,
        "bias": float(error.mean()),
    }


def infer_task(labels: Any) -> str:
    """``classification`` when every label is 0/1 (or a bool), else ``regression``."""
    values = _vector(labels, "label")
    return "classification" if values.size and np.isin(values, (0.0, 1.0)).all() else "regression"


def _metrics(task: str, truth: np.ndarray, score: np.ndarray, threshold: float) -> dict[str, Any]:
    if task == "classification":
        return classification_metrics(truth, score, threshold=threshold)
    return regression_metrics(truth, score)


def _slice_key(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "null"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def performance_report(
    frame: pd.DataFrame,
    *,
    task: str,
    label_col: str,
    score_col: str,
    slices: Sequence[str] = (),
    threshold: float = 0.5,
    min_slice_rows: int = 30,
) -> dict[str, Any]:
    """Metrics over the labelled rows of ``frame``, per slice, and the gaps between slices.

    Rows without a label or a score are left out (``labelled`` counts the rest). Returns exactly
    ``{"task", "labelled", "metrics", "slices": {col: {value: {"n", metric: v}}}, "gaps": {col:
    {metric: max - min over slices with >= min_slice_rows rows}}}``; a column with fewer than two
    such slices has an empty gap dict. ``task="auto"`` picks classification for 0/1 labels.
    """
    if not isinstance(frame, pd.DataFrame):
        raise ValidationError(f"frame must be a pandas DataFrame, got {type(frame).__name__}", field="frame")
    check_choice(task, "task", TASKS)
    threshold = check_number(threshold, "threshold")
    min_slice_rows = check_number(min_slice_rows, "min_slice_rows", low=1, integer=True)
    if isinstance(slices, str):
        slices = [slices]
    for field, col in (("label_col", label_col), ("score_col", score_col), *(("slices", s) for s in slices)):
        if col not in frame.columns:
            raise ValidationError(
                f"{field}={col!r} is not a column of the frame; columns: {', '.join(map(str, frame.columns))}",
                field=field,
            )
    truth_all = pd.to_numeric(frame[label_col].map(_numeric_label), errors="coerce")
    score_all = pd.to_numeric(frame[score_col], errors="coerce")
    keep = truth_all.notna().to_numpy() & score_all.notna().to_numpy()
    if frame[label_col].notna().any() and not truth_all.notna().any():
        raise ValidationError(
            f"{label_col} holds no numeric or 0/1 labels (e.g. {frame[label_col].dropna().iloc[0]!r})",
            field="label_col",
        )
    truth = truth_all.to_numpy(dtype=float)[keep]
    score = score_all.to_numpy(dtype=float)[keep]
    labelled = int(keep.sum())
    if task == "auto":
        task = infer_task(truth) if labelled else "classification"
    report: dict[str, Any] = {"task": task, "labelled": labelled, "metrics": {}, "slices": {}, "gaps": {}}
    if labelled == 0:
        return report
    report["metrics"] = _metrics(task, truth, score, threshold)
    for col in slices:
        keys = frame[col].to_numpy(dtype=object)[keep]
        groups = pd.Series(range(labelled)).groupby([_slice_key(k) for k in keys], sort=True).indices
        biggest = sorted(groups, key=lambda k: -len(groups[k]))[:MAX_SLICES]
        per_slice = {
            key: _metrics(task, truth[groups[key]], score[groups[key]], threshold) for key in sorted(biggest)
        }
        report["slices"][col] = per_slice
        report["gaps"][col] = _gaps(per_slice, min_slice_rows)
    return report


def _numeric_label(value: Any) -> Any:
    if isinstance(value, bool):
        return float(value)
    return value


def _gaps(per_slice: dict[str, dict[str, Any]], min_rows: int) -> dict[str, float]:
    big = [m for m in per_slice.values() if m["n"] >= min_rows]
    if len(big) < 2:
        return {}
    gaps = {}
    for metric in big[0]:
        if metric in GAP_EXCLUDED:
            continue
        values = [m[metric] for m in big if m.get(metric) is not None]
        if len(values) >= 2:
            gaps[metric] = float(max(values) - min(values))
    return gaps
