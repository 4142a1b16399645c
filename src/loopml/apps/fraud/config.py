"""The fraud app's settings in one frozen, validated object.

Sizes, fraud rates, the label delay and the release timeline live together so a story run can be
recorded (``to_dict()`` goes into tracking params) and reproduced exactly from its seed.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import pandas as pd

from loopml.checks import check_keys, check_number
from loopml.errors import ValidationError


@dataclass(frozen=True)
class FraudConfig:
    """Settings of the simulator, the model and the release story; construction validates.

    Timeline (days from ``start``): v1 is trained on ``v1_day`` and goes live; v2 is trained on
    ``v2_day``. A model trained on day T only sees transactions whose chargeback window has closed
    (older than ``label_maturity_days``), and is judged on the last ``holdout_days`` of those.
    """

    users: int = 4_000
    merchants: int = 600
    days: int = 42
    start: str = "2026-01-05"
    seed: int = 11
    txns_per_user_day: float = 1.2
    ato_share: float = 0.03
    card_testing_share: float = 0.02
    collusion_merchants: int = 5
    collusion_start_day: int = 12
    collusion_txns_per_day: float = 3.0
    shift_day: int | None = None
    shift_share: float = 0.03
    label_maturity_days: int = 7
    chargeback_rate: float = 0.9
    friendly_chargeback_rate: float = 0.001
    v1_day: int = 21
    v2_day: int = 28
    holdout_days: int = 4
    n_estimators: int = 200
    learning_rate: float = 0.05
    num_leaves: int = 31
    threshold: float = 0.3
    review_share: float = 0.01
    phase_requests: int = 1_500
    min_canary_requests: int = 200
    broken_weight: float = 0.3
    max_p99_ratio: float = 3.0
    timeout_ms: float = 1_000.0
    push_every: int = 25

    def __post_init__(self) -> None:
        self.validate()

    @classmethod
    def small(cls, **overrides: Any) -> FraudConfig:
        """The ``--fast`` size: every step of the story, in seconds rather than minutes."""
        base: dict[str, Any] = {
            "users": 600,
            "merchants": 150,
            "days": 34,
            "v1_day": 17,
            "v2_day": 24,
            "n_estimators": 60,
            "phase_requests": 300,
            "min_canary_requests": 60,
            "collusion_merchants": 3,
            "push_every": 20,
        }
        base.update(overrides)
        return cls.from_dict(base)

    def replace(self, **changes: Any) -> FraudConfig:
        return FraudConfig.from_dict({**self.to_dict(), **changes})

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Any) -> FraudConfig:
        """Build from plain data, refusing unknown keys so a typo never falls back to a default."""
        if isinstance(data, FraudConfig):
            return data
        if not isinstance(data, dict):
            raise ValidationError(
                f"fraud config must be a mapping of setting -> value, not {type(data).__name__}",
                field="config",
            )
        check_keys(data, [f.name for f in dataclasses.fields(cls)], owner="the fraud config", noun="setting")
        return cls(**data)

    def validate(self) -> FraudConfig:
        """Raise ``ValidationError`` naming the first bad setting; return self."""
        _int(self.users, "users", low=10)
        _int(self.merchants, "merchants", low=20)
        _int(self.days, "days", low=14, high=3650)
        _int(self.seed, "seed", low=0)
        try:
            start = pd.Timestamp(self.start)
        except (TypeError, ValueError):
            start = pd.NaT
        if not isinstance(self.start, str) or pd.isna(start):
            raise ValidationError(f"start={self.start!r}: give an ISO date like '2026-01-05'", field="start")
        _number(self.txns_per_user_day, "txns_per_user_day", low=0.05, high=100)
        for name in ("ato_share", "card_testing_share", "shift_share", "chargeback_rate"):
            _number(getattr(self, name), name, low=0.0, high=1.0)
        _number(self.friendly_chargeback_rate, "friendly_chargeback_rate", low=0.0, high=0.1)
        _int(self.collusion_merchants, "collusion_merchants", low=0, high=self.merchants // 4)
        _int(self.collusion_start_day, "collusion_start_day", low=0, high=self.days)
        _number(self.collusion_txns_per_day, "collusion_txns_per_day", low=0.0, high=1000)
        if self.shift_day is not None:
            _int(self.shift_day, "shift_day", low=0, high=self.days)
        _int(self.label_maturity_days, "label_maturity_days", low=1, high=90)
        _int(self.holdout_days, "holdout_days", low=1, high=60)
        _int(self.v1_day, "v1_day", low=1, high=self.days)
        _int(self.v2_day, "v2_day", low=1, high=self.days)
        first_train_days = self.v1_day - self.label_maturity_days - self.holdout_days
        if first_train_days < 3:
            raise ValidationError(
                f"v1_day={self.v1_day}: v1 needs at least 3 days of matured labels before its holdout "
                f"(v1_day - label_maturity_days - holdout_days = {first_train_days}); raise v1_day",
                field="v1_day",
            )
        if self.v2_day <= self.v1_day + 1:
            raise ValidationError(
                f"v2_day={self.v2_day} must be at least 2 days after v1_day={self.v1_day}", field="v2_day"
            )
        needed = self.v2_day + self.label_maturity_days + 2
        if self.days < needed:
            raise ValidationError(
                f"days={self.days}: the story needs v2_day + label_maturity_days + 2 = {needed} days of traffic "
                "(the canary's chargebacks must arrive before v3 is tried); raise days or lower v2_day",
                field="days",
            )
        _int(self.n_estimators, "n_estimators", low=1, high=5000)
        _number(self.learning_rate, "learning_rate", low=1e-4, high=1.0)
        _int(self.num_leaves, "num_leaves", low=2, high=4096)
        _number(self.threshold, "threshold", low=0.0, high=1.0)
        _number(self.review_share, "review_share", low=1e-4, high=1.0)
        _int(self.phase_requests, "phase_requests", low=20)
        _int(self.min_canary_requests, "min_canary_requests", low=10)
        _number(self.broken_weight, "broken_weight", low=0.01, high=0.99)
        _number(self.max_p99_ratio, "max_p99_ratio", low=1.0, high=100.0)
        _number(self.timeout_ms, "timeout_ms", low=1.0, high=60_000.0)
        _int(self.push_every, "push_every", low=1)
        return self

    @property
    def start_ts(self) -> pd.Timestamp:
        return pd.Timestamp(self.start).normalize()

    def day(self, n: float) -> pd.Timestamp:
        """Midnight of simulated day ``n`` (day 0 is ``start``)."""
        return self.start_ts + pd.Timedelta(days=n)

    def training_window(self, day: int) -> tuple[pd.Timestamp, pd.Timestamp, pd.Timestamp]:
        """(train end, holdout start, holdout end) for a model trained on ``day``: only matured labels."""
        holdout_end = self.day(day - self.label_maturity_days)
        holdout_start = holdout_end - pd.Timedelta(days=self.holdout_days)
        return holdout_start, holdout_start, holdout_end


def _int(value: Any, name: str, *, low: int | None = None, high: int | None = None) -> None:
    check_number(value, name, low=low, high=high, integer=True)


def _number(value: Any, name: str, *, low: float | None = None, high: float | None = None) -> None:
    check_number(value, name, low=low, high=high)
