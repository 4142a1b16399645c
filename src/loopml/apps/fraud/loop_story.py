"""The closed loop closing by itself on the fraud system: drift -> alert -> retrain -> release or rollback.

1. A fraud world whose traffic shifts on ``shift_day``: a gift-card drip attack starts (modest
   daytime gift-card purchases on taken-over cards), which ``fraud/1`` never saw in training.
2. ``fraud/1`` is trained on the labelled history, made ``champion`` (protected by a ``BeatsCurrent``
   gate on ``fraud_loop_eval``, the recent labelled set the retrain pipeline refreshes) and served by
   endpoint ``fraud`` = ``Single(fraud@champion)``.
3. Monitoring through the public API: monitor ``fraud-live`` (daily windows over the inference log,
   reference = fraud/1's labelled pre-live data with its scores), alert rules (share of drifted
   features, prediction drift, AUC on delayed chargebacks), a latency-p99 SLO, a Slack-format webhook
   to a receiver on 127.0.0.1, and an action policy: AUC alert -> ``fraud.retrain`` -> gates ->
   shadow -> canary (watchdog) -> promote, mode ``auto``.
4. Traffic is replayed in time order; every ``tick_hours`` of simulated time ``tick(lm, now=...)``
   runs monitors -> SLOs -> rules -> ``loop.process_alerts`` -> ``loop.advance_all``. Nothing else
   drives the loop: drift warns, the AUC drop on the chargebacks opens a critical alert, the loop
   retrains, releases and promotes ``fraud/2``.
5. The other direction: the retrain job's amount source is switched to the ledger (amounts in cents;
   the gateway sends dollars to serving). The next retrain (started by hand, as a weekly job would)
   builds its model *and its eval set* with that skew, so it passes the offline gate; in the canary
   its scores are off, the endpoint's watchdog rolls it back, the champion keeps serving, and no
   request fails.

Clocks: the replay stamps every inference record with its transaction's simulated time (a replay
logs event time), so monitor windows are simulated days. The world starts on the current UTC date,
so simulated times are always ahead of the wall clock and the loop's wall-clock log windows (shadow
outputs and canary requests since a stage began) still see every request of their stage.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd

import loopml
from loopml.apps.fraud import contracts
from loopml.apps.fraud import features as fx
from loopml.apps.fraud.config import FraudConfig
from loopml.apps.fraud.loop_pipeline import (
    EVAL_DATASET,
    HISTORY_DATASET,
    PIPELINE,
    logged_transactions,
    register_retrain_pipeline,
)
from loopml.apps.fraud.loop_support import LoopReplay, SimClockWriter, WebhookReceiver, notify_worker
from loopml.apps.fraud.model import LABEL, MODEL, score
from loopml.apps.fraud.replay import Replay
from loopml.apps.fraud.simulate import simulate
from loopml.apps.fraud.story import ENDPOINT, _fit_register, _frames, _ingest
from loopml.errors import NotFoundError, ValidationError
from loopml.monitoring.actions import ActionPolicy
from loopml.monitoring.monitors import MonitorSpec
from loopml.monitoring.rules import RuleSpec
from loopml.monitoring.slo import SloSpec
from loopml.monitoring.tick import tick
from loopml.registry import BeatsCurrent
from loopml.serving.endpoints import EndpointRuntime, EndpointSpec, Fallback, FeatureLookup, Single

ACTOR = "fraud-loop-demo"
MONITOR = "fraud-live"
POLICY = "fraud-retrain"
SLO = "fraud-latency-p99"
RULE_DRIFT = "fraud-drift"
RULE_PREDICTION = "fraud-prediction-drift"
RULE_AUC = "fraud-auc-drop"
RULE_RECALL = "fraud-recall-drop"
WEBHOOK = "ops-slack"
WATCHED = ["amount", "hour", "mcc", "merchant_region"]
TERMINAL = ("promoted", "rolled_back", "blocked", "failed", "rejected")


@dataclass(frozen=True)
class LoopSettings:
    """The loop story's own knobs (the world itself is a ``FraudConfig``)."""

    live_day: int = 8
    tick_hours: float = 4.0
    auc_threshold: float = 0.9
    recall_threshold: float = 0.4
    drift_share: float = 0.2
    latency_p99_ms: float = 50.0
    shadow_requests: int = 150
    #: the shadow covers a whole day of traffic (night and the attack's busy hours), so the PSI it
    #: measures - from which the canary's PSI limit derives - describes the traffic the canary will see
    shadow_hours: float = 24.0
    canary_weights: tuple[float, ...] = (0.25, 0.5)
    canary_requests: int = 60
    max_psi: float = 2.0
    skew_max_psi: float = 1.0
    cooldown_days: float = 3.0
    second_run_delay_hours: float = 6.0
    tail_hours: float = 12.0
    check_every: int = 25

    def validate(self, cfg: FraudConfig) -> LoopSettings:
        if not isinstance(self.live_day, int) or not cfg.v1_day <= self.live_day < (cfg.shift_day or 0):
            raise ValidationError(
                f"live_day={self.live_day!r} must be an integer from v1_day ({cfg.v1_day}) to before "
                f"shift_day ({cfg.shift_day})",
                field="live_day",
            )
        if not 0 < self.tick_hours <= 24 or 24 % self.tick_hours:
            raise ValidationError(
                f"tick_hours={self.tick_hours!r} must divide 24 (e.g. 3, 4, 6, 12)", field="tick_hours"
            )
        return self


def loop_config(fast: bool = False, **overrides: Any) -> FraudConfig:
    """The world of the loop story: chargebacks within a day, collusion already known, a strong
    gift-card drip from ``shift_day``; small with ``fast``. Starts on today's UTC date."""
    base: dict[str, Any] = {
        "users": 500 if fast else 1_500,
        "merchants": 150 if fast else 400,
        "days": 17,  # a cap: the replay stops once every loop run is terminal (~day 15)
        "start": datetime.now(UTC).strftime("%Y-%m-%d"),
        "collusion_start_day": 2,
        "collusion_merchants": 3,
        "shift_day": 9,
        "shift_share": 0.3,
        "label_maturity_days": 1,
        "holdout_days": 3,
        "v1_day": 8,
        "v2_day": 10,
        "n_estimators": 60 if fast else 150,
        "push_every": 100 if fast else 50,
        "min_canary_requests": 60,
    }
    base.update(overrides)
    return FraudConfig.from_dict(base)


@dataclass
class RunSummary:
    """One loop run as the story saw it, with its timeline (``lm.loop.story``)."""

    run_id: int
    status: str
    candidate: str | None
    baseline: str | None
    outcome: str | None
    alert_key: str | None
    trigger: str
    retrain: dict[str, Any] = field(default_factory=dict)
    gates: list[dict[str, Any]] = field(default_factory=list)
    timeline: list[dict[str, Any]] = field(default_factory=list)
    requests_during: int = 0
    failed_during: int = 0


@dataclass
class LoopStoryResult:
    """What happened, with the numbers behind each decision (for the CLI and the tests)."""

    config: dict[str, Any] = field(default_factory=dict)
    transactions: int = 0
    shift_start: str = ""
    windows: list[dict[str, Any]] = field(default_factory=list)
    alerts: list[dict[str, Any]] = field(default_factory=list)
    webhook: list[dict[str, Any]] = field(default_factory=list)
    runs: list[RunSummary] = field(default_factory=list)
    ticks: int = 0
    tick_errors: list[str] = field(default_factory=list)
    #: loop runs still active when the simulated world ran out of traffic (empty: every run decided)
    unfinished: list[int] = field(default_factory=list)
    champion: str | None = None
    auc: list[dict[str, Any]] = field(default_factory=list)
    total_requests: int = 0
    failed_requests: int = 0
    fallback_requests: int = 0
    slo: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0

    def run(self, n: int) -> RunSummary | None:
        return self.runs[n] if len(self.runs) > n else None


def run_loop_story(
    lm: loopml.Loopml,
    cfg: FraudConfig | None = None,
    *,
    fast: bool = False,
    say: Callable[[str], None] = print,
    progress: Callable[[str, int, int], None] | None = None,
    settings: LoopSettings | None = None,
) -> LoopStoryResult:
    """Run the closed-loop story on ``lm`` and say what happened; ``progress(task, done, total)``
    is called as traffic is replayed."""
    if not isinstance(lm, loopml.Loopml):
        raise ValidationError(f"lm must be a loopml.Loopml client, got {type(lm).__name__}", field="lm")
    cfg = loop_config(fast) if cfg is None else FraudConfig.from_dict(cfg)
    if cfg.shift_day is None:
        raise ValidationError("the loop story needs a shift: set FraudConfig.shift_day", field="shift_day")
    opts = (settings or LoopSettings()).validate(cfg)
    started = time.perf_counter()
    out = LoopStoryResult(config=cfg.to_dict())
    live = cfg.day(opts.live_day)
    shift = cfg.day(cfg.shift_day)
    out.shift_start = shift.isoformat()

    # 1. the world, fraud/1 and the endpoint --------------------------------------------------
    sim = simulate(cfg)
    tx = sim.transactions
    out.transactions = len(tx)
    drip = int((tx["pattern"] == "giftcard_drip").sum())
    say(
        f"simulated {len(tx):,} transactions of {cfg.users:,} card holders over {cfg.days} days from "
        f"{cfg.start}; from {shift:%b %d} a gift-card drip attack adds {drip:,} fraudulent purchases"
    )
    history = tx[tx["ts"] < live]
    tx_version = _ingest(
        lm, HISTORY_DATASET, history.drop(columns=["is_fraud", "pattern"]), contracts.TRANSACTIONS
    )
    rows = fx.user_feature_rows(tx)
    feat_version = _ingest(
        lm, fx.SOURCE_DATASET, rows[rows["event_ts"] < live].drop(columns=["txn_id"]), contracts.USER_FEATURES
    )
    fx.register(lm)
    lm.features.materialize(actor=ACTOR)
    train, holdout = _frames(lm, cfg, tx, opts.live_day)
    kept = holdout[fx.MODEL_FEATURES].astype(float).assign(**{LABEL: holdout[LABEL].astype(int)})
    eval_version = _ingest(lm, EVAL_DATASET, kept, contracts.HOLDOUT)
    v1 = _fit_register(
        lm,
        cfg,
        train,
        holdout,
        opts.live_day,
        [tx_version, feat_version, eval_version],
        f"LightGBM on the history before {live:%b %d}: {len(train):,} labelled transactions",
        say,
    )
    lm.registry.protect(
        MODEL,
        "champion",
        [BeatsCurrent("auc", EVAL_DATASET, label=LABEL, margin=0.0)],
        actor=ACTOR,
        reason="the champion answers live authorisations; beat it on the newest labelled traffic",
    )
    lm.registry.promote(MODEL, v1.version, "champion", actor=ACTOR, reason="first fraud model")
    _endpoint(lm, cfg)
    register_retrain_pipeline(
        maturity_days=float(cfg.label_maturity_days),
        n_estimators=cfg.n_estimators,
        learning_rate=cfg.learning_rate,
        seed=cfg.seed,
    )

    # 2. monitoring, alerting, the action policy ----------------------------------------------
    per_day = len(tx[(tx["ts"] >= live) & (tx["ts"] < live + pd.Timedelta(days=1))])
    reference = _reference_frame(lm, holdout_tx(tx, cfg, opts.live_day), f"{MODEL}/{v1.version}")
    _monitoring(lm, cfg, opts, reference, per_day, say)
    receiver = WebhookReceiver()
    receiver.start()
    lm.notify.add_webhook(WEBHOOK, receiver.url, format="slack", topics=("alert.",), actor=ACTOR)
    lm.loop.create_policy(_policy(cfg, opts), actor=ACTOR, reason="retrain when recall on chargebacks drops")
    say(
        f"monitoring: monitor {MONITOR} (daily windows of the {ENDPOINT} log vs fraud/{v1.version}'s labelled data), "
        f"rules {RULE_DRIFT} / {RULE_PREDICTION} / {RULE_AUC} (warning) and {RULE_RECALL} (critical: recall on "
        f"chargebacks < {opts.recall_threshold:.0%}), "
        f"SLO {SLO} (p99 <= {opts.latency_p99_ms:g} ms), webhook {WEBHOOK} -> {receiver.url} (Slack format), "
        f"policy {POLICY}: {RULE_RECALL} -> {PIPELINE} -> gates -> shadow -> canary "
        f"{'/'.join(f'{w:.0%}' for w in opts.canary_weights)} -> promote (auto)"
    )

    # 3. replay + ticks -----------------------------------------------------------------------
    inner = lm.inference.writer(flush_rows=500, flush_interval=0.2)
    holder: dict[str, Any] = {}
    writer = SimClockWriter(inner, lambda: holder["replay"].clock)
    runtime = EndpointRuntime(lm, log_writer=writer, seed=cfg.seed)
    runtime.refresh(force=True)
    replay = LoopReplay(
        endpoint=ENDPOINT,
        runtime=runtime,
        inference=lm.inference,
        features=lm.features,
        transactions=tx,
        feature_rows=rows,
        start=live,
        push_every=cfg.push_every,
    )
    holder["replay"] = replay
    stop = threading.Event()
    worker = notify_worker(lm, stop)
    total = int(len(replay.tx) - replay.pos)
    state = _Driver(lm, out, opts, say, replay, runtime)
    try:
        boundary = live
        end = cfg.day(cfg.days)
        while boundary < end:
            boundary = boundary + pd.Timedelta(hours=opts.tick_hours)
            stats = _replay_until(replay, boundary, opts, state.phase)
            if progress is not None:
                progress(state.phase, int(replay.pos - (len(replay.tx) - total)), total)
            for rb in stats.rollbacks:
                say(f"  {boundary:%b %d %H:%M}  canary watchdog rolled {rb['canary']} back: {rb['reason']}")
            runtime.drain_shadows(timeout=30)
            lm.inference.flush()
            state.after_tick(boundary, tick(lm, now=boundary.tz_localize(UTC).to_pydatetime()))
            if state.done(boundary):
                break
        else:
            state.cap_reached(boundary)
        runtime.drain_shadows(timeout=30)
        lm.inference.flush()
        replay.deliver_labels(None)
        _wait_deliveries(lm, receiver, timeout=10)
    finally:
        stop.set()
        worker.join(timeout=10)
        runtime.close()
        inner.close()
        receiver.stop()

    # 4. figures ------------------------------------------------------------------------------
    served = replay.frame()
    out.total_requests = len(served)
    out.failed_requests = int((served["status"] == "failed").sum()) if len(served) else 0
    out.fallback_requests = int((served["status"] == "fallback").sum()) if len(served) else 0
    out.webhook = receiver.messages()
    out.alerts = [
        {
            "id": a.id,
            "key": a.key,
            "severity": a.severity,
            "status": a.status,
            "title": a.title,
            "fired": a.fire_count,
        }
        for a in sorted(lm.alerts.list(limit=100), key=lambda a: a.id)
    ]
    for summary in out.runs:
        _finish_summary(lm, summary, served)
    out.windows = _windows(lm)
    out.champion = _champion(lm)
    out.auc = _auc_table(lm, tx[tx["ts"] < boundary], out)  # the traffic that was replayed
    out.slo = _slo_status(lm)
    out.seconds = time.perf_counter() - started
    say(
        f"{out.total_requests:,} requests replayed: {out.failed_requests} failed, {out.fallback_requests} "
        f"fallbacks; {len(out.webhook)} alert messages reached the webhook; story took {out.seconds:.1f} s"
    )
    return out


# -- setup -----------------------------------------------------------------------------------------


def _endpoint(lm: Any, cfg: FraudConfig) -> None:
    spec = EndpointSpec(
        ENDPOINT,
        Single(f"{MODEL}@champion"),
        timeout_ms=cfg.timeout_ms,
        fallback=Fallback({"label": 0, "probability": None, "review": True}, status="fallback"),
        features=FeatureLookup("user_id", list(fx.FEATURE_REFS), request=list(fx.REQUEST)),
        description="Card-not-present fraud score per authorisation (closed-loop demo)",
    )
    try:
        lm.endpoints.get(ENDPOINT)
        lm.endpoints.update(ENDPOINT, spec, actor=ACTOR, reason="loop demo re-run")
    except NotFoundError:
        lm.endpoints.create(spec, actor=ACTOR, reason="fraud scoring goes live")


def holdout_tx(tx: pd.DataFrame, cfg: FraudConfig, day: int) -> pd.DataFrame:
    """The labelled pre-live transactions fraud/1 was judged on (its holdout period)."""
    _, start, end = cfg.training_window(day)
    return tx[(tx["ts"] >= start) & (tx["ts"] < end)]


def _reference_frame(lm: Any, transactions: pd.DataFrame, model_ref: str) -> pd.DataFrame:
    """Request fields as the endpoint logs them, plus ``prediction`` = the model's score on them."""
    frame = fx.training_frame(lm, transactions)
    scores = _scores(lm, model_ref, frame)
    ref = frame[WATCHED].copy()
    for name, dtype in fx.REQUEST.items():
        ref[name] = ref[name].astype(float if dtype == "float" else np.int64)
    ref["prediction"] = scores
    return ref


def _scores(lm: Any, model_ref: str, frame: pd.DataFrame) -> np.ndarray:
    proba = lm.registry.load(model_ref).predict_proba(frame[fx.MODEL_FEATURES].astype(float), strict=False)
    proba = np.asarray(proba, dtype=float)
    return proba[:, 1] if proba.ndim == 2 else proba


def _monitoring(
    lm: Any,
    cfg: FraudConfig,
    opts: LoopSettings,
    reference: pd.DataFrame,
    per_day: int,
    say: Callable[[str], None],
) -> None:
    spec = MonitorSpec(
        MONITOR,
        ENDPOINT,
        features=WATCHED,
        prediction=True,
        reference={"dataset": HISTORY_DATASET, "version": "latest"},
        window_seconds=86400,
        drift={
            "kinds": {"mcc": "categorical", "merchant_region": "categorical"},
            "column_thresholds": {"prediction": 0.15},
        },
        performance={
            "task": "classification",
            "threshold": cfg.threshold,
            "slices": ["mcc"],
            "label_horizon_seconds": 4 * 86400,
            "min_slice_rows": 30,
        },
        min_rows=50,
    )
    lm.monitors.create(spec, actor=ACTOR)
    lm.monitors.set_reference(MONITOR, reference, actor=ACTOR)
    labelled_min = max(50, int(per_day * 0.45))
    rules = [
        RuleSpec(
            RULE_DRIFT,
            "drift",
            monitor=MONITOR,
            metric="share_drifted",
            op=">=",
            threshold=opts.drift_share,
            severity="warning",
            min_rows=50,
            description="the traffic the model sees no longer looks like what it learned from",
        ),
        RuleSpec(
            RULE_PREDICTION,
            "drift",
            monitor=MONITOR,
            metric="drifted:prediction",
            op="==",
            threshold=1,
            severity="warning",
            min_rows=50,
            description="the model's scores moved",
        ),
        RuleSpec(
            RULE_AUC,
            "performance",
            monitor=MONITOR,
            metric="auc",
            op="<",
            threshold=opts.auc_threshold,
            severity="warning",
            min_rows=labelled_min,
            description="ranking quality, measured on chargebacks joined to the logged scores",
        ),
        RuleSpec(
            RULE_RECALL,
            "performance",
            monitor=MONITOR,
            metric="recall",
            op="<",
            threshold=opts.recall_threshold,
            severity="critical",
            min_rows=labelled_min,
            description=f"share of chargebacks the block threshold ({cfg.threshold}) caught",
        ),
    ]
    for rule in rules:
        lm.alert_rules.create(rule, actor=ACTOR)
    lm.slos.create(
        SloSpec(
            SLO,
            "latency",
            target={"endpoint": ENDPOINT, "percentile": 99},
            objective=opts.latency_p99_ms,
            window_seconds=int(opts.tick_hours * 3600),
            description="authorisations wait for this score",
        ),
        actor=ACTOR,
    )


def _policy(cfg: FraudConfig, opts: LoopSettings) -> ActionPolicy:
    return ActionPolicy(
        POLICY,
        on={"rule": RULE_RECALL, "min_severity": "critical"},
        endpoint=ENDPOINT,
        model=MODEL,
        retrain={"pipeline": PIPELINE, "params": {"amount_source": "gateway"}, "timeout_seconds": 6 * 3600},
        mode="auto",
        release={
            "alias": "champion",
            "shadow": {
                "min_requests": opts.shadow_requests,
                "min_seconds": opts.shadow_hours * 3600,
                "max_error_rate": 0.02,
                "timeout_seconds": 2 * 86400,
            },
            "canary": {
                "weights": list(opts.canary_weights),
                "min_requests": opts.canary_requests,
                "rollback": {
                    "min_requests": opts.canary_requests,
                    "max_error_rate_delta": 0.02,
                    "max_p99_ratio": 3.0,
                    "max_psi": opts.max_psi,
                    # a canary p99 within the endpoint's latency SLO is no regression (scheduling noise
                    # on a busy laptop reached 20 ms against a 4.6 ms baseline)
                    "latency_floor_ms": opts.latency_p99_ms,
                },
                "timeout_seconds": 2 * 86400,
            },
            # the gate's eval set (fraud_loop_eval@N) is the offline side of the skew check
            "skew": {"max_psi": opts.skew_max_psi},
            "approve_promotion": False,
        },
        cooldown_seconds=opts.cooldown_days * 86400,
        description="fraud model gone stale on the chargebacks -> retrain on recent traffic and release it",
    )


# -- driving ---------------------------------------------------------------------------------------


def _replay_until(replay: Replay, boundary: pd.Timestamp, opts: LoopSettings, phase: str) -> Any:
    end = int(np.searchsorted(replay.ts, np.datetime64(boundary), side="left"))
    count = end - replay.pos
    if count < 1:
        return replay.run(phase, 1, check_every=opts.check_every) if replay.remaining else _Empty()
    return replay.run(phase, count, check_every=opts.check_every)


@dataclass
class _Empty:
    rollbacks: list[dict[str, Any]] = field(default_factory=list)


class _Driver:
    """Watches each tick's result, says what changed, and takes the two human actions of the story."""

    def __init__(
        self,
        lm: Any,
        out: LoopStoryResult,
        opts: LoopSettings,
        say: Callable[[str], None],
        replay: Replay,
        runtime: Any,
    ) -> None:
        self.lm, self.out, self.opts, self.say = lm, out, opts, say
        self.replay, self.runtime = replay, runtime
        self.seen_alerts: dict[int, tuple[str, int]] = {}
        self.seen_steps: dict[int, int] = {}
        self.promoted_at: pd.Timestamp | None = None
        self.second_started = False
        self.finished_at: pd.Timestamp | None = None
        self.phase = "live"

    def after_tick(self, now: pd.Timestamp, result: dict[str, Any]) -> None:
        self.out.ticks += 1
        for name, part in result["parts"].items():
            if not part["ok"]:
                self.out.tick_errors.append(
                    f"{now:%b %d %H:%M} {name}: {part.get('error') or part.get('result')}"
                )
        for item in result["parts"].get("monitors", {}).get("result") or []:
            for start in item.get("drifted_windows") or []:
                self.say(f"  {now:%b %d %H:%M}  monitor {MONITOR}: window {start[:10]} drifted")
        self._alerts(now)
        self._runs(now)
        wait = pd.Timedelta(hours=self.opts.second_run_delay_hours)
        if self.promoted_at is not None and not self.second_started and now - self.promoted_at >= wait:
            self._second_run(now)
        self.runtime.refresh(force=True)

    def done(self, now: pd.Timestamp) -> bool:
        """The story has told both directions: the second run was started, every run is terminal, and
        ``tail_hours`` have passed since (the monitor's view after the last decision)."""
        if self.finished_at is None or any(r.status not in TERMINAL for r in self.out.runs):
            return False
        return now - self.finished_at >= pd.Timedelta(hours=self.opts.tail_hours)

    def cap_reached(self, now: pd.Timestamp) -> None:
        """The simulated world ran out of traffic before the story was told: say which runs are unfinished."""
        self.out.unfinished = [r.run_id for r in self.out.runs if r.status not in TERMINAL]
        if self.out.unfinished:
            states = ", ".join(
                f"run {r.run_id} {r.status} at stage {self.lm.loop.get(r.run_id).stage}"
                for r in self.out.runs
                if r.run_id in self.out.unfinished
            )
            self.say(
                f"  {now:%b %d %H:%M}  the simulated world ends here (FraudConfig.days) with loop {states}: "
                "no traffic is left to finish them; simulate more days (loop_config(days=...))"
            )
        elif not self.second_started:
            self.say(
                f"  {now:%b %d %H:%M}  the simulated world ends here; the second (skewed) retrain never "
                "started because no retrain was promoted"
            )

    def _alerts(self, now: pd.Timestamp) -> None:
        for alert in sorted(self.lm.alerts.list(limit=100), key=lambda a: a.id):
            key = (alert.status, alert.fire_count)
            before = self.seen_alerts.get(alert.id)
            self.seen_alerts[alert.id] = key
            if before is None:
                self.say(f"  {now:%b %d %H:%M}  ALERT [{alert.severity}] {alert.title}")
            elif before[0] != alert.status:
                self.say(f"  {now:%b %d %H:%M}  alert {alert.key} {alert.status}")

    def _runs(self, now: pd.Timestamp) -> None:
        for run in sorted(self.lm.loop.list(policy=POLICY, limit=50), key=lambda r: r.id):
            full = self.lm.loop.get(run.id)
            if run.id not in self.seen_steps:
                self.seen_steps[run.id] = 0
                trigger = full.data.get("trigger") or {}
                self.out.runs.append(
                    RunSummary(
                        run.id,
                        full.status,
                        full.candidate,
                        full.baseline,
                        full.outcome,
                        full.alert_key,
                        "alert " + str(full.alert_key)
                        if full.alert_key
                        else f"by hand: {trigger.get('reason')}",
                    )
                )
                self.phase = f"loop run {run.id}"
            for s in full.steps[self.seen_steps[run.id] :]:
                self.say(f"  {now:%b %d %H:%M}  loop run {run.id} {s.step}: {s.status} - {s.detail}")
            self.seen_steps[run.id] = len(full.steps)
            summary = next(r for r in self.out.runs if r.run_id == run.id)
            was = summary.status
            summary.status, summary.candidate, summary.baseline, summary.outcome = (
                full.status,
                full.candidate,
                full.baseline,
                full.outcome,
            )
            if was != full.status and full.status == "promoted":
                self.promoted_at = now
                self.phase = "after promotion"
                self._move_reference(now, full.candidate)
            if was != full.status and full.status in TERMINAL and self.second_started:
                self.finished_at = now
                self.phase = "after rollback" if full.status == "rolled_back" else "after run 2"

    def _move_reference(self, now: pd.Timestamp, candidate: str | None) -> None:
        """After a promotion the new champion's world is the new normal: the monitor's reference moves
        to the last day of traffic, scored by the new champion."""
        logged = logged_transactions(self.lm, ENDPOINT)
        recent = logged[logged["ts"] >= now - pd.Timedelta(days=1)].copy()
        recent.insert(0, "txn_id", np.arange(1, len(recent) + 1, dtype=np.int64))
        for name, dtype in fx.REQUEST.items():
            recent[name] = recent[name].astype(float if dtype == "float" else np.int64)
        recent["user_id"] = recent["user_id"].astype(np.int64)
        frame = _reference_frame(self.lm, recent[["txn_id", "ts", "user_id", *fx.REQUEST]], candidate or "")
        self.lm.monitors.set_reference(MONITOR, frame, actor=ACTOR)
        self.say(
            f"  {now:%b %d %H:%M}  monitor {MONITOR}: reference moved to the last day of traffic "
            f"({len(frame):,} requests) scored by {candidate}"
        )

    def _second_run(self, now: pd.Timestamp) -> None:
        """A data engineer points the retrain job at the ledger; the weekly retrain starts by hand."""
        self.second_started = True
        info = self.lm.loop.get_policy(POLICY)
        data = info.policy.to_dict()
        data["retrain"]["params"] = {**data["retrain"]["params"], "amount_source": "ledger"}
        self.lm.loop.update_policy(
            POLICY,
            ActionPolicy.from_dict(data),
            actor="data-engineer",
            reason="read transaction amounts from the ledger table (the gateway export is being retired)",
        )
        self.say(
            f"  {now:%b %d %H:%M}  data-engineer: {PIPELINE} now reads amounts from the ledger "
            "(minor units; serving still gets dollars from the gateway)"
        )
        run = self.lm.loop.start(
            POLICY,
            actor="ml-oncall",
            reason="weekly retrain on the newest chargebacks",
            now=now.tz_localize(UTC).to_pydatetime(),
        )
        self.say(f"  {now:%b %d %H:%M}  ml-oncall started loop run {run.id} by hand (weekly retrain)")


def _wait_deliveries(lm: Any, receiver: WebhookReceiver, *, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not lm.notify.deliveries(status="pending", limit=1):
            return
        time.sleep(0.05)


# -- figures ---------------------------------------------------------------------------------------


def _windows(lm: Any) -> list[dict[str, Any]]:
    rows = []
    for w in lm.monitors.windows(MONITOR, limit=100):
        drift = w.drift or {}
        perf = (w.performance or {}).get("metrics") or {}
        features = drift.get("features") or {}
        rows.append(
            {
                "window_start": w.window_start.isoformat(),
                "rows": w.rows,
                "labelled": w.labelled,
                "share_drifted": drift.get("share_drifted"),
                "drifted": list(drift.get("drifted_features") or []),
                "mcc": (features.get("mcc") or {}).get("statistic"),
                "prediction": (features.get("prediction") or {}).get("statistic"),
                "auc": perf.get("auc"),
                "recall": perf.get("recall"),
            }
        )
    return rows


def _champion(lm: Any) -> str | None:
    for alias in lm.registry.aliases(MODEL):
        if alias.alias == "champion":
            return f"{MODEL}/{alias.version}"
    return None


def _auc_table(lm: Any, tx: pd.DataFrame, out: LoopStoryResult) -> list[dict[str, Any]]:
    """Every version on the same post-shift transactions it was never trained on (labels from the
    simulation's chargebacks): the transactions after the first run's retrain data."""
    first = out.run(0)
    if first is None or not first.retrain.get("as_of"):
        return []
    since = pd.Timestamp(first.retrain["as_of"])
    later = tx[(tx["ts"] >= since) & (tx["ts"] < tx["ts"].max())]
    if not len(later):
        return []
    frame = fx.training_frame(lm, later)
    y = frame[LABEL].to_numpy(dtype=float)
    rows = []
    for version in sorted({1, *(int(r.candidate.split("/")[1]) for r in out.runs if r.candidate)}):
        ref = f"{MODEL}/{version}"
        p = _scores(lm, ref, frame)
        s = score(y, p)
        drip = (later["pattern"] == "giftcard_drip").to_numpy()
        rows.append(
            {
                "model": ref,
                "rows": s.rows,
                "chargebacks": s.positives,
                "auc": s.auc,
                "precision_at_k": s.precision_at_k,
                "recall": s.recall,
                "drip_caught": float((p[drip] >= 0.3).mean()) if drip.any() else None,
            }
        )
    return rows


def _slo_status(lm: Any) -> dict[str, Any]:
    for line in lm.slos.status():
        if line.get("name") == SLO:
            return dict(line)
    return {}


def _finish_summary(lm: Any, summary: RunSummary, served: pd.DataFrame) -> None:
    summary.timeline = lm.loop.story(summary.run_id)
    run = lm.loop.get(summary.run_id)
    prun = run.pipeline_run_id
    if prun:
        try:
            pr = lm.pipelines.get_run(prun)
            output = lm.pipelines.output(prun, pr.steps[-1].step) if pr.steps else None
        except Exception:  # a failed retrain has no output: the timeline says why
            output = None
        if isinstance(output, dict):
            summary.retrain = output
    if summary.candidate:
        try:
            version = lm.registry.get_version(summary.candidate)
            summary.gates = [
                {"gate": g.gate, "passed": g.passed, "summary": g.summary, "details": g.details}
                for g in lm.registry.gate_results(version.model, version.number, alias="champion")
            ]
        except Exception:
            summary.gates = []
    if len(served) and summary.candidate:
        number = int(summary.candidate.split("/")[1])
        mine = served[served["version"] == number]
        summary.requests_during = len(mine)
        summary.failed_during = int((mine["status"] == "failed").sum())


def record_time(value: Any) -> datetime:
    """A timeline item's time as a datetime (ISO text or datetime)."""
    if isinstance(value, datetime):
        return value
    return datetime.fromisoformat(str(value))


__all__ = ["LoopSettings", "LoopStoryResult", "RunSummary", "loop_config", "run_loop_story"]
