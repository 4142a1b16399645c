"""Release evaluation of a screener on labelled uploads, in the terms the seeds ask for.

Accuracy, precision and recall of "held back" (not published) against the label, plus the volume
operators must look at per week against what they can review in a week: a model that catches every
face but floods the review queue is not releasable either.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from loopml.checks import check_number
from loopml.errors import ValidationError

DECISIONS = ("publish", "review", "reject")


def evaluate_screening(
    labels: Sequence[int],
    decisions: Sequence[str] | Sequence[float],
    *,
    weeks: Sequence[Any],
    operator_capacity_per_week: int,
    threshold: float | None = None,
) -> dict[str, Any]:
    """Metrics of a screener's decisions (``publish``/``review``/``reject``) or scores (with ``threshold``).

    ``precision``/``recall``/``accuracy`` treat anything not published as "flagged" (label 1 = a face).
    ``reject_precision`` is the precision of automatic rejections alone (wrongly blocked users).
    ``flagged_per_week`` counts flagged uploads per week, ``review_per_week`` those held for a person
    (when scores are given every flagged upload is held for review); ``within_capacity`` is true when
    no week's review volume exceeds ``operator_capacity_per_week``.
    """
    y = np.asarray(labels)
    n = len(y)
    if n == 0:
        raise ValidationError("no labelled uploads to evaluate", field="labels")
    if len(decisions) != n or len(weeks) != n:
        raise ValidationError(
            f"labels ({n}), decisions ({len(decisions)}) and weeks ({len(weeks)}) must have the same length",
            field="decisions",
        )
    if not set(np.unique(y).tolist()) <= {0, 1}:
        raise ValidationError("labels must be 0 (allowed) or 1 (prohibited)", field="labels")
    check_number(operator_capacity_per_week, "operator_capacity_per_week", low=0, integer=True)
    d = list(decisions)
    if all(isinstance(v, str) for v in d):
        bad = sorted({v for v in d if v not in DECISIONS})
        if bad:
            raise ValidationError(f"unknown decision(s) {bad}; use {', '.join(DECISIONS)}", field="decisions")
        dec = np.asarray(d)
    else:
        if threshold is None:
            raise ValidationError("scores were given without threshold; pass threshold=", field="threshold")
        try:
            s = np.asarray(d, dtype=float)
        except (TypeError, ValueError):
            raise ValidationError("decisions must be all strings or all numbers", field="decisions") from None
        dec = np.where(s >= threshold, "review", "publish")
    flagged = dec != "publish"
    rejected = dec == "reject"
    review = dec == "review"
    y1 = y == 1
    tp = int((flagged & y1).sum())
    fp = int((flagged & ~y1).sum())
    fn = int((~flagged & y1).sum())
    wk = np.asarray([str(w) if not isinstance(w, int | np.integer) else int(w) for w in weeks], dtype=object)
    order = sorted(set(wk.tolist()), key=lambda w: (isinstance(w, str), w))
    flagged_per_week = {w: int(flagged[wk == w].sum()) for w in order}
    review_per_week = {w: int(review[wk == w].sum()) for w in order}
    return {
        "n": n,
        "accuracy": float((flagged == y1).mean()),
        "precision": tp / (tp + fp) if tp + fp else None,
        "recall": tp / (tp + fn) if tp + fn else None,
        "reject_precision": float(y1[rejected].mean()) if rejected.any() else None,
        "flagged_per_week": flagged_per_week,
        "review_per_week": review_per_week,
        "capacity": int(operator_capacity_per_week),
        "within_capacity": max(review_per_week.values(), default=0) <= operator_capacity_per_week,
    }
