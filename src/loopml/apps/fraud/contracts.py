"""Contracts of the fraud app's datasets: what a transaction, a feature row and a holdout row must be.

A transaction export with negative amounts, an unknown category or a missing card holder is a broken
source: the contract quarantines such rows before they can reach features or training.
"""

from __future__ import annotations

from loopml.apps.fraud.features import CONTEXT, MODEL_FEATURES, STATS
from loopml.apps.fraud.simulate import CATEGORIES, REGIONS
from loopml.data import Column, Contract

TRANSACTIONS = Contract(
    columns=[
        Column("txn_id", "int", min=1, unique=True),
        Column("ts", "datetime"),
        Column("user_id", "int", min=1),
        Column("merchant_id", "int", min=1),
        Column("mcc", "int", min=0, max=len(CATEGORIES) - 1),
        Column("category", "str", allowed=list(CATEGORIES)),
        Column("merchant_region", "int", min=0, max=REGIONS - 1),
        Column("home_region", "int", min=0, max=REGIONS - 1),
        Column("amount", "float", min=0.01, max=1_000_000),
        Column("hour", "int", min=0, max=23),
        Column("label", "int", allowed=[0, 1], description="1 = a chargeback arrived"),
        Column("label_available_at", "datetime", description="when the outcome became known"),
    ],
    max_bad_share=0.01,
)

USER_FEATURES = Contract(
    columns=[
        Column("user_id", "int", min=1),
        Column("event_ts", "datetime"),
        *[Column(name, dtype, min=0) for name, dtype in STATS.items() if name != "home_region"],
        Column("home_region", "int", min=0, max=REGIONS - 1),
    ],
    max_bad_share=0.0,
)

HOLDOUT = Contract(
    columns=[
        *[Column(name, "float", nullable=name in {*STATS, *CONTEXT}) for name in MODEL_FEATURES],
        Column("label", "int", allowed=[0, 1]),
    ],
    max_bad_share=0.0,
)
