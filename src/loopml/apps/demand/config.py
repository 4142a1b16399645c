"""The demand app's settings in one frozen object, so a run can record exactly what it was run with.

Everything the weekly batch decides on (data size, model hyper-parameters, staffing rule, money, A/B
split, publishing deadline) lives here; ``to_dict()`` goes into tracking params and ``from_dict()``
reads it back, refusing unknown keys so a typo never silently falls back to a default.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from loopml.errors import ValidationError, did_you_mean

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
        known = [f.name for f in dataclasses.fields(cls)]
        for key in data:
            if key not in known:
                raise ValidationError(
                    f"demand config has no setting {key!r}.{did_you_mean(str(key), known)}", field=str(key)
                )
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
        _int(self.stores, "stores", low=1)
        _number(self.years, "years")
        if self.years <= 0:
            raise ValidationError(
                f"years={self.years!r}: give a positive number of years, e.g. 3.0.", field="years"
            )
        if self.freq not in FREQS:
            raise ValidationError(
                f"freq={self.freq!r}: use one of {', '.join(FREQS)} (hourly, daily, weekly from Monday, month start).",
                field="freq",
            )
        _int(self.seed, "seed", low=0)
        try:
            start = pd.Timestamp(self.start)
        except (TypeError, ValueError):
            start = pd.NaT
        if not isinstance(self.start, str) or pd.isna(start):
            raise ValidationError(f"start={self.start!r}: give an ISO date like '2023-01-02'.", field="start")
        _int(self.backtest_weeks, "backtest_weeks", low=1, high=52)
        if self.retrain not in RETRAIN_MODES:
            raise ValidationError(
                f"retrain={self.retrain!r}: use 'weekly' (train a challenger every week) or 'keep' "
                "(reuse the champion).",
                field="retrain",
            )
        if not isinstance(self.lgb_params, dict) or not all(isinstance(k, str) for k in self.lgb_params):
            raise ValidationError(
                "lgb_params must be a mapping with string keys (LightGBM parameter names).",
                field="lgb_params",
            )
        _positive(self.visitors_per_staff, "visitors_per_staff")
        _int(self.min_staff, "min_staff", low=0)
        _number(self.staff_hour_cost, "staff_hour_cost", low=0.0)
        _number(self.under_cost_per_visitor, "under_cost_per_visitor", low=0.0)
        if self.fixed_staff is not None:
            _int(self.fixed_staff, "fixed_staff", low=0)
        _number(self.interval, "interval")
        if not 0 < self.interval < 1:
            raise ValidationError(
                f"interval={self.interval!r}: give the central coverage as a share strictly between 0 and 1, e.g. 0.8.",
                field="interval",
            )
        _number(self.challenger_share, "challenger_share")
        if not 0 <= self.challenger_share <= 1:
            raise ValidationError(
                f"challenger_share={self.challenger_share!r}: give the share of stores on the challenger, 0 to 1.",
                field="challenger_share",
            )
        parse_deadline(self.publish_deadline)
        _int(self.ab_min_weeks, "ab_min_weeks", low=1)
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


def _int(value: Any, name: str, *, low: int | None = None, high: int | None = None) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValidationError(f"{name}={value!r}: give a whole number.", field=name)
    if (low is not None and value < low) or (high is not None and value > high):
        bounds = f"between {low} and {high}" if high is not None else f">= {low}"
        raise ValidationError(f"{name}={value!r}: must be {bounds}.", field=name)


def _number(value: Any, name: str, *, low: float | None = None) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValidationError(f"{name}={value!r}: give a finite number.", field=name)
    if low is not None and value < low:
        raise ValidationError(f"{name}={value!r}: must be >= {low}.", field=name)


def _positive(value: Any, name: str) -> None:
    _number(value, name)
    if value <= 0:
        raise ValidationError(f"{name}={value!r}: must be greater than 0.", field=name)
