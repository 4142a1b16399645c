"""The loop's training/serving skew check: a candidate's live scores against its own offline scores.

A retrained model that passed the gates can still be wrong in production when the gate's evaluation
data shares the training job's mistake (a feature computed differently offline than online). Its
scores on live traffic then differ from its scores on that evaluation data, while a healthy retrain
scores both alike (same population). At the gates stage the candidate scores the evaluation data and
the run keeps a quantile sketch; shadow and canary compare live scores with it by PSI.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

import numpy as np

from loopml.errors import LoopmlError, NotFoundError, ValidationError
from loopml.serving.endpoints.definitions import RollbackRule
from loopml.serving.endpoints.policies import psi

if TYPE_CHECKING:
    from loopml.monitoring.loop_records import LoopRun
    from loopml.monitoring.loop_steps import StageInput

#: Most rows of the offline evaluation data the candidate scores for the skew check (evenly spaced).
SKEW_ROWS = 50_000
#: The offline scores are kept in the run as at most this many evenly spaced quantiles.
SKEW_SKETCH = 1000
#: Fewest live scores a skew PSI is computed on (fewer: noise).
SKEW_MIN_LIVE = 20
_DATASET_REF = re.compile(r"^([A-Za-z][A-Za-z0-9_.-]*)(?:@([1-9][0-9]*))?$")


class SkewUnavailable(LoopmlError):
    """The policy names skew evaluation data (release.skew.eval_dataset) that cannot be scored."""


def offline_reference(s: StageInput, results: Any) -> tuple[dict[str, Any] | None, str]:
    """(run data for the skew check, a note for the gates step): the candidate's scores on its eval data.

    Data: ``release.skew.eval_dataset`` if the policy names one (unreadable -> ``SkewUnavailable``),
    else the exact dataset version the alias's ``BeatsCurrent`` gate just judged. Without either, or
    for a model without one numeric score per row (multiclass), the check is off and the step says so.
    """
    cfg = s.release.get("skew")  # runs started before the skew check existed have none
    if cfg is None:
        return None, "; skew check off (release.skew is null)"
    source, label, where = _skew_source(s, cfg, results)
    if source is None:
        return {"off": "no offline evaluation data"}, (
            "; skew check off: no offline evaluation data (name release.skew.eval_dataset or protect "
            "the alias with a BeatsCurrent gate)"
        )
    candidate = s.run.candidate or ""
    try:
        frame, described = _read_eval(s.lm, source)
        scores = candidate_scores(s.lm, candidate, frame, label)
    except LoopmlError as exc:
        if where == "release.skew.eval_dataset":
            raise SkewUnavailable(
                f"skew: cannot score {candidate} on release.skew.eval_dataset {source!r}: {exc}",
                field="release.skew.eval_dataset",
            ) from None
        return {"off": str(exc)}, f"; skew check off: cannot score {candidate} on {source}: {exc}"
    if len(scores) < SKEW_MIN_LIVE:
        return {"off": f"{len(scores)} offline scores"}, (
            f"; skew check off: {described} gives only {len(scores)} scores (needs {SKEW_MIN_LIVE})"
        )
    data = {
        "source": described,
        "from": where,
        "rows": len(scores),
        "max_psi": float(cfg["max_psi"]),
        "offline": sketch(scores),
    }
    return (
        data,
        f"; skew reference: {len(scores):,} scores of {candidate} on {described} (limit PSI {cfg['max_psi']:g})",
    )


def _skew_source(s: StageInput, cfg: dict[str, Any], results: Any) -> tuple[str | None, str | None, str]:
    if cfg.get("eval_dataset"):
        return cfg["eval_dataset"], cfg.get("label"), "release.skew.eval_dataset"
    alias = s.release["alias"]
    version = s.lm.registry.get_version(s.run.candidate or "")
    protection = s.lm.registry.protection(version.model, alias)
    for gate in protection.gates if protection is not None else ():
        if gate.get("type") != "beats_current" or not gate.get("eval_dataset"):
            continue
        source = str(gate["eval_dataset"])
        name = f"beats_current({gate.get('metric')})"
        judged = next((r.details.get("dataset") for r in results if r.gate == name), None)
        if isinstance(judged, str) and _DATASET_REF.match(judged):
            source = judged  # the very version the gate judged ("fraud_loop_eval@3"), not a later one
        return source, cfg.get("label") or gate.get("label"), f"the {alias!r} BeatsCurrent gate"
    return None, None, ""


def _read_eval(lm: Any, source: str) -> tuple[Any, str]:
    """Evaluation rows of ``name``, ``name@N`` or a stored frame ``sha256:...``, and how to name them."""
    if source.startswith("sha256:"):
        from loopml.registry.gates import parquet_to_frame

        return parquet_to_frame(lm.ctx.artifacts.get_bytes(source)), f"stored frame {source[:19]}..."
    match = _DATASET_REF.match(source)
    if match is None:
        raise NotFoundError(f"{source!r} is not a dataset reference ('name' or 'name@N')")
    name, number = match.groups()
    version = lm.datasets.version(name, int(number) if number else "latest")
    return lm.datasets.read(name, version.number), f"{name}@{version.number}"


def candidate_scores(lm: Any, ref: str, frame: Any, label: str | None) -> np.ndarray:
    """The scores the endpoint would log for ``frame``: P(positive) of a binary classifier, or the value
    of a regressor (``shape_outputs``); at most ``SKEW_ROWS`` evenly spaced rows."""
    model = lm.registry.load(ref)
    if label and label in frame.columns:
        frame = frame.drop(columns=[label])
    if len(frame) > SKEW_ROWS:
        frame = frame.iloc[np.linspace(0, len(frame) - 1, SKEW_ROWS).astype(int)]
    if model.is_classifier:
        classes = list(model.classes or [])
        if len(classes) != 2:
            raise ValidationError(
                f"{ref} has {len(classes)} classes; the skew check compares one score per request "
                "(binary classifiers, regressors)",
                field="release.skew",
            )
        values = np.asarray(model.predict_proba(frame, strict=False), dtype=float)[:, 1]
    else:
        values = np.asarray(model.predict(frame, strict=False), dtype=float)
    return values[np.isfinite(values)]


def sketch(scores: np.ndarray) -> list[float]:
    """Scores as at most ``SKEW_SKETCH`` evenly spaced quantiles (observed values, so a tree model's
    score clusters stay whole), 6 significant digits: small enough to keep in the run's JSON."""
    values = np.sort(np.asarray(scores, dtype=float))
    if len(values) > SKEW_SKETCH:
        values = np.quantile(values, (np.arange(SKEW_SKETCH) + 0.5) / SKEW_SKETCH, method="inverted_cdf")
    return [float(f"{v:.6g}") for v in values.tolist()]


def skew_psi(run: LoopRun, live: Any) -> float | None:
    """PSI of the candidate's live scores against its offline ones (None: no reference, too few live)."""
    offline = (run.data.get("skew") or {}).get("offline")
    values = np.asarray(live if live is not None else (), dtype=float)
    values = values[np.isfinite(values)]
    if not offline or len(values) < SKEW_MIN_LIVE:
        return None
    return psi(np.asarray(offline, dtype=float), values)


def skew_reason(value: float, limit: float) -> str:
    return (
        "training/serving skew: candidate scores live differ from its offline evaluation "
        f"(PSI {value:.3f} > {limit:g})"
    )


def skew_limit(s: StageInput) -> float:
    return float((s.run.data.get("skew") or {}).get("max_psi") or 0.0)


def canary_skew(s: StageInput, rule: RollbackRule, c_all: Any) -> float | None:
    """Skew PSI over the canary's own requests, once it has as many as the rollback rule needs."""
    if skew_limit(s) <= 0 or int(getattr(c_all, "n", 0) or 0) < rule.min_requests:
        return None
    return skew_psi(s.run, getattr(c_all, "outputs", None))


def skew_note(s: StageInput, value: float | None) -> str:
    if value is None:
        return ""
    limit = skew_limit(s)
    return f", skew PSI {value:.3f} {'>' if value > limit else '<='} {limit:g}"
