"""Evaluation metrics the release gates compare, with the direction each one improves in.

Label metrics (accuracy, f1, precision, recall) take predicted labels; score metrics (auc, logloss)
take class probabilities, so a gate knows which of ``predict``/``predict_proba`` to call.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from loopml.errors import ValidationError, did_you_mean

LOWER_IS_BETTER = frozenset({"mae", "rmse", "wape", "logloss"})
HIGHER_IS_BETTER = frozenset({"accuracy", "auc", "f1", "precision", "recall"})
METRICS = tuple(sorted(LOWER_IS_BETTER | HIGHER_IS_BETTER))
NEEDS_PROBA = frozenset({"auc", "logloss"})
CLASSIFICATION = frozenset({"accuracy", "auc", "logloss", "f1", "precision", "recall"})


def check_metric(metric: str) -> str:
    if metric not in LOWER_IS_BETTER and metric not in HIGHER_IS_BETTER:
        raise ValidationError(
            f"metric {metric!r} is unknown; use one of {', '.join(METRICS)}.{did_you_mean(metric, METRICS)}"
        )
    return metric


def higher_is_better(metric: str) -> bool:
    return check_metric(metric) in HIGHER_IS_BETTER


def _mae(y: np.ndarray, p: np.ndarray) -> float:
    return float(np.mean(np.abs(y - p)))


def _rmse(y: np.ndarray, p: np.ndarray) -> float:
    return float(np.sqrt(np.mean((y - p) ** 2)))


def _wape(y: np.ndarray, p: np.ndarray) -> float:
    denom = float(np.sum(np.abs(y)))
    if denom == 0:
        raise ValidationError("wape is undefined when every label is 0; use mae instead")
    return float(np.sum(np.abs(y - p)) / denom)


_REGRESSION: dict[str, Callable[[np.ndarray, np.ndarray], float]] = {
    "mae": _mae,
    "rmse": _rmse,
    "wape": _wape,
}


def compute(metric: str, y_true: np.ndarray, prediction: np.ndarray, classes: list | None = None) -> float:
    """Metric value; ``prediction`` is labels, or probabilities (n, k) for auc/logloss."""
    check_metric(metric)
    y_true = np.asarray(y_true)
    if len(y_true) == 0:
        raise ValidationError(f"cannot compute {metric} on 0 rows; the evaluation data (or slice) is empty")
    if metric in _REGRESSION:
        try:
            y = y_true.astype(np.float64)
        except (TypeError, ValueError):
            raise ValidationError(
                f"{metric} needs numeric labels; the label column holds {y_true.dtype}"
            ) from None
        return _REGRESSION[metric](y, np.asarray(prediction, dtype=np.float64).reshape(len(y)))
    from sklearn import metrics as skm

    if metric == "accuracy":
        return float(skm.accuracy_score(y_true, prediction))
    if metric in ("f1", "precision", "recall"):
        labels = (
            classes
            if classes is not None
            else sorted(set(y_true.tolist()) | set(np.asarray(prediction).tolist()))
        )
        binary = len(labels) == 2
        fn = {"f1": skm.f1_score, "precision": skm.precision_score, "recall": skm.recall_score}[metric]
        kwargs = (
            {"pos_label": labels[1], "average": "binary"}
            if binary
            else {"average": "macro", "labels": labels}
        )
        return float(fn(y_true, prediction, zero_division=0, **kwargs))
    proba = np.asarray(prediction, dtype=np.float64)
    if classes is None:
        raise ValidationError(f"{metric} needs a classifier with predict_proba")
    if metric == "logloss":
        return float(skm.log_loss(y_true, proba, labels=classes))
    present = set(y_true.tolist())
    if len(present) < 2:
        raise ValidationError(
            "auc needs both classes in the labels; the evaluation data (or slice) has one class"
        )
    if proba.shape[1] == 2:
        return float(skm.roc_auc_score(np.asarray(y_true) == classes[1], proba[:, 1]))
    return float(skm.roc_auc_score(y_true, proba, multi_class="ovr", labels=classes))
