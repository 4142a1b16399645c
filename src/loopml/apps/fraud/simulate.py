"""A seeded card-transaction simulator with the fraud a card issuer actually fights.

Users have a home region, a typical spend, an activity rate and a usual time of day; they mostly shop
at a handful of favourite merchants near home. Three fraud patterns are mixed in:

- **account takeover**: a burst of large purchases at night, at high-risk merchants the user never
  used, often abroad;
- **card testing**: many tiny online charges within minutes, then one or two cash-outs;
- **merchant collusion**: from ``collusion_start_day`` a few merchants push charges with suspiciously
  round amounts through many cards (a pattern v1 never saw in training, v2 does).

``shift_day`` switches on a fourth pattern (gift-card drip: modest daytime purchases of gift cards),
for the drift and retraining story of issue 7. Chargebacks (the labels) arrive days later:
``label_available_at`` is when the issuer learns the outcome - the chargeback date, or the end of the
chargeback window for transactions nobody disputed. Everything is vectorised: 200k transactions take
well under a second.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from loopml.apps.fraud.config import FraudConfig
from loopml.errors import ValidationError

CATEGORIES = (
    "grocery",
    "fuel",
    "restaurants",
    "retail",
    "online",
    "electronics",
    "travel",
    "jewellery",
    "gaming",
    "giftcards",
)
_CAT_SHARE = np.array([0.2, 0.1, 0.2, 0.15, 0.12, 0.06, 0.06, 0.03, 0.05, 0.03])
_CAT_SCALE = np.array([1.0, 1.3, 0.8, 1.5, 1.2, 4.0, 6.0, 5.0, 0.6, 1.0])
_CAT_SIGMA = np.array([0.4, 0.3, 0.5, 0.6, 0.7, 0.6, 0.6, 0.6, 0.5, 0.4])
#: how much a user's everyday spending favours each category when picking favourite merchants
_CAT_HABIT = np.array([3.0, 2.0, 3.0, 1.5, 1.0, 0.3, 0.2, 0.1, 0.5, 0.2])
_HIGH_RISK = np.array([CATEGORIES.index(c) for c in ("electronics", "jewellery", "online", "travel")])
REGIONS = 8
FAVOURITES = 8
PATTERNS = ("none", "account_takeover", "card_testing", "collusion", "giftcard_drip")
COLUMNS = [
    "txn_id",
    "ts",
    "user_id",
    "merchant_id",
    "mcc",
    "category",
    "merchant_region",
    "home_region",
    "amount",
    "hour",
    "is_fraud",
    "pattern",
    "label",
    "label_available_at",
]


@dataclass(frozen=True)
class Simulated:
    """The transactions (sorted by time, ``txn_id`` in that order) plus the user and merchant tables."""

    transactions: pd.DataFrame
    users: pd.DataFrame
    merchants: pd.DataFrame

    @property
    def fraud_rate(self) -> float:
        return float(self.transactions["is_fraud"].mean()) if len(self.transactions) else 0.0


def simulate(cfg: FraudConfig | None = None) -> Simulated:
    """Simulate ``cfg.days`` of card traffic; the same config always gives the same frame."""
    if cfg is None:
        cfg = FraudConfig()
    if not isinstance(cfg, FraudConfig):
        raise ValidationError(f"cfg must be a FraudConfig, got {type(cfg).__name__}", field="cfg")
    rng = np.random.default_rng(cfg.seed)
    merchants = _merchants(cfg, rng)
    users = _users(cfg, rng, merchants)
    parts = [
        _legit(cfg, rng, users, merchants),
        _account_takeover(cfg, rng, users, merchants),
        _card_testing(cfg, rng, users, merchants),
        _collusion(cfg, rng, users, merchants),
    ]
    if cfg.shift_day is not None:
        parts.append(_giftcard_drip(cfg, rng, users, merchants))
    raw = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    return Simulated(
        _assemble(cfg, rng, raw, users, merchants), _frame_users(users), _frame_merchants(merchants)
    )


# -- population ---------------------------------------------------------------------------------


def _merchants(cfg: FraudConfig, rng: np.random.Generator) -> dict[str, np.ndarray]:
    m = cfg.merchants
    cat = rng.choice(len(CATEGORIES), m, p=_CAT_SHARE / _CAT_SHARE.sum())
    cat[: len(CATEGORIES)] = np.arange(len(CATEGORIES))  # every category exists, even in tiny worlds
    region = rng.integers(0, REGIONS, m)
    popularity = rng.gamma(1.5, 1.0, m)
    colluding = np.zeros(m, dtype=bool)
    if cfg.collusion_merchants:
        pool = np.flatnonzero(np.isin(cat, _HIGH_RISK))
        colluding[rng.choice(pool, min(cfg.collusion_merchants, len(pool)), replace=False)] = True
    return {"cat": cat, "region": region, "popularity": popularity, "colluding": colluding}


def _users(
    cfg: FraudConfig, rng: np.random.Generator, merchants: dict[str, np.ndarray]
) -> dict[str, np.ndarray]:
    n = cfg.users
    home = rng.integers(0, REGIONS, n)
    typical = np.exp(rng.normal(np.log(35.0), 0.6, n))
    activity = rng.gamma(2.0, cfg.txns_per_user_day / 2.0, n)
    peak_hour = np.clip(rng.normal(14.0, 3.0, n), 7.0, 21.0)
    fav = np.empty((n, FAVOURITES), dtype=np.int64)
    base = merchants["popularity"] * _CAT_HABIT[merchants["cat"]] * ~merchants["colluding"]
    for region in range(REGIONS):
        who = np.flatnonzero(home == region)
        if not len(who):
            continue
        w = base * np.where(merchants["region"] == region, 1.0, 0.05)
        fav[who] = rng.choice(len(w), (len(who), FAVOURITES), p=w / w.sum())
    return {"home": home, "typical": typical, "activity": activity, "peak_hour": peak_hour, "fav": fav}


# -- traffic ------------------------------------------------------------------------------------


def _part(user: Any, merchant: Any, seconds: Any, amount: Any, pattern: str) -> dict[str, np.ndarray]:
    n = len(user)
    return {
        "user": np.asarray(user, dtype=np.int64),
        "merchant": np.asarray(merchant, dtype=np.int64),
        "seconds": np.asarray(seconds, dtype=float),
        "amount": np.asarray(amount, dtype=float),
        "pattern": np.full(n, PATTERNS.index(pattern), dtype=np.int8),
    }


def _amount(rng: np.random.Generator, typical: np.ndarray, cat: np.ndarray) -> np.ndarray:
    """Log-normal around the user's typical spend, scaled and spread by the merchant's category."""
    return np.exp(np.log(typical * _CAT_SCALE[cat]) + rng.normal(0.0, _CAT_SIGMA[cat]))


def _legit(cfg: FraudConfig, rng: np.random.Generator, users: dict, merchants: dict) -> dict[str, np.ndarray]:
    counts = rng.poisson(users["activity"] * cfg.days)
    uid = np.repeat(np.arange(cfg.users), counts)
    n = len(uid)
    day = rng.integers(0, cfg.days, n)
    hour = (users["peak_hour"][uid] + rng.normal(0.0, 3.0, n)) % 24.0
    seconds = day * 86400.0 + hour * 3600.0
    use_fav = rng.random(n) < 0.85
    pop = merchants["popularity"] * ~merchants["colluding"]
    other = rng.choice(cfg.merchants, n, p=pop / pop.sum())
    merchant = np.where(use_fav, users["fav"][uid, rng.integers(0, FAVOURITES, n)], other)
    amount = _amount(rng, users["typical"][uid], merchants["cat"][merchant])
    return _part(uid, merchant, seconds, amount, "none")


def _victims(cfg: FraudConfig, rng: np.random.Generator, share: float) -> np.ndarray:
    k = round(cfg.users * share)
    return rng.choice(cfg.users, k, replace=False) if k else np.empty(0, dtype=np.int64)


def _bursts(
    rng: np.random.Generator, victims: np.ndarray, low: int, high: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(user per transaction, burst number per transaction, index of the transaction in its burst)."""
    sizes = rng.integers(low, high + 1, len(victims))
    burst = np.repeat(np.arange(len(victims)), sizes)
    within = np.arange(len(burst)) - np.repeat(np.cumsum(sizes) - sizes, sizes)
    return victims[burst], burst, within


def _cumulative_within(gaps: np.ndarray, within: np.ndarray) -> np.ndarray:
    """Offsets from each burst's start: the running sum of gaps, restarting at every burst."""
    total = np.cumsum(gaps)
    first = np.flatnonzero(within == 0)
    sizes = np.diff(np.append(first, len(gaps)))
    return total - np.repeat(total[first], sizes)


def _account_takeover(cfg: FraudConfig, rng: np.random.Generator, users: dict, merchants: dict) -> dict:
    victims = _victims(cfg, rng, cfg.ato_share)
    night = rng.integers(1, cfg.days - 1, len(victims)) * 86400.0 + rng.uniform(0, 5, len(victims)) * 3600
    user, burst, within = _bursts(rng, victims, 3, 8)
    gaps = rng.exponential(8 * 60.0, len(user)) + 30.0
    seconds = night[burst] + _cumulative_within(gaps, within)
    risky = np.flatnonzero(np.isin(merchants["cat"], _HIGH_RISK) & ~merchants["colluding"])
    merchant = rng.choice(risky, len(user))
    factor = rng.uniform(2.5, 6.0, len(user))
    amount = _amount(rng, users["typical"][user] * factor, merchants["cat"][merchant])
    return _part(user, merchant, seconds, amount, "account_takeover")


def _card_testing(cfg: FraudConfig, rng: np.random.Generator, users: dict, merchants: dict) -> dict:
    victims = _victims(cfg, rng, cfg.card_testing_share)
    if not len(victims):
        return _part([], [], [], [], "card_testing")
    start = rng.uniform(1, cfg.days - 1, len(victims)) * 86400.0
    user, burst, within = _bursts(rng, victims, 8, 20)
    gaps = rng.exponential(40.0, len(user)) + 2.0
    seconds = start[burst] + _cumulative_within(gaps, within)
    online = np.flatnonzero((merchants["cat"] == CATEGORIES.index("online")) & ~merchants["colluding"])
    merchant = rng.choice(online, len(user))
    amount = rng.uniform(0.5, 3.0, len(user))
    # the cash-out: the last one or two charges of each burst are large, at a high-risk merchant
    last = np.append(within[1:] == 0, True)
    cash = last | (np.roll(last, -1) & (rng.random(len(user)) < 0.5))
    risky = np.flatnonzero(np.isin(merchants["cat"], _HIGH_RISK) & ~merchants["colluding"])
    merchant = np.where(cash, rng.choice(risky, len(user)), merchant)
    big = _amount(rng, users["typical"][user] * 4.0, merchants["cat"][merchant])
    amount = np.where(cash, big, amount)
    return _part(user, merchant, seconds, amount, "card_testing")


def _collusion(cfg: FraudConfig, rng: np.random.Generator, users: dict, merchants: dict) -> dict:
    bad = np.flatnonzero(merchants["colluding"])
    active_days = cfg.days - cfg.collusion_start_day
    n = (
        rng.poisson(cfg.collusion_txns_per_day * len(bad) * active_days)
        if len(bad) and active_days > 0
        else 0
    )
    merchant = rng.choice(bad, n) if n else np.empty(0, dtype=np.int64)
    user = rng.integers(0, cfg.users, n)
    seconds = rng.uniform(cfg.collusion_start_day * 86400.0, cfg.days * 86400.0, n)
    amount = rng.choice([199.0, 249.0, 299.0, 450.0, 499.0, 999.0], n)
    return _part(user, merchant, seconds, amount, "collusion")


def _giftcard_drip(cfg: FraudConfig, rng: np.random.Generator, users: dict, merchants: dict) -> dict:
    victims = _victims(cfg, rng, cfg.shift_share)
    assert cfg.shift_day is not None
    user, _, _ = _bursts(rng, victims, 2, 6)
    seconds = rng.uniform(cfg.shift_day, cfg.days, len(user)).astype(int) * 86400.0
    seconds += rng.uniform(10, 18, len(user)) * 3600.0
    cards = np.flatnonzero(merchants["cat"] == CATEGORIES.index("giftcards"))
    merchant = rng.choice(cards, len(user))
    amount = users["typical"][user] * rng.uniform(1.2, 2.2, len(user))
    return _part(user, merchant, seconds, amount, "giftcard_drip")


# -- assembly -----------------------------------------------------------------------------------


def _assemble(
    cfg: FraudConfig, rng: np.random.Generator, raw: dict, users: dict, merchants: dict
) -> pd.DataFrame:
    keep = (raw["seconds"] >= 0) & (raw["seconds"] < cfg.days * 86400.0)
    raw = {k: v[keep] for k, v in raw.items()}
    seconds = np.floor(raw["seconds"]).astype(np.int64)
    order = np.lexsort((raw["user"], seconds))
    raw = {k: v[order] for k, v in raw.items()}
    seconds = seconds[order]
    n = len(seconds)
    merchant = raw["merchant"]
    cat = merchants["cat"][merchant]
    is_fraud = raw["pattern"] > 0
    chargeback = np.where(
        is_fraud, rng.random(n) < cfg.chargeback_rate, rng.random(n) < cfg.friendly_chargeback_rate
    )
    maturity = cfg.label_maturity_days * 86400.0
    delay = np.clip(np.exp(rng.normal(np.log(4 * 86400.0), 0.5, n)), 86400.0, maturity - 60.0)
    ts = cfg.start_ts + pd.to_timedelta(seconds, unit="s")
    available = ts + pd.to_timedelta(np.where(chargeback, delay, maturity).round(), unit="s")
    hour = (seconds % 86400) // 3600
    frame = pd.DataFrame(
        {
            "txn_id": np.arange(1, n + 1, dtype=np.int64),
            "ts": ts.astype("datetime64[us]"),
            "user_id": raw["user"] + 1,
            "merchant_id": merchant + 1,
            "mcc": cat.astype(np.int64),
            "category": np.asarray(CATEGORIES, dtype=object)[cat],
            "merchant_region": merchants["region"][merchant].astype(np.int64),
            "home_region": users["home"][raw["user"]].astype(np.int64),
            "amount": np.maximum(np.round(raw["amount"], 2), 0.5),
            "hour": hour.astype(np.int64),
            "is_fraud": is_fraud.astype(np.int64),
            "pattern": np.asarray(PATTERNS, dtype=object)[raw["pattern"]],
            "label": chargeback.astype(np.int64),
            "label_available_at": available.astype("datetime64[us]"),
        },
        columns=COLUMNS,
    )
    return frame


def _frame_users(users: dict) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "user_id": np.arange(1, len(users["home"]) + 1),
            "home_region": users["home"],
            "typical_spend": users["typical"].round(2),
            "activity_per_day": users["activity"].round(3),
            "peak_hour": users["peak_hour"].round(2),
        }
    )


def _frame_merchants(merchants: dict) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "merchant_id": np.arange(1, len(merchants["cat"]) + 1),
            "category": np.asarray(CATEGORIES, dtype=object)[merchants["cat"]],
            "region": merchants["region"],
            "colluding": merchants["colluding"],
        }
    )
