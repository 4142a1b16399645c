"""loopml.monitoring.stats equals scipy and Evidently's definitions on random, tied and skewed data.

Evidently is not installed in the test environment, so its formulas are restated below from its
source (evidently 0.7.23, ``src/evidently/legacy/calculations/stattests/``: ``utils.py``
``get_binned_data``, ``psi.py`` ``_psi``, ``jensenshannon.py`` ``_jensenshannon``,
``chisquare_stattest.py`` ``_chi_stat_test``, ``wasserstein_distance_norm.py``
``_wasserstein_distance_norm``, ``ks_stattest.py`` ``_ks_stat_test``). The benchmark
(benchmarks/bench_drift.py) checks the same numbers against the installed Evidently.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps
from scipy.spatial import distance

from loopml.errors import ValidationError
from loopml.monitoring import stats

TOL = 1e-9


# -- Evidently's reference formulas (restated from its source, see the module docstring) -----------
def ev_binned(reference: pd.Series, current: pd.Series, numerical: bool, feel_zeroes: bool = True):
    n_vals = reference.nunique()
    if numerical and n_vals > 20:
        bins = np.histogram_bin_edges(pd.concat([reference, current]).values, bins="sturges")
        ref_p = np.histogram(reference, bins)[0] / len(reference)
        cur_p = np.histogram(current, bins)[0] / len(current)
    else:
        keys = list(set(reference.dropna().unique()) | set(current.dropna().unique()))
        ref_d = {**dict.fromkeys(keys, 0), **dict(reference.value_counts())}
        cur_d = {**dict.fromkeys(keys, 0), **dict(current.value_counts())}
        ref_p = np.array([ref_d[k] / len(reference) for k in keys])
        cur_p = np.array([cur_d[k] / len(current) for k in keys])
    if feel_zeroes:
        for p in (ref_p, cur_p):
            smallest = min(p[p != 0])
            np.place(p, p == 0, smallest / 10**6 if smallest <= 0.0001 else 0.0001)
    return ref_p, cur_p


def ev_psi(reference: pd.Series, current: pd.Series, numerical: bool) -> float:
    r, c = ev_binned(reference, current, numerical)
    return float(np.sum((r - c) * np.log(r / c)))


def ev_jensenshannon(reference: pd.Series, current: pd.Series, numerical: bool) -> float:
    r, c = ev_binned(reference, current, numerical, feel_zeroes=False)
    return float(distance.jensenshannon(r, c, None))


def ev_chi2(reference: pd.Series, current: pd.Series) -> float:
    keys = list(set(reference.dropna().unique()) | set(current.dropna().unique()))
    ref_d = {**dict.fromkeys(keys, 0), **dict(reference.value_counts())}
    cur_d = {**dict.fromkeys(keys, 0), **dict(current.value_counts())}
    k_norm = current.shape[0] / reference.shape[0]
    with np.errstate(divide="ignore", invalid="ignore"):  # an unseen category: inf statistic, p = 0
        return float(sps.chisquare([cur_d[k] for k in keys], [ref_d[k] * k_norm for k in keys])[1])


def ev_wasserstein(reference: pd.Series, current: pd.Series) -> float:
    norm = max(float(np.std(reference)), 0.001)
    return float(sps.wasserstein_distance(reference, current) / norm)


# -- data --------------------------------------------------------------------------------------------
def samples(kind: str, n_ref: int, n_cur: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    if kind == "random":
        return rng.normal(0, 1, n_ref), rng.normal(0.1, 1.2, n_cur)
    if kind == "tied":
        return np.round(rng.normal(0, 2, n_ref)), np.round(rng.normal(0.3, 2, n_cur))
    if kind == "skewed":
        return rng.lognormal(0, 1.5, n_ref), rng.lognormal(0.2, 1.5, n_cur)
    raise AssertionError(kind)


KINDS = ["random", "tied", "skewed"]
SIZES = [(40, 55), (800, 1200), (30_000, 12_000)]  # exact KS, exact KS, asymptotic KS


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(("n_ref", "n_cur"), SIZES)
def test_ks_equals_scipy(kind: str, n_ref: int, n_cur: int) -> None:
    ref, cur = samples(kind, n_ref, n_cur)
    expected = sps.ks_2samp(ref, cur)
    statistic, p_value = stats.ks(ref, cur)
    assert statistic == pytest.approx(float(expected.statistic), abs=TOL)
    assert p_value == pytest.approx(float(expected.pvalue), abs=TOL, rel=TOL)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(("n_ref", "n_cur"), SIZES)
def test_wasserstein_equals_scipy_normed_like_evidently(kind: str, n_ref: int, n_cur: int) -> None:
    ref, cur = samples(kind, n_ref, n_cur)
    raw = sps.wasserstein_distance(ref, cur) / np.std(ref)
    assert stats.wasserstein_normed(ref, cur) == pytest.approx(raw, rel=TOL, abs=TOL)
    assert stats.wasserstein_normed(ref, cur) == pytest.approx(
        ev_wasserstein(pd.Series(ref), pd.Series(cur)), rel=TOL, abs=TOL
    )


def test_wasserstein_norm_uses_population_std_and_floor() -> None:
    ref = np.full(100, 3.0)
    cur = np.full(100, 3.5)
    # std(ref) == 0 -> Evidently divides by its floor 0.001
    assert stats.wasserstein_normed(ref, cur) == pytest.approx(0.5 / 0.001)
    ref2 = np.array([0.0, 2.0])  # ddof=0 std is 1.0, ddof=1 would be 1.414
    assert stats.wasserstein_normed(ref2, np.array([1.0, 3.0])) == pytest.approx(1.0)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(("n_ref", "n_cur"), [(200, 300), (20_000, 5_000)])
def test_psi_and_jensenshannon_equal_evidently_numeric(kind: str, n_ref: int, n_cur: int) -> None:
    ref, cur = samples(kind, n_ref, n_cur)
    r, c = pd.Series(ref), pd.Series(cur)
    assert stats.psi(ref, cur, bins="evidently") == pytest.approx(ev_psi(r, c, True), rel=TOL, abs=TOL)
    assert stats.jensen_shannon(ref, cur) == pytest.approx(ev_jensenshannon(r, c, True), rel=TOL, abs=TOL)


def test_few_values_numeric_is_binned_by_value_like_evidently() -> None:
    rng = np.random.default_rng(3)
    ref = rng.integers(0, 8, 500).astype(float)  # 8 distinct values <= 20: value bins
    cur = rng.integers(2, 10, 400).astype(float)  # two values the reference never saw
    r, c = pd.Series(ref), pd.Series(cur)
    assert stats.psi(ref, cur, bins="evidently") == pytest.approx(ev_psi(r, c, True), rel=TOL)
    assert stats.jensen_shannon(ref, cur) == pytest.approx(ev_jensenshannon(r, c, True), rel=TOL)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_categorical_statistics_equal_evidently(seed: int) -> None:
    rng = np.random.default_rng(seed)
    cats = np.array(list("abcdefghij"), dtype=object)
    ref = pd.Series(cats[rng.choice(10, 3000, p=rng.dirichlet(np.ones(10)))])
    cur = pd.Series(cats[rng.choice(10, 2000, p=rng.dirichlet(np.ones(10)))])
    assert stats.chi2(ref, cur)[1] == pytest.approx(ev_chi2(ref, cur), rel=TOL, abs=TOL)
    assert stats.psi(ref, cur, categorical=True) == pytest.approx(ev_psi(ref, cur, False), rel=TOL)
    assert stats.jensen_shannon(ref, cur, categorical=True) == pytest.approx(
        ev_jensenshannon(ref, cur, False), rel=TOL
    )


def test_chi2_equals_scipy_chisquare_on_scaled_reference_shares() -> None:
    ref_counts = np.array([500, 300, 200])
    cur_counts = np.array([90, 70, 40])
    expected = sps.chisquare(cur_counts, ref_counts * cur_counts.sum() / ref_counts.sum())
    statistic, p_value = stats.chi2_counts(ref_counts, cur_counts)
    assert statistic == pytest.approx(float(expected.statistic), rel=TOL)
    assert p_value == pytest.approx(float(expected.pvalue), rel=TOL)


def test_chi2_with_a_category_the_reference_never_saw_is_certain_drift() -> None:
    statistic, p_value = stats.chi2(["a", "b"] * 50, ["a", "b", "c"] * 40)
    assert statistic == np.inf and p_value == 0.0


def test_jensenshannon_equals_scipy_on_the_same_shares() -> None:
    p = np.array([0.5, 0.3, 0.2, 0.0])
    q = np.array([0.1, 0.3, 0.3, 0.3])
    assert stats.jensen_shannon_shares(p, q) == pytest.approx(distance.jensenshannon(p, q), rel=TOL)
    assert stats.jensen_shannon_shares(p, q, 2) == pytest.approx(distance.jensenshannon(p, q, 2), rel=TOL)


def test_fill_zero_shares_follows_evidently() -> None:
    assert stats.fill_zero_shares(np.array([0.5, 0.5, 0.0])).tolist() == [0.5, 0.5, 0.0001]
    small = stats.fill_zero_shares(np.array([0.99995, 0.00005, 0.0]))
    assert small[2] == pytest.approx(0.00005 / 1e6)


def test_psi_integer_bins_are_reference_quantiles_open_at_both_ends() -> None:
    rng = np.random.default_rng(5)
    ref = rng.normal(size=10_000)
    assert stats.psi(ref, ref) == 0.0
    # everything beyond the reference range still lands in the outer bins: the PSI is finite
    assert np.isfinite(stats.psi(ref, ref + 100))
    shifted = stats.psi(ref, rng.normal(0.5, 1, 10_000))
    assert 0.1 < shifted < 1.0


def test_missing_values_are_counted_and_excluded() -> None:
    values, missing = stats.clean_numeric([1.0, np.nan, np.inf, -np.inf, 2.0, None])
    assert values.tolist() == [1.0, 2.0] and missing == 4
    ref, cur = samples("random", 300, 300)
    cur_nan = np.concatenate([cur, [np.nan] * 17])
    assert stats.ks(ref, cur_nan) == stats.ks(ref, cur)
    assert stats.wasserstein_normed(ref, cur_nan) == stats.wasserstein_normed(ref, cur)
    counts = stats.category_counts(["a", None, "b"], pd.Series(["a", np.nan, np.nan]))
    assert counts.missing_ref == 1 and counts.missing_cur == 2


def test_sorting_never_changes_the_callers_array() -> None:
    data = np.array([3.0, 1.0, 2.0])
    stats.sorted_finite(data)
    stats.ks(data, data[::-1])
    assert data.tolist() == [3.0, 1.0, 2.0]


def test_evidently_edges_equal_numpy_sturges() -> None:
    rng = np.random.default_rng(9)
    both = rng.normal(size=12_345)
    expected = np.histogram_bin_edges(both, bins="sturges")
    got = stats.evidently_edges(float(both.min()), float(both.max()), both.size)
    assert np.array_equal(got, expected)
    assert np.array_equal(stats.histogram_counts(np.sort(both), got), np.histogram(both, got)[0])


@pytest.mark.parametrize(
    ("call", "field"),
    [
        (lambda: stats.ks([], [1.0]), "reference"),
        (lambda: stats.ks([1.0], [np.nan]), "current"),
        (lambda: stats.wasserstein_normed(["a", "b"], [1.0]), "reference"),
        (lambda: stats.psi([1.0, 2.0], [1.0], bins="sturges"), "bins"),
        (lambda: stats.psi([1.0, 2.0], [1.0], bins=0), "bins"),
        (lambda: stats.psi([1.0, 2.0], [1.0], bins=[2.0, 1.0]), "bins"),
        (lambda: stats.chi2([None], ["a"]), "reference"),
        (lambda: stats.chi2_counts([0, 0], [1, 2]), "counts"),
    ],
)
def test_bad_input_names_the_field(call, field: str) -> None:
    with pytest.raises(ValidationError) as err:
        call()
    assert err.value.field == field
