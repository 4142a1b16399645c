"""A seeded subscription-churn table with realistic defects, so the demo shows quarantine working."""

from __future__ import annotations

import numpy as np
import pandas as pd

PLANS = ("basic", "standard", "premium")


def simulate_customers(n: int, *, seed: int = 7, bad_share: float = 0.02) -> tuple[pd.DataFrame, set[int]]:
    """Return (frame, ids of the rows made bad on purpose).

    Churn depends non-linearly on tenure, support tickets, plan and monthly charges, so a tree model
    clearly beats a one-feature baseline.
    """
    rng = np.random.default_rng(seed)
    tenure = rng.gamma(2.0, 12.0, n).round().astype(int) + 1
    plan = rng.choice(PLANS, n, p=[0.5, 0.35, 0.15])
    charges = np.select([plan == "basic", plan == "standard"], [19.0, 39.0], 69.0) + rng.normal(0, 4, n)
    tickets = rng.poisson(1.2, n)
    usage = np.clip(rng.normal(30, 12, n) - 0.2 * tickets, 0, None)
    age = rng.integers(18, 80, n)
    logit = (
        -1.2
        - 0.05 * np.minimum(tenure, 48)
        + 0.55 * tickets
        + 0.9 * ((plan == "premium") & (usage < 20))
        - 0.03 * (usage - 30)
        + 0.6 * (tickets >= 3) * (tenure < 12)
    )
    churned = rng.random(n) < 1 / (1 + np.exp(-logit))
    frame = pd.DataFrame(
        {
            "customer_id": np.arange(1, n + 1),
            "signup_at": pd.Timestamp("2026-01-01") + pd.to_timedelta(rng.integers(0, 300, n), unit="D"),
            "age": age,
            "plan": plan,
            "tenure_months": tenure,
            "monthly_charges": charges.round(2),
            "support_tickets": tickets,
            "usage_hours": usage.round(1),
            "churned": churned.astype(int),
        }
    )
    bad_ids = _inject_defects(frame, rng, bad_share)
    return frame, bad_ids


def _inject_defects(frame: pd.DataFrame, rng: np.random.Generator, share: float) -> set[int]:
    """Break a few rows the way production data breaks: impossible values, unknown codes, gaps."""
    n_bad = max(4, int(len(frame) * share))
    rows = rng.choice(len(frame), n_bad, replace=False)
    frame["plan"] = frame["plan"].astype(object)
    frame["monthly_charges"] = frame["monthly_charges"].astype(float)
    frame["age"] = frame["age"].astype(float)
    for i, row in enumerate(rows):
        kind = i % 4
        if kind == 0:
            frame.loc[row, "age"] = -5  # impossible age
        elif kind == 1:
            frame.loc[row, "plan"] = "platinum"  # a plan that does not exist
        elif kind == 2:
            frame.loc[row, "monthly_charges"] = np.nan  # missing where required
        else:
            frame.loc[row, "tenure_months"] = 10_000  # outlier beyond the contract's range
    return {int(frame.loc[r, "customer_id"]) for r in rows}
