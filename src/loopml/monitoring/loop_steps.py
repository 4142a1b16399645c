"""The closed loop's stage functions: given a run, decide (and do) its next transition.

Each function looks at the world (the retrain pipeline run, the registry, the endpoint's policy and
history, the inference log) and returns a ``Transition``; ``Loop.advance`` writes it with its step
row and audit event. The side effects a stage performs are idempotent, so a stage that is computed
twice (two processes advancing one run, or a crash before the write) does no harm:

- the retrain pipeline is submitted with the idempotency key ``loop:<run id>:retrain``;
- an endpoint policy is only set when the endpoint does not already have it;
- a rollback names the canary (``rollback_canary(canary=...)``) and is idempotent itself;
- ``promote_canary`` refuses when the canary is gone, and the registry refuses a second move.

Two clocks: ``now`` (the loop's clock, which a demo may simulate) measures timeouts and cooldowns;
the wall clock (``wall``) bounds inference-log queries, because the log records real request times.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np

from loopml.errors import ConflictError, LoopmlError, NotFoundError
from loopml.monitoring.loop_records import LoopRun
from loopml.monitoring.loop_skew import (
    SkewUnavailable,
    canary_skew,
    offline_reference,
    skew_limit,
    skew_note,
    skew_psi,
    skew_reason,
)
from loopml.serving.endpoints.definitions import Canary, RollbackRule, Shadow, Single
from loopml.serving.endpoints.policies import canary_verdict, psi
from loopml.serving.inference.outputs import first, score_of
from loopml.storage.metadata import loop as q

log = logging.getLogger(__name__)

ACTOR = "loop"
#: Most log records read to count shadow outputs (the shadow stage needs ``min_requests`` of them).
SHADOW_SCAN = 200_000
#: A policy change of this run younger than this is taken as another process's transition in flight.
IN_FLIGHT_SECONDS = 60.0
#: The canary's baseline-vs-canary PSI limit is max(policy max_psi, shadow PSI x FACTOR + MARGIN): the
#: shadow measured how differently the two models score the same requests, so the canary is judged
#: against that, not against a constant tuned on one traffic mix (a sharper model moves scores a lot).
SHADOW_PSI_FACTOR = 1.5
SHADOW_PSI_MARGIN = 0.25


@dataclass
class Transition:
    """What ``advance`` writes. ``step`` None means progress only (no step row unless ``waiting``)."""

    status: str | None = None
    stage: str | None = None
    step: str | None = None
    step_status: str = q.STEP_OK
    detail: str = ""
    data: dict[str, Any] = field(default_factory=dict)
    run_data: dict[str, Any] = field(default_factory=dict)
    values: dict[str, Any] = field(default_factory=dict)
    outcome: str | None = None
    #: a waiting transition records one ``waiting`` step per distinct ``wait_key``
    wait_key: str | None = None
    resolve_alert: bool = False


@dataclass
class StageInput:
    """What a stage function sees: the client, the run, its policy snapshot and both clocks."""

    lm: Any
    run: LoopRun
    spec: dict[str, Any]
    now: datetime
    wall: datetime
    inline: bool

    @property
    def release(self) -> dict[str, Any]:
        return self.spec["release"]

    def elapsed(self) -> float:
        """Seconds (loop clock) since the current stage started."""
        started = self.run.data.get("stage_at")
        if not started:
            return 0.0
        return (self.now - datetime.fromisoformat(started)).total_seconds()

    def stage_wall(self) -> datetime:
        started = self.run.data.get("stage_wall")
        return datetime.fromisoformat(started) if started else self.run.created_at


def terminal(
    status: str,
    outcome: str,
    *,
    step: str,
    step_status: str,
    data: dict[str, Any] | None = None,
    resolve_alert: bool = False,
) -> Transition:
    return Transition(
        status=status,
        stage="done",
        step=step,
        step_status=step_status,
        detail=outcome,
        data=data or {},
        outcome=outcome,
        resolve_alert=resolve_alert,
    )


# ----------------------------------------------------------------------------------------- retrain


def retrain_key(run_id: int) -> str:
    return f"loop:{run_id}:retrain"


def start_retrain(s: StageInput) -> Transition:
    """triggered -> retrain: submit the policy's pipeline as a durable job (idempotent per run)."""
    lm, retrain = s.lm, s.spec["retrain"]
    try:
        pipe = lm.pipelines.definition(retrain["pipeline"])
        params = dict(retrain["params"])
        if "loop_run_id" in pipe.params:
            params["loop_run_id"] = type(pipe.params["loop_run_id"])(s.run.id)
        job = lm.pipelines.submit(pipe.name, params, retrain_key(s.run.id), trigger="api")
    except LoopmlError as exc:
        return terminal(
            q.FAILED, f"retrain could not start: {exc}", step="retrain", step_status=q.STEP_FAILED
        )
    run_id = str(job.payload["run_id"])
    return Transition(
        stage="retrain",
        step="retrain",
        step_status=q.STEP_WAITING,
        detail=f"pipeline {pipe.name} submitted: run {run_id} (job {job.id})",
        data={"pipeline": pipe.name, "pipeline_run_id": run_id, "job_id": job.id, "params": params},
        run_data={"retrain": {"pipeline": pipe.name, "job_id": job.id, "pipeline_run_id": run_id}},
        values={"pipeline_run_id": run_id},
    )


def _run_inline(s: StageInput, run_id: str, job_id: int) -> None:
    """No worker: take the queued job back (cancel) and execute the same run record here.

    A worker that claimed the job first keeps it (cancel refuses a running job): then we wait.
    """
    lm = s.lm
    try:
        job = lm.jobs.get(job_id)
    except NotFoundError:
        job = None
    if job is not None and job.status == "queued":
        try:
            lm.jobs.cancel(job_id, actor=ACTOR, reason=f"loop run {s.run.id} runs its retrain in-process")
        except ConflictError:
            return  # a worker claimed it meanwhile
    elif job is not None and job.status != "cancelled":
        return
    lm.pipelines.execute(run_id)


def check_retrain(s: StageInput) -> Transition:
    """retrain -> gates once the pipeline run succeeded and registered a candidate version."""
    lm, info = s.lm, s.run.data.get("retrain") or {}
    run_id = s.run.pipeline_run_id or info.get("pipeline_run_id")
    if not run_id:
        return start_retrain(s)
    prun = lm.pipelines.get_run(run_id)
    if prun.status == "queued" and s.inline:
        _run_inline(s, run_id, int(info.get("job_id") or 0))
        prun = lm.pipelines.get_run(run_id)
    if prun.status == "failed":
        return terminal(
            q.FAILED,
            f"retrain pipeline {prun.pipeline} run {run_id} failed: {prun.error or 'a step failed'}",
            step="retrain",
            step_status=q.STEP_FAILED,
            data={"pipeline_run_id": run_id},
        )
    if prun.status != "succeeded":
        timeout = float(s.spec["retrain"]["timeout_seconds"])
        if s.elapsed() > timeout:
            return terminal(
                q.FAILED,
                f"retrain pipeline run {run_id} still {prun.status} after {timeout:g} s (retrain.timeout_seconds)",
                step="retrain",
                step_status=q.STEP_FAILED,
            )
        return Transition(
            detail=f"waiting for pipeline run {run_id} ({prun.status})",
            wait_key=f"retrain:{prun.status}",
            step="retrain",
        )
    candidate, how = find_candidate(lm, s.spec["model"], run_id, prun)
    if candidate is None:
        return terminal(
            q.FAILED,
            f"pipeline run {run_id} succeeded but registered no version of model {s.spec['model']!r} "
            "(register it inside a tracking run started with pipeline_run_id=..., or return "
            "{'model_ref': 'model/N'} from the last step; a cached step registers nothing: use @step(cache=False))",
            step="retrain",
            step_status=q.STEP_FAILED,
        )
    seconds = prun.duration_seconds
    return Transition(
        stage="gates",
        step="retrain",
        detail=f"pipeline run {run_id} succeeded"
        + (f" in {seconds:.1f} s" if seconds is not None else "")
        + f": candidate {candidate} ({how})",
        data={"pipeline_run_id": run_id, "candidate": candidate, "found_by": how},
        values={"candidate": candidate},
    )


def find_candidate(lm: Any, model: str, run_id: str, prun: Any) -> tuple[str | None, str]:
    """The model version the pipeline run registered: by lineage, else its last step's ``model_ref``."""
    numbers = lm.loop.versions_of_pipeline_run(model, run_id)
    if numbers:
        return f"{model}/{numbers[0]}", "registered by the run's tracking run"
    if prun.steps:
        try:
            output = lm.pipelines.output(run_id, prun.steps[-1].step)
        except LoopmlError:
            output = None
        ref = output.get("model_ref") if isinstance(output, dict) else None
        if isinstance(ref, str):
            try:
                version = lm.registry.get_version(ref)
            except LoopmlError:
                return None, ""
            if version.model == model:
                return f"{model}/{version.number}", f"model_ref of step {prun.steps[-1].step}"
    return None, ""


# ------------------------------------------------------------------------------------------- gates


def check_gates(s: StageInput) -> Transition:
    """gates: dry-run the alias's release gates on the candidate; failed -> blocked, else enter the release."""
    lm, candidate = s.lm, s.run.candidate or ""
    alias = s.release["alias"]
    version = lm.registry.get_version(candidate)
    try:
        report = lm.registry.promote(
            version.model,
            version.number,
            alias,
            actor=ACTOR,
            reason=f"loop run {s.run.id}: release gates (dry run)",
            dry_run=True,
        )
    except ConflictError as exc:
        return terminal(q.BLOCKED, f"gates: {exc}", step="gates", step_status=q.STEP_FAILED)
    results = [{"gate": r.gate, "passed": r.passed, "summary": r.summary} for r in report.results]
    if not report.passed:
        failing = [r for r in report.results if not r.passed]
        names = ", ".join(f"{r.gate} ({r.summary})" for r in failing)
        return terminal(
            q.BLOCKED,
            f"{candidate} blocked by the {alias!r} gate{'s' if len(failing) > 1 else ''}: {names}",
            step="gates",
            step_status=q.STEP_FAILED,
            data={"results": results},
        )
    detail = (
        f"{candidate} passes the {alias!r} gates: "
        + "; ".join(f"{r['gate']} {r['summary']}" for r in results)
        if results
        else f"{alias!r} has no gates (unprotected alias); nothing to check"
    )
    try:
        skew, skew_note = offline_reference(s, report.results)
    except SkewUnavailable as exc:
        return terminal(
            q.FAILED, str(exc), step="gates", step_status=q.STEP_FAILED, data={"results": results}
        )
    entered = enter_release(s)
    if entered.status is not None:  # the release could not start: say why in the gates step
        return entered
    entered.step, entered.detail = "gates", detail + skew_note + _next(s, entered)
    entered.data = {"results": results, **entered.data}
    if skew is not None:
        entered.data["skew"] = {k: v for k, v in skew.items() if k != "offline"}
        entered.run_data["skew"] = skew
    return entered


def enter_release(s: StageInput) -> Transition:
    """Start the first configured release stage: shadow, else canary at the first weight, else promote."""
    lm, endpoint, candidate = s.lm, s.spec["endpoint"], s.run.candidate or ""
    current = lm.endpoints.get(endpoint).spec.policy
    if not isinstance(current, Single):
        return terminal(
            q.FAILED,
            f"endpoint {endpoint!r} is running a {current.kind!r} policy; the loop releases only from a "
            "single model (finish or roll back that release first)",
            step="release",
            step_status=q.STEP_FAILED,
        )
    baseline = current.model
    if _same_version(lm, baseline, candidate):
        return terminal(
            q.BLOCKED,
            f"{candidate} is what the endpoint already serves ({baseline}); nothing to release",
            step="release",
            step_status=q.STEP_FAILED,
        )
    shadow, canary = s.release["shadow"], s.release["canary"]
    if shadow is not None:
        policy = Shadow(baseline, [candidate], sample=shadow["sample"])
        info = lm.endpoints.set_policy(
            endpoint, policy, actor=ACTOR, reason=f"loop run {s.run.id}: {candidate} shadows {baseline}"
        )
        return Transition(
            stage="shadow",
            values={"baseline": baseline},
            data={"baseline": baseline, "revision": info.revision},
            run_data={"revision": info.revision},
        )
    if canary is not None:
        return _set_canary(s, baseline, 0)
    return Transition(stage="promote", values={"baseline": baseline}, data={"baseline": baseline})


def _same_version(lm: Any, a: str, b: str) -> bool:
    try:
        va, vb = lm.registry.get_version(a), lm.registry.get_version(b)
    except LoopmlError:
        return False
    return (va.model, va.number) == (vb.model, vb.number)


# -------------------------------------------------------------------------------------------- skew
#
# Training/serving skew: the candidate's live scores (shadow, canary) against its *own* scores on its
# offline evaluation data. A release gate cannot see a skew that the evaluation data shares with the
# training data (amounts in cents in both), and the baseline-vs-canary PSI cannot tell a sharper model
# from a broken one; but a model whose live scores do not look like the scores it was judged on has
# not been judged at all. The offline side is computed once, at the gates, and kept in the run.


def canary_rule(policy_rule: dict[str, Any], shadow_psi: float | None) -> tuple[RollbackRule, str]:
    """The canary's rollback rule with its PSI limit derived from the shadow, and the sentence that says how.

    The shadow measured the PSI between the two models' scores on the *same* requests, i.e. how
    differently they are meant to score; the canary (other requests, same traffic) should stay near
    that. Limit = max(policy max_psi, shadow PSI x 1.5 + 0.25): room for sampling noise between two
    sets of requests, never below what the policy asked for. Errors and latency are judged as before.
    """
    rule = RollbackRule.from_dict(policy_rule)
    if shadow_psi is None:
        return rule, f"canary PSI limit {rule.max_psi:g} (release.canary.rollback.max_psi; no shadow PSI)"
    derived = shadow_psi * SHADOW_PSI_FACTOR + SHADOW_PSI_MARGIN
    if derived <= rule.max_psi:
        return rule, (
            f"canary PSI limit {rule.max_psi:g} (policy; shadow PSI {shadow_psi:.3f} x {SHADOW_PSI_FACTOR:g} "
            f"+ {SHADOW_PSI_MARGIN:g} = {derived:.2f} is below it)"
        )
    limit = round(derived, 3)
    return dataclasses.replace(rule, max_psi=limit), (
        f"canary PSI limit {limit:.2f} = shadow PSI {shadow_psi:.3f} x {SHADOW_PSI_FACTOR:g} + "
        f"{SHADOW_PSI_MARGIN:g} (above the policy's {rule.max_psi:g})"
    )


# ------------------------------------------------------------------------------------------ shadow


def _decode(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return None
    return value


def shadow_stats(
    lm: Any, endpoint: str, candidate: str, since: datetime, run: LoopRun | None = None
) -> dict[str, Any]:
    """Shadow outputs of ``candidate`` logged since ``since``: count, errors, mean agreement, the score
    PSI against the baseline on the same requests, and (given the ``run``) the skew PSI against the
    candidate's own offline scores."""
    version = lm.registry.get_version(candidate)
    frame = lm.inference.records(endpoint, since=since, limit=SHADOW_SCAN)
    n = errors = 0
    first_error = None
    agreements: list[float] = []
    latencies: list[float] = []
    primary_scores: list[float] = []
    shadow_scores: list[float] = []
    candidate_scores_live: list[float] = []
    outputs = frame["outputs"] if "outputs" in frame else [None] * len(frame)
    for entries, answered in zip(frame.get("shadow", ()), outputs, strict=False):
        for entry in _decode(entries) or ():
            if entry.get("model") != version.model or entry.get("version") != version.number:
                continue
            n += 1
            if entry.get("error"):
                errors += 1
                first_error = first_error or str(entry["error"])
                continue
            if entry.get("agreement") is not None:
                agreements.append(float(entry["agreement"]))
            a, b = score_of(first(_decode(answered))), score_of(first(entry.get("outputs")))
            if b is not None:
                candidate_scores_live.append(b)
            if a is not None and b is not None:
                primary_scores.append(a)
                shadow_scores.append(b)
            if entry.get("latency_ms") is not None:
                latencies.append(float(entry["latency_ms"]))
    latencies.sort()
    return {
        "requests": len(frame),
        "shadowed": n,
        "errors": errors,
        "error_rate": errors / n if n else None,
        "agreement": sum(agreements) / len(agreements) if agreements else None,
        "p99_ms": latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))] if latencies else None,
        "first_error": first_error,
        # how far the candidate's scores are from the baseline's on the same requests: a canary PSI
        # limit (release.canary.rollback.max_psi) below this would roll back a deliberately better model
        "psi": psi(np.asarray(primary_scores), np.asarray(shadow_scores))
        if len(primary_scores) >= 20
        else None,
        "skew_psi": None if run is None else skew_psi(run, candidate_scores_live),
    }


def check_shadow(s: StageInput) -> Transition:
    """shadow: wait for ``min_requests`` shadow outputs; too many errors or too little agreement -> rejected."""
    lm, endpoint, candidate, baseline = s.lm, s.spec["endpoint"], s.run.candidate or "", s.run.baseline or ""
    cfg = s.release["shadow"]
    current = lm.endpoints.get(endpoint).spec.policy
    if not (isinstance(current, Shadow) and current.primary == baseline and candidate in current.shadows):
        return _changed_outside(s, current)
    stats = shadow_stats(lm, endpoint, candidate, s.stage_wall(), s.run)
    n = stats["shadowed"]
    # a shadow that saw only the night's traffic measures a PSI the day's canary will not match:
    # min_seconds (loop clock; e.g. a day) makes it cover the whole traffic cycle
    young = s.elapsed() < float(cfg.get("min_seconds") or 0.0)
    if n < cfg["min_requests"] or young:
        if s.elapsed() > cfg["timeout_seconds"]:
            _restore(s, Single(baseline), f"loop run {s.run.id}: shadow timed out")
            return terminal(
                q.FAILED,
                f"shadow: only {n} of {cfg['min_requests']} shadow outputs after {cfg['timeout_seconds']:g} s "
                f"(release.shadow.timeout_seconds); endpoint back to Single({baseline})",
                step="shadow",
                step_status=q.STEP_FAILED,
                data=stats,
            )
        need = f"{cfg['min_requests']} shadow outputs" + (
            f" and {cfg['min_seconds']:g} s" if cfg.get("min_seconds") else ""
        )
        return Transition(
            step="shadow",
            detail=f"{candidate} shadows {baseline}: waiting for {need}",
            wait_key="shadow",
            run_data={"shadow": stats},
        )
    problems = []
    if stats["error_rate"] is not None and stats["error_rate"] > cfg["max_error_rate"]:
        problems.append(
            f"shadow error rate {stats['error_rate']:.2%} > {cfg['max_error_rate']:.2%}"
            + (f" (e.g. {stats['first_error']})" if stats["first_error"] else "")
        )
    if cfg["min_agreement"] is not None and (stats["agreement"] or 0.0) < cfg["min_agreement"]:
        problems.append(f"agreement {_pct(stats['agreement'])} < {cfg['min_agreement']:.2%}")
    summary = (
        f"{n} shadow outputs: error rate {_pct(stats['error_rate'])}, agreement with {baseline} "
        f"{_pct(stats['agreement'])}"
        + (f", score PSI {stats['psi']:.3f}" if stats["psi"] is not None else "")
        + skew_note(s, stats["skew_psi"])
    )
    if problems:
        _restore(s, Single(baseline), f"loop run {s.run.id}: shadow rejected {candidate}")
        return terminal(
            q.REJECTED,
            f"shadow rejected {candidate}: " + "; ".join(problems) + f"; endpoint back to Single({baseline})",
            step="shadow",
            step_status=q.STEP_FAILED,
            data=stats,
        )
    if s.release["canary"] is None:
        return Transition(
            stage="promote", step="shadow", detail=summary, data=stats, run_data={"shadow": stats}
        )
    entered = _set_canary(s, baseline, 0, shadow_psi=stats["psi"])
    entered.step, entered.detail = "shadow", f"{summary}; {entered.data['limit']}{_next(s, entered)}"
    entered.data = {**stats, **entered.data}
    entered.run_data["shadow"] = stats
    return entered


# ------------------------------------------------------------------------------------------ canary


def _rule(s: StageInput) -> RollbackRule:
    """The rule this run's canary runs under: the one derived when it started, else the policy's."""
    derived = (s.run.data.get("canary") or {}).get("rollback")
    return RollbackRule.from_dict(derived or s.release["canary"]["rollback"])


def _set_canary(s: StageInput, baseline: str, index: int, *, shadow_psi: float | None = None) -> Transition:
    lm, endpoint, candidate = s.lm, s.spec["endpoint"], s.run.candidate or ""
    weight = s.release["canary"]["weights"][index]
    canary = dict(s.run.data.get("canary") or {})
    if index == 0:
        rule, why = canary_rule(s.release["canary"]["rollback"], shadow_psi)
        canary.update(rollback=rule.to_dict(), limit=why)
    else:
        rule, why = _rule(s), str(canary.get("limit") or "")
    policy = Canary(baseline, candidate, weight=weight, rollback=rule)
    info = lm.endpoints.set_policy(
        endpoint, policy, actor=ACTOR, reason=f"loop run {s.run.id}: canary {weight:.0%} for {candidate}"
    )
    if index == 0 or not canary.get("since_wall"):
        canary["since_wall"] = s.wall.isoformat()
    canary.update(index=index, weight=weight, weight_wall=s.wall.isoformat(), revision=info.revision)
    return Transition(
        stage="canary",
        values={"baseline": baseline},
        data={"weight": weight, "revision": info.revision, "max_psi": rule.max_psi, "limit": why},
        run_data={"canary": canary, "revision": info.revision},
    )  # stage is set even when already "canary": each weight restarts the stage clock (its own timeout)


def check_canary(s: StageInput) -> Transition:
    """canary: the watchdog (or the loop, on the same verdict) rolls back; healthy -> next weight or promote."""
    lm, endpoint, candidate, baseline = s.lm, s.spec["endpoint"], s.run.candidate or "", s.run.baseline or ""
    cfg, state = s.release["canary"], s.run.data.get("canary") or {}
    current = lm.endpoints.get(endpoint).spec.policy
    if not (isinstance(current, Canary) and current.canary == candidate and current.baseline == baseline):
        return _changed_outside(s, current)
    rule = _rule(s)
    cv, bv = lm.registry.get_version(candidate), lm.registry.get_version(baseline)
    since = datetime.fromisoformat(state.get("since_wall") or s.wall.isoformat())
    c_all = lm.inference.window_stats(endpoint, since=since, model=cv.model, version=cv.number).get("canary")
    b_all = lm.inference.window_stats(endpoint, since=since, model=bv.model, version=bv.number).get(
        "baseline"
    )
    verdict = canary_verdict(rule, b_all, c_all)
    figures = {
        "weight": state.get("weight"),
        "canary_n": verdict.canary_n,
        "baseline_n": verdict.baseline_n,
        "canary_errors": int(getattr(c_all, "errors", 0) or 0),
        "baseline_errors": int(getattr(b_all, "errors", 0) or 0),
        "error_rate_delta": verdict.error_rate_delta,
        "p99_ratio": verdict.p99_ratio,
        "psi": verdict.psi,
        "verdict": verdict.reason,
    }
    if verdict.rollback:
        lm.endpoints.rollback_canary(endpoint, actor=ACTOR, reason=verdict.reason, canary=candidate)
        return terminal(
            q.ROLLED_BACK,
            f"canary of {candidate} rolled back by the loop: {verdict.reason}",
            step="rollback",
            step_status=q.STEP_FAILED,
            data=figures,
        )
    skew = canary_skew(s, rule, c_all)
    figures.update(max_psi=rule.max_psi, skew_psi=skew, skew_max_psi=skew_limit(s))
    if skew is not None and skew > skew_limit(s):
        reason = skew_reason(skew, skew_limit(s))
        lm.endpoints.rollback_canary(
            endpoint, actor=ACTOR, reason=f"loop run {s.run.id}: {reason}", canary=candidate
        )
        return terminal(
            q.ROLLED_BACK,
            f"canary of {candidate} rolled back by the loop: {reason}; endpoint back to Single({baseline})",
            step="rollback",
            step_status=q.STEP_FAILED,
            data=figures,
        )
    weight_since = datetime.fromisoformat(state.get("weight_wall") or s.wall.isoformat())
    c_now = lm.inference.window_stats(endpoint, since=weight_since, model=cv.model, version=cv.number).get(
        "canary"
    )
    n_here = int(getattr(c_now, "n", 0) or 0)
    figures["requests_at_weight"] = n_here
    index = int(state.get("index", 0))
    if n_here < cfg["min_requests"]:
        if s.elapsed() > cfg["timeout_seconds"]:
            lm.endpoints.rollback_canary(
                endpoint, actor=ACTOR, reason=f"loop run {s.run.id}: canary timed out", canary=candidate
            )
            return terminal(
                q.FAILED,
                f"canary {state.get('weight', 0):.0%}: only {n_here} of {cfg['min_requests']} requests after "
                f"{cfg['timeout_seconds']:g} s (release.canary.timeout_seconds); endpoint back to Single({baseline})",
                step="canary",
                step_status=q.STEP_FAILED,
                data=figures,
            )
        return Transition(
            step="canary",
            detail=f"canary {state.get('weight', 0):.0%} of {candidate}: waiting for {cfg['min_requests']} requests",
            wait_key=f"canary:{index}",
            run_data={"canary": {**state, "last": figures}},
        )
    summary = (
        f"canary {state.get('weight', 0):.0%} healthy: {verdict.reason}"
        + (f", prediction PSI {verdict.psi:.3f} <= {rule.max_psi:g}" if verdict.psi is not None else "")
        + skew_note(s, skew)
    )
    if index + 1 < len(cfg["weights"]):
        nxt = _set_canary(s, baseline, index + 1)
        nxt.step, nxt.detail = "canary", summary + _next(s, nxt)
        nxt.data = {**figures, **nxt.data}
        nxt.stage = "canary"
        nxt.run_data["canary"]["last"] = figures
        return nxt
    return Transition(
        stage="promote",
        step="canary",
        detail=summary,
        data=figures,
        run_data={"canary": {**state, "last": figures}},
    )


# ----------------------------------------------------------------------------------------- promote


def needs_promotion_approval(s: StageInput) -> bool:
    return bool(s.release["approve_promotion"]) and not s.run.data.get("promotion_approved")


def do_promote(s: StageInput) -> Transition:
    """promote: move the alias through its gates and point the endpoint at ``model@alias``."""
    from loopml.registry import GateBlockedError

    lm, endpoint, candidate, baseline = s.lm, s.spec["endpoint"], s.run.candidate or "", s.run.baseline or ""
    alias = s.release["alias"]
    current = lm.endpoints.get(endpoint).spec.policy
    version = lm.registry.get_version(candidate)
    reason = f"loop run {s.run.id}: {candidate} released through the closed loop"
    try:
        if isinstance(current, Canary) and current.canary == candidate:
            lm.endpoints.promote_canary(endpoint, actor=ACTOR, reason=reason, promote_to_alias=alias)
        elif isinstance(current, Shadow | Single) and (
            (isinstance(current, Shadow) and candidate in current.shadows)
            or (isinstance(current, Single) and current.model == baseline)
        ):
            # no canary stage configured: promote in the registry, then follow the alias
            holders = {a.alias: a.version for a in lm.registry.aliases(version.model)}
            if holders.get(alias) != version.number:
                lm.registry.promote(version.model, version.number, alias, actor=ACTOR, reason=reason)
            lm.endpoints.set_policy(endpoint, Single(f"{version.model}@{alias}"), actor=ACTOR, reason=reason)
        else:
            return _changed_outside(s, current)
    except GateBlockedError as exc:
        failing = [r for r in exc.report.results if not r.passed]
        names = ", ".join(f"{r.gate} ({r.summary})" for r in failing)
        _restore_release(s, f"loop run {s.run.id}: the {alias!r} gate blocked {candidate}")
        return terminal(
            q.BLOCKED,
            f"promotion of {candidate} to {alias!r} blocked by {names}; endpoint back to Single({baseline})",
            step="promote",
            step_status=q.STEP_FAILED,
        )
    return terminal(
        q.PROMOTED,
        f"{candidate} promoted to {version.model}@{alias}; endpoint {endpoint} follows {version.model}@{alias}",
        step="promote",
        step_status=q.STEP_OK,
        data={"alias": alias, "version": version.number, "previous": baseline},
        resolve_alert=True,
    )


# ---------------------------------------------------------------------------------------- helpers


def _changed_outside(s: StageInput, current: Any) -> Transition:
    """The endpoint no longer runs our release: the watchdog rolled it back, or someone changed it."""
    lm, endpoint, candidate = s.lm, s.spec["endpoint"], s.run.candidate or ""
    ours = int(s.run.data.get("revision") or 0)
    for rev in lm.endpoints.history(endpoint, limit=50):
        if rev.revision <= ours:
            break
        own = rev.actor == ACTOR and (rev.reason or "").startswith(f"loop run {s.run.id}:")
        if own and (s.wall - rev.at).total_seconds() < IN_FLIGHT_SECONDS:
            # our own change whose transition another process is writing right now: look again later
            return Transition()
        if rev.action == "rollback":
            prev = s.run.data.get("canary", {}).get("last") or {}
            return terminal(
                q.ROLLED_BACK,
                f"canary of {candidate} rolled back by {rev.actor}: {rev.reason or 'no reason given'}",
                step="rollback",
                step_status=q.STEP_FAILED,
                data={"actor": rev.actor, "revision": rev.revision, "reason": rev.reason, "last_check": prev},
            )
    latest = lm.endpoints.history(endpoint, limit=1)[0]
    return terminal(
        q.FAILED,
        f"endpoint {endpoint!r} was changed outside the loop (revision {latest.revision}, {latest.action} by "
        f"{latest.actor}: {latest.reason or 'no reason'}); its policy is now {current.kind!r}, left as it is",
        step=s.run.stage,
        step_status=q.STEP_FAILED,
    )


def _restore(s: StageInput, policy: Single, reason: str) -> None:
    try:
        s.lm.endpoints.set_policy(s.spec["endpoint"], policy, actor=ACTOR, reason=reason)
    except LoopmlError as exc:
        log.warning("loop run %s: could not restore endpoint %s: %s", s.run.id, s.spec["endpoint"], exc)


def _restore_release(s: StageInput, reason: str) -> None:
    """Put the endpoint back on the baseline if it still runs this run's shadow or canary."""
    lm, endpoint, candidate, baseline = s.lm, s.spec["endpoint"], s.run.candidate or "", s.run.baseline
    if not baseline:
        return
    try:
        current = lm.endpoints.get(endpoint).spec.policy
    except LoopmlError:
        return
    if isinstance(current, Canary) and current.canary == candidate:
        try:
            lm.endpoints.rollback_canary(endpoint, actor=ACTOR, reason=reason, canary=candidate)
        except LoopmlError as exc:
            log.warning("loop run %s: rollback failed: %s", s.run.id, exc)
    elif isinstance(current, Shadow) and candidate in current.shadows:
        _restore(s, Single(baseline), reason)


def _next(s: StageInput, tr: Transition) -> str:
    """``"; next: ..."`` for a step's detail: the release stage the transition starts."""
    candidate, baseline = s.run.candidate, tr.values.get("baseline") or s.run.baseline
    if tr.stage == "shadow":
        return f"; next: {candidate} shadows {baseline}"
    if tr.stage == "canary":
        return f"; next: canary {tr.data.get('weight', 0):.0%} of traffic to {candidate}"
    if tr.stage == "promote":
        return f"; next: promote {candidate} to {s.release['alias']!r}"
    return ""


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2%}"
