"""The starter story, told through loopml's public API only.

A pipeline (``starter``) of five steps: ingest messy data (the contract quarantines the bad rows) -> train three models with tracked runs ->
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
from sklearn.pipeline import Pipeline as SkPipeline
from sklearn.preprocessing import OrdinalEncoder

import loopml
from loopml import LoopmlError
from loopml.apps.starter.simulate import PLANS, simulate_customers
from loopml.data import Column, Contract
from loopml.pipelines import Pipeline, step
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
    pipeline_run_id: str = ""
    scored_rows: int = 0
    top_risk: pd.DataFrame | None = None
    seconds: float = 0.0


@step
def customers(rows: int) -> dict:
    """The raw export, defects included, and which rows the simulator broke (for checking quarantine)."""
    frame, injected = simulate_customers(rows)
    train_part, holdout_part = _split(frame)
    return {
        "train": train_part,
        "holdout": holdout_part,
        "injected_train_ids": sorted(injected & set(train_part["customer_id"].astype(int))),
    }


@step
def ingest(customers: dict, lm: loopml.Loopml) -> dict:
    """The contract keeps bad rows out of the version, in quarantine, with the failed check."""
    lm.datasets.define("customers", CUSTOMERS, description="Subscription customers with churn labels")
    kept = lm.datasets.ingest("customers", customers["train"])
    holdout = lm.datasets.ingest("customers_holdout", customers["holdout"], contract=CUSTOMERS)
    quarantine = lm.datasets.quarantine("customers", kept.version.number, limit=100_000)
    return {
        "version": kept.version.number,
        "version_id": kept.version.id,
        "holdout_version": holdout.version.number,
        "holdout_rows": holdout.rows_ok,
        "rows_in": kept.rows_in,
        "rows_ok": kept.rows_ok,
        "rows_quarantined": kept.rows_quarantined,
        "by_check": {f"{c.column} {c.check}": c.rows for c in kept.report.checks},
        "quarantined_ids": sorted({int(r["customer_id"]) for r in quarantine["row"] if r.get("customer_id")}),
    }


@step
def train(ingest: dict, lm: loopml.Loopml, pipeline_run_id: str) -> dict:
    """Three candidates, each a tracked run with lineage to the dataset version it learned from."""
    data = lm.datasets.read("customers", ingest["version"])
    evaluation = lm.datasets.read("customers_holdout", ingest["holdout_version"])
    candidates = {
        "baseline (tenure only)": _baseline(),
        "lightgbm (all features)": _lightgbm(seed=1),
        "lightgbm (broken labels)": _lightgbm(seed=2),
    }
    out = {}
    for label, model in candidates.items():
        y = data[LABEL].to_numpy()
        if "broken" in label:  # a training job that silently shuffled its labels
            y = np.random.default_rng(3).permutation(y)
        params = {"model": label, "rows": len(data)}
        with lm.tracking.start_run(
            "churn", name=label, params=params, pipeline_run_id=pipeline_run_id
        ) as run:
            run.log_input(lm.datasets.version("customers", ingest["version"]))
            model.fit(data[FEATURES], y)
            auc = _auc(evaluation[LABEL].to_numpy(), model.predict_proba(evaluation[FEATURES])[:, 1])
            run.log_metric("holdout_auc", auc)
            mv = lm.registry.register(
                MODEL,
                model,
                input_example=data[FEATURES].head(20),
                metrics={"holdout_auc": auc},
                run_id=run.id,
                dataset_version_ids=[ingest["version_id"]],
                description=label,
            )
        out[label] = {"version": mv.number, "auc": auc, "run": run.id}
    return out


@step
def release(train: dict, lm: loopml.Loopml) -> list:
    """``champion`` is protected: it moves only when a candidate beats the holder on held-out data."""
    lm.registry.protect(
        MODEL,
        "champion",
        [
            BeatsCurrent("auc", "customers_holdout", label=LABEL, margin=0.01),
            LatencyBudget(p99_ms=100.0),  # the online budget of MISSION.md
        ],
        actor="demo",
        reason="champion serves the retention campaign",
    )
    outcomes = []
    for label, candidate in train.items():
        try:
            report = lm.registry.promote(
                MODEL, candidate["version"], "champion", actor="demo", reason=f"candidate: {label}"
            )
        except GateBlockedError as blocked:
            report = blocked.report
        outcomes.append(
            {
                "version": candidate["version"],
                "passed": report.passed,
                "report": report.render(),
                "summary": _gate_summary(report),
            }
        )
    return outcomes


@step
def score(release: list, lm: loopml.Loopml) -> dict:
    """Batch scoring with whatever holds the alias now, stored as a dataset version of its own."""
    champion = lm.registry.load(f"{MODEL}@champion")
    latest = lm.datasets.read("customers")
    proba = champion.predict_proba(latest[FEATURES])[:, 1]
    number = champion.version.number
    scores = pd.DataFrame(
        {"customer_id": latest["customer_id"], "churn_probability": proba, "model_version": number}
    )
    scored = lm.datasets.ingest("churn_scores", scores, contract=SCORES)
    return {
        "champion": number,
        "rows": scored.rows_ok,
        "top_risk": scores.nlargest(5, "churn_probability").reset_index(drop=True),
    }


STARTER = Pipeline("starter", steps=[customers, ingest, train, release, score], params={"rows": 20_000})


def run_story(lm: loopml.Loopml, *, rows: int = 20_000, say: Callable[[str], None] = print) -> StoryResult:
    """Run the ``starter`` pipeline and tell what each step did."""
    started = time.perf_counter()
    run = lm.pipelines.run(STARTER, {"rows": rows})
    if run.status != "succeeded":
        failed = [s for s in run.steps if s.error]
        detail = failed[0].error.strip().splitlines()[-1] if failed else run.error
        raise LoopmlError(
            f"the starter pipeline failed (run {run.id}): {detail}. See `loopml pipelines show {run.id} --logs`."
        )
    got = {
        name: lm.pipelines.output(run.id, name)
        for name in ("customers", "ingest", "train", "release", "score")
    }
    ing, trained, outcomes, scored = got["ingest"], got["train"], got["release"], got["score"]
    out = StoryResult(
        pipeline_run_id=run.id,
        rows_in=ing["rows_in"],
        rows_ok=ing["rows_ok"],
        rows_quarantined=ing["rows_quarantined"],
        quarantined_by_check=ing["by_check"],
        injected_bad_ids=set(got["customers"]["injected_train_ids"]),
        quarantined_ids=set(ing["quarantined_ids"]),
        auc={label: c["auc"] for label, c in trained.items()},
        gate_outcomes=[(o["version"], o["passed"], o["report"]) for o in outcomes],
        champion_version=scored["champion"],
        scored_rows=scored["rows"],
        top_risk=scored["top_risk"],
    )
    say(
        f"ingest   customers v{ing['version']}: {out.rows_ok:,} rows kept, "
        f"{out.rows_quarantined} quarantined ({_fmt_checks(out.quarantined_by_check)})"
    )
    say(
        f"ingest   customers_holdout v{ing['holdout_version']}: {ing['holdout_rows']:,} rows for release gates"
    )
    for label, c in trained.items():
        say(f"train    {MODEL}/{c['version']} {label}: holdout AUC {c['auc']:.3f} (run {c['run'][:8]})")
    for o in outcomes:
        verdict = "PASSED" if o["passed"] else "BLOCKED"
        say(f"gate     {MODEL}/{o['version']} -> champion: {verdict} ({o['summary']})")
    say(
        f"score    {MODEL}@champion (v{out.champion_version}) scored {out.scored_rows:,} customers -> churn_scores"
    )
    say(f"pipeline starter run {run.id[:8]}: {len(run.steps)} steps, see `loopml pipelines show {run.id}`")
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


def _baseline() -> SkPipeline:
    select = ColumnTransformer([("tenure", "passthrough", ["tenure_months"])], remainder="drop")
    return SkPipeline([("select", select), ("model", LogisticRegression(max_iter=500))])


def _lightgbm(seed: int) -> SkPipeline:
    model = lgb.LGBMClassifier(
        n_estimators=200, learning_rate=0.05, num_leaves=15, random_state=seed, n_jobs=1, verbose=-1
    )
    return SkPipeline([("encode", _encoder(FEATURES)), ("model", model)])


def _auc(y: np.ndarray, score: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(y, score))


def _fmt_checks(by_check: dict[str, int]) -> str:
    return ", ".join(f"{check}: {n}" for check, n in sorted(by_check.items())) or "none"


def _gate_summary(report: Any) -> str:
    return "; ".join(f"{r.gate} {'ok' if r.passed else 'failed'}" for r in report.results) or "no gates"
