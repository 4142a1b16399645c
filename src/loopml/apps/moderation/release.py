"""Releasing a retrained screener: shadow A/B, then online A/B, then promotion through the gate.

The seeds' order for a retrained model: first **shadow** (the challenger scores every upload off
the decision path; nobody is affected, and the inference log shows how often it would have decided
differently and how slow it is), then an **online A/B test** (a share of uploaders, sticky by
uploader, is really screened by the challenger; operator reviews label the outcome per arm), then
**promotion** through the registry's release gate, after which the endpoint serves
``<model>@champion`` again. Every step is an endpoint policy change (audited, revisioned) or an
alias move (gated, audited); the screening workers pick each up within a second without a restart.

Decisions are compared on the config's scale: registered versions are ``CalibratedScreener``s, so
one ``ModerationConfig`` (``review_at``/``reject_at``) turns any arm's score into the same kind of
decision.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd

from loopml import Loopml
from loopml.apps.moderation.config import ModerationConfig
from loopml.apps.moderation.policy import ScreeningPolicy
from loopml.checks import check_number
from loopml.errors import ConflictError, LoopmlError, NotFoundError

ACTOR = "moderation.release"
CHAMPION = "champion"
CHALLENGER = "challenger"
ARMS = (CHAMPION, CHALLENGER)


def _policy(cfg: ModerationConfig) -> ScreeningPolicy:
    return ScreeningPolicy(reject_at=cfg.reject_at, review_at=cfg.review_at)


def _refs(lm: Loopml, cfg: ModerationConfig) -> tuple[str, str, int, int]:
    """(champion ref, challenger ref, their versions); NotFoundError naming what is missing."""
    refs = []
    for alias in ARMS:
        ref = f"{cfg.model_name}@{alias}"
        try:
            refs.append((ref, lm.registry.get_version(ref).number))
        except NotFoundError:
            hint = (
                "run the retraining pipeline (loopml moderation retrain)"
                if alias == CHALLENGER
                else "promote v1"
            )
            raise NotFoundError(f"{ref} does not exist: {hint}") from None
    (champ, cv), (chall, lv) = refs
    if cv == lv:
        raise ConflictError(
            f"{cfg.model_name}@challenger is version {lv}, the champion already: retrain to get a new challenger",
            field="challenger",
        )
    return champ, chall, cv, lv


def _ensure_endpoint(lm: Loopml, cfg: ModerationConfig) -> None:
    from loopml.apps.moderation.screening import ensure_endpoint

    ensure_endpoint(lm, cfg)


def start_shadow(
    lm: Loopml,
    cfg: ModerationConfig,
    *,
    candidate: str | None = None,
    sample: float = 1.0,
    actor: str = ACTOR,
) -> dict[str, Any]:
    """``Shadow(champion, [candidate])`` on the screening endpoint (default candidate: the challenger).

    A shadow affects nobody, so a version the gate blocked may still be shadowed to learn why
    (``candidate="moderation-face/7"``); only the A/B test needs the ``challenger`` alias.
    """
    sample = check_number(sample, "sample", low=0.0, high=1.0, low_open=True)
    if candidate is None:
        champ, chall, cv, lv = _refs(lm, cfg)
    else:
        champ = f"{cfg.model_name}@{CHAMPION}"
        cv = lm.registry.get_version(champ).number
        chall, lv = candidate, lm.registry.get_version(candidate).number
    _ensure_endpoint(lm, cfg)
    from loopml.serving.endpoints import Shadow

    info = lm.endpoints.set_policy(
        cfg.endpoint,
        Shadow(champ, [chall], sample=sample),
        actor=actor,
        reason=f"{cfg.model_name}/{lv} shadows the champion ({cfg.model_name}/{cv})",
    )
    return {
        "endpoint": cfg.endpoint,
        "revision": info.revision,
        "policy": "shadow",
        "champion": cv,
        "challenger": lv,
    }


def start_ab(lm: Loopml, cfg: ModerationConfig, weight: float = 0.5, *, actor: str = ACTOR) -> dict[str, Any]:
    """``AB(champion, challenger)``, sticky by uploader; ``weight`` is the challenger's share (0-1)."""
    weight = check_number(weight, "weight", low=0.0, high=1.0, low_open=True, high_open=True)
    champ, chall, cv, lv = _refs(lm, cfg)
    _ensure_endpoint(lm, cfg)
    from loopml.serving.endpoints import AB

    info = lm.endpoints.set_policy(
        cfg.endpoint,
        AB(
            {CHAMPION: champ, CHALLENGER: chall},
            weights={CHAMPION: 1.0 - weight, CHALLENGER: weight},
            routing_key="uploader",
        ),
        actor=actor,
        reason=f"online A/B: {weight:.0%} of uploaders screened by {cfg.model_name}/{lv}",
    )
    return {
        "endpoint": cfg.endpoint,
        "revision": info.revision,
        "policy": "ab",
        "weight": weight,
        "champion": cv,
        "challenger": lv,
    }


def _since(lm: Loopml, endpoint: str, kind: str) -> datetime | None:
    """When the endpoint's current ``kind`` policy started (its newest revision with that policy)."""
    for rev in lm.endpoints.history(endpoint, limit=200):
        spec = rev.spec
        policy = spec.get("policy") if isinstance(spec, dict) else getattr(spec, "policy", None)
        found = policy.get("kind") if isinstance(policy, dict) else getattr(policy, "kind", None)
        if found == kind:
            return rev.at
    return None


def _score(output: Any) -> float | None:
    if isinstance(output, str):
        try:
            output = json.loads(output)
        except ValueError:
            return None
    if isinstance(output, list):
        output = output[0] if output else None
    if isinstance(output, dict):
        output = output.get("face_score", output.get("probability"))
    if isinstance(output, int | float) and not isinstance(output, bool) and math.isfinite(output):
        return float(output)
    return None


def _pctl(values: list[float], q: float) -> float | None:
    return float(np.percentile(values, q)) if values else None


@dataclass(frozen=True)
class ShadowReport:
    """How the challenger would have decided on the same uploads, and what it costs in latency."""

    endpoint: str
    since: datetime | None
    requests: int
    shadowed: int
    shadow_errors: int
    agreement: float | None
    confusion: dict[str, dict[str, int]] = field(default_factory=dict)
    primary_p50_ms: float | None = None
    primary_p99_ms: float | None = None
    shadow_p50_ms: float | None = None
    shadow_p99_ms: float | None = None

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["since"] = self.since.isoformat() if self.since else None
        return out


def shadow_report(lm: Loopml, cfg: ModerationConfig, *, since: datetime | None = None) -> ShadowReport:
    """Decision agreement (champion vs shadow on the config's thresholds) and latency from the log.

    ``since`` defaults to when the current shadow policy started.
    """
    since = since or _since(lm, cfg.endpoint, "shadow")
    records = lm.inference.records(cfg.endpoint, since=since, limit=100_000)
    policy = _policy(cfg)
    decisions = ("publish", "review", "reject")
    confusion = {a: dict.fromkeys(decisions, 0) for a in decisions}
    primary_lat: list[float] = []
    shadow_lat: list[float] = []
    errors = shadowed = same = 0
    for rec in records.itertuples(index=False):
        primary = _score(rec.outputs)
        if rec.latency_ms is not None and not pd.isna(rec.latency_ms):
            primary_lat.append(float(rec.latency_ms))
        entries = rec.shadow
        if isinstance(entries, str):
            entries = json.loads(entries)
        for entry in entries or []:
            if entry.get("error"):
                errors += 1
                continue
            other = _score(entry.get("outputs"))
            if primary is None or other is None:
                continue
            a, b = policy.decide(primary), policy.decide(other)
            confusion[a][b] += 1
            shadowed += 1
            same += a == b
            if entry.get("latency_ms") is not None:
                shadow_lat.append(float(entry["latency_ms"]))
    return ShadowReport(
        endpoint=cfg.endpoint,
        since=since,
        requests=len(records),
        shadowed=shadowed,
        shadow_errors=errors,
        agreement=same / shadowed if shadowed else None,
        confusion=confusion,
        primary_p50_ms=_pctl(primary_lat, 50),
        primary_p99_ms=_pctl(primary_lat, 99),
        shadow_p50_ms=_pctl(shadow_lat, 50),
        shadow_p99_ms=_pctl(shadow_lat, 99),
    )


@dataclass(frozen=True)
class ArmOutcome:
    """One arm of the online A/B test: traffic, decisions and the quality measured on labels."""

    arm: str
    versions: list[int]
    requests: int
    labelled: int
    flagged: int
    rejected: int
    precision: float | None
    recall: float | None
    precision_reject: float | None
    p99_ms: float | None


@dataclass(frozen=True)
class AbReport:
    endpoint: str
    since: datetime | None
    arms: list[ArmOutcome]
    verdict: str
    explanation: str
    better: str | None

    def arm(self, name: str) -> ArmOutcome | None:
        return next((a for a in self.arms if a.arm == name), None)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["since"] = self.since.isoformat() if self.since else None
        return out


def ab_report(lm: Loopml, cfg: ModerationConfig, *, since: datetime | None = None) -> AbReport:
    """Per arm: precision/recall of the decisions (flagged = not published) against the labels sent
    as feedback (review decisions, audits), plus ``analyse_ab``'s verdict on the same requests.

    The verdict needs ``MIN_LABELLED`` labelled uploads (``MIN_FACES`` faces) per arm; then precision
    comes first, recall second (see ``_verdict``). ``better`` is the arm to keep, or None.
    """
    since = since or _since(lm, cfg.endpoint, "ab")
    joined = lm.inference.joined(cfg.endpoint, since=since)
    policy = _policy(cfg)
    arms: list[ArmOutcome] = []
    faces: dict[str, int] = {}
    for arm in ARMS:
        rows = joined[joined["arm"] == arm] if len(joined) else joined
        scores = [_score(v) for v in rows["output"]] if len(rows) else []
        decisions = np.array([policy.decide(s) if s is not None else "review" for s in scores])
        labels = rows["label"].to_numpy() if len(rows) else np.array([])
        has = np.array(
            [lab is not None and not (isinstance(lab, float) and math.isnan(lab)) for lab in labels],
            dtype=bool,
        )
        y = np.array([int(_label(lab)) for lab in labels[has]]) if has.any() else np.array([], dtype=int)
        d = decisions[has] if has.any() else np.array([])
        flagged = d != "publish"
        rejected = d == "reject"
        tp = int((flagged & (y == 1)).sum())
        faces[arm] = int((y == 1).sum())
        versions = sorted({int(v) for v in rows["version"].dropna()}) if len(rows) else []
        lat = rows["latency_ms"].dropna().astype(float).tolist() if len(rows) else []
        arms.append(
            ArmOutcome(
                arm=arm,
                versions=versions,
                requests=len(rows),
                labelled=int(has.sum()),
                flagged=int((decisions != "publish").sum()),
                rejected=int((decisions == "reject").sum()),
                precision=tp / int(flagged.sum()) if flagged.any() else None,
                recall=tp / int((y == 1).sum()) if (y == 1).any() else None,
                precision_reject=float((y[rejected] == 1).mean()) if rejected.any() else None,
                p99_ms=_pctl(lat, 99),
            )
        )
    verdict, explanation, better = _verdict(arms, faces)
    try:
        from loopml.serving.inference import analyse_ab

        ab = analyse_ab(lm, cfg.endpoint, since=since, n_boot=300, min_labelled=5, control=CHAMPION)
        explanation += f" analyse_ab ({ab.metric}): {ab.verdict}."
    except LoopmlError as exc:
        explanation += f" analyse_ab: {exc}"
    return AbReport(cfg.endpoint, since, arms, verdict, explanation, better)


def _label(value: Any) -> int:
    if isinstance(value, dict):
        value = value.get("has_face", value.get("label"))
    return int(value)


#: below this many labelled uploads (or labelled faces) per arm the A/B test decides nothing
MIN_LABELLED = 20
MIN_FACES = 5


def _verdict(arms: list[ArmOutcome], faces: dict[str, int]) -> tuple[str, str, str | None]:
    """Precision first (the seeds: wrongly blocking users is the costlier error), then recall."""
    champ, chall = arms
    if min(champ.labelled, chall.labelled) < MIN_LABELLED or min(faces.values()) < MIN_FACES:
        return (
            "not enough data",
            f"labelled uploads: champion {champ.labelled}, challenger {chall.labelled} (faces "
            f"{faces[CHAMPION]}, {faces[CHALLENGER]}); need {MIN_LABELLED} each with {MIN_FACES} faces.",
            None,
        )
    p1, p2 = champ.precision or 0.0, chall.precision or 0.0
    r1, r2 = champ.recall or 0.0, chall.recall or 0.0
    if p2 >= p1 and r2 >= r1 and (p2 > p1 or r2 > r1):
        return (
            "challenger is better",
            f"precision {p2:.2f} vs {p1:.2f}, recall {r2:.2f} vs {r1:.2f}.",
            CHALLENGER,
        )
    if p1 >= p2 and r1 >= r2:
        return "champion is better", f"precision {p1:.2f} vs {p2:.2f}, recall {r1:.2f} vs {r2:.2f}.", CHAMPION
    return (
        "trade-off",
        f"challenger precision {p2:.2f} vs {p1:.2f}, recall {r2:.2f} vs {r1:.2f}: one is better on each; "
        "the champion stays unless precision improved without losing more recall than operators accept.",
        CHALLENGER if p2 > p1 and r1 - r2 <= 0.05 else CHAMPION,
    )


def promote(
    lm: Loopml, cfg: ModerationConfig, *, actor: str = ACTOR, reason: str = "won the online A/B test"
) -> dict[str, Any]:
    """Promote the challenger to champion through the release gate; endpoint back to ``Single(champion)``.

    A failing gate raises ``GateBlockedError`` (409, with the report) and leaves the endpoint as it is.
    """
    _, _, cv, lv = _refs(lm, cfg)
    report = lm.registry.promote(cfg.model_name, lv, CHAMPION, actor=actor, reason=reason)
    from loopml.serving.endpoints import Single

    info = lm.endpoints.set_policy(
        cfg.endpoint,
        Single(f"{cfg.model_name}@{CHAMPION}"),
        actor=actor,
        reason=f"{cfg.model_name}/{lv} promoted",
    )
    return {
        "champion": lv,
        "previous": cv,
        "gates": [{"gate": r.gate, "passed": r.passed, "summary": r.summary} for r in report.results],
        "endpoint_revision": info.revision,
    }


def end_test(
    lm: Loopml, cfg: ModerationConfig, *, actor: str = ACTOR, reason: str = "test ended"
) -> dict[str, Any]:
    """Stop a shadow or A/B test without promoting: the endpoint serves ``<model>@champion`` alone."""
    from loopml.serving.endpoints import Single

    info = lm.endpoints.set_policy(
        cfg.endpoint, Single(f"{cfg.model_name}@{CHAMPION}"), actor=actor, reason=reason
    )
    return {"endpoint": cfg.endpoint, "revision": info.revision, "policy": "single"}
