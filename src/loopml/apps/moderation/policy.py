"""From model scores to a decision: aggregation (parallel pattern), the heavier second check for the
uncertain band (serial pattern), and thresholds chosen for precision.

No I/O here: the screening worker feeds scores in and stores the decision it gets back.
Wrongly blocking a user is the costlier error (seeds 7.3), so ``choose_thresholds`` only rejects
automatically where the validation data says rejections are right ``min_precision`` of the time;
below that a review band sends uncertain uploads to people, sized so operators can keep up.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from loopml.checks import check_choice, check_number
from loopml.errors import ValidationError

AGGREGATES = ("max", "mean", "vote")
DECISIONS = ("publish", "review", "reject")


def _scores(scores: float | Sequence[float] | Mapping[str, float]) -> list[float]:
    if isinstance(scores, int | float):
        values = [float(scores)]
    elif isinstance(scores, Mapping):
        values = [float(v) for v in scores.values()]
    else:
        values = [float(v) for v in scores]
    if not values:
        raise ValidationError("no scores given; pass at least one model score", field="scores")
    for v in values:
        if not (math.isfinite(v) and 0.0 <= v <= 1.0):
            raise ValidationError(f"scores must be probabilities in [0, 1], got {v}", field="scores")
    return values


def aggregate(
    scores: float | Sequence[float] | Mapping[str, float], mode: str = "max", *, vote_at: float = 0.5
) -> float:
    """One score from several models (parallel pattern).

    ``max``: any model that is sure counts (highest recall); ``mean``: models must agree;
    ``vote``: share of models scoring at least ``vote_at``.
    """
    check_choice(mode, "aggregate", AGGREGATES)
    values = _scores(scores)
    if mode == "max":
        return max(values)
    if mode == "mean":
        return sum(values) / len(values)
    return sum(v >= vote_at for v in values) / len(values)


@dataclass(frozen=True)
class ScreeningPolicy:
    """``reject_at`` >= ``review_at``: scores at or above ``reject_at`` are rejected, between the two
    held for review, below published. ``heavy_band=(lo, hi)``: aggregated scores inside it are
    uncertain and get the heavier second model's score instead when one is given (serial pattern);
    without one they go to review."""

    reject_at: float
    review_at: float
    heavy_band: tuple[float, float] | None = None
    aggregate: str = "max"

    def __post_init__(self) -> None:
        check_number(self.review_at, "review_at", low=0.0, high=1.0)
        if not (
            isinstance(self.reject_at, int | float)
            and (self.reject_at == math.inf or 0 <= self.reject_at <= 1)
        ):
            raise ValidationError(
                f"reject_at must be in [0, 1] or inf (never reject automatically), got {self.reject_at!r}",
                field="reject_at",
            )
        if self.reject_at < self.review_at:
            raise ValidationError(
                f"reject_at ({self.reject_at}) is below review_at ({self.review_at}); rejecting needs more certainty",
                field="reject_at",
            )
        check_choice(self.aggregate, "aggregate", AGGREGATES)
        if self.heavy_band is not None:
            lo, hi = self.heavy_band
            if not (0.0 <= lo < hi <= 1.0):
                raise ValidationError(
                    f"heavy_band must be (lo, hi) with 0 <= lo < hi <= 1, got {self.heavy_band}",
                    field="heavy_band",
                )

    def score(self, scores: float | Sequence[float] | Mapping[str, float]) -> float:
        """The aggregated score of the light models."""
        return aggregate(scores, self.aggregate)

    def needs_heavy(self, scores: float | Sequence[float] | Mapping[str, float]) -> bool:
        """True when the aggregated score is uncertain enough to pay for the heavier check."""
        if self.heavy_band is None:
            return False
        s = self.score(scores)
        return self.heavy_band[0] <= s < self.heavy_band[1]

    def decide(
        self, scores: float | Sequence[float] | Mapping[str, float], heavy_score: float | None = None
    ) -> str:
        """``publish``, ``review`` or ``reject``."""
        s = self.score(scores)
        if self.needs_heavy(scores):
            if heavy_score is None:
                return "review"
            s = _scores(heavy_score)[0]
        if s >= self.reject_at:
            return "reject"
        if s >= self.review_at:
            return "review"
        return "publish"


def _check_pairs(scores: Sequence[float], labels: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    s = np.asarray(scores, dtype=float)
    y = np.asarray(labels)
    if s.ndim != 1 or len(s) != len(y):
        raise ValidationError(
            f"scores ({s.shape}) and labels ({y.shape}) must be equal-length lists", field="scores"
        )
    if len(s) == 0:
        raise ValidationError(
            "no validation rows; pass scores and labels of labelled uploads", field="scores"
        )
    if not np.isfinite(s).all():
        raise ValidationError("scores contain NaN or infinity", field="scores")
    if not set(np.unique(y).tolist()) <= {0, 1}:
        raise ValidationError("labels must be 0 (allowed) or 1 (prohibited: a face)", field="labels")
    return s, y.astype(int)


def choose_thresholds(
    scores: Sequence[float],
    labels: Sequence[int],
    *,
    min_precision: float = 0.98,
    max_flag_rate: float | None = None,
    target_recall: float = 0.95,
) -> tuple[float, float]:
    """``(reject_at, review_at)`` from validation scores and labels (1 = prohibited).

    ``reject_at`` is the lowest score cut whose precision on the validation data is at least
    ``min_precision`` (``inf`` when none is: then nothing is rejected without a person).
    ``review_at`` is the highest cut that still catches ``target_recall`` of the prohibited uploads,
    raised until at most ``max_flag_rate`` of all uploads are flagged (review + reject), and never
    above ``reject_at``.
    """
    check_number(min_precision, "min_precision", low=0.0, high=1.0)
    check_number(target_recall, "target_recall", low=0.0, high=1.0)
    if max_flag_rate is not None:
        check_number(max_flag_rate, "max_flag_rate", low=0.0, high=1.0)
    s, y = _check_pairs(scores, labels)
    order = np.argsort(-s, kind="stable")
    s_sorted, y_sorted = s[order], y[order]
    tp = np.cumsum(y_sorted)
    k = np.arange(1, len(s) + 1)
    # only cut between distinct scores: everything tied with the cut is flagged together
    last_of_tie = np.r_[s_sorted[1:] != s_sorted[:-1], True]
    precision = tp / k
    ok = last_of_tie & (precision >= min_precision) & (y_sorted.sum() > 0)
    reject_at = float(s_sorted[np.nonzero(ok)[0].max()]) if ok.any() else math.inf

    positives = int(y.sum())
    if positives == 0:
        review_at = 1.0
    else:
        recall = tp / positives
        hit = np.nonzero(last_of_tie & (recall >= target_recall))[0]
        review_at = float(s_sorted[hit.min()]) if len(hit) else float(s_sorted[-1])
    if max_flag_rate is not None:
        allowed = np.nonzero(last_of_tie & (k / len(s) <= max_flag_rate))[0]
        lowest_cut = (
            float(s_sorted[allowed.max()]) if len(allowed) else math.nextafter(float(s_sorted[0]), math.inf)
        )
        review_at = max(review_at, lowest_cut)
    return reject_at, min(review_at, reject_at, 1.0)
