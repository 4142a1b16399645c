"""Route choice per policy, and the canary verdict: pure logic, no I/O, so it is cheap and testable.

A router answers one question per request - which arm serves it - in microseconds:
- single / shadow: always ``primary`` (shadows are run by the runtime, off the response path);
- canary: a uniform draw against ``weight``;
- ab: the sha256 of ``<endpoint>:<routing key value>`` mapped to [0, 1) against the cumulative
  weights, so one user always lands in the same arm (across processes and restarts) and two
  endpoints split independently;
- bandit: Thompson sampling, one Beta draw per arm from reward counts the runtime refreshes from the
  inference log every few seconds (plus the pulls made here since, so exploration does not stall).
"""

from __future__ import annotations

import hashlib
import math
import random
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from loopml.errors import ValidationError


class Router:
    """Base router: one fixed arm."""

    kind = "single"

    def __init__(self, arms: Sequence[str], primary: str) -> None:
        self.arms = list(arms)
        self.primary = primary

    def choose(self, routing_key: str | None, request_id: str) -> str:
        return self.primary

    def snapshot(self) -> dict[str, Any]:
        return {"kind": self.kind, "primary": self.primary}


class CanaryRouter(Router):
    kind = "canary"

    def __init__(self, weight: float, *, rng: random.Random) -> None:
        super().__init__(["baseline", "canary"], "baseline")
        self.weight = float(weight)
        self._random = rng.random

    def choose(self, routing_key: str | None, request_id: str) -> str:
        return "canary" if self._random() < self.weight else "baseline"

    def snapshot(self) -> dict[str, Any]:
        return {"kind": self.kind, "primary": self.primary, "weight": self.weight}


def hash_unit(text: str) -> float:
    """A stable uniform number in [0, 1) from a string (first 8 bytes of its sha256)."""
    digest = hashlib.sha256(text.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


class ABRouter(Router):
    """Sticky split by routing key; a request without one is split by its (random) request id."""

    kind = "ab"

    def __init__(self, endpoint: str, weights: Mapping[str, float], routing_key: str) -> None:
        arms = list(weights)
        super().__init__(arms, arms[0])
        self.endpoint = endpoint
        self.routing_key = routing_key
        self.weights = dict(weights)
        cumulative = []
        total = 0.0
        for arm in arms:
            total += float(weights[arm])
            cumulative.append((total, arm))
        self._cumulative = cumulative

    def assign(self, key: str) -> str:
        u = hash_unit(f"{self.endpoint}:{key}")
        for bound, arm in self._cumulative:
            if u < bound:
                return arm
        return self._cumulative[-1][1]

    def choose(self, routing_key: str | None, request_id: str) -> str:
        return self.assign(routing_key if routing_key is not None else request_id)

    def snapshot(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "primary": self.primary,
            "weights": self.weights,
            "routing_key": self.routing_key,
        }


@dataclass(frozen=True)
class ArmReward:
    """Reward counts of one arm as the inference log reports them."""

    pulls: int = 0
    reward_sum: float = 0.0
    successes: float = 0.0
    failures: float = 0.0


class BanditRouter(Router):
    """Thompson sampling over Beta posteriors; ``min_pulls`` round-robin first."""

    kind = "bandit"

    def __init__(
        self,
        arms: Sequence[str],
        *,
        prior_alpha: float = 1.0,
        prior_beta: float = 1.0,
        min_pulls: int = 0,
        seed: int | None = None,
    ) -> None:
        super().__init__(arms, next(iter(arms)))
        self.prior_alpha = float(prior_alpha)
        self.prior_beta = float(prior_beta)
        self.min_pulls = int(min_pulls)
        self._rng = np.random.default_rng(seed)
        self._lock = threading.Lock()
        self._rewards: dict[str, ArmReward] = {arm: ArmReward() for arm in self.arms}
        self._local_pulls: dict[str, int] = dict.fromkeys(self.arms, 0)

    def update(self, stats: Mapping[str, Any]) -> None:
        """Replace reward counts with fresh ones from the log (``arm -> (pulls, sum, succ, fail)``)."""
        fresh = {}
        for arm in self.arms:
            value = stats.get(arm)
            if value is None:
                fresh[arm] = ArmReward()
            elif isinstance(value, ArmReward):
                fresh[arm] = value
            else:
                pulls, reward_sum, successes, failures = _fields(value)
                fresh[arm] = ArmReward(int(pulls), float(reward_sum), float(successes), float(failures))
        with self._lock:
            self._rewards = fresh
            self._local_pulls = dict.fromkeys(self.arms, 0)

    def pulls(self, arm: str) -> int:
        return self._rewards[arm].pulls + self._local_pulls[arm]

    def choose(self, routing_key: str | None, request_id: str) -> str:
        with self._lock:
            if self.min_pulls:
                behind = [arm for arm in self.arms if self.pulls(arm) < self.min_pulls]
                if behind:
                    arm = min(behind, key=self.pulls)
                    self._local_pulls[arm] += 1
                    return arm
            best, best_draw = self.arms[0], -1.0
            for arm in self.arms:
                r = self._rewards[arm]
                draw = float(
                    self._rng.beta(
                        self.prior_alpha + max(r.successes, 0.0), self.prior_beta + max(r.failures, 0.0)
                    )
                )
                if draw > best_draw:
                    best, best_draw = arm, draw
            self._local_pulls[best] += 1
            return best

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            arms = {
                arm: {
                    "pulls": self.pulls(arm),
                    "successes": r.successes,
                    "failures": r.failures,
                    "mean": (self.prior_alpha + r.successes)
                    / (self.prior_alpha + self.prior_beta + r.successes + r.failures),
                }
                for arm, r in self._rewards.items()
            }
        return {"kind": self.kind, "primary": self.primary, "arms": arms}


def _fields(value: Any) -> tuple[Any, Any, Any, Any]:
    if not hasattr(value, "successes") and isinstance(value, tuple | list):
        return value[0], value[1], value[2], value[3]
    return (
        getattr(value, "pulls", 0),
        getattr(value, "reward_sum", 0.0),
        getattr(value, "successes", 0.0),
        getattr(value, "failures", 0.0),
    )


def build_router(endpoint: str, policy: Any, *, seed: int | None = None) -> Router:
    """The router for an endpoint's policy (see ``definitions``)."""
    kind = policy.kind
    rng = random.Random(seed)
    if kind in ("single", "shadow"):
        return Router(["primary"], "primary")
    if kind == "canary":
        return CanaryRouter(policy.weight, rng=rng)
    if kind == "ab":
        return ABRouter(endpoint, policy.effective_weights(), policy.routing_key)
    if kind == "bandit":
        return BanditRouter(
            list(policy.arms),
            prior_alpha=policy.prior_alpha,
            prior_beta=policy.prior_beta,
            min_pulls=policy.min_pulls,
            seed=seed,
        )
    raise ValidationError(f"policy.kind {kind!r} has no router", field="policy.kind")


# --------------------------------------------------------------------------- canary verdict


#: Probabilities are compared as logits, clipped this close to 0 and 1 (a score of exactly 0 or 1 is finite).
PROB_CLIP = 1e-6
#: Neighbouring bin edges closer than this many logits are merged: odds within a factor ~1.65 count as
#: the same score, so tiny differences that change no decision do not register as drift.
MIN_LOGIT_WIDTH = 0.5
#: For other outputs (regressors): the minimum bin width as a share of the pooled 1-99 % range.
MIN_RAW_WIDTH = 0.02
#: Added to every bin's count on both sides, so an empty bin costs a finite, sample-size-aware amount.
SMOOTHING = 0.5


def psi(
    expected: Sequence[float] | np.ndarray,
    actual: Sequence[float] | np.ndarray,
    *,
    bins: int = 10,
    scale: str = "auto",
    min_count: int = 10,
) -> float:
    """Population stability index of ``actual`` against ``expected`` (0: same distribution, > 0.25: moved).

    Built to stay meaningful for rare-event classifiers, whose scores are nearly all close to 0: there,
    deciles of raw baseline probabilities resolve differences of 0.0001 that change no decision, and two
    retrained models that agree on almost every decision scored PSI 1-4. So:
    probabilities (``scale="auto"``: every value in [0, 1]; or ``"logit"``) are compared as logits; the
    bin edges are quantiles of the *pooled* sample (neither side's ties or tails alone decide the grid);
    edges closer than ``MIN_LOGIT_WIDTH`` logits (``MIN_RAW_WIDTH`` of the range for ``"raw"`` values)
    are merged, and so are bins holding fewer than ``min_count`` pooled values; each bin's count gets
    ``SMOOTHING`` before the shares are compared with sum((a - e) * ln(a / e)).
    """
    if isinstance(bins, bool) or not isinstance(bins, int) or bins < 2:
        raise ValidationError(f"bins={bins!r}: use an integer >= 2", field="bins")
    if isinstance(min_count, bool) or not isinstance(min_count, int) or min_count < 1:
        raise ValidationError(f"min_count={min_count!r}: use an integer >= 1", field="min_count")
    if scale not in ("auto", "logit", "raw"):
        raise ValidationError(f"scale={scale!r}: use 'auto', 'logit' or 'raw'", field="scale")
    e = np.asarray(expected, dtype=float).ravel()
    a = np.asarray(actual, dtype=float).ravel()
    e = e[np.isfinite(e)]
    a = a[np.isfinite(a)]
    if len(e) == 0 or len(a) == 0:
        return 0.0
    pooled = np.concatenate([e, a])
    logit = scale == "logit" or (scale == "auto" and pooled.min() >= 0.0 and pooled.max() <= 1.0)
    if logit:
        e, a = _logit(e), _logit(a)
        pooled = np.concatenate([e, a])
        min_width = MIN_LOGIT_WIDTH
    else:
        lo, hi = np.quantile(pooled, [0.01, 0.99])
        min_width = MIN_RAW_WIDTH * float(hi - lo)
    edges = _edges(pooled, bins, min_width)
    if len(edges) == 0:  # one value (up to the minimum width) on both sides: nothing moved
        return 0.0
    ce = np.bincount(np.searchsorted(edges, e, side="right"), minlength=len(edges) + 1)
    ca = np.bincount(np.searchsorted(edges, a, side="right"), minlength=len(edges) + 1)
    ce, ca = _merge_sparse(ce, ca, min_count)
    k = len(ce)
    if k < 2:
        return 0.0
    pe = (ce + SMOOTHING) / (len(e) + SMOOTHING * k)
    pa = (ca + SMOOTHING) / (len(a) + SMOOTHING * k)
    return float(np.sum((pa - pe) * np.log(pa / pe)))


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, PROB_CLIP, 1.0 - PROB_CLIP)
    return np.log(p) - np.log1p(-p)


def _edges(pooled: np.ndarray, bins: int, min_width: float) -> np.ndarray:
    """Inner bin edges: pooled quantiles moved into the widest nearby gap, then thinned to ``min_width``.

    Tree models emit a few discrete scores; a quantile edge lands *on* such a cluster, and two models
    whose clusters sit a hair apart would fall on different sides of it. Moving each edge to the middle
    of the widest gap between distinct values within ``min_width`` keeps clusters whole.
    """
    lo, hi = float(pooled.min()), float(pooled.max())
    candidates = np.quantile(pooled, np.linspace(0, 1, bins + 1)[1:-1])
    distinct = np.unique(pooled)
    if len(distinct) > 1 and min_width > 0:
        gaps = np.diff(distinct)
        mids = distinct[:-1] + gaps / 2.0
        snapped = []
        for c in candidates.tolist():
            near = np.flatnonzero(np.abs(mids - c) <= min_width)
            snapped.append(float(mids[near[np.argmax(gaps[near])]]) if len(near) else c)
        candidates = np.asarray(snapped)
    kept: list[float] = []
    last = lo
    for edge in np.unique(candidates).tolist():
        if edge > lo and edge - last >= min_width and hi - edge >= min_width:
            kept.append(edge)
            last = edge
    return np.asarray(kept, dtype=float)


def _merge_sparse(ce: np.ndarray, ca: np.ndarray, min_count: int) -> tuple[np.ndarray, np.ndarray]:
    """Merge neighbouring bins until each holds at least ``min_count`` pooled values."""
    out_e: list[int] = []
    out_a: list[int] = []
    acc_e = acc_a = 0
    for x, y in zip(ce.tolist(), ca.tolist(), strict=True):
        acc_e += x
        acc_a += y
        if acc_e + acc_a >= min_count:
            out_e.append(acc_e)
            out_a.append(acc_a)
            acc_e = acc_a = 0
    if acc_e + acc_a:
        if out_e:
            out_e[-1] += acc_e
            out_a[-1] += acc_a
        else:
            out_e.append(acc_e)
            out_a.append(acc_a)
    return np.asarray(out_e, dtype=float), np.asarray(out_a, dtype=float)


def numeric_outputs(outputs: Any) -> np.ndarray:
    """Numbers to compare distributions on: probabilities for classifiers, values for regressors."""
    values = []
    for out in outputs if outputs is not None else ():
        if isinstance(out, Mapping):
            out = out.get("probability", out.get("label"))
        if isinstance(out, bool):
            out = float(out)
        if isinstance(out, int | float) and math.isfinite(out):
            values.append(float(out))
    return np.asarray(values, dtype=float)


@dataclass(frozen=True)
class CanaryVerdict:
    """Whether to roll back, and the numbers that said so (they go into the audit reason)."""

    rollback: bool
    reason: str
    baseline_n: int
    canary_n: int
    error_rate_delta: float | None = None
    p99_ratio: float | None = None
    psi: float | None = None


def canary_verdict(rule: Any, baseline: Any, canary: Any) -> CanaryVerdict:
    """Compare the canary's window stats with the baseline's under a ``RollbackRule``.

    ``baseline``/``canary`` have ``n``, ``errors``, ``p99`` and ``outputs`` (a sample of outputs).
    Nothing is decided before the canary has ``min_requests``: small samples are noise.
    """
    bn = int(getattr(baseline, "n", 0) or 0) if baseline is not None else 0
    cn = int(getattr(canary, "n", 0) or 0) if canary is not None else 0
    if cn < rule.min_requests:
        return CanaryVerdict(False, f"canary has {cn} of {rule.min_requests} requests needed", bn, cn)
    b_err = (getattr(baseline, "errors", 0) or 0) / bn if bn else 0.0
    c_err = (getattr(canary, "errors", 0) or 0) / cn
    delta = c_err - b_err
    reasons = []
    if delta > rule.max_error_rate_delta:
        reasons.append(
            f"error rate {c_err:.2%} vs baseline {b_err:.2%} (+{delta:.2%} > {rule.max_error_rate_delta:.2%})"
        )
    ratio = None
    b99 = getattr(baseline, "p99", None) if baseline is not None else None
    c99 = getattr(canary, "p99", None)
    if bn and b99 and c99 and b99 > 0:
        ratio = float(c99) / float(b99)
        floor = rule.latency_floor_ms
        if ratio > rule.max_p99_ratio and float(c99) > floor:
            reasons.append(
                f"p99 latency {c99:.2f} ms vs {b99:.2f} ms (x{ratio:.2f} > x{rule.max_p99_ratio:g}, "
                f"above the {floor:g} ms floor)"
            )
    drift = None
    if bn:
        b_out = numeric_outputs(getattr(baseline, "outputs", None))
        c_out = numeric_outputs(getattr(canary, "outputs", None))
        if len(b_out) >= 20 and len(c_out) >= 20:
            drift = psi(b_out, c_out)
            if drift > rule.max_psi:
                reasons.append(f"prediction PSI {drift:.3f} > {rule.max_psi:g}")
    if reasons:
        text = f"canary worse than baseline over {cn} vs {bn} requests: " + "; ".join(reasons)
        return CanaryVerdict(True, text, bn, cn, delta, ratio, drift)
    return CanaryVerdict(
        False, f"canary within limits over {cn} vs {bn} requests", bn, cn, delta, ratio, drift
    )
