"""The starter story, told through loopml's public API only.

ingest messy data (the contract quarantines the bad rows) -> train three models with tracked runs ->
register them -> the protected ``champion`` alias moves only through release gates: a weak baseline
becomes the first champion, a better LightGBM passes the gates, a broken model is blocked -> the
champion scores the latest dataset version as a batch job, stored as a dataset of its own.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OrdinalEncoder

import loopml
from loopml.apps.starter.simulate import PLANS, simulate_customers
from loopml.data import Column, Contract
from loopml.registry import BeatsCurrent, GateBlockedError, LatencyBudget

MODEL = "churn"
FEATURES = ["age", "plan", "tenure_months", "monthly_charges", "support_tickets", "usage_hours"]
LABEL = "churned"

CUSTOMERS = Contract(
    columns=[
        Column("customer_id", "int", min=1, unique=True),
        Column("signup_at", "datetime"),
        Column("age", "int", min=18, max=120),
        Column("plan", "str", allowed=list(PLANS)),
        Column("tenure_months", "int", min=1, max=600),
        Column("monthly_charges", "float", min=0, max=1000),
        Column("support_tickets", "int", min=0),
        Column("usage_hours", "float", min=0),
        Column(LABEL, "int", allowed=[0, 1]),
    ],
    max_bad_share=0.05,
)
SCORES = Contract(
    columns=[
        Column("customer_id", "int", min=1, unique=True),
        Column("churn_probability", "float", min=0, max=1),
        Column("model_version", "int", min=1),
    ],
    max_bad_share=0.0,
)


@dataclass
class StoryResult:
    """What the story did, for the CLI to print and for tests to check."""

    rows_in: int = 0
    rows_ok: int = 0
    rows_quarantined: int = 0
    quarantined_by_check: dict[str, int] = field(default_factory=dict)
    #: rows of the training split broken on purpose by the simulator
    injected_bad_ids: set[int] = field(default_factory=set)
    quarantined_ids: set[int] = field(default_factory=set)
    auc: dict[str, float] = field(default_factory=dict)
    gate_outcomes: list[tuple[int, bool, str]] = field(default_factory=list)
    champion_version: int | None = None
    scored_rows: int = 0
    top_risk: pd.DataFrame | None = None
    seconds: float = 0.0


def run_story(lm: loopml.Loopml, *, rows: int = 20_000, say: Callable[[str], None] = print) -> StoryResult:
    started = time.perf_counter()
    out = StoryResult()
    frame, injected = simulate_customers(rows)

    # 1. ingest: the contract keeps the bad rows out of the version, in quarantine, with the reason.
    lm.datasets.define("customers", CUSTOMERS, description="Subscription customers with churn labels")
    train_part, holdout_part = _split(frame)
    out.injected_bad_ids = injected & set(train_part["customer_id"].astype(int))
    ingested = lm.datasets.ingest("customers", train_part)
    out.rows_in, out.rows_ok, out.rows_quarantined = ingested.rows_in, ingested.rows_ok, ingested.rows_quarantined
    out.quarantined_by_check = {f"{c.column} {c.check}": c.rows for c in ingested.report.checks}
    quarantine = lm.datasets.quarantine("customers", ingested.version.number, limit=100_000)
    out.quarantined_ids = {int(r["customer_id"]) for r in quarantine["row"] if r.get("customer_id") is not None}
    say(
        f"ingest   customers v{ingested.version.number}: {out.rows_ok:,} rows kept, "
        f"{out.rows_quarantined} quarantined ({_fmt_checks(out.quarantined_by_check)})"
    )
    holdout = lm.datasets.ingest("customers_holdout", holdout_part, contract=CUSTOMERS)
    say(f"ingest   customers_holdout v{holdout.version.number}: {holdout.rows_ok:,} rows for release gates")

    train = lm.datasets.read("customers", ingested.version.number)
    evaluation = lm.datasets.read("customers_holdout", holdout.version.number)

    # 2. train three candidates, each a tracked run with lineage to the dataset version.
    candidates = {
        "baseline (tenure only)": _baseline(),
        "lightgbm (all features)": _lightgbm(seed=1),
        "lightgbm (broken labels)": _lightgbm(seed=2),
    }
    versions: dict[str, int] = {}
    for label, model in candidates.items():
        y = train[LABEL].to_numpy()
        if "broken" in label:  # a training job that silently shuffled its labels
            y = np.random.default_rng(3).permutation(y)
        with lm.tracking.start_run("churn", name=label, params={"model": label, "rows": len(train)}) as run:
            run.log_input(ingested.version)
            model.fit(train[FEATURES], y)
            proba = model.predict_proba(evaluation[FEATURES])[:, 1]
            auc = _auc(evaluation[LABEL].to_numpy(), proba)
            run.log_metric("holdout_auc", auc)
            out.auc[label] = auc
            mv = lm.registry.register(
                MODEL,
                model,
                input_example=train[FEATURES].head(20),
                metrics={"holdout_auc": auc},
                run_id=run.id,
                dataset_version_ids=[ingested.version.id],
                description=label,
            )
        versions[label] = mv.number
        say(f"train    {MODEL}/{mv.number} {label}: holdout AUC {auc:.3f} (run {run.id[:8]})")

    # 3. the champion alias is protected: it moves only when a candidate beats the holder.
    lm.registry.protect(
        MODEL,
        "champion",
        [
            BeatsCurrent("auc", "customers_holdout", label=LABEL, margin=0.01),
            LatencyBudget(p99_ms=100.0)  # the online budget of MISSION.md,
        ],
        actor="demo",
        reason="champion serves the retention campaign",
    )
    for label, number in versions.items():
        try:
            report = lm.registry.promote(MODEL, number, "champion", actor="demo", reason=f"candidate: {label}")
            out.gate_outcomes.append((number, True, report.render()))
            say(f"gate     {MODEL}/{number} -> champion: PASSED ({_gate_summary(report)})")
        except GateBlockedError as blocked:
            out.gate_outcomes.append((number, False, blocked.report.render()))
            say(f"gate     {MODEL}/{number} -> champion: BLOCKED ({_gate_summary(blocked.report)})")

    # 4. batch scoring with whatever holds the alias now, stored as a dataset of its own.
    champion = lm.registry.load(f"{MODEL}@champion")
    out.champion_version = champion.version.number
    latest = lm.datasets.read("customers")
    proba = champion.predict_proba(latest[FEATURES])[:, 1]
    scores = pd.DataFrame(
        {"customer_id": latest["customer_id"], "churn_probability": proba, "model_version": champion.version.number}
    )
    scored = lm.datasets.ingest("churn_scores", scores, contract=SCORES)
    out.scored_rows = scored.rows_ok
    out.top_risk = scores.nlargest(5, "churn_probability").reset_index(drop=True)
    say(f"score    {MODEL}@champion (v{champion.version.number}) scored {out.scored_rows:,} customers -> churn_scores")
    out.seconds = time.perf_counter() - started
    return out


def _split(frame: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A stable 80/20 split by customer id, so re-running the demo lands on the same versions."""
    bucket = frame["customer_id"].map(lambda i: hashlib.sha256(str(i).encode()).digest()[0] % 5)
    return frame[bucket != 0].reset_index(drop=True), frame[bucket == 0].reset_index(drop=True)


def _encoder(columns: list[str]) -> ColumnTransformer:
    return ColumnTransformer(
        [("plan", OrdinalEncoder(categories=[list(PLANS)]), ["plan"])] if "plan" in columns else [],
        remainder="passthrough",
    )


def _baseline() -> Pipeline:
    select = ColumnTransformer([("tenure", "passthrough", ["tenure_months"])], remainder="drop")
    return Pipeline([("select", select), ("model", LogisticRegression(max_iter=500))])


def _lightgbm(seed: int) -> Pipeline:
    model = lgb.LGBMClassifier(n_estimators=200, learning_rate=0.05, num_leaves=15, random_state=seed, n_jobs=1, verbose=-1)
    return Pipeline([("encode", _encoder(FEATURES)), ("model", model)])


def _auc(y: np.ndarray, score: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(y, score))


def _fmt_checks(by_check: dict[str, int]) -> str:
    return ", ".join(f"{check}: {n}" for check, n in sorted(by_check.items())) or "none"


def _gate_summary(report: Any) -> str:
    return "; ".join(f"{r.gate} {'ok' if r.passed else 'failed'}" for r in report.results) or "no gates"
