"""``fraud.retrain``: the pipeline the closed loop runs when the fraud model goes stale.

It trains on what production actually saw: the requests in the ``fraud`` endpoint's inference log,
joined with the chargebacks that came back as feedback, plus the older labelled history in the
``fraud_transactions`` dataset. Features come from the feature store by a point-in-time lookup just
before each transaction, the same definitions serving uses.

The data's own clock decides what is labelled: ``as_of`` is the newest logged request, and a request
counts once its label arrived (chargebacks come within ``maturity_days``; an undisputed transaction
is labelled legitimate when its window closes). The newest fully matured ``eval_days`` are held out
as the evaluation set; the job ingests them as a new version of ``fraud_loop_eval``, which is the
dataset the ``champion`` alias's ``BeatsCurrent`` gate reads. So every candidate is judged against
the current champion on the most recent labelled traffic, and the lineage says which version that was.

``amount_source`` reproduces a real training/serving skew: ``"ledger"`` reads amounts from the
ledger, which stores minor units (cents), while the payment gateway sends major units to serving.
The job's evaluation data has the same skew, so the offline gate cannot see it; only live traffic does.
"""

from __future__ import annotations

from datetime import UTC
from typing import Any

import numpy as np
import orjson
import pandas as pd

from loopml.apps.fraud import contracts
from loopml.apps.fraud import features as fx
from loopml.apps.fraud.config import FraudConfig
from loopml.apps.fraud.model import LABEL, MODEL, fit, score, xy
from loopml.errors import NotFoundError, ValidationError
from loopml.pipelines import Pipeline, register, registered, step

PIPELINE = "fraud.retrain"
EVAL_DATASET = "fraud_loop_eval"
HISTORY_DATASET = "fraud_transactions"
EXPERIMENT = "fraud-loop"
AMOUNT_SOURCES = {"gateway": 1.0, "ledger": 100.0}
#: most log records one retrain reads (the newest); a fraud team would read a partitioned export
LOG_LIMIT = 1_000_000
DEFAULT_PARAMS: dict[str, Any] = {
    "endpoint": "fraud",
    "history_dataset": HISTORY_DATASET,
    "eval_dataset": EVAL_DATASET,
    "maturity_days": 1.0,
    "eval_days": 1.0,
    "amount_source": "gateway",
    "n_estimators": 60,
    "learning_rate": 0.05,
    "seed": 11,
    "loop_run_id": 0,
}


def logged_transactions(lm: Any, endpoint: str) -> pd.DataFrame:
    """The endpoint's answered requests as transactions: request fields, ``ts`` (log time, naive UTC),
    ``label`` (None until feedback arrived)."""
    records = lm.inference.records(endpoint, limit=LOG_LIMIT)
    if not len(records):
        return pd.DataFrame(columns=["request_id", "ts", "user_id", *fx.REQUEST, LABEL])
    records = records[records["status"] == "ok"]
    rows = [_first(v) for v in records["inputs"]]
    frame = pd.DataFrame.from_records(rows, columns=["user_id", *fx.REQUEST])
    frame.insert(0, "request_id", records["request_id"].to_numpy())
    frame.insert(1, "ts", naive_utc(records["at"]).to_numpy())
    labels = lm.inference.joined(endpoint)[["request_id", "label"]]
    frame = frame.merge(labels, on="request_id", how="left")
    return frame.dropna(subset=["user_id", *fx.REQUEST]).reset_index(drop=True)


def split(
    logged: pd.DataFrame, history: pd.DataFrame, *, maturity_days: float, eval_days: float
) -> tuple[pd.DataFrame, pd.DataFrame, pd.Timestamp]:
    """(train, eval, as_of): eval = a third of the labelled log rows in the newest matured
    ``eval_days`` (a stable hash of card and time picks them); train = the labelled history plus
    every other labelled log row."""
    if not len(logged):
        raise ValidationError(
            "the endpoint's inference log is empty: nothing to retrain on yet", field="endpoint"
        )
    as_of = pd.Timestamp(logged["ts"].max())
    cut = as_of - pd.Timedelta(days=maturity_days)
    start = cut - pd.Timedelta(days=eval_days)
    labelled = logged[logged[LABEL].notna()].copy()
    labelled[LABEL] = pd.to_numeric(labelled[LABEL]).astype(int)
    # every third request of the newest matured window (by a stable hash of card and time): the eval set
    # must hold the newest pattern, and so must the training data
    key = labelled[["user_id", "ts"]].astype("int64")
    sample = pd.util.hash_pandas_object(key, index=False).to_numpy() % 3 == 0
    in_eval = (labelled["ts"] >= start) & (labelled["ts"] < cut) & sample
    evaluation = labelled[in_eval]
    first_logged = logged["ts"].min()
    history = history.assign(
        ts=naive_utc(history["ts"]), label_available_at=naive_utc(history["label_available_at"])
    )
    past = history[(history["ts"] < first_logged) & (history["label_available_at"] <= as_of)]
    cols = ["ts", "user_id", *fx.REQUEST, LABEL]
    train = pd.concat([past[cols], labelled.loc[~in_eval, cols]], ignore_index=True)
    return _with_ids(train), _with_ids(evaluation[cols]), as_of


def naive_utc(values: Any) -> pd.Series:
    """Times as naive UTC ``datetime64[us]`` (the simulator's and the feature store's convention)."""
    ts = pd.to_datetime(pd.Series(values).reset_index(drop=True), utc=True)
    return ts.dt.tz_convert(UTC).dt.tz_localize(None).astype("datetime64[us]")


def _with_ids(frame: pd.DataFrame) -> pd.DataFrame:
    frame = frame.sort_values("ts", kind="stable").reset_index(drop=True)
    frame.insert(0, "txn_id", np.arange(1, len(frame) + 1, dtype=np.int64))
    for name, dtype in fx.REQUEST.items():
        frame[name] = frame[name].astype(float if dtype == "float" else np.int64)
    frame["user_id"] = frame["user_id"].astype(np.int64)
    return frame


@step(cache=False)
def retrain(
    lm: Any,
    pipeline_run_id: str,
    endpoint: str,
    history_dataset: str,
    eval_dataset: str,
    maturity_days: float,
    eval_days: float,
    amount_source: str,
    n_estimators: int,
    learning_rate: float,
    seed: int,
    loop_run_id: int,
) -> dict:
    """Train a fraud model on recent labelled traffic, refresh the gate's eval set, register the version."""
    if amount_source not in AMOUNT_SOURCES:
        raise ValidationError(
            f"amount_source={amount_source!r}: use one of {sorted(AMOUNT_SOURCES)}", field="amount_source"
        )
    for name, value in (("maturity_days", maturity_days), ("eval_days", eval_days)):
        if not isinstance(value, int | float) or not 0 < value <= 90:
            raise ValidationError(f"{name}={value!r}: give days in (0, 90]", field=name)
    logged = logged_transactions(lm, endpoint)
    history = lm.datasets.read(history_dataset)
    train_tx, eval_tx, as_of = split(logged, history, maturity_days=maturity_days, eval_days=eval_days)
    scale = AMOUNT_SOURCES[amount_source]
    if scale != 1.0:  # the skew: this source's amounts are in cents, the gateway's in dollars
        train_tx["amount"] = train_tx["amount"] * scale
        eval_tx["amount"] = eval_tx["amount"] * scale
    train = fx.training_frame(lm, train_tx)
    holdout = fx.training_frame(lm, eval_tx)
    kept = holdout[fx.MODEL_FEATURES].astype(float).assign(**{LABEL: holdout[LABEL].astype(int)})
    eval_version = _ingest_eval(lm, eval_dataset, kept)
    cfg = FraudConfig.small(n_estimators=n_estimators, learning_rate=learning_rate, seed=seed)
    X, y = xy(train)
    hX, hy = xy(holdout)
    params = {
        "as_of": as_of.isoformat(),
        "train_rows": len(train),
        "train_positives": int(y.sum()),
        "eval_rows": len(holdout),
        "amount_source": amount_source,
        "loop_run_id": loop_run_id,
        "n_estimators": n_estimators,
    }
    with lm.tracking.start_run(
        EXPERIMENT, name=f"retrain as of {as_of:%b %d %H:%M}", params=params, pipeline_run_id=pipeline_run_id
    ) as run:
        run.log_input(eval_version)
        booster = fit(train, cfg, seed=seed)
        p = booster.predict_proba(hX)[:, 1]
        scores = score(hy.to_numpy(), p, threshold=cfg.threshold, review_share=cfg.review_share)
        metrics = scores.metrics("eval_")
        for key, value in metrics.items():
            run.log_metric(key, value)
        mv = lm.registry.register(
            MODEL,
            booster,
            input_example=X.head(20),
            metrics=metrics,
            run_id=run.id,
            dataset_version_ids=[eval_version.id],
            description=(
                f"fraud.retrain as of {as_of:%Y-%m-%d %H:%M}: {len(train):,} labelled transactions "
                f"(amounts from the {amount_source})"
            ),
            actor="fraud.retrain",
        )
    return {
        "model_ref": f"{MODEL}/{mv.number}",
        "as_of": as_of.isoformat(),
        "train_rows": len(train),
        "train_positives": int(y.sum()),
        "eval_rows": len(holdout),
        "eval_positives": int(hy.sum()),
        "eval_dataset_version": eval_version.number,
        "eval_auc": scores.auc,
        "amount_source": amount_source,
    }


def _ingest_eval(lm: Any, name: str, frame: pd.DataFrame) -> Any:
    try:
        lm.datasets.get(name)
    except NotFoundError:
        lm.datasets.define(name, contracts.HOLDOUT, description="fraud: the champion gate's recent eval set")
    return lm.datasets.ingest(name, frame).version


def _first(inputs: Any) -> dict[str, Any]:
    if isinstance(inputs, str | bytes):
        inputs = orjson.loads(inputs)
    if isinstance(inputs, list):
        inputs = inputs[0] if inputs else {}
    return inputs if isinstance(inputs, dict) else {}


def register_retrain_pipeline(**params: Any) -> Pipeline:
    """Register ``fraud.retrain`` in this process (idempotent); ``params`` override the defaults."""
    unknown = sorted(set(params) - set(DEFAULT_PARAMS))
    if unknown:
        raise ValidationError(
            f"unknown retrain param(s) {unknown}; known: {sorted(DEFAULT_PARAMS)}", field=unknown[0]
        )
    merged = {**DEFAULT_PARAMS, **params}
    existing = registered().get(PIPELINE)
    if existing is not None and existing.params == merged:
        return existing
    return register(
        Pipeline(
            PIPELINE,
            [retrain],
            params=merged,
            description="Retrain the fraud model on recent labelled traffic (the closed loop's action)",
        )
    )
