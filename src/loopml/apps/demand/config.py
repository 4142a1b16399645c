"""The demand app's settings in one frozen object, so a run can record exactly what it was run with.

Everything the weekly batch decides on (data size, model hyper-parameters, staffing rule, money, A/B
split, publishing deadline) lives here; ``to_dict()`` goes into tracking params and ``from_dict()``
reads it back, refusing unknown keys so a typo never silently falls back to a default.
"""

from __future__ import annotations

import dataclasses
import json
import re
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from loopml.checks import check_choice, check_keys, check_number
from loopml.errors import ValidationError

FREQS = ("h", "D", "W", "MS")
RETRAIN_MODES = ("weekly", "keep")
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_DEADLINE_RE = re.compile(r"^\s*([a-z]{3})[a-z]*\s+(\d{1,2}):(\d{2})\s*$", re.IGNORECASE)

DEFAULT_LGB_PARAMS: dict[str, Any] = {
    "objective": "tweedie",
    "learning_rate": 0.1,
    "num_leaves": 63,
    "n_estimators": 150,
    "max_bin": 63,
    "min_child_samples": 20,
    "subsample": 0.8,
    "subsample_freq": 1,
    "colsample_bytree": 0.8,
    "n_jobs": 2,
    "verbose": -1,
    "random_state": 7,
}


def _default_lgb_params() -> dict[str, Any]:
    return dict(DEFAULT_LGB_PARAMS)


@dataclass(frozen=True)
class DemandConfig:
    """Settings of the demand app; construction validates, so an invalid config cannot exist.

    ``lgb_params`` is deliberately part of the config rather than a pipeline knob: changing it is
    only meant to happen through a run that is evaluated (backtest + gate) before it can publish.
    ``fixed_staff=None`` makes the naive fixed plan use each store's mean staff need over the last
    8 weeks, rounded up, which is what a store manager without a forecast would do.
    """

    stores: int = 300
    years: float = 3.0
    freq: str = "h"
    seed: int = 7
    start: str = "2023-01-02"
    backtest_weeks: int = 8
    retrain: str = "weekly"
    lgb_params: dict[str, Any] = field(default_factory=_default_lgb_params)
    visitors_per_staff: float = 12.0
    min_staff: int = 3
    staff_hour_cost: float = 12_000.0
    under_cost_per_visitor: float = 1_500.0
    fixed_staff: int | None = None
    interval: float = 0.8
    challenger_share: float = 0.5
    publish_deadline: str = "thu 18:00"
    ab_min_weeks: int = 3

    def __post_init__(self) -> None:
        self.validate()

    def __hash__(self) -> int:  # lgb_params is a dict, so the generated hash would fail
        return hash(json.dumps(self.to_dict(), sort_keys=True, default=str))

    # -- construction ---------------------------------------------------------------------------
    @classmethod
    def small(cls, **overrides: Any) -> DemandConfig:
        """The ``--fast`` size: big enough for every feature (lags, holidays, a year of season), small
        enough that the whole demo runs in well under a minute."""
        base: dict[str, Any] = {"stores": 12, "years": 1.2, "backtest_weeks": 4}
        base.update(overrides)
        return cls.from_dict(base)

    def replace(self, **changes: Any) -> DemandConfig:
        """A validated copy with ``changes`` applied (unknown names are refused with a hint)."""
        return DemandConfig.from_dict({**self.to_dict(), **changes})

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["lgb_params"] = dict(self.lgb_params)
        return out

    @classmethod
    def from_dict(cls, data: Any) -> DemandConfig:
        """Build and validate from plain data; ``lgb_params`` given here are merged over the defaults."""
        if isinstance(data, DemandConfig):
            return data
        if not isinstance(data, dict):
            raise ValidationError(
                f"demand config must be a mapping of setting -> value, not {type(data).__name__}.",
                field="config",
            )
        check_keys(data, [f.name for f in dataclasses.fields(cls)], owner="the demand config", noun="setting")
        values = dict(data)
        if "lgb_params" in values:
            params = values["lgb_params"]
            if not isinstance(params, dict):
                raise ValidationError(
                    f"lgb_params must be a mapping of LightGBM parameter -> value, got {params!r}.",
                    field="lgb_params",
                )
            values["lgb_params"] = {**DEFAULT_LGB_PARAMS, **params}
        return cls(**values)

    # -- checks ---------------------------------------------------------------------------------
    def validate(self) -> DemandConfig:
        """Raise ``ValidationError`` naming the first bad setting and its allowed values; return self."""
        check_number(self.stores, "stores", low=1, integer=True)
        check_number(self.years, "years", low=0, low_open=True, hint="give a number of years, e.g. 3.0")
        check_choice(self.freq, "freq", FREQS, hint="h hourly, D daily, W weekly from Monday, MS month start")
        check_number(self.seed, "seed", low=0, integer=True)
        try:
            start = pd.Timestamp(self.start)
        except (TypeError, ValueError):
            start = pd.NaT
        if not isinstance(self.start, str) or pd.isna(start):
            raise ValidationError(f"start={self.start!r}: give an ISO date like '2023-01-02'.", field="start")
        check_number(self.backtest_weeks, "backtest_weeks", low=1, high=52, integer=True)
        check_choice(
            self.retrain,
            "retrain",
            RETRAIN_MODES,
            hint="'weekly' trains a challenger every week, 'keep' reuses the champion",
        )
        if not isinstance(self.lgb_params, dict) or not all(isinstance(k, str) for k in self.lgb_params):
            raise ValidationError(
                "lgb_params must be a mapping with string keys (LightGBM parameter names).",
                field="lgb_params",
            )
        check_number(self.visitors_per_staff, "visitors_per_staff", low=0, low_open=True)
        check_number(self.min_staff, "min_staff", low=0, integer=True)
        check_number(self.staff_hour_cost, "staff_hour_cost", low=0.0)
        check_number(self.under_cost_per_visitor, "under_cost_per_visitor", low=0.0)
        if self.fixed_staff is not None:
            check_number(self.fixed_staff, "fixed_staff", low=0, integer=True)
        check_number(
            self.interval,
            "interval",
            low=0,
            high=1,
            low_open=True,
            high_open=True,
            hint="give the central coverage as a share, e.g. 0.8",
        )
        check_number(
            self.challenger_share,
            "challenger_share",
            low=0,
            high=1,
            hint="the share of stores on the challenger",
        )
        parse_deadline(self.publish_deadline)
        check_number(self.ab_min_weeks, "ab_min_weeks", low=1, integer=True)
        return self

    # -- derived values -------------------------------------------------------------------------
    @property
    def start_ts(self) -> pd.Timestamp:
        return pd.Timestamp(self.start).normalize()

    @property
    def end_ts(self) -> pd.Timestamp:
        """First day after the simulated window (``start + years``), at midnight."""
        return (self.start_ts + pd.Timedelta(days=round(self.years * 365.25))).normalize()

    def deadline(self, run_date: Any) -> pd.Timestamp:
        """The moment the forecast of the run on ``run_date`` must be published (same Monday week)."""
        day = pd.Timestamp(run_date).normalize()
        weekday, hour, minute = parse_deadline(self.publish_deadline)
        monday = day - pd.Timedelta(days=day.weekday())
        return monday + pd.Timedelta(days=weekday, hours=hour, minutes=minute)


def parse_deadline(text: Any) -> tuple[int, int, int]:
    """``"thu 18:00"`` -> (weekday 0=Mon, hour, minute); errors name ``publish_deadline``."""
    match = _DEADLINE_RE.match(text) if isinstance(text, str) else None
    if match:
        day, hour, minute = match.group(1).lower(), int(match.group(2)), int(match.group(3))
        if day in WEEKDAYS and hour < 24 and minute < 60:
            return WEEKDAYS.index(day), hour, minute
    raise ValidationError(
        f"publish_deadline={text!r}: give a weekday and a 24h time, e.g. 'thu 18:00' "
        f"(weekdays: {', '.join(WEEKDAYS)}).",
        field="publish_deadline",
    )
