"""Two-sample drift statistics with exact, reference definitions and a fast path for big samples.

Every statistic here equals the library a user would check it against: ``ks`` is
``scipy.stats.ks_2samp`` (two-sided, ``method="auto"``), ``wasserstein_normed`` is
``scipy.stats.wasserstein_distance / std(reference)``, ``jensen_shannon`` is
``scipy.spatial.distance.jensenshannon`` on binned shares, ``chi2`` is ``scipy.stats.chisquare``
of the current counts against the reference shares, and ``psi`` / the binning follow Evidently
(``evidently.legacy.calculations.stattests``, 0.7.x). Equal numbers let a team switch to loopml
without re-tuning its thresholds.

Speed comes from sorting each side once: ``*_sorted`` kernels take already sorted, clean float64
arrays, so a ``ReferenceProfile`` (see ``loopml.monitoring.drift``) sorts the reference once and
each current window only pays for its own sort plus one merge. Missing values (NaN, +-inf, the
way Evidently treats them) are removed and counted by ``clean_numeric``; the statistics never
see them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats as sps
from scipy.spatial import distance

from loopml.errors import ValidationError

__all__ = [
    "EXACT_KS_MAX_N",
    "SHARE_EPS",
    "BinnedShares",
    "CategoryCounts",
    "category_counts",
    "chi2",
    "chi2_counts",
    "clean_numeric",
    "count_values",
    "evidently_edges",
    "fill_zero_shares",
    "histogram_counts",
    "jensen_shannon",
    "jensen_shannon_shares",
    "ks",
    "ks_sorted",
    "psi",
    "psi_shares",
    "sorted_finite",
    "wasserstein_normed",
    "wasserstein_sorted",
]

#: scipy's ``ks_2samp(method="auto")`` computes the exact p-value up to this sample size.
EXACT_KS_MAX_N = 10_000
#: Evidently's stand-in for an empty bin's share (``get_binned_data(feel_zeroes=True)``).
SHARE_EPS = 1e-4
#: Evidently bins a numeric column by value (like a categorical) up to this many distinct values.
EVIDENTLY_VALUE_BINS_MAX = 20
#: Floor of the reference std in Evidently's normed Wasserstein distance.
WASSERSTEIN_MIN_NORM = 0.001


# -- input -----------------------------------------------------------------------------------------
def clean_numeric(values: Any, field: str = "values") -> tuple[np.ndarray, int]:
    """Return the finite values as float64 and how many were missing (NaN, None, +-inf).

    Infinite values count as missing because Evidently drops them too; a drift statistic over a
    sample that contains inf is undefined (Wasserstein) or meaningless (binned shares).
    """
    try:
        arr = np.asarray(values, dtype=np.float64).ravel()
    except (TypeError, ValueError) as exc:
        raise ValidationError(
            f"{field} must be numbers (int or float); got values that are not: {exc}. Pass the column as "
            "a categorical feature instead, or convert it with pandas.to_numeric.",
            field=field,
        ) from None
    finite = np.isfinite(arr)
    if finite.all():
        return arr, 0
    return arr[finite], int(arr.size - np.count_nonzero(finite))


def sorted_finite(values: Any, field: str = "values") -> tuple[np.ndarray, int]:
    """The finite values sorted into a new array (the caller's data is never touched), and the missing count."""
    arr, missing = clean_numeric(values, field)
    if missing:
        arr.sort()  # boolean indexing already made a private copy
        return arr, missing
    return np.sort(arr), 0


def _sorted_clean(values: Any, field: str) -> np.ndarray:
    arr, _ = sorted_finite(values, field)
    if arr.size == 0:
        raise ValidationError(f"{field} has no finite values; drift needs at least one.", field=field)
    return np.sort(arr)


# -- KS and Wasserstein on sorted samples ----------------------------------------------------------
@dataclass(frozen=True)
class _Merged:
    """Both samples merged in order, with each side's count of values <= every merged value."""

    values: np.ndarray
    ref_counts: np.ndarray
    cur_counts: np.ndarray


def _merge(ref_sorted: np.ndarray, cur_sorted: np.ndarray) -> _Merged:
    # Placing each current value after the equal reference values makes the merged array the sorted
    # union in O(n_cur log n_ref + n): cheaper than sorting the concatenation as scipy does.
    n_ref, n_cur = ref_sorted.size, cur_sorted.size
    at = np.searchsorted(ref_sorted, cur_sorted, side="right")
    at += np.arange(n_cur)
    is_cur = np.zeros(n_ref + n_cur, dtype=bool)
    is_cur[at] = True
    values = np.empty(n_ref + n_cur, dtype=np.float64)
    values[at] = cur_sorted
    values[~is_cur] = ref_sorted
    cur_counts = np.cumsum(is_cur, dtype=np.int64)
    ref_counts = np.arange(1, n_ref + n_cur + 1, dtype=np.int64)
    ref_counts -= cur_counts
    return _Merged(values, ref_counts, cur_counts)


def _check_sorted_inputs(ref_sorted: np.ndarray, cur_sorted: np.ndarray) -> None:
    if ref_sorted.size == 0:
        raise ValidationError("reference has no finite values; drift needs at least one.", field="reference")
    if cur_sorted.size == 0:
        raise ValidationError("current has no finite values; drift needs at least one.", field="current")


def ks_sorted(ref_sorted: np.ndarray, cur_sorted: np.ndarray) -> tuple[float, float]:
    """Two-sided two-sample KS statistic and p-value of two sorted, finite float64 samples.

    The statistic is the largest gap between the empirical CDFs, read at the last value of every
    run of equal values (where scipy's ``searchsorted(side="right")`` reads it), so ties are
    handled exactly as ``ks_2samp`` does. The p-value follows ``method="auto"``: exact for samples
    up to ``EXACT_KS_MAX_N`` (delegated to scipy, cheap at that size), else Smirnov's asymptotic
    ``kstwo.sf(D, round(n*m/(n+m)))``.
    """
    _check_sorted_inputs(ref_sorted, cur_sorted)
    n_ref, n_cur = ref_sorted.size, cur_sorted.size
    if max(n_ref, n_cur) <= EXACT_KS_MAX_N:
        result = sps.ks_2samp(ref_sorted, cur_sorted, alternative="two-sided", method="auto")
        return float(result.statistic), float(result.pvalue)
    merged = _merge(ref_sorted, cur_sorted)
    ends = np.empty(merged.values.size, dtype=bool)
    np.not_equal(merged.values[1:], merged.values[:-1], out=ends[:-1])
    ends[-1] = True
    diffs = merged.ref_counts[ends] / n_ref - merged.cur_counts[ends] / n_cur
    d = max(float(np.clip(-diffs.min(), 0, 1)), float(diffs.max()))
    m, n = sorted([float(n_ref), float(n_cur)], reverse=True)
    en = m * n / (m + n)
    p = float(np.clip(sps.kstwo.sf(d, np.round(en)), 0, 1))
    return d, p


def ks(reference: Any, current: Any) -> tuple[float, float]:
    """``scipy.stats.ks_2samp(reference, current)`` (two-sided, auto method) without NaN/inf."""
    return ks_sorted(_sorted_clean(reference, "reference"), _sorted_clean(current, "current"))


def wasserstein_sorted(ref_sorted: np.ndarray, cur_sorted: np.ndarray, ref_std: float | None = None) -> float:
    """Evidently's normed Wasserstein distance: ``W1(ref, cur) / max(std(ref, ddof=0), 0.001)``.

    W1 is the area between the two empirical CDFs, summed over the gaps of the merged sample the
    way ``scipy.stats.wasserstein_distance`` sums them. ``ref_std`` lets a profile pass the
    reference std it computed once; Evidently uses ``np.std`` (population std, ddof 0).
    """
    _check_sorted_inputs(ref_sorted, cur_sorted)
    merged = _merge(ref_sorted, cur_sorted)
    deltas = np.diff(merged.values)
    gap = merged.ref_counts[:-1] / ref_sorted.size
    gap -= merged.cur_counts[:-1] / cur_sorted.size
    np.abs(gap, out=gap)
    w1 = float(np.dot(gap, deltas))
    std = float(np.std(ref_sorted)) if ref_std is None else ref_std
    return w1 / max(std, WASSERSTEIN_MIN_NORM)


def wasserstein_normed(reference: Any, current: Any) -> float:
    """``scipy.stats.wasserstein_distance(ref, cur) / max(np.std(ref), 0.001)``, NaN/inf dropped."""
    return wasserstein_sorted(_sorted_clean(reference, "reference"), _sorted_clean(current, "current"))


# -- binning ---------------------------------------------------------------------------------------
def evidently_edges(lo: float, hi: float, n: int) -> np.ndarray:
    """``np.histogram_bin_edges(data, bins="sturges")`` for data of size ``n`` spanning [lo, hi].

    Evidently bins a numeric column with more than 20 distinct reference values this way over the
    reference and current values together. Only the range and the size enter the rule, so a
    profile can compute the edges from the reference's min/max and the current window's.
    """
    if not (math.isfinite(lo) and math.isfinite(hi)) or n < 1:
        raise ValidationError("edges need a finite range and at least one value", field="values")
    if lo == hi:  # numpy widens a degenerate range by 0.5 on both sides
        lo, hi = lo - 0.5, hi + 0.5
        return np.linspace(lo, hi, 2)
    width = (hi - lo) / (np.log2(n) + 1.0)
    bins = int(np.ceil((hi - lo) / width)) if width else 1
    return np.linspace(lo, hi, bins + 1)


def histogram_counts(sorted_values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """``np.histogram(values, edges)[0]`` from sorted values in O(bins log n); last bin is closed."""
    left = np.searchsorted(sorted_values, edges[:-1], side="left")
    right_end = np.searchsorted(sorted_values, edges[-1:], side="right")
    return np.diff(np.concatenate([left, right_end])).astype(np.int64)


@dataclass(frozen=True)
class CategoryCounts:
    """Counts of each category over the union of both samples (missing values excluded)."""

    categories: list[Any]
    ref: np.ndarray
    cur: np.ndarray
    missing_ref: int
    missing_cur: int


def count_values(values: Any) -> tuple[pd.Series, int]:
    """Counts per distinct value and how many were missing (None, NaN, +-inf), like Evidently's dropna."""
    series = values if isinstance(values, pd.Series) else pd.Series(np.asarray(values).ravel())
    if pd.api.types.is_float_dtype(series.dtype):
        series = series.where(np.isfinite(series.to_numpy(dtype=np.float64, na_value=np.nan)))
    counts = series.value_counts(dropna=True, sort=False)
    return counts, int(len(series) - int(counts.sum()))


def category_counts(reference: Any, current: Any) -> CategoryCounts:
    """Count categories of both samples over their union, the keys Evidently's tests use."""
    ref, missing_ref = count_values(reference)
    cur, missing_cur = count_values(current)
    union = ref.index.union(cur.index, sort=False)
    return CategoryCounts(
        categories=list(union),
        ref=ref.reindex(union, fill_value=0).to_numpy(dtype=np.int64),
        cur=cur.reindex(union, fill_value=0).to_numpy(dtype=np.int64),
        missing_ref=missing_ref,
        missing_cur=missing_cur,
    )


@dataclass(frozen=True)
class BinnedShares:
    """Shares of both samples over the same bins: ``edges`` (numeric) or ``categories``."""

    ref: np.ndarray
    cur: np.ndarray
    edges: np.ndarray | None = None
    categories: list[Any] | None = None


def _binned(reference: Any, current: Any, bins: int | str | Sequence[float] | np.ndarray) -> BinnedShares:
    ref = _sorted_clean(reference, "reference")
    cur = _sorted_clean(current, "current")
    if isinstance(bins, str):
        if bins != "evidently":
            raise ValidationError(
                f"bins must be a bin count, an array of edges or 'evidently'; got {bins!r}", field="bins"
            )
        if np.count_nonzero(np.diff(ref)) + 1 <= EVIDENTLY_VALUE_BINS_MAX:
            counts = category_counts(ref, cur)
            return BinnedShares(counts.ref / ref.size, counts.cur / cur.size, categories=counts.categories)
        edges = evidently_edges(min(ref[0], cur[0]), max(ref[-1], cur[-1]), ref.size + cur.size)
    elif isinstance(bins, int) and not isinstance(bins, bool):
        if bins < 1:
            raise ValidationError(f"bins must be >= 1; got {bins}", field="bins")
        # Classic PSI: quantile bins of the reference, open at both ends so no current value is lost.
        inner = np.unique(np.quantile(ref, np.linspace(0, 1, bins + 1)[1:-1]))
        edges = np.concatenate([[-np.inf], inner, [np.inf]])
    else:
        edges = np.asarray(bins, dtype=np.float64)
        if edges.ndim != 1 or edges.size < 2 or np.any(np.diff(edges) <= 0) or np.isnan(edges).any():
            raise ValidationError(
                "bins as edges must be at least two strictly increasing numbers", field="bins"
            )
    return BinnedShares(
        histogram_counts(ref, edges) / ref.size, histogram_counts(cur, edges) / cur.size, edges=edges
    )


def fill_zero_shares(shares: np.ndarray, eps: float = SHARE_EPS) -> np.ndarray:
    """Replace empty-bin shares the way Evidently does, so log ratios stay finite.

    A zero becomes ``eps`` (0.0001), or ``min(non-zero share) / 1e6`` when the smallest non-zero
    share is itself <= ``eps`` (the stand-in must stay below every real share).
    """
    out = np.array(shares, dtype=np.float64)
    zero = out == 0
    if zero.any() and not zero.all():
        smallest = float(out[~zero].min())
        out[zero] = smallest / 10**6 if smallest <= eps else eps
    return out


# -- PSI, Jensen-Shannon, chi-square ----------------------------------------------------------------
def psi_shares(ref_shares: np.ndarray, cur_shares: np.ndarray, eps: float = SHARE_EPS) -> float:
    """``sum((p_ref - p_cur) * ln(p_ref / p_cur))`` after ``fill_zero_shares`` on both sides."""
    p = fill_zero_shares(ref_shares, eps)
    q = fill_zero_shares(cur_shares, eps)
    return float(np.sum((p - q) * np.log(p / q)))


def psi(
    reference: Any,
    current: Any,
    *,
    bins: int | str | Sequence[float] | np.ndarray = 10,
    eps: float = SHARE_EPS,
    categorical: bool = False,
) -> float:
    """Population stability index of ``current`` against ``reference``.

    ``bins``: an int gives that many quantile bins of the reference (the classic PSI, open-ended
    so outliers land in the outer bins); an array gives explicit edges; ``"evidently"`` bins like
    Evidently (value bins up to 20 distinct reference values, else Sturges edges over both
    samples). ``categorical=True`` compares category shares. Empty bins are filled as Evidently
    fills them (``fill_zero_shares``). Missing values are excluded from both samples.
    """
    if categorical:
        counts = _nonempty_counts(reference, current)
        return psi_shares(counts.ref / counts.ref.sum(), counts.cur / counts.cur.sum(), eps)
    shares = _binned(reference, current, bins)
    return psi_shares(shares.ref, shares.cur, eps)


def jensen_shannon_shares(ref_shares: np.ndarray, cur_shares: np.ndarray, base: float | None = None) -> float:
    """``scipy.spatial.distance.jensenshannon(ref, cur, base)``; Evidently 0.7 uses natural log."""
    return float(distance.jensenshannon(ref_shares, cur_shares, base))


def jensen_shannon(
    reference: Any,
    current: Any,
    *,
    bins: int | str | Sequence[float] | np.ndarray = "evidently",
    categorical: bool = False,
    base: float | None = None,
) -> float:
    """Jensen-Shannon distance between the binned (or per-category) shares, as Evidently computes it.

    Numeric samples are binned like Evidently by default (``bins="evidently"``) with empty bins
    left at zero; categorical samples compare category shares over the union of categories.
    """
    if categorical:
        counts = _nonempty_counts(reference, current)
        return jensen_shannon_shares(counts.ref / counts.ref.sum(), counts.cur / counts.cur.sum(), base)
    shares = _binned(reference, current, bins)
    return jensen_shannon_shares(shares.ref, shares.cur, base)


def chi2_counts(ref_counts: np.ndarray, cur_counts: np.ndarray) -> tuple[float, float]:
    """Chi-square of current counts against reference shares scaled to the current total.

    This is Evidently's test: ``chisquare(f_obs=cur, f_exp=ref * n_cur / n_ref)``. A category the
    reference never saw has an expected count of 0, so the statistic is inf and p is 0 (certain
    drift), as in Evidently; the division warning is silenced because that outcome is intended.
    """
    ref = np.asarray(ref_counts, dtype=np.float64)
    cur = np.asarray(cur_counts, dtype=np.float64)
    if ref.sum() <= 0 or cur.sum() <= 0:
        raise ValidationError("chi-square needs at least one counted value on each side", field="counts")
    expected = ref * (cur.sum() / ref.sum())
    with np.errstate(divide="ignore", invalid="ignore"):
        result = sps.chisquare(cur, expected)
    return float(result.statistic), float(result.pvalue)


def chi2(reference: Any, current: Any) -> tuple[float, float]:
    """Evidently's chi-square drift test on two categorical samples: ``(statistic, p_value)``."""
    counts = _nonempty_counts(reference, current)
    return chi2_counts(counts.ref, counts.cur)


def _nonempty_counts(reference: Any, current: Any) -> CategoryCounts:
    counts = category_counts(reference, current)
    if counts.ref.sum() == 0:
        raise ValidationError("reference has no non-missing values", field="reference")
    if counts.cur.sum() == 0:
        raise ValidationError("current has no non-missing values", field="current")
    return counts
