"""The fraud story: a model released through shadow and canary, and a broken one stopped by itself.

1. Simulate card traffic; publish user features (dataset -> feature view -> online store).
2. Train v1 on matured labels, judge it on a later week, register it, make it ``champion``
   (protected by a ``BeatsCurrent`` gate), create endpoint ``fraud`` = ``Single(fraud@champion)``.
3. Replay live traffic; chargebacks arrive days later through the feedback API.
4. A week later train v2 on more data (merchant collusion started after v1's training window).
5. Shadow: v2 scores every request off the response path; agreement and latency come from the log.
6. Canary 10 % -> 50 % with the rollback rule watching; chargebacks for the canary traffic arrive;
   ``analyse_ab`` compares the arms; promote (registry gate + endpoint follows ``fraud@champion``).
7. v3, broken (its category table lacks one category, so it raises on those transactions), enters a
   canary: the baseline answers its failures, the watchdog rolls it back, no request fails.
8. All labels arrive; latency per arm and metrics per version from the logged feedback.

Only loopml's public API is used: ``lm.datasets``, ``lm.features``, ``lm.tracking``, ``lm.registry``,
the endpoints service and ``EndpointRuntime`` from ``loopml.serving``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

import loopml
from loopml.apps.fraud import contracts
from loopml.apps.fraud import features as fx
from loopml.apps.fraud.config import FraudConfig
from loopml.apps.fraud.model import LABEL, MODEL, CategoryEncodedModel, Scores, fit, score, xy
from loopml.apps.fraud.replay import PhaseStats, Replay
from loopml.apps.fraud.simulate import CATEGORIES, simulate
from loopml.errors import LoopmlError, NotFoundError, ValidationError
from loopml.registry import BeatsCurrent, GateBlockedError
from loopml.serving.endpoints import (
    Canary,
    EndpointRuntime,
    EndpointSpec,
    Fallback,
    FeatureLookup,
    RollbackRule,
    Shadow,
    Single,
    psi,
)

ENDPOINT = "fraud"
HOLDOUT = "fraud_holdout"
TRANSACTIONS = "fraud_transactions"
EXPERIMENT = "fraud"
ACTOR = "fraud-demo"
#: the category v3's training job dropped by mistake
BROKEN_CATEGORY = "restaurants"


@dataclass(frozen=True)
class TrainedVersion:
    """A registered version with the data it saw and its score on the later holdout week."""

    version: int
    day: int
    train_rows: int
    train_positives: int
    holdout: Scores
    description: str


@dataclass(frozen=True)
class ShadowSummary:
    """v2 in shadow of v1 on the same requests, read back from the inference log."""

    requests: int
    shadowed: int
    agreement: float | None
    mean_abs_diff: float | None
    psi: float | None
    primary_p50: float | None
    primary_p99: float | None
    shadow_p50: float | None
    shadow_p99: float | None
    shadow_errors: int


@dataclass
class FraudStoryResult:
    """What the story did, with the numbers behind each decision (for the CLI and the tests)."""

    config: dict[str, Any] = field(default_factory=dict)
    transactions: int = 0
    fraud_rate: float = 0.0
    patterns: dict[str, int] = field(default_factory=dict)
    versions: dict[int, TrainedVersion] = field(default_factory=dict)
    phases: list[PhaseStats] = field(default_factory=list)
    shadow: ShadowSummary | None = None
    canary_checks: list[dict[str, Any]] = field(default_factory=list)
    canary_psi_limit: float = 0.25
    ab_text: str = ""
    ab_verdict: str = ""
    promoted: bool = False
    gate_report: str = ""
    champion: int | None = None
    broken_version: int | None = None
    broken_rolled_back: bool = False
    rollback_reason: str = ""
    broken_canary_requests: int = 0
    broken_canary_errors: int = 0
    total_requests: int = 0
    failed_requests: int = 0
    fallback_requests: int = 0
    labels_sent: int = 0
    labelled_records: int = 0
    feature_pushes: int = 0
    latency: pd.DataFrame | None = None
    comparison: pd.DataFrame | None = None
    final_policy: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0


def run_fraud_story(
    lm: loopml.Loopml,
    cfg: FraudConfig | None = None,
    say: Callable[[str], None] = print,
    *,
    progress: Callable[[str, int, int], None] | None = None,
) -> FraudStoryResult:
    """Run the whole release story on ``lm`` and say what happened at each step.

    ``progress(task, done, total)`` is called as traffic is replayed (the CLI draws a bar with it).
    """
    if not isinstance(lm, loopml.Loopml):
        raise ValidationError(f"lm must be a loopml.Loopml client, got {type(lm).__name__}", field="lm")
    cfg = FraudConfig() if cfg is None else FraudConfig.from_dict(cfg)
    started = time.perf_counter()
    out = FraudStoryResult(config=cfg.to_dict())
    endpoints, inference = _services(lm)

    # 1. data and features ---------------------------------------------------------------------
    sim = simulate(cfg)
    tx = sim.transactions
    out.transactions, out.fraud_rate = len(tx), sim.fraud_rate
    out.patterns = {str(k): int(v) for k, v in tx["pattern"].value_counts().items()}
    rows = fx.user_feature_rows(tx)
    t1 = cfg.day(cfg.v1_day)
    say(
        f"simulated {len(tx):,} transactions of {cfg.users:,} card holders over {cfg.days} days; "
        f"fraud rate {out.fraud_rate:.2%} ({_patterns(out.patterns)})"
    )
    seen = tx[tx["ts"] < t1]
    tx_version = _ingest(lm, TRANSACTIONS, seen.drop(columns=["is_fraud", "pattern"]), contracts.TRANSACTIONS)
    history = rows[rows["event_ts"] < t1].drop(columns=["txn_id"])
    feat_version = _ingest(lm, fx.SOURCE_DATASET, history, contracts.USER_FEATURES)
    fx.register(lm)
    lm.features.materialize(actor=ACTOR)
    say(
        f"features: {len(history):,} point-in-time rows in dataset {fx.SOURCE_DATASET} -> view {fx.VIEW} "
        f"(+ on-demand {fx.ON_DEMAND}), materialised to the online store"
    )

    # 2. v1 -> champion -> endpoint ------------------------------------------------------------
    lineage = [tx_version, feat_version]
    v1 = _train(lm, cfg, tx, cfg.v1_day, lineage, say)
    out.versions[v1.version] = v1
    lm.registry.protect(
        MODEL,
        "champion",
        [BeatsCurrent("auc", HOLDOUT, label=LABEL, margin=0.0)],
        actor=ACTOR,
        reason="champion answers live card authorisations",
    )
    lm.registry.promote(MODEL, v1.version, "champion", actor=ACTOR, reason="first fraud model")
    spec = EndpointSpec(
        ENDPOINT,
        Single(f"{MODEL}@champion"),
        timeout_ms=cfg.timeout_ms,
        fallback=Fallback({"label": 0, "probability": None, "review": True}, status="fallback"),
        features=FeatureLookup("user_id", list(fx.FEATURE_REFS), request=list(fx.REQUEST)),
        description="Card-not-present fraud score per authorisation",
    )
    if _exists(endpoints, ENDPOINT):
        endpoints.update(ENDPOINT, spec, actor=ACTOR, reason="fraud demo re-run")
    else:
        endpoints.create(spec, actor=ACTOR, reason="fraud scoring goes live")
    say(
        f"endpoint {ENDPOINT}: Single({MODEL}@champion) = {MODEL}/{v1.version}, features looked up by user_id"
    )

    writer = inference.writer(flush_rows=500, flush_interval=0.2)
    runtime = EndpointRuntime(lm, log_writer=writer, seed=cfg.seed)
    runtime.refresh(force=True)
    replay = Replay(
        endpoint=ENDPOINT,
        runtime=runtime,
        inference=inference,
        features=lm.features,
        transactions=tx,
        feature_rows=rows,
        start=t1,
        push_every=cfg.push_every,
    )
    total = cfg.phase_requests * 5

    def tick(task: str) -> Callable[[int], None] | None:
        if progress is None:
            return None

        def step(n: int) -> None:
            tick.done += n  # type: ignore[attr-defined]
            progress(task, tick.done, total)  # type: ignore[attr-defined]

        return step

    tick.done = 0  # type: ignore[attr-defined]
    try:
        _phase(out, replay, "v1 live", cfg.phase_requests, tick("v1 live"), say)

        # 3. a week later: v2 -------------------------------------------------------------------
        t2 = cfg.day(cfg.v2_day)
        skipped = replay.jump(t2)
        say(
            f"a week passes ({skipped:,} transactions streamed to the feature store, "
            f"{replay.labels_sent:,} chargeback outcomes sent as feedback so far)"
        )
        v2 = _train(lm, cfg, tx, cfg.v2_day, lineage, say)
        out.versions[v2.version] = v2

        # 4. shadow ----------------------------------------------------------------------------
        endpoints.set_policy(
            ENDPOINT,
            Shadow(f"{MODEL}@champion", [f"{MODEL}/{v2.version}"], sample=1.0),
            actor=ACTOR,
            reason=f"{MODEL}/{v2.version} shadows the champion",
        )
        runtime.refresh(force=True)
        shadow_stats = _phase(out, replay, "shadow", cfg.phase_requests, tick("shadow"), say)
        runtime.drain_shadows(timeout=30)
        inference.flush()
        out.shadow = _shadow_summary(inference, shadow_stats)
        s = out.shadow
        say(
            f"shadow: {s.shadowed:,} requests scored by both; label agreement {_pct(s.agreement)}, "
            f"mean |p2 - p1| {_num(s.mean_abs_diff, 4)}, PSI {_num(s.psi)}; p99 {_num(s.primary_p99)} ms "
            f"(v1, on the response path) vs {_num(s.shadow_p99)} ms (v2); shadow errors {s.shadow_errors}"
        )
        if s.shadow_errors:
            raise LoopmlError(
                f"{MODEL}/{v2.version} failed {s.shadow_errors} shadow calls; it does not go to canary"
            )
        # The watchdog's PSI compares scores as logits over pooled, minimum-width bins, so a retrained
        # model that agrees on nearly every decision scores well below 0.1 here. The limit stays the
        # usual 0.25 unless the shadow, on identical requests, already measured more drift than a
        # third of it (a deliberately recalibrated model): small canary windows are noisier still.
        out.canary_psi_limit = round(max(0.25, 3.0 * (s.psi or 0.0)), 3)
        rule = RollbackRule(
            min_requests=cfg.min_canary_requests,
            max_p99_ratio=cfg.max_p99_ratio,
            max_psi=out.canary_psi_limit,
        )

        # 5. canary 10 % -> 50 % ----------------------------------------------------------------
        canary_ref = f"{MODEL}/{v2.version}"
        canary_since = pd.Timestamp.now(tz="UTC").to_pydatetime()
        for weight in (0.1, 0.5):
            endpoints.set_policy(
                ENDPOINT,
                Canary(f"{MODEL}@champion", canary_ref, weight=weight, rollback=rule),
                actor=ACTOR,
                reason=f"canary {weight:.0%} after a clean shadow",
            )
            runtime.refresh(force=True)
            name = f"canary {weight:.0%}"
            stats = _phase(out, replay, name, cfg.phase_requests, tick(name), say, check_every=50)
            check = _window(inference, rule, canary_since)
            check["phase"] = name
            out.canary_checks.append(check)
            say(
                f"  watchdog window: baseline n={check['baseline_n']} err={_pct(check['baseline_err'])} "
                f"p99={_num(check['baseline_p99'])} ms | canary n={check['canary_n']} "
                f"err={_pct(check['canary_err'])} p99={_num(check['canary_p99'])} ms | "
                f"PSI {_num(check['psi'])} (limit {out.canary_psi_limit})"
            )
            if stats.rollbacks:
                out.rollback_reason = stats.rollbacks[-1]["reason"]
                say(f"canary of {canary_ref} rolled back: {out.rollback_reason}")
                break

        # 6. chargebacks for the canary traffic, A/B verdict, promotion ------------------------
        if not out.rollback_reason:
            later = replay.clock + pd.Timedelta(days=cfg.label_maturity_days)
            replay.jump(later)
            ab = _analyse(lm, canary_since)
            if ab is not None:
                out.ab_text, out.ab_verdict = ab.to_text(), ab.verdict
                say("chargebacks for the canary traffic are in; analyse_ab on the canary window:")
                for line in out.ab_text.splitlines():
                    say(f"  {line}")
            try:
                endpoints.promote_canary(
                    ENDPOINT, actor=ACTOR, reason="clean shadow and canary", promote_to_alias="champion"
                )
                out.promoted = True
                out.gate_report = _gate_text(lm, v2.version)
                say(
                    f"promoted {canary_ref} to champion (gate: {out.gate_report}); endpoint -> Single(fraud@champion)"
                )
            except GateBlockedError as blocked:
                out.gate_report = blocked.report.render()
                endpoints.rollback_canary(ENDPOINT, actor=ACTOR, reason="the release gate blocked the canary")
                say(f"the release gate blocked {canary_ref}: {out.gate_report}")
            runtime.refresh(force=True)
        out.champion = _champion(lm)

        # 7. a broken v3 in canary --------------------------------------------------------------
        v3 = _train_broken(lm, cfg, tx, cfg.v2_day, lineage, say)
        out.versions[v3.version] = v3
        out.broken_version = v3.version
        endpoints.set_policy(
            ENDPOINT,
            Canary(f"{MODEL}@champion", f"{MODEL}/{v3.version}", weight=cfg.broken_weight, rollback=rule),
            actor=ACTOR,
            reason=f"canary {cfg.broken_weight:.0%} for {MODEL}/{v3.version}",
        )
        runtime.refresh(force=True)
        budget = min(replay.remaining - cfg.phase_requests // 5, cfg.phase_requests * 2)
        broken = _phase(
            out,
            replay,
            "broken canary",
            budget,
            tick("broken canary"),
            say,
            check_every=25,
            stop=lambda st: bool(st.rollbacks),
        )
        out.broken_canary_requests = broken.by_arm.get("canary", 0)
        out.broken_canary_errors = _canary_errors(inference, broken)
        if broken.rollbacks:
            out.broken_rolled_back = True
            out.rollback_reason = broken.rollbacks[-1]["reason"]
            say(f"watchdog rolled {MODEL}/{v3.version} back: {out.rollback_reason}")
        else:
            say(f"{MODEL}/{v3.version} was NOT rolled back within {budget} requests")
        runtime.refresh(force=True)
        _phase(out, replay, "after rollback", max(20, cfg.phase_requests // 5), tick("after rollback"), say)

        # 8. every label arrives; tables -------------------------------------------------------
        runtime.drain_shadows(timeout=30)
        inference.flush()
        replay.deliver_labels(None)
    finally:
        runtime.close()
        writer.close()
    out.labels_sent = replay.labels_sent
    out.feature_pushes = replay.pushes
    served = replay.frame()
    out.total_requests = len(served)
    out.failed_requests = int((served["status"] == "failed").sum())
    out.fallback_requests = int((served["status"] == "fallback").sum())
    out.latency = _latency(served)
    joined = inference.joined(ENDPOINT)
    out.labelled_records = int(joined["label"].notna().sum())
    out.comparison = _comparison(joined, cfg)
    out.final_policy = endpoints.get(ENDPOINT).spec.policy.to_dict()
    out.seconds = time.perf_counter() - started
    say(
        f"{out.total_requests:,} requests replayed: {out.failed_requests} failed, {out.fallback_requests} fallbacks; "
        f"{out.labels_sent:,} chargeback outcomes joined to the log; {replay.pushes} feature pushes"
    )
    return out


# -- steps ---------------------------------------------------------------------------------------


def _services(lm: Any) -> tuple[Any, Any]:
    """The endpoints service and the inference log (``lm.endpoints`` / ``lm.inference`` once wired)."""
    if getattr(type(lm), "endpoints", None) is not None:
        endpoints = lm.endpoints
    else:
        from loopml.serving.endpoints import Endpoints

        endpoints = Endpoints(lm.ctx)
    if getattr(type(lm), "inference", None) is not None:
        inference = lm.inference
    else:
        from loopml.serving.inference import InferenceLog

        inference = InferenceLog(lm.ctx)
    return endpoints, inference


def _ingest(lm: Any, name: str, frame: pd.DataFrame, contract: Any) -> Any:
    """Ingest under the app's contract (defined on first use) and return the new dataset version."""
    try:
        lm.datasets.get(name)
    except NotFoundError:
        lm.datasets.define(name, contract, description=f"fraud app: {name}")
    return lm.datasets.ingest(name, frame).version


def _exists(endpoints: Any, name: str) -> bool:
    return any(info.name == name for info in endpoints.list())


def _windowed(tx: pd.DataFrame, start: pd.Timestamp | None, end: pd.Timestamp) -> pd.DataFrame:
    mask = tx["ts"] < end
    if start is not None:
        mask &= tx["ts"] >= start
    return tx[mask]


def _frames(lm: Any, cfg: FraudConfig, tx: pd.DataFrame, day: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    train_end, holdout_start, holdout_end = cfg.training_window(day)
    train = fx.training_frame(lm, _windowed(tx, None, train_end))
    holdout = fx.training_frame(lm, _windowed(tx, holdout_start, holdout_end))
    return train, holdout


def _train(
    lm: Any, cfg: FraudConfig, tx: pd.DataFrame, day: int, lineage: list[Any], say: Callable[[str], None]
) -> TrainedVersion:
    """Train on matured labels before the holdout week, score on it, track, register."""
    train, holdout = _frames(lm, cfg, tx, day)
    kept = holdout[fx.MODEL_FEATURES].astype(float).assign(**{LABEL: holdout[LABEL].astype(int)})
    label_version = _ingest(lm, HOLDOUT, kept, contracts.HOLDOUT)
    description = f"LightGBM trained on day {day}: {len(train):,} transactions with matured labels"
    return _fit_register(lm, cfg, train, holdout, day, [*lineage, label_version], description, say)


def _train_broken(
    lm: Any, cfg: FraudConfig, tx: pd.DataFrame, day: int, lineage: list[Any], say: Callable[[str], None]
) -> TrainedVersion:
    """v3: the same job as v2, except that a filter drops one merchant category from its data."""
    train, holdout = _frames(lm, cfg, tx, day)
    dropped = CATEGORIES.index(BROKEN_CATEGORY)
    train = train[train["mcc"] != dropped]
    holdout = holdout[holdout["mcc"] != dropped]
    description = f"LightGBM + category table, day {day} (its job filtered out {BROKEN_CATEGORY!r})"
    return _fit_register(lm, cfg, train, holdout, day, lineage, description, say, broken=True)


def _fit_register(
    lm: Any,
    cfg: FraudConfig,
    train: pd.DataFrame,
    holdout: pd.DataFrame,
    day: int,
    lineage: list[Any],
    description: str,
    say: Callable[[str], None],
    *,
    broken: bool = False,
) -> TrainedVersion:
    X, y = xy(train)
    hX, hy = xy(holdout)
    params = {"day": day, "rows": len(train), "positives": int(y.sum()), "n_estimators": cfg.n_estimators}
    with lm.tracking.start_run(EXPERIMENT, name=f"fraud day {day}", params=params) as run:
        for version in lineage:
            run.log_input(version)
        booster = fit(train, cfg, seed=cfg.seed)
        model: Any = booster
        if broken:
            model = CategoryEncodedModel(booster, sorted(set(X["mcc"].astype(int))))
        p = booster.predict_proba(hX)[:, 1]
        scores = score(hy.to_numpy(), p, threshold=cfg.threshold, review_share=cfg.review_share)
        metrics = scores.metrics("holdout_")
        for key, value in metrics.items():
            run.log_metric(key, value)
        mv = lm.registry.register(
            MODEL,
            model,
            flavor="python" if broken else None,
            input_example=X.head(20),
            metrics=metrics,
            run_id=run.id,
            dataset_version_ids=[v.id for v in lineage],
            description=description,
            actor=ACTOR,
        )
    say(
        f"trained {MODEL}/{mv.number} ({description}): holdout AUC {_num(scores.auc)}, "
        f"precision@{cfg.review_share:.0%} {_pct(scores.precision_at_k)}, recall@{cfg.threshold} {_pct(scores.recall)} "
        f"on {scores.rows:,} later transactions ({scores.positives} chargebacks)"
    )
    return TrainedVersion(mv.number, day, len(train), int(y.sum()), scores, description)


def _phase(
    out: FraudStoryResult,
    replay: Replay,
    name: str,
    requests: int,
    progress: Callable[[int], None] | None,
    say: Callable[[str], None],
    *,
    check_every: int | None = None,
    stop: Callable[[PhaseStats], bool] | None = None,
) -> PhaseStats:
    stats = replay.run(name, requests, check_every=check_every, stop=stop, progress=progress)
    out.phases.append(stats)
    arms = ", ".join(f"{arm} {n}" for arm, n in sorted(stats.by_arm.items()))
    say(
        f"{name}: {stats.requests:,} requests ({arms}); {stats.failed} failed, {stats.fallback} fallbacks; "
        f"simulated {stats.sim_start:%b %d %H:%M} - {stats.sim_end:%b %d %H:%M}"
    )
    return stats


def _shadow_summary(inference: Any, stats: PhaseStats) -> ShadowSummary:
    records = inference.records(ENDPOINT, since=stats.started_at.to_pydatetime(), limit=1_000_000)
    primary_lat = records["latency_ms"].to_numpy(dtype=float) if len(records) else np.zeros(0)
    p1, p2, agree, lat, errors = [], [], [], [], 0
    for outputs, shadows in zip(records.get("outputs", []), records.get("shadow", []), strict=False):
        outputs, shadows = _json(outputs), _json(shadows)
        for entry in shadows or []:
            if entry.get("error"):
                errors += 1
                continue
            if entry.get("agreement") is not None:
                agree.append(float(entry["agreement"]))
            if entry.get("latency_ms") is not None:
                lat.append(float(entry["latency_ms"]))
            a, b = _prob(outputs), _prob(entry.get("outputs"))
            if a is not None and b is not None:
                p1.append(a)
                p2.append(b)
    a1, a2 = np.array(p1), np.array(p2)
    return ShadowSummary(
        requests=len(records),
        shadowed=len(p1),
        agreement=float(np.mean(agree)) if agree else None,
        mean_abs_diff=float(np.mean(np.abs(a1 - a2))) if len(a1) else None,
        psi=_psi(a1, a2) if len(a1) >= 20 else None,
        primary_p50=_pctl(primary_lat, 50),
        primary_p99=_pctl(primary_lat, 99),
        shadow_p50=_pctl(np.array(lat), 50),
        shadow_p99=_pctl(np.array(lat), 99),
        shadow_errors=errors,
    )


def _window(inference: Any, rule: RollbackRule, since: Any) -> dict[str, Any]:
    """The watchdog's view of the canary (same numbers it decides on), for the report."""
    stats = inference.window_stats(ENDPOINT, since=since)
    out: dict[str, Any] = {}
    for arm in ("baseline", "canary"):
        s = stats.get(arm)
        n = int(s.n) if s is not None else 0
        out[f"{arm}_n"] = n
        out[f"{arm}_err"] = (s.errors / n) if s is not None and n else None
        out[f"{arm}_p99"] = s.p99 if s is not None else None
        out[f"{arm}_outputs"] = np.asarray(s.outputs, dtype=float) if s is not None else np.zeros(0)
    b, c = out.pop("baseline_outputs"), out.pop("canary_outputs")
    out["psi"] = _psi(b, c) if len(b) >= 20 and len(c) >= 20 else None
    return out


def _analyse(lm: Any, since: Any) -> Any:
    from loopml.serving.inference import analyse_ab

    try:
        return analyse_ab(lm, ENDPOINT, since=since, n_boot=500, min_labelled=30)
    except LoopmlError as exc:
        raise LoopmlError(f"analyse_ab on the canary window failed: {exc}") from exc


def _gate_text(lm: Any, version: int) -> str:
    results = lm.registry.gate_results(MODEL, version, alias="champion")
    if not results:
        return "no gate results"
    last = results[-1]
    return f"{last.gate} {'passed' if last.passed else 'blocked'}: {last.summary}"


def _champion(lm: Any) -> int | None:
    for alias in lm.registry.aliases(MODEL):
        if alias.alias == "champion":
            return int(alias.version)
    return None


def _latency(served: pd.DataFrame) -> pd.DataFrame:
    """p50/p95/p99 of the server-side latency per phase and arm (what /metrics histograms show)."""
    ok = served[served["status"] != "failed"]
    rows = []
    for (phase, arm, version), group in ok.groupby(["phase", "arm", "version"], sort=False, dropna=False):
        lat = group["latency_ms"].to_numpy(dtype=float)
        client = group["client_ms"].to_numpy(dtype=float)
        rows.append(
            {
                "phase": phase,
                "arm": arm,
                "version": None if pd.isna(version) else int(version),
                "requests": len(group),
                "p50_ms": _pctl(lat, 50),
                "p95_ms": _pctl(lat, 95),
                "p99_ms": _pctl(lat, 99),
                "client_p99_ms": _pctl(client, 99),
            }
        )
    return pd.DataFrame(rows)


def _canary_errors(inference: Any, stats: PhaseStats) -> int:
    """Canary calls that failed and were answered by the baseline instead (logged as canary errors)."""
    inference.flush()
    assert stats.started_at is not None
    records = inference.records(ENDPOINT, since=stats.started_at.to_pydatetime(), limit=1_000_000)
    if not len(records):
        return 0
    return int(((records["arm"] == "canary") & (records["status"] == "error")).sum())


def _comparison(joined: pd.DataFrame, cfg: FraudConfig) -> pd.DataFrame:
    """Per model version, from the inference log joined with the chargebacks that came back."""
    rows = []
    answered = joined[joined["status"] == "ok"]
    for version, group in answered.groupby("version", sort=True):
        labelled = group[group["label"].notna()]
        y = pd.to_numeric(labelled["label"], errors="coerce").to_numpy(dtype=float)
        s = score(
            y,
            labelled["output"].to_numpy(dtype=float),
            threshold=cfg.threshold,
            review_share=cfg.review_share,
        )
        rows.append(
            {
                "version": int(version),
                "requests": len(group),
                "labelled": s.rows,
                "chargebacks": s.positives,
                "auc": s.auc,
                "precision_at_k": s.precision_at_k,
                "precision": s.precision,
                "recall": s.recall,
            }
        )
    return pd.DataFrame(rows)


# -- small helpers -------------------------------------------------------------------------------


def _json(value: Any) -> Any:
    if isinstance(value, str | bytes):
        import orjson

        return orjson.loads(value)
    return value


def _prob(outputs: Any) -> float | None:
    first = outputs[0] if isinstance(outputs, list) and outputs else outputs
    if isinstance(first, dict):
        value = first.get("probability")
        return float(value) if isinstance(value, int | float) else None
    return None


def _psi(expected: np.ndarray, actual: np.ndarray) -> float | None:
    """The watchdog's own prediction PSI (logit scale, pooled bins), so the report shows what it decides on."""
    if not len(expected) or not len(actual):
        return None
    return psi(expected, actual)


def _pctl(values: np.ndarray, q: float) -> float | None:
    return float(np.percentile(values, q)) if len(values) else None


def _num(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def _patterns(counts: dict[str, int]) -> str:
    return ", ".join(f"{k.replace('_', ' ')} {v:,}" for k, v in sorted(counts.items()) if k != "none")
