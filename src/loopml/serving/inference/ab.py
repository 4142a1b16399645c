"""``analyse_ab``: per-arm metrics from logged feedback, bootstrap confidence intervals and a verdict.

Why a bootstrap: the metrics people compare arms on (AUC, log loss, precision) have no simple
standard error, and the same resampling gives the interval of the difference to the control arm.
It is seeded, so the same log gives the same report. The verdict is deliberately conservative:
an arm "is better" only when the whole confidence interval of its difference to the control is
on the better side of zero, and every arm needs ``min_labelled`` usable observations first.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from loopml.errors import NotFoundError, ValidationError, did_you_mean
from loopml.serving.inference import abstats
from loopml.serving.inference.records import arm_key
from loopml.serving.inference.service import InferenceLog, TimeRef

NOT_ENOUGH = "not enough data"
NO_DIFFERENCE = "no clear difference"
#: Arm names taken as the control when none is given (in this order).
CONTROL_NAMES = ("control", "baseline", "champion", "a", "A", "primary", "default")


@dataclass(frozen=True)
class ArmResult:
    """One arm: traffic, usable observations, the metric with its CI and the difference to the control."""

    arm: str
    models: list[str]
    n: int
    labelled: int
    value: float | None
    ci_low: float | None
    ci_high: float | None
    diff: float | None
    diff_low: float | None
    diff_high: float | None
    is_control: bool
    metrics: dict[str, float | None] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class AbAnalysis:
    """The comparison of an endpoint's arms on one metric, with a verdict and its explanation."""

    endpoint: str
    metric: str
    higher_is_better: bool
    control: str | None
    arms: list[ArmResult]
    verdict: str
    explanation: str
    n_boot: int
    confidence: float
    seed: int
    min_labelled: int

    @property
    def winner(self) -> str | None:
        return self.verdict[: -len(" is better")] if self.verdict.endswith(" is better") else None

    def arm(self, name: str) -> ArmResult:
        for a in self.arms:
            if a.arm == name:
                return a
        raise NotFoundError(
            f"arm {name!r} is not in this analysis.{did_you_mean(name, [a.arm for a in self.arms])}"
        )

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["winner"] = self.winner
        return out

    def to_text(self) -> str:
        """A plain-text report for the CLI (``loopml endpoints ab NAME``)."""
        pct = round(self.confidence * 100)
        lines = [
            f"endpoint {self.endpoint}: {self.metric} ({'higher' if self.higher_is_better else 'lower'} is better), "
            f"control {self.control or '-'}",
            f"{'arm':<16}{'requests':>10}{'labelled':>10}{self.metric:>10}  {pct}% CI{'':<12}{'diff':>9}  {pct}% CI",
        ]
        for a in self.arms:
            ci = _pair(a.ci_low, a.ci_high)
            diff = "control" if a.is_control else _num(a.diff)
            dci = "" if a.is_control else _pair(a.diff_low, a.diff_high)
            lines.append(f"{a.arm:<16}{a.n:>10}{a.labelled:>10}{_num(a.value):>10}  {ci:<18}{diff:>9}  {dci}")
        lines.append(f"verdict: {self.verdict}")
        lines.append(self.explanation)
        return "\n".join(lines)


def analyse_ab(
    lm: Any,
    endpoint: str,
    *,
    metric: str = "auto",
    since: TimeRef = None,
    n_boot: int = 2000,
    control: str | None = None,
    min_labelled: int = 30,
    confidence: float = 0.95,
    seed: int = 0,
) -> AbAnalysis:
    """Compare the arms of ``endpoint`` on ``metric`` from the inference log and its feedback.

    ``metric="auto"`` picks ``reward`` when rewards were sent, ``auc`` for 0/1 labels, ``mae`` for
    numeric labels and ``accuracy`` otherwise. Arms are the logged ``arm`` (or the model version
    when a policy has no arms). The control is ``control`` or the first arm named like one of
    ``CONTROL_NAMES``, else the arm with the most requests.
    """
    _check_args(metric, n_boot, min_labelled, confidence, seed)
    inference = getattr(lm, "inference", None)
    if not isinstance(inference, InferenceLog):
        inference = InferenceLog(lm.ctx)
    frame = inference.joined(endpoint, since=since)
    return analyse_frame(
        frame,
        endpoint,
        metric=metric,
        n_boot=n_boot,
        control=control,
        min_labelled=min_labelled,
        confidence=confidence,
        seed=seed,
    )


def analyse_frame(
    frame: pd.DataFrame,
    endpoint: str,
    *,
    metric: str = "auto",
    n_boot: int = 2000,
    control: str | None = None,
    min_labelled: int = 30,
    confidence: float = 0.95,
    seed: int = 0,
) -> AbAnalysis:
    """``analyse_ab`` on a frame shaped like ``InferenceLog.joined`` (for logs kept elsewhere)."""
    _check_args(metric, n_boot, min_labelled, confidence, seed)
    missing = [
        c
        for c in ("arm", "model", "version", "status", "output", "predicted", "label", "reward")
        if c not in frame
    ]
    if missing:
        raise ValidationError(
            f"the frame lacks column {missing[0]!r}; pass InferenceLog.joined(endpoint) output",
            field=missing[0],
        )
    groups = _groups(frame)
    chosen = _choose_metric(frame) if metric == "auto" else metric
    higher = chosen in abstats.HIGHER_IS_BETTER
    if control is not None and control not in groups:
        raise NotFoundError(
            f"control arm {control!r} has no requests in endpoint {endpoint!r}.{did_you_mean(control, list(groups))}",
            field="control",
        )
    control_arm = control or _default_control(groups)
    rng = np.random.default_rng(seed)
    samples = {name: _sample(chosen, g) for name, g in groups.items()}
    boots = {
        name: abstats.bootstrap(chosen, s, n_boot, rng) if len(s) >= 2 else np.full(n_boot, np.nan)
        for name, s in samples.items()
    }
    arms = []
    for name, g in groups.items():
        s = samples[name]
        point = abstats.value(chosen, s) if len(s) else math.nan
        low, high = abstats.interval(boots[name], confidence)
        is_control = name == control_arm
        diff = diff_low = diff_high = None
        if not is_control and control_arm is not None and len(samples[control_arm]):
            diff = _finite(point - abstats.value(chosen, samples[control_arm]))
            diff_low, diff_high = abstats.interval(boots[name] - boots[control_arm], confidence)
        arms.append(
            ArmResult(
                arm=name,
                models=sorted({_model_name(m, v) for m, v in zip(g["model"], g["version"], strict=True)}),
                n=len(g),
                labelled=len(s),
                value=_finite(point),
                ci_low=low,
                ci_high=high,
                diff=diff,
                diff_low=diff_low,
                diff_high=diff_high,
                is_control=is_control,
                metrics=_all_metrics(g),
            )
        )
    arms.sort(key=lambda a: (not a.is_control, a.arm))
    verdict, explanation = _verdict(arms, chosen, higher, min_labelled, confidence, n_boot)
    return AbAnalysis(
        endpoint=endpoint,
        metric=chosen,
        higher_is_better=higher,
        control=control_arm,
        arms=arms,
        verdict=verdict,
        explanation=explanation,
        n_boot=n_boot,
        confidence=confidence,
        seed=seed,
        min_labelled=min_labelled,
    )


# -- building the samples ---------------------------------------------------------------------
def _groups(frame: pd.DataFrame) -> dict[str, pd.DataFrame]:
    if frame.empty:
        return {}
    keys = [
        arm_key(a, m, None if pd.isna(v) else int(v))
        for a, m, v in zip(frame["arm"], frame["model"], frame["version"], strict=True)
    ]
    return {str(k): g for k, g in frame.groupby(pd.Series(keys, index=frame.index), sort=True)}


def _binary(value: Any) -> float | None:
    """0/1 for a binary label (bool, 0, 1, 0.0, 1.0), else None."""
    if isinstance(value, (bool, np.bool_)):
        return float(value)
    if isinstance(value, (int, float, np.integer, np.floating)) and value in (0, 1):
        return float(value)
    return None


def _number(value: Any) -> float | None:
    if isinstance(value, (bool, np.bool_)) or value is None:
        return None
    if isinstance(value, (int, float, np.integer, np.floating)) and math.isfinite(float(value)):
        return float(value)
    return None


def _usable(g: pd.DataFrame) -> pd.DataFrame:
    """Model answers only: a fallback answer says nothing about the model behind the arm."""
    return g[g["status"] == "ok"]


def _sample(metric: str, g: pd.DataFrame) -> abstats.Sample:
    g = _usable(g)
    empty = abstats.Sample(np.empty(0), np.empty(0), np.empty(0))
    if metric == "reward":
        r = g["reward"].to_numpy(dtype=float)
        r = r[np.isfinite(r)]
        return abstats.Sample(r, np.zeros_like(r), np.zeros_like(r))
    ys, ss, ps = [], [], []
    for label, score, predicted in zip(g["label"], g["output"], g["predicted"], strict=True):
        if label is None:
            continue
        if metric in abstats.BINARY or metric == "accuracy":
            y = _binary(label)
            if y is None:  # multi-class or text labels: only accuracy applies, comparing values
                if metric == "accuracy" and predicted is not None:
                    ys.append(label)
                    ss.append(math.nan)
                    ps.append(predicted)
                continue
            score_ok = math.isfinite(score) and 0 <= score <= 1
            if metric in ("auc", "logloss") and not score_ok:
                continue
            p = _binary(predicted)
            if p is None:
                if not score_ok:
                    continue
                p = 1.0 if score >= 0.5 else 0.0
            ys.append(y)
            ss.append(score if score_ok else math.nan)
            ps.append(p)
        else:  # mae, rmse
            y = _number(label)
            if y is None or not math.isfinite(score):
                continue
            ys.append(y)
            ss.append(score)
            ps.append(score)
    if not ys:
        return empty
    as_object = any(not isinstance(v, float) for v in ys)
    y_arr = np.array(ys, dtype=object if as_object else float)
    p_arr = np.array(ps, dtype=object if as_object else float)
    return abstats.Sample(y_arr, np.array(ss, dtype=float), p_arr)


def _choose_metric(frame: pd.DataFrame) -> str:
    ok = _usable(frame)
    if np.isfinite(ok["reward"].to_numpy(dtype=float)).any():
        return "reward"
    labels = [v for v in ok["label"] if v is not None]
    if not labels:
        return "reward"  # nothing to compare yet; the verdict will say "not enough data"
    has_scores = np.isfinite(ok["output"].to_numpy(dtype=float)).any()
    if all(_binary(v) is not None for v in labels) and has_scores:
        return "auc"
    if all(_number(v) is not None for v in labels) and has_scores:
        return "mae"
    return "accuracy"


def _all_metrics(g: pd.DataFrame) -> dict[str, float | None]:
    """Point estimates of every metric the arm's feedback supports (shown next to the main one)."""
    out: dict[str, float | None] = {}
    for metric in abstats.METRICS:
        s = _sample(metric, g)
        if len(s):
            out[metric] = _finite(abstats.value(metric, s))
    return out


def _default_control(groups: dict[str, pd.DataFrame]) -> str | None:
    if not groups:
        return None
    for name in CONTROL_NAMES:
        if name in groups:
            return name
    return sorted(groups, key=lambda k: (-len(groups[k]), k))[0]


# -- the verdict ------------------------------------------------------------------------------
def _verdict(
    arms: list[ArmResult], metric: str, higher: bool, min_labelled: int, confidence: float, n_boot: int
) -> tuple[str, str]:
    if len(arms) < 2:
        names = ", ".join(a.arm for a in arms) or "none"
        return NOT_ENOUGH, f"an A/B comparison needs two arms with traffic; arms seen: {names}."
    short = [a for a in arms if a.labelled < min_labelled]
    if short:
        listed = ", ".join(f"{a.arm} ({a.labelled})" for a in short)
        return NOT_ENOUGH, (
            f"every arm needs at least {min_labelled} requests with {_what(metric)}; too few in: {listed}. "
            "Send more feedback or lower min_labelled."
        )
    control = next(a for a in arms if a.is_control)
    sign = 1.0 if higher else -1.0
    better, worse = [], []
    for a in arms:
        if a.is_control or a.diff_low is None or a.diff_high is None:
            continue
        if sign * a.diff_low > 0 and sign * a.diff_high > 0:
            better.append(a)
        elif sign * a.diff_low < 0 and sign * a.diff_high < 0:
            worse.append(a)
    pct = f"{round(confidence * 100)}% bootstrap CI, {n_boot} resamples"
    if better:
        best = max(better, key=lambda a: sign * (a.diff or 0.0))
        return f"{best.arm} is better", (
            f"{metric} of {best.arm} {_num(best.value)} vs {control.arm} {_num(control.value)}: difference "
            f"{_signed(best.diff)} {_pair(best.diff_low, best.diff_high)} ({pct}) excludes zero."
        )
    others = [a for a in arms if not a.is_control]
    if others and len(worse) == len(others):
        closest = min(worse, key=lambda a: sign * -(a.diff or 0.0))
        return f"{control.arm} is better", (
            f"{metric} of {control.arm} (control) {_num(control.value)} beats every other arm; closest "
            f"{closest.arm} {_num(closest.value)}, difference {_signed(closest.diff)} "
            f"{_pair(closest.diff_low, closest.diff_high)} ({pct})."
        )
    spans = "; ".join(f"{a.arm} {_signed(a.diff)} {_pair(a.diff_low, a.diff_high)}" for a in others)
    return NO_DIFFERENCE, f"the {metric} difference to {control.arm} includes zero ({pct}): {spans}."


def _what(metric: str) -> str:
    return "a reward" if metric == "reward" else "a label (and a score)"


# -- formatting and checks --------------------------------------------------------------------
def _finite(value: float) -> float | None:
    return float(value) if value is not None and math.isfinite(value) else None


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.4g}"


def _signed(value: float | None) -> str:
    return "-" if value is None else f"{value:+.4g}"


def _pair(low: float | None, high: float | None) -> str:
    return "-" if low is None or high is None else f"[{low:.4g}, {high:.4g}]"


def _model_name(model: str, version: Any) -> str:
    if version is None or (isinstance(version, float) and math.isnan(version)):
        return model
    return f"{model.split('@')[0].split('/')[0]}/{int(version)}"


def _check_args(metric: Any, n_boot: Any, min_labelled: Any, confidence: Any, seed: Any) -> None:
    if metric != "auto" and metric not in abstats.METRICS:
        raise ValidationError(
            f"metric={metric!r}: use auto or one of {', '.join(abstats.METRICS)}."
            f"{did_you_mean(str(metric), abstats.METRICS)}",
            field="metric",
        )
    if isinstance(n_boot, bool) or not isinstance(n_boot, int) or not 100 <= n_boot <= 100_000:
        raise ValidationError(f"n_boot={n_boot!r}: use an integer from 100 to 100000", field="n_boot")
    if isinstance(min_labelled, bool) or not isinstance(min_labelled, int) or min_labelled < 2:
        raise ValidationError(f"min_labelled={min_labelled!r}: use an integer >= 2", field="min_labelled")
    if isinstance(confidence, bool) or not isinstance(confidence, (int, float)) or not 0.5 <= confidence < 1:
        raise ValidationError(
            f"confidence={confidence!r}: use a number in [0.5, 1), e.g. 0.95", field="confidence"
        )
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValidationError(f"seed={seed!r}: use a non-negative integer", field="seed")
