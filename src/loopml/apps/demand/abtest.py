"""A/B by store: which stores publish the challenger's forecast, and is the challenger really better?

Assignment is a stable hash, not a random draw: ``sha256("<salt>:<store_id>")`` mapped to [0, 1) puts a
store on the challenger when it falls below ``challenger_share``. The same store stays in the same arm
across runs, machines and Python versions (Python's ``hash`` is salted per process, so it is not used),
and raising the share only moves stores from champion to challenger, never back.

The analysis uses the fact that the challenger forecasts *every* store (it shadows the champion's
stores and vice versa): each store-week has both models' errors on the same actuals, so the comparison
is paired and the arms' different store mixes cannot bias it. Stores are the unit of resampling
(a cluster bootstrap): weeks of one store are correlated, stores are not.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd

from loopml.apps.demand.staffing import check_frame
from loopml.errors import ValidationError

DEFAULT_SALT = "demand-ab"
CHAMPION = "champion"
CHALLENGER = "challenger"
VERDICTS = ("promote challenger", "keep champion", "not enough data", "no clear difference")
#: Resampled store indices held in memory at once (int64): caps the bootstrap at ~32 MB for any size.
_BOOT_CELLS = 4_000_000


def _check_share(challenger_share: object) -> float:
    if (
        isinstance(challenger_share, bool)
        or not isinstance(challenger_share, int | float)
        or not 0 <= challenger_share <= 1
    ):
        raise ValidationError(
            f"challenger_share must be a number from 0 to 1, got {challenger_share!r}",
            field="challenger_share",
        )
    return float(challenger_share)


def _check_salt(salt: object) -> str:
    if not isinstance(salt, str) or not salt:
        raise ValidationError(f"salt must be a non-empty string, got {salt!r}", field="salt")
    return salt


def hash_unit(store_id: int, *, salt: str = DEFAULT_SALT) -> float:
    """The store's fixed position in [0, 1): the first 8 bytes of sha256("<salt>:<store_id>") / 2**64."""
    if isinstance(store_id, bool) or not isinstance(store_id, int | np.integer):
        raise ValidationError(f"store_id must be an integer, got {store_id!r}", field="store_id")
    digest = hashlib.sha256(f"{_check_salt(salt)}:{int(store_id)}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def assign_arm(store_id: int, *, salt: str = DEFAULT_SALT, challenger_share: float = 0.5) -> str:
    """``"challenger"`` when the store's hash position is below ``challenger_share``, else ``"champion"``."""
    share = _check_share(challenger_share)
    return CHALLENGER if hash_unit(store_id, salt=salt) < share else CHAMPION


def assign_arms(store_ids: Any, *, salt: str = DEFAULT_SALT, challenger_share: float = 0.5) -> pd.Series:
    """Arms of many stores: a Series ``arm`` indexed by ``store_id`` (in the order given)."""
    share = _check_share(challenger_share)
    ids = pd.Series(store_ids)
    if ids.isna().any() or not (pd.api.types.is_integer_dtype(ids) or ids.empty):
        raise ValidationError("store_ids must be integers without gaps (no NaN, no text)", field="store_id")
    arms = [CHALLENGER if hash_unit(int(s), salt=salt) < share else CHAMPION for s in ids]
    return pd.Series(
        arms, index=pd.Index(ids.astype("int64").to_numpy(), name="store_id"), name="arm", dtype=object
    )


def used_mask(
    evaluation: pd.DataFrame, *, salt: str = DEFAULT_SALT, challenger_share: float = 0.5
) -> np.ndarray:
    """Which evaluation rows are the forecasts a store actually published.

    The ``used`` column says so when present; tables stored without it fall back to the hash
    assignment (a row is used when its model's arm is the store's arm).
    """
    if "used" in evaluation.columns:
        used = evaluation["used"]
        if used.isna().any():
            raise ValidationError("evaluation.used has missing values; it must be true/false", field="used")
        return used.astype(bool).to_numpy()
    arms = assign_arms(evaluation["store_id"].unique(), salt=salt, challenger_share=challenger_share)
    hashed = evaluation["arm"].to_numpy() == evaluation["store_id"].map(arms).to_numpy()
    if "week" not in evaluation.columns:
        return hashed.astype(bool)
    # A week without challenger rows ran no A/B: every store published the champion.
    ab_weeks = evaluation.loc[evaluation["arm"] == CHALLENGER, "week"].unique()
    in_ab = evaluation["week"].isin(ab_weeks).to_numpy()
    return np.where(in_ab, hashed, evaluation["arm"].to_numpy() == CHAMPION).astype(bool)


def abs_errors(evaluation: pd.DataFrame) -> np.ndarray:
    """Sum of absolute errors behind each row: ``abs_error`` if stored, else ``wape x actual``."""
    if "abs_error" in evaluation.columns:
        return evaluation["abs_error"].to_numpy(dtype="float64")
    wape = evaluation["wape"].to_numpy(dtype="float64")
    actual = evaluation["actual"].to_numpy(dtype="float64")
    # wape is empty exactly when actual is 0; such a row adds nothing to a pooled WAPE denominator.
    return np.where(np.isfinite(wape), wape * actual, 0.0)


def pooled_wape(abs_error: np.ndarray, actual: np.ndarray) -> float:
    """sum |error| / sum actual (NaN when nothing was sold): the chain-level error the business sees."""
    total = float(np.sum(actual))
    return float(np.sum(abs_error)) / total if total > 0 else math.nan


@dataclass(frozen=True)
class AbResult:
    """Outcome of the store A/B test, with the numbers behind the verdict.

    ``diff`` is the mean over stores of (champion WAPE - challenger WAPE), on store-weeks where both
    forecast: positive means the challenger's error is lower. ``champion_wape``/``challenger_wape`` are
    the pooled WAPEs each arm achieved on the stores where it was live.
    """

    weeks: int
    stores: int
    champion_wape: float
    challenger_wape: float
    diff: float
    ci_low: float
    ci_high: float
    verdict: str
    explanation: str
    relative_improvement: float = math.nan
    paired_champion_wape: float = math.nan
    paired_challenger_wape: float = math.nan
    champion_stores: int = 0
    challenger_stores: int = 0
    n_boot: int = 0
    seed: int = 0
    min_weeks: int = 0

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: NaN (undefined) numbers become None."""
        return {
            k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in asdict(self).items()
        }


def _check_int(value: object, name: str, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < low:
        raise ValidationError(f"{name} must be an integer >= {low}, got {value!r}", field=name)
    return int(value)


def bootstrap_mean_ci(
    values: np.ndarray, *, n_boot: int, seed: int, level: float = 0.95
) -> tuple[float, float]:
    """Percentile CI of the mean by resampling ``values`` (one per store) with replacement, vectorised."""
    values = np.asarray(values, dtype="float64")
    n = len(values)
    if n == 0:
        return math.nan, math.nan
    rng = np.random.default_rng(seed)
    means = np.empty(n_boot)
    step = max(1, _BOOT_CELLS // n)
    for start in range(0, n_boot, step):
        stop = min(n_boot, start + step)
        means[start:stop] = values[rng.integers(0, n, size=(stop - start, n))].mean(axis=1)
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail])
    return float(low), float(high)


def analyse(
    evaluation: pd.DataFrame,
    *,
    n_boot: int = 2000,
    seed: int = 0,
    min_weeks: int = 3,
    salt: str = DEFAULT_SALT,
    challenger_share: float = 0.5,
) -> AbResult:
    """Paired cluster bootstrap of champion vs challenger error over the evaluation table.

    ``evaluation`` is ``evaluate_week`` output for one or more weeks (``store_id, week, arm, wape, actual``
    and ideally ``used``; ``arm`` is the role of the model that made the row). Verdict: "not enough data"
    below ``min_weeks`` paired weeks or 2 stores; "promote challenger" when the 95% CI of the WAPE
    difference is entirely above 0; "keep champion" when entirely below; else "no clear difference".
    """
    check_frame(evaluation, "evaluation", ["store_id", "week", "arm", "wape", "actual"])
    n_boot = _check_int(n_boot, "n_boot", 1)
    seed = _check_int(seed, "seed", 0)
    min_weeks = _check_int(min_weeks, "min_weeks", 1)
    frame = evaluation[["store_id", "week", "arm"]].copy()
    frame["abs_error"] = abs_errors(evaluation)
    frame["actual"] = evaluation["actual"].to_numpy(dtype="float64")
    frame["used"] = used_mask(evaluation, salt=salt, challenger_share=challenger_share)
    if not np.isfinite(frame["actual"]).all() or (frame["actual"] < 0).any():
        raise ValidationError("evaluation.actual must be finite and >= 0", field="actual")
    if not np.isfinite(frame["abs_error"]).all():
        raise ValidationError("evaluation.wape has infinite values; recompute the evaluation", field="wape")
    frame = frame[frame.arm.isin([CHAMPION, CHALLENGER])]

    live = frame[frame.used]
    live_c = live[live.arm == CHAMPION]
    live_x = live[live.arm == CHALLENGER]
    champion_wape = pooled_wape(live_c.abs_error.to_numpy(), live_c.actual.to_numpy())
    challenger_wape = pooled_wape(live_x.abs_error.to_numpy(), live_x.actual.to_numpy())

    wide = frame.pivot_table(
        index=["store_id", "week"], columns="arm", values=["abs_error", "actual"], aggfunc="sum"
    )
    if CHAMPION in wide.get("abs_error", pd.DataFrame()).columns and CHALLENGER in wide["abs_error"].columns:
        paired = pd.DataFrame(
            {
                "err_c": wide["abs_error"][CHAMPION],
                "err_x": wide["abs_error"][CHALLENGER],
                "actual": wide["actual"][CHAMPION],
            }
        ).dropna()
    else:
        paired = pd.DataFrame(columns=["err_c", "err_x", "actual"], index=wide.index[:0])
    per_store = paired.groupby(level="store_id")[["err_c", "err_x", "actual"]].sum()
    per_store = per_store[per_store.actual > 0]
    kept = paired[paired.index.get_level_values("store_id").isin(per_store.index)]
    weeks = int(kept.index.get_level_values("week").nunique())
    stores = len(per_store)

    wape_c = (per_store.err_c / per_store.actual).to_numpy()
    wape_x = (per_store.err_x / per_store.actual).to_numpy()
    d = wape_c - wape_x
    diff = float(d.mean()) if stores else math.nan
    ci_low, ci_high = bootstrap_mean_ci(d, n_boot=n_boot, seed=seed)
    mean_c = float(wape_c.mean()) if stores else math.nan
    relative = diff / mean_c if stores and mean_c > 0 else math.nan

    if weeks < min_weeks or stores < 2:
        verdict = "not enough data"
    elif ci_low > 0:
        verdict = "promote challenger"
    elif ci_high < 0:
        verdict = "keep champion"
    else:
        verdict = "no clear difference"
    result = dict(
        weeks=weeks,
        stores=stores,
        champion_wape=champion_wape,
        challenger_wape=challenger_wape,
        diff=diff,
        ci_low=ci_low,
        ci_high=ci_high,
        verdict=verdict,
        relative_improvement=relative,
        paired_champion_wape=pooled_wape(per_store.err_c.to_numpy(), per_store.actual.to_numpy()),
        paired_challenger_wape=pooled_wape(per_store.err_x.to_numpy(), per_store.actual.to_numpy()),
        champion_stores=int(live_c.store_id.nunique()),
        challenger_stores=int(live_x.store_id.nunique()),
        n_boot=n_boot,
        seed=seed,
        min_weeks=min_weeks,
    )
    return AbResult(explanation=explain(result), **result)


def _pct(value: float) -> str:
    return "n/a" if not math.isfinite(value) else f"{value * 100:.1f}%"


def _pts(value: float) -> str:
    return "n/a" if not math.isfinite(value) else f"{abs(value) * 100:.1f} points"


def explain(result: dict[str, Any]) -> str:
    """A paragraph a store manager can read: what was compared, how sure we are, what to do."""
    weeks, stores, verdict = result["weeks"], result["stores"], result["verdict"]
    if stores == 0 or weeks == 0:
        return (
            "No store-week has forecasts from both the champion and the challenger yet, so the two cannot be "
            "compared. Keep the champion and check again after the next weeks' visits have arrived."
        )
    wc, wx = result["paired_champion_wape"], result["paired_challenger_wape"]
    diff, low, high = result["diff"], result["ci_low"], result["ci_high"]
    better = "lower" if diff > 0 else "higher"
    head = (
        f"Over {weeks} week{'s' if weeks != 1 else ''} and {stores} store{'s' if stores != 1 else ''}, the "
        f"challenger's forecasts missed actual visitors by {_pct(wx)} and the champion's by {_pct(wc)}. "
        f"Store by store, the challenger's error is on average {_pts(diff)} {better}"
    )
    rel = result["relative_improvement"]
    if math.isfinite(rel) and diff != 0:
        head += f" ({abs(rel) * 100:.0f}% of the champion's error)"
    head += f"; the range we are 95% sure of is {low * 100:+.1f} to {high * 100:+.1f} points (positive = challenger better). "
    if verdict == "not enough data":
        return head + (
            f"That is not enough evidence yet (we want at least {result['min_weeks']} weeks and 2 stores): "
            "keep the champion and let the test run longer."
        )
    if verdict == "promote challenger":
        return head + "The challenger is reliably more accurate: promote it to champion for all stores."
    if verdict == "keep champion":
        return head + "The challenger is reliably less accurate: keep the champion and retire the challenger."
    return head + (
        "The range includes zero, so the difference could be chance: keep the champion; switching would not "
        "reliably improve staffing."
    )
