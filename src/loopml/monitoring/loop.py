"""``Loop`` (``lm.loop``): the closed loop - alert -> retrain -> gates -> shadow -> canary -> promote / rollback.

An ``ActionPolicy`` says which alerts mean "this model is stale" and how to release a retrained
one. ``process_alerts`` starts a ``LoopRun`` for each open matching alert (one active run per
policy, a cooldown after each, an alert re-triggers only when it fired again); ``advance`` moves a
run one step through a small state machine whose stage functions live in ``loop_steps``. Every
transition writes the run, a ``loop_steps`` row and an audit event in one transaction, so
``story(run_id)`` can tell exactly why a model was promoted or rolled back.

Where the retrain runs: the pipeline is always submitted as a durable ``pipeline.run`` job (key
``loop:<run>:retrain``). ``advance(..., inline=True)`` (the default for direct calls: CLI, tests,
notebooks, a demo's tick) takes a still-queued job back and executes the same run record in this
process, so one laptop process closes the loop without a worker. The ``loop.advance`` job handler
calls ``inline=False``: a worker exists, so another worker slot runs the pipeline job and the loop
polls it. A job that a worker already claimed is never run twice.
"""

from __future__ import annotations

import builtins
import contextlib
import logging
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from loopml.checks import check_actor, check_choice, check_reason
from loopml.context import Context
from loopml.errors import (
    BackendUnavailableError,
    ConflictError,
    LoopmlError,
    NotFoundError,
    ValidationError,
    did_you_mean,
)
from loopml.monitoring import loop_steps as st
from loopml.monitoring.actions import ActionPolicy, check_policy_name
from loopml.monitoring.loop_records import LoopRun, PolicyInfo, policy_from_row, run_from_row
from loopml.storage.metadata import loop as q
from loopml.storage.metadata.base import utcnow
from loopml.storage.metadata.core import record_event

log = logging.getLogger(__name__)

SUBJECT_RUN = "loop_run"
SUBJECT_POLICY = "action_policy"
ADVANCE_JOB = "loop.advance"
REASON_MAX = 2000
LIST_MAX = 1000
ALERT_SCAN = 1000


def _now(now: Any) -> datetime:
    if now is None:
        return utcnow()
    if not isinstance(now, datetime):
        raise ValidationError(f"now must be a datetime (naive = UTC); got {now!r}", field="now")
    return now if now.tzinfo is not None else now.replace(tzinfo=UTC)


def _run_id(run_id: Any) -> int:
    if isinstance(run_id, bool) or not isinstance(run_id, int) or not 1 <= run_id <= 2**63 - 1:
        raise ValidationError(f"run_id must be a positive integer; got {run_id!r}", field="run_id")
    return run_id


def _policy(policy: Any, name: str | None = None) -> ActionPolicy:
    if isinstance(policy, ActionPolicy):
        if name is not None and policy.name != name:
            raise ValidationError(
                f"name: the policy is {policy.name!r} but the call is for {name!r}; a policy cannot be renamed",
                field="name",
            )
        return policy
    if isinstance(policy, Mapping):
        return ActionPolicy.from_dict(policy, name=name)
    raise ValidationError(
        f"policy must be an ActionPolicy or a dict; got {type(policy).__name__}", field="policy"
    )


class Loop:
    """The closed-loop service. Stateless apart from the context: one instance serves all threads."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self._lm: Any = None

    @property
    def lm(self) -> Any:
        """A ``Loopml`` client on the same context (the stages use the public services)."""
        if self._lm is None:
            from loopml.client import Loopml

            self._lm = Loopml.from_context(self.ctx)
        return self._lm

    # ================================================================== policies
    def create_policy(
        self, policy: ActionPolicy | Mapping[str, Any], *, actor: str = "system", reason: str | None = None
    ) -> PolicyInfo:
        """Store a new policy after resolving its pipeline, params, endpoint and model (404 naming the field)."""
        policy = _policy(policy)
        actor, reason = _actor(actor), _reason(reason)
        self._resolve(policy)
        with self.ctx.db.session() as session:
            if q.get_policy(session, policy.name) is not None:
                raise ConflictError(
                    f"action policy {policy.name!r} exists already; change it with update_policy "
                    "(`loopml policies create --spec FILE --replace`) or delete it first",
                    field="name",
                )
            row = q.add_policy(
                session, name=policy.name, spec=policy.spec(), enabled=policy.enabled, at=utcnow()
            )
            record_event(
                session,
                q.EVENT_POLICY_CREATED,
                SUBJECT_POLICY,
                policy.name,
                actor=actor,
                reason=reason,
                data=policy.to_dict(),
            )
            return policy_from_row(row)

    def update_policy(
        self,
        name: str,
        policy: ActionPolicy | Mapping[str, Any],
        *,
        actor: str,
        reason: str | None = None,
    ) -> PolicyInfo:
        """Replace a policy. Runs already started keep the spec they started with (a snapshot)."""
        check_policy_name(name)
        policy = _policy(policy, name)
        actor, reason = _actor(actor), _reason(reason)
        self._resolve(policy)
        with self.ctx.db.session() as session:
            row = self._policy_row(session, name, for_update=True)
            q.update_policy(session, row, spec=policy.spec(), enabled=policy.enabled, at=utcnow())
            record_event(
                session,
                q.EVENT_POLICY_UPDATED,
                SUBJECT_POLICY,
                name,
                actor=actor,
                reason=reason,
                data=policy.to_dict(),
            )
            return policy_from_row(row)

    def set_policy_enabled(
        self, name: str, enabled: bool, *, actor: str, reason: str | None = None
    ) -> PolicyInfo:
        """Pause (``False``) or resume a policy without editing it; a paused policy starts no runs."""
        info = self.get_policy(name)
        if not isinstance(enabled, bool):
            raise ValidationError(f"enabled must be true or false; got {enabled!r}", field="enabled")
        return self.update_policy(name, info.policy.with_enabled(enabled), actor=actor, reason=reason)

    def delete_policy(self, name: str, *, actor: str, reason: str | None = None) -> None:
        """Remove a policy; its runs (and their history) stay, an active run is refused (reject it first)."""
        check_policy_name(name)
        actor, reason = _actor(actor), _reason(reason)
        with self.ctx.db.session() as session:
            row = self._policy_row(session, name, for_update=True)
            active = q.active_run(session, name)
            if active is not None:
                raise ConflictError(
                    f"policy {name!r} has run {active.id} in progress ({active.status}, {active.stage}); "
                    f"reject it first (`loopml loop reject {active.id}`)",
                    field="name",
                )
            q.delete_policy(session, row)
            record_event(session, q.EVENT_POLICY_DELETED, SUBJECT_POLICY, name, actor=actor, reason=reason)

    def list_policies(self) -> builtins.list[PolicyInfo]:
        with self.ctx.db.session() as session:
            return [policy_from_row(row) for row in q.list_policies(session)]

    def get_policy(self, name: str) -> PolicyInfo:
        check_policy_name(name)
        with self.ctx.db.session() as session:
            return policy_from_row(self._policy_row(session, name))

    # ================================================================== starting runs
    def process_alerts(self, now: datetime | None = None) -> builtins.list[LoopRun]:
        """Start a run for each enabled policy with a matching open alert; returns the runs started.

        A policy starts nothing while it has an active run, during its cooldown (measured from its
        last finished run), or for an alert that has not fired again since it last triggered it.
        """
        now = _now(now)
        policies = [p for p in self.list_policies() if p.policy.enabled]
        if not policies:
            return []
        alerts = self.lm.alerts.list(status="open", limit=ALERT_SCAN)
        started = []
        for info in policies:
            for alert in alerts:  # most recently fired first
                if not info.policy.matches(alert.key, alert.severity, alert.data):
                    continue
                run, why = self._open_run(
                    info.policy, alert, actor="loop", reason=None, now=now, manual=False
                )
                if run is not None:
                    started.append(run)
                    break
                if why != "handled":
                    break  # active run or cooldown: no other alert can start this policy either
        return started

    def start(
        self,
        policy: str,
        *,
        alert: int | None = None,
        actor: str,
        reason: str | None = None,
        now: datetime | None = None,
    ) -> LoopRun:
        """Start a run by hand (``loopml loop start POLICY``); the cooldown does not apply, an active run does."""
        check_policy_name(policy, "policy")
        actor, reason = _actor(actor), _reason(reason)
        now = _now(now)
        info = self._get_policy_for_run(policy)
        found = None
        if alert is not None:
            if isinstance(alert, bool) or not isinstance(alert, int):
                raise ValidationError(f"alert must be an alert id (integer); got {alert!r}", field="alert")
            try:
                found = self.lm.alerts.get(alert)
            except NotFoundError as exc:
                raise NotFoundError(str(exc), field="alert") from None
        run, why = self._open_run(info.policy, found, actor=actor, reason=reason, now=now, manual=True)
        if run is None:
            raise ConflictError(why, field="policy")
        return run

    def _get_policy_for_run(self, name: str) -> PolicyInfo:
        try:
            return self.get_policy(name)
        except NotFoundError as exc:
            raise NotFoundError(str(exc), field="policy") from None

    def _open_run(
        self, policy: ActionPolicy, alert: Any, *, actor: str, reason: str | None, now: datetime, manual: bool
    ) -> tuple[LoopRun | None, str]:
        wall = utcnow()
        with self.ctx.db.session() as session:
            prow = q.get_policy(session, policy.name, for_update=True)  # serialises run creation per policy
            if prow is None:
                return None, f"policy {policy.name!r} was deleted"
            active = q.active_run(session, policy.name)
            if active is not None:
                return None, (
                    f"policy {policy.name!r} already has run {active.id} in progress "
                    f"({active.status}, stage {active.stage})"
                )
            if not manual:
                last = q.last_finished_at(session, policy.name)
                if last is not None and (now - last).total_seconds() < policy.cooldown_seconds:
                    return None, "cooldown"
                if alert is not None:
                    prev = q.latest_run_for_alert(session, policy.name, alert.id)
                    fired = int((prev.data or {}).get("trigger", {}).get("fire_count", 0)) if prev else -1
                    if prev is not None and alert.fire_count <= fired:
                        return None, "handled"
            approve = policy.mode == "approve"
            trigger: dict[str, Any] = {"manual": manual, "actor": actor, "reason": reason}
            if alert is not None:
                trigger.update(
                    alert_id=alert.id,
                    key=alert.key,
                    severity=alert.severity,
                    title=alert.title,
                    fire_count=alert.fire_count,
                    fired_at=alert.last_fired_at.isoformat(),
                )
            data = {
                "spec": policy.to_dict(),
                "trigger": trigger,
                "seq": 0,
                "stage_at": now.isoformat(),
                "stage_wall": wall.isoformat(),
            }
            status = q.WAITING_APPROVAL if approve else q.RUNNING
            stage = "approval" if approve else "triggered"
            row = q.add_run(
                session,
                policy=policy.name,
                alert_id=None if alert is None else alert.id,
                alert_key=None if alert is None else alert.key,
                endpoint=policy.endpoint,
                model=policy.model,
                status=status,
                stage=stage,
                data=data,
                created_at=now,
                updated_at=now,
            )
            why = (
                f"alert {alert.id} {alert.key!r} ({alert.severity}): {alert.title}"
                if alert is not None
                else f"started by {actor}" + (f": {reason}" if reason else "")
            )
            q.add_step(
                session, run_id=row.id, step="triggered", status=q.STEP_OK, detail=why, data=trigger, at=now
            )
            if approve:
                q.add_step(
                    session,
                    run_id=row.id,
                    step="approval",
                    status=q.STEP_WAITING,
                    detail=f"mode 'approve': waiting for a person to approve retraining with {policy.retrain['pipeline']}",
                    data={},
                    at=now,
                )
            record_event(
                session,
                "loop.triggered",
                SUBJECT_RUN,
                row.id,
                actor=actor,
                reason=reason or why,
                data={"policy": policy.name, "status": status, "alert_id": trigger.get("alert_id")},
            )
            if not approve:
                self._enqueue(session, row.id, f"loop:{row.id}:start")
            return run_from_row(row, q.list_steps(session, [row.id])), ""

    def _enqueue(self, session: Any, run_id: int, key: str, not_before: datetime | None = None) -> None:
        """Queue the ``loop.advance`` job in the caller's transaction (a worker moves the run on)."""
        self.lm.jobs.enqueue(
            ADVANCE_JOB, {"run_id": run_id}, idempotency_key=key, not_before=not_before, session=session
        )

    # ================================================================== advancing
    def advance(self, run_id: int, *, now: datetime | None = None, inline: bool = True) -> LoopRun:
        """One idempotent step of the state machine; returns the run after it (unchanged if nothing to do).

        ``inline``: run a retrain pipeline whose job no worker has claimed in this process (see the
        module docstring). A run waiting for approval, or finished, is returned as it is.
        """
        run_id = _run_id(run_id)
        now = _now(now)
        if not isinstance(inline, bool):
            raise ValidationError(f"inline must be true or false; got {inline!r}", field="inline")
        run = self.get(run_id)
        if run.status != q.RUNNING:
            return run
        s = st.StageInput(self.lm, run, run.data["spec"], now, utcnow(), inline)
        try:
            tr = self._dispatch(s)
        except BackendUnavailableError:
            raise  # transient: the next advance retries
        except LoopmlError as exc:
            log.warning("loop run %s: stage %s failed: %s", run.id, run.stage, exc)
            st._restore_release(s, f"loop run {run.id} failed in stage {run.stage}")
            tr = st.terminal(q.FAILED, f"{run.stage}: {exc}", step=run.stage, step_status=q.STEP_FAILED)
        return self._apply(run, tr, now=now, wall=s.wall, actor=st.ACTOR)

    def _dispatch(self, s: st.StageInput) -> st.Transition:
        stage = s.run.stage
        if stage == "triggered":
            return st.start_retrain(s)
        if stage == "retrain":
            return st.check_retrain(s)
        if stage == "gates":
            return st.check_gates(s)
        if stage == "shadow":
            return st.check_shadow(s)
        if stage == "canary":
            return st.check_canary(s)
        if stage == "promote":
            if st.needs_promotion_approval(s):
                return st.Transition(
                    status=q.WAITING_APPROVAL,
                    step="approval",
                    step_status=q.STEP_WAITING,
                    detail=f"release.approve_promotion: {s.run.candidate} is healthy at the last canary weight; "
                    f"waiting for a person to approve moving {s.release['alias']!r}",
                )
            return st.do_promote(s)
        return st.terminal(q.FAILED, f"unknown stage {stage!r}", step=stage, step_status=q.STEP_FAILED)

    def advance_all(self, now: datetime | None = None, *, inline: bool = True) -> builtins.list[LoopRun]:
        """Advance every running run once (what a scheduler tick does); returns them after the step."""
        now = _now(now)
        with self.ctx.db.session() as session:
            ids = q.active_run_ids(session)
        out = []
        for run_id in ids:
            try:
                out.append(self.advance(run_id, now=now, inline=inline))
            except BackendUnavailableError as exc:
                log.warning("loop run %s not advanced: %s", run_id, exc)
        return out

    def _apply(
        self,
        run: LoopRun,
        tr: st.Transition,
        *,
        now: datetime,
        wall: datetime,
        actor: str,
        reason: str | None = None,
        enqueue_key: str | None = None,
    ) -> LoopRun:
        """Write a transition if the run is still where ``run`` saw it (else someone else moved it)."""
        resolved: tuple[int, str] | None = None
        with self.ctx.db.session() as session:
            row = q.get_run(session, run.id, for_update=True)
            if row is None:
                raise NotFoundError(f"loop run {run.id} does not exist", field="run_id")
            data = dict(row.data or {})
            if (row.status, row.stage, data.get("seq")) != (run.status, run.stage, run.data.get("seq")):
                return run_from_row(row, q.list_steps(session, [row.id]))
            wrote_step = False
            new_data = {**data, **tr.run_data}
            if tr.stage is not None:
                new_data.update(stage_at=now.isoformat(), stage_wall=wall.isoformat())
                new_data.pop("waiting_noted", None)
            if tr.wait_key is not None and tr.status is None and tr.stage is None:
                if data.get("waiting_noted") != tr.wait_key:
                    q.add_step(
                        session,
                        run_id=row.id,
                        step=tr.step or row.stage,
                        status=q.STEP_WAITING,
                        detail=tr.detail,
                        data=tr.data,
                        at=now,
                    )
                    new_data["waiting_noted"] = tr.wait_key
                    wrote_step = True
            elif tr.step is not None:
                q.add_step(
                    session,
                    run_id=row.id,
                    step=tr.step,
                    status=tr.step_status,
                    detail=tr.detail,
                    data=st_json(tr.data),
                    at=now,
                )
                wrote_step = True
            before = row.status
            moved = tr.stage is not None or (tr.status is not None and tr.status != row.status)
            if not moved and not wrote_step and st_json(new_data) == st_json(data) and not tr.values:
                return run_from_row(row, q.list_steps(session, [row.id]))
            new_data["seq"] = int(data.get("seq") or 0) + 1
            row.data = st_json(new_data)
            if tr.stage is not None:
                row.stage = tr.stage
            if tr.status is not None:
                row.status = tr.status
            for key, value in tr.values.items():
                setattr(row, key, value)
            if tr.outcome is not None:
                row.outcome = tr.outcome
            row.updated_at = now
            if row.status not in q.ACTIVE_STATUSES and row.finished_at is None:
                row.finished_at = now
                if tr.resolve_alert and row.alert_id is not None:
                    resolved = (row.alert_id, tr.outcome or row.status)
            if moved:
                if row.status not in q.ACTIVE_STATUSES or row.status == q.WAITING_APPROVAL:
                    kind = row.status
                elif before == q.WAITING_APPROVAL:
                    kind = "approved"
                else:
                    kind = row.stage
                record_event(
                    session,
                    f"{q.EVENT_PREFIX}{kind}",
                    SUBJECT_RUN,
                    row.id,
                    actor=actor,
                    reason=reason or tr.detail or None,
                    data={
                        "policy": row.policy,
                        "status": row.status,
                        "stage": row.stage,
                        "candidate": row.candidate,
                    },
                )
            if enqueue_key is not None and row.status == q.RUNNING:
                self._enqueue(session, row.id, enqueue_key)
            session.flush()
            out = run_from_row(row, q.list_steps(session, [row.id]))
        if resolved is not None:
            self._resolve_alert(*resolved)
        return out

    def _resolve_alert(self, alert_id: int, outcome: str) -> None:
        # resolved meanwhile (e.g. its rule cleared), or deleted: nothing to do
        with contextlib.suppress(ConflictError, NotFoundError):
            self.lm.alerts.resolve_id(alert_id, reason=f"closed loop: {outcome}"[:REASON_MAX], actor=st.ACTOR)

    # ================================================================== people
    def approve(
        self, run_id: int, *, actor: str, reason: str | None = None, now: datetime | None = None
    ) -> LoopRun:
        """Let a run waiting for approval go on: start retraining, or promote (``approve_promotion``)."""
        run_id, actor, reason, now = _run_id(run_id), _actor(actor), _reason(reason), _now(now)
        run = self.get(run_id)
        if run.status != q.WAITING_APPROVAL:
            raise ConflictError(
                f"loop run {run_id} is {run.status} (stage {run.stage}), not waiting for approval",
                field="run_id",
            )
        what = "retraining" if run.stage == "approval" else "promotion"
        tr = st.Transition(
            status=q.RUNNING,
            stage="triggered" if run.stage == "approval" else None,
            step="approval",
            detail=f"{what} approved by {actor}" + (f": {reason}" if reason else ""),
            run_data={"promotion_approved": True} if run.stage == "promote" else {},
            values={"decided_by": actor},
        )
        out = self._apply(
            run,
            tr,
            now=now,
            wall=utcnow(),
            actor=actor,
            reason=reason,
            enqueue_key=f"loop:{run_id}:approved:{run.data.get('seq')}",
        )
        if out.status == run.status:
            raise ConflictError(f"loop run {run_id} changed meanwhile; look at it again", field="run_id")
        return out

    def reject(
        self, run_id: int, *, actor: str, reason: str | None = None, now: datetime | None = None
    ) -> LoopRun:
        """Stop a run in progress: the endpoint goes back to its baseline, the retrain job is cancelled."""
        run_id, actor, reason, now = _run_id(run_id), _actor(actor), _reason(reason), _now(now)
        run = self.get(run_id)
        if not run.active:
            raise ConflictError(
                f"loop run {run_id} is finished ({run.status}); nothing to reject", field="run_id"
            )
        s = st.StageInput(self.lm, run, run.data["spec"], now, utcnow(), True)
        st._restore_release(s, f"loop run {run_id} rejected by {actor}")
        job_id = (run.data.get("retrain") or {}).get("job_id")
        if job_id:
            # running or finished already: its model is simply not released
            with contextlib.suppress(LoopmlError):
                self.lm.jobs.cancel(int(job_id), actor=actor, reason=f"loop run {run_id} rejected")
        outcome = f"rejected by {actor}" + (f": {reason}" if reason else "") + f" (at stage {run.stage})"
        tr = st.terminal(q.REJECTED, outcome, step="rejected", step_status=q.STEP_OK)
        tr.values = {"decided_by": actor}
        out = self._apply(run, tr, now=now, wall=s.wall, actor=actor, reason=reason)
        if out.status != q.REJECTED:
            raise ConflictError(f"loop run {run_id} changed meanwhile; look at it again", field="run_id")
        return out

    # ================================================================== reads
    def get(self, run_id: int) -> LoopRun:
        run_id = _run_id(run_id)
        with self.ctx.db.session() as session:
            row = q.get_run(session, run_id)
            if row is None:
                raise NotFoundError(
                    f"loop run {run_id} does not exist; list runs with `loopml loop list`", field="run_id"
                )
            return run_from_row(row, q.list_steps(session, [row.id]))

    def list(
        self, status: str | None = None, policy: str | None = None, limit: int = 50
    ) -> builtins.list[LoopRun]:
        """Runs newest first (without their steps; ``get`` has them)."""
        if status is not None:
            check_choice(status, "status", q.LOOP_STATUSES)
        if policy is not None:
            check_policy_name(policy, "policy")
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= LIST_MAX:
            raise ValidationError(
                f"limit must be an integer in [1, {LIST_MAX}]; got {limit!r}", field="limit"
            )
        with self.ctx.db.session() as session:
            return [
                run_from_row(row) for row in q.list_runs(session, status=status, policy=policy, limit=limit)
            ]

    def story(self, run_id: int) -> builtins.list[dict[str, Any]]:
        """The timeline from the alert to the outcome: one dict per event (at, step, status, detail, data)."""
        run = self.get(run_id)
        items: builtins.list[dict[str, Any]] = []
        alert = None
        if run.alert_id is not None:
            try:
                alert = self.lm.alerts.get(run.alert_id)
            except NotFoundError:
                alert = None
        if alert is not None:
            items.append(
                {
                    "at": alert.created_at.isoformat(),
                    "step": "alert",
                    "status": alert.severity,
                    "detail": f"{alert.key}: {alert.title}" + (f" - {alert.detail}" if alert.detail else ""),
                    "data": dict(alert.data or {}),
                }
            )
        for step in run.steps:
            items.append(
                {
                    "at": step.at.isoformat(),
                    "step": step.step,
                    "status": step.status,
                    "detail": step.detail,
                    "data": step.data,
                }
            )
        if not run.active:
            items.append(
                {
                    "at": (run.finished_at or run.updated_at).isoformat(),
                    "step": "outcome",
                    "status": run.status,
                    "detail": run.outcome or run.status,
                    "data": {"candidate": run.candidate, "baseline": run.baseline},
                }
            )
        if alert is not None and alert.resolved_at is not None:
            items.append(
                {
                    "at": alert.resolved_at.isoformat(),
                    "step": "alert_resolved",
                    "status": "resolved",
                    "detail": f"alert {alert.key} resolved",
                    "data": {},
                }
            )
        return items

    def versions_of_pipeline_run(self, model: str, pipeline_run_id: str) -> builtins.list[int]:
        """Version numbers of ``model`` a pipeline run registered (lineage), newest first."""
        with self.ctx.db.session() as session:
            return q.versions_of_pipeline_run(session, model, pipeline_run_id)

    # ================================================================== internals
    def _policy_row(self, session: Any, name: str, *, for_update: bool = False) -> q.ActionPolicyRow:
        row = q.get_policy(session, name, for_update=for_update)
        if row is None:
            raise NotFoundError(
                f"action policy {name!r} does not exist."
                + did_you_mean(name, q.policy_names(session))
                + " Create one with `loopml policies create --spec policy.json`.",
                field="name",
            )
        return row

    def _resolve(self, policy: ActionPolicy) -> None:
        """The pipeline, its params, the endpoint and the model must exist now, not at the first alert."""
        lm = self.lm
        retrain = policy.retrain
        try:
            lm.pipelines.definition(retrain["pipeline"])
        except NotFoundError as exc:
            raise NotFoundError(f"retrain.pipeline: {exc}", field="retrain.pipeline") from None
        try:
            lm.pipelines.resolve_params(retrain["pipeline"], retrain["params"])
        except ValidationError as exc:
            raise ValidationError(f"retrain.params: {exc}", field="retrain.params") from None
        try:
            endpoint = lm.endpoints.get(policy.endpoint)
        except NotFoundError as exc:
            raise NotFoundError(f"endpoint: {exc}", field="endpoint") from None
        try:
            lm.registry.get_model(policy.model)
        except NotFoundError as exc:
            raise NotFoundError(f"model: {exc}", field="model") from None
        skew = (policy.release or {}).get("skew") or {}
        if skew.get("eval_dataset"):
            name, _, number = str(skew["eval_dataset"]).partition("@")
            try:
                lm.datasets.version(name, int(number) if number else "latest")
            except NotFoundError as exc:
                raise NotFoundError(
                    f"release.skew.eval_dataset: {exc}", field="release.skew.eval_dataset"
                ) from None
        served = set()
        for ref in endpoint.spec.models():
            try:
                served.add(lm.registry.get_version(ref).model)
            except LoopmlError:
                continue
        if policy.model not in served:
            raise ValidationError(
                f"model: endpoint {policy.endpoint!r} serves {sorted(served) or 'no resolvable model'}, "
                f"not {policy.model!r}; the loop releases the endpoint's own model",
                field="model",
            )


def st_json(value: Any) -> Any:
    """A deep copy made of plain JSON types (so a changed nested dict is seen as a change)."""
    import json

    return json.loads(json.dumps(value, default=str))


def _actor(actor: Any) -> str:
    return check_actor(actor, max_len=q.ACTOR_MAX)


def _reason(reason: Any, *, required: bool = False) -> str | None:
    return check_reason(reason, max_len=REASON_MAX, required=required)
