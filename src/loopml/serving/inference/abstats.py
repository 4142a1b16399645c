"""The numbers behind A/B analysis: metric functions on arrays and a seeded percentile bootstrap.

Kept apart from the report so each metric is a small pure function that a test can check against
a hand computation, and the bootstrap works for any of them (AUC has no simple standard error).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy.stats import rankdata

#: Metrics the analysis knows, and the direction each one improves in.
HIGHER_IS_BETTER = frozenset({"reward", "auc", "accuracy", "precision", "recall"})
LOWER_IS_BETTER = frozenset({"logloss", "mae", "rmse"})
METRICS = tuple(sorted(HIGHER_IS_BETTER | LOWER_IS_BETTER))
#: Metrics that need 0/1 labels and a score in [0, 1].
BINARY = frozenset({"auc", "logloss", "precision", "recall"})
_EPS = 1e-15


@dataclass(frozen=True)
class Sample:
    """One arm's usable observations for a metric: label ``y``, score ``s``, predicted label ``p``."""

    y: np.ndarray
    s: np.ndarray
    p: np.ndarray

    def take(self, idx: np.ndarray) -> Sample:
        return Sample(self.y[idx], self.s[idx], self.p[idx])

    def __len__(self) -> int:
        return int(self.y.shape[0])


def _mean_reward(d: Sample) -> float:
    return float(np.mean(d.y))


def _auc(d: Sample) -> float:
    pos = d.y == 1
    n_pos = int(pos.sum())
    n_neg = len(d) - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = rankdata(d.s)
    return float((ranks[pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def _logloss(d: Sample) -> float:
    s = np.clip(d.s, _EPS, 1 - _EPS)
    return float(-np.mean(d.y * np.log(s) + (1 - d.y) * np.log(1 - s)))


def _accuracy(d: Sample) -> float:
    return float(np.mean(d.p == d.y))


def _precision(d: Sample) -> float:
    predicted = d.p == 1
    n = int(predicted.sum())
    return float(np.sum(d.y[predicted] == 1) / n) if n else float("nan")


def _recall(d: Sample) -> float:
    actual = d.y == 1
    n = int(actual.sum())
    return float(np.sum(d.p[actual] == 1) / n) if n else float("nan")


def _mae(d: Sample) -> float:
    return float(np.mean(np.abs(d.y - d.s)))


def _rmse(d: Sample) -> float:
    return float(np.sqrt(np.mean((d.y - d.s) ** 2)))


FUNCTIONS: dict[str, Callable[[Sample], float]] = {
    "reward": _mean_reward,
    "auc": _auc,
    "logloss": _logloss,
    "accuracy": _accuracy,
    "precision": _precision,
    "recall": _recall,
    "mae": _mae,
    "rmse": _rmse,
}


def value(metric: str, sample: Sample) -> float:
    return FUNCTIONS[metric](sample)


def bootstrap(metric: str, sample: Sample, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """``n_boot`` values of the metric on resamples (with replacement) of the arm's observations."""
    fn = FUNCTIONS[metric]
    n = len(sample)
    out = np.empty(n_boot, dtype=float)
    if metric in ("reward", "accuracy", "mae", "rmse"):
        # Means of resamples, vectorised in chunks: 2000 resamples of 100k rows in well under a second.
        if metric == "reward":
            per_row = sample.y
        elif metric == "accuracy":
            per_row = (sample.p == sample.y).astype(float)
        elif metric == "mae":
            per_row = np.abs(sample.y - sample.s)
        else:
            per_row = (sample.y - sample.s) ** 2
        chunk = max(1, min(n_boot, 2_000_000 // max(n, 1)))
        for start in range(0, n_boot, chunk):
            stop = min(start + chunk, n_boot)
            idx = rng.integers(0, n, size=(stop - start, n))
            means = per_row[idx].mean(axis=1)
            out[start:stop] = np.sqrt(means) if metric == "rmse" else means
        return out
    for b in range(n_boot):
        out[b] = fn(sample.take(rng.integers(0, n, size=n)))
    return out


def interval(values: np.ndarray, confidence: float) -> tuple[float | None, float | None]:
    """The percentile interval of bootstrap values (NaN resamples, e.g. one class only, left out)."""
    finite = values[np.isfinite(values)]
    if finite.size < max(10, values.size // 2):
        return None, None
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(finite, [tail, 100 - tail])
    return float(low), float(high)
