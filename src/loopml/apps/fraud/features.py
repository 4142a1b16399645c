"""User features for fraud scoring, defined once and served from the feature store.

``user_txn_stats`` holds, per user and transaction, the user's state *after* that transaction:
rolling spend and counts over 1 h / 24 h / 7 d, tiny charges in the last hour (card testing),
distinct merchants in 24 h (account takeover), the running mean amount and the usual hour. Rows are
stamped with the transaction's time, so a point-in-time lookup just before a transaction sees exactly
the history a live system had when it was scored. The windows are evaluated at the user's latest
transaction; that is what the online store holds between two transactions, in training and serving
alike.

``txn_context`` is the on-demand part, computed at request time by the same function in training and
serving: the amount against the user's mean, how far the hour is from the user's usual hour, and
whether the merchant is outside the user's home region. It takes and returns plain numpy columns
(its first parameter is annotated ``Mapping[str, np.ndarray]``), so the feature store calls it
without building a one-row DataFrame per request: ~0.05 ms per lookup instead of ~1 ms.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from loopml.errors import ValidationError
from loopml.features import DatasetSource, Entity, FeatureView, OnDemandFeature

VIEW = "user_txn_stats"
ON_DEMAND = "txn_context"
SOURCE_DATASET = "fraud_user_features"
USER = Entity("user", join_key="user_id", description="A card holder")

STATS: dict[str, str] = {
    "spend_1h": "float",
    "count_1h": "int",
    "spend_24h": "float",
    "count_24h": "int",
    "spend_7d": "float",
    "count_7d": "int",
    "small_count_1h": "int",
    "distinct_merchants_24h": "int",
    "mean_amount": "float",
    "txn_count": "int",
    "usual_hour": "float",
    "home_region": "int",
}
CONTEXT: dict[str, str] = {"amount_ratio": "float", "hour_gap": "float", "is_foreign": "int"}
#: request fields a caller sends with each transaction (they are model inputs too)
REQUEST: dict[str, str] = {"amount": "float", "hour": "int", "mcc": "int", "merchant_region": "int"}
#: the stored features the model reads (home_region and usual_hour only feed txn_context)
MODEL_STATS = [n for n in STATS if n not in ("home_region",)]
MODEL_FEATURES = [*MODEL_STATS, *CONTEXT, *REQUEST]
FEATURE_REFS = [f"{VIEW}:{n}" for n in MODEL_STATS] + [f"{ON_DEMAND}:{n}" for n in CONTEXT]
SMALL_AMOUNT = 5.0
_WINDOWS = {"1h": 3600, "24h": 86400, "7d": 7 * 86400}
#: a lookup "just before" a transaction: rows stamped at the transaction itself are not visible
LOOKUP_OFFSET = pd.Timedelta(milliseconds=1)


def txn_context(cols: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Request-time features; importable (not a lambda) so any process can rebuild them.

    Dict in, dict out (see ``loopml.features.ondemand``): this runs inside every online request,
    where a pandas frame would cost more than the model itself. A DataFrame works too (its columns
    are read the same way), which keeps ad-hoc calls in notebooks simple.
    """
    mean = _floats(cols["mean_amount"])
    usual = _floats(cols["usual_hour"])
    home = _floats(cols["home_region"])
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = _floats(cols["amount"]) / np.where(mean > 0, mean, np.nan)
    gap = np.abs(_floats(cols["hour"]) - usual) % 24.0
    gap = np.minimum(gap, 24.0 - gap)
    foreign = ((home != _floats(cols["merchant_region"])) & ~np.isnan(home)).astype(np.int64)
    return {"amount_ratio": ratio, "hour_gap": gap, "is_foreign": foreign}


def _floats(column: Any) -> np.ndarray:
    """A column as float64 with missing values as NaN (online rows may hold None for a new user)."""
    values = np.asarray(column)
    if values.dtype.kind in "fiub":
        return values.astype(np.float64, copy=False)
    return pd.to_numeric(pd.Series(values, dtype=object), errors="coerce").to_numpy(
        dtype=float, na_value=np.nan
    )


def definitions(source: str = SOURCE_DATASET) -> tuple[Entity, FeatureView, OnDemandFeature]:
    """The entity, the stored view (fed by dataset ``source`` plus pushes) and the on-demand feature."""
    view = FeatureView(
        VIEW,
        entity=USER,
        features=STATS,
        source=DatasetSource(source),
        event_time="event_ts",
        ttl=None,
        description="Rolling spend and counts per card holder, as of their latest transaction",
    )
    context = OnDemandFeature(
        ON_DEMAND,
        inputs=[f"{VIEW}:mean_amount", f"{VIEW}:usual_hour", f"{VIEW}:home_region"],
        request={"amount": "float", "hour": "int", "merchant_region": "int"},
        outputs=CONTEXT,
        fn=txn_context,
        description="The transaction against the user's habits: amount ratio, hour gap, abroad",
    )
    return USER, view, context


def user_feature_rows(transactions: pd.DataFrame) -> pd.DataFrame:
    """One row per transaction: the user's state right after it, stamped with its time (vectorised)."""
    need = ["txn_id", "ts", "user_id", "merchant_id", "amount", "hour", "home_region"]
    _require(transactions, need, "transactions")
    tx = transactions[need].sort_values(["user_id", "ts", "txn_id"], kind="stable").reset_index(drop=True)
    n = len(tx)
    user = tx["user_id"].to_numpy(np.int64)
    secs = (tx["ts"].to_numpy("datetime64[us]").astype(np.int64) // 1_000_000).astype(np.int64)
    amount = tx["amount"].to_numpy(float)
    # one sorted key per (user, time): windows never reach into the previous user's rows
    origin = secs.min() - 8 * 86400 if n else 0
    key = user * 10**10 + (secs - origin)
    csum = np.concatenate([[0.0], np.cumsum(amount)])
    small = np.concatenate([[0], np.cumsum(amount < SMALL_AMOUNT)])
    idx = np.arange(n)
    out: dict[str, Any] = {"user_id": user, "event_ts": tx["ts"].to_numpy()}
    lefts = {}
    for name, width in _WINDOWS.items():
        left = np.searchsorted(key, key - width, side="right")
        lefts[name] = left
        out[f"spend_{name}"] = np.round(csum[idx + 1] - csum[left], 2)
        out[f"count_{name}"] = idx + 1 - left
    out["small_count_1h"] = small[idx + 1] - small[lefts["1h"]]
    out["distinct_merchants_24h"] = _distinct_in_window(tx, key, lefts["24h"], 86400)
    first = np.searchsorted(user, user, side="left")
    count = idx - first + 1
    out["mean_amount"] = np.round((csum[idx + 1] - csum[first]) / count, 4)
    out["txn_count"] = count
    angle = tx["hour"].to_numpy(float) / 24.0 * 2 * np.pi
    s = np.concatenate([[0.0], np.cumsum(np.sin(angle))])
    c = np.concatenate([[0.0], np.cumsum(np.cos(angle))])
    mean_angle = np.arctan2(s[idx + 1] - s[first], c[idx + 1] - c[first])
    out["usual_hour"] = np.round((mean_angle / (2 * np.pi) * 24.0) % 24.0, 3)
    out["home_region"] = tx["home_region"].to_numpy(np.int64)
    frame = pd.DataFrame(out)
    frame["txn_id"] = tx["txn_id"].to_numpy()
    return frame.sort_values(["event_ts", "txn_id"], kind="stable").reset_index(drop=True)


def _distinct_in_window(tx: pd.DataFrame, key: np.ndarray, left: np.ndarray, width: int) -> np.ndarray:
    """Distinct merchants among each row's window: rows whose previous visit to the same merchant
    (by this user) lies before the window start are the first of their merchant inside it."""
    n = len(key)
    if not n:
        return np.zeros(0, dtype=np.int64)
    by = np.lexsort((key, tx["merchant_id"].to_numpy(), tx["user_id"].to_numpy()))
    prev = np.full(n, -(10**18), dtype=np.int64)
    same = (tx["user_id"].to_numpy()[by][1:] == tx["user_id"].to_numpy()[by][:-1]) & (
        tx["merchant_id"].to_numpy()[by][1:] == tx["merchant_id"].to_numpy()[by][:-1]
    )
    prev_sorted = np.full(n, -(10**18), dtype=np.int64)
    prev_sorted[1:] = np.where(same, key[by][:-1], -(10**18))
    prev[by] = prev_sorted
    sizes = np.arange(n) - left + 1
    row = np.repeat(np.arange(n), sizes)
    j = left[row] + (np.arange(len(row)) - np.repeat(np.cumsum(sizes) - sizes, sizes))
    first_in_window = prev[j] <= key[row] - width
    return np.bincount(row, weights=first_in_window, minlength=n).astype(np.int64)


def register(lm: Any, *, source: str = SOURCE_DATASET, actor: str = "fraud-app") -> None:
    """Register the entity, the view and the on-demand feature (a changed definition is a new version)."""
    lm.features.register(*definitions(source), actor=actor)


def lookup_frame(transactions: pd.DataFrame) -> pd.DataFrame:
    """The entity frame for ``training_frame``: key, lookup time just before each transaction, request fields."""
    _require(transactions, ["txn_id", "ts", "user_id", *REQUEST], "transactions")
    frame = transactions[["txn_id", "user_id", *REQUEST]].copy()
    frame["event_ts"] = transactions["ts"] - LOOKUP_OFFSET
    for name in ("label", "is_fraud", "pattern"):
        if name in transactions.columns:
            frame[name] = transactions[name].to_numpy()
    return frame


def training_frame(lm: Any, transactions: pd.DataFrame) -> pd.DataFrame:
    """Point-in-time model inputs for ``transactions`` (plus txn_id and labels when present)."""
    entities = lookup_frame(transactions)
    frame = lm.features.training_frame(entities, FEATURE_REFS, event_time="event_ts")
    return frame


def request_row(txn: Any) -> dict[str, Any]:
    """What a payment gateway sends for one transaction (a row of the transactions frame)."""
    return {
        "user_id": int(txn.user_id),
        "amount": float(txn.amount),
        "hour": int(txn.hour),
        "mcc": int(txn.mcc),
        "merchant_region": int(txn.merchant_region),
    }


def push_frame(rows: pd.DataFrame) -> pd.DataFrame:
    """Feature rows in the view's push schema (key, event time, features)."""
    return rows[["user_id", "event_ts", *STATS]]


def _require(frame: Any, columns: Sequence[str], what: str) -> None:
    if not isinstance(frame, pd.DataFrame):
        raise ValidationError(f"{what} must be a pandas DataFrame, got {type(frame).__name__}", field=what)
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValidationError(
            f"{what} is missing column(s) {missing}; it needs {list(columns)} (see loopml.apps.fraud.simulate)",
            field=f"{what}.{missing[0]}",
        )
