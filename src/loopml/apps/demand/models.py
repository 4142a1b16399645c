"""Forecasters of the demand app: the seasonal-naive baseline, a global LightGBM and a ridge model.

All share one contract: ``fit(history, stores, *, grain)`` and ``predict(history, stores, targets,
*, grain) -> DataFrame[store_id, ts, forecast, lower, upper]``, built on ``build_features`` so
training and forecasting see the same features. The ``*_frame`` methods take a ready feature frame:
the backtest builds features once and slices them per origin.

Intervals are empirical: during ``fit`` the last ``VALIDATION_STEPS`` periods of the training data
are held out, the model is fitted on the rest, and the ratios actual / forecast on that slice give
the ``(1 - interval) / 2`` and ``(1 + interval) / 2`` quantiles; then the model is refitted on all
rows. ``lower = forecast x lo_ratio``, ``upper = forecast x hi_ratio``: multiplicative, because the
error of a store-day grows with its level.

Hourly intervals get their own ratios (``HourRatios``): spreading the day's bounds with the hour
profile ignores that each hour's share also varies, so those bounds cover far less than the nominal
level. When ``fit`` receives the hourly visits, the held-out day forecasts are spread to hours with
the profile known before the hold-out, and the actual / forecast ratios are taken per hour of day.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from loopml.apps.demand.config import DEFAULT_LGB_PARAMS
from loopml.apps.demand.features import (
    CATEGORICAL,
    GRAINS,
    HORIZON,
    SEASON,
    build_features,
    check_visits,
    feature_names,
    hourly_profile,
    to_hourly,
    training_frame,
)
from loopml.errors import NotFoundError, ValidationError

MODEL_NAME = "demand"
VALIDATION_STEPS = {"day": 28, "week": 4, "month": 2}
#: Forecasts below this many visitors are left out of the interval ratios (a ratio to ~0 is noise).
MIN_RATIO_FORECAST = 1.0
#: Always on for reproducible fits; the user's params cannot turn them off.
DETERMINISM = {"deterministic": True, "force_row_wise": True}
#: Ridge works on ratios to the store's level; ratios beyond this are clipped (spikes, tiny levels).
MAX_RATIO = 5.0
OUTPUT_COLUMNS = ["store_id", "ts", "forecast", "lower", "upper"]
#: An hour of day with fewer calibration rows than this uses the all-hours ratios.
MIN_HOUR_ROWS = 50
#: Weeks of hourly visits before the hold-out that build the calibration's hour profile.
PROFILE_WEEKS = 8
#: Below this many training rows LightGBM runs on one thread: thread start-up costs more than it saves.
SMALL_FIT_ROWS = 50_000
#: LightGBM's other names for ``n_jobs``; they are dropped when the thread count is set.
THREAD_ALIASES = ("num_threads", "num_thread", "nthread", "nthreads")


@dataclass(frozen=True)
class HourRatios:
    """Interval ratios for hourly forecasts: per hour of day, with all-hours ratios as the fallback."""

    default: tuple[float, float]
    by_hour: dict[int, tuple[float, float]] = field(default_factory=dict)

    def bounds(self, hours: Any) -> tuple[np.ndarray, np.ndarray]:
        """(lo, hi) ratio arrays for an array of hours of day."""
        h = np.asarray(hours, dtype="int64")
        lo = np.full(h.shape, self.default[0], dtype="float64")
        hi = np.full(h.shape, self.default[1], dtype="float64")
        for hour, (low, high) in self.by_hour.items():
            at = h == hour
            lo[at], hi[at] = low, high
        return lo, hi

    def to_metrics(self) -> dict[str, float]:
        """Flat numeric metrics (``hour_lo_ratio``, ``hour_lo_ratio_<h>`` ...) for the registry."""
        out = {"hour_lo_ratio": self.default[0], "hour_hi_ratio": self.default[1]}
        for hour, (lo, hi) in sorted(self.by_hour.items()):
            out[f"hour_lo_ratio_{hour}"] = lo
            out[f"hour_hi_ratio_{hour}"] = hi
        return out

    @classmethod
    def from_metrics(cls, metrics: Mapping[str, Any]) -> HourRatios | None:
        """Inverse of ``to_metrics``; None when the metrics hold no hourly ratios (older versions)."""
        if "hour_lo_ratio" not in metrics or "hour_hi_ratio" not in metrics:
            return None
        by_hour = {}
        for key in metrics:
            hour = key.removeprefix("hour_lo_ratio_")
            if hour != key and hour.isdigit() and f"hour_hi_ratio_{hour}" in metrics:
                by_hour[int(hour)] = (float(metrics[key]), float(metrics[f"hour_hi_ratio_{hour}"]))
        return cls((float(metrics["hour_lo_ratio"]), float(metrics["hour_hi_ratio"])), by_hour)


def _check_interval(interval: float) -> float:
    if isinstance(interval, bool) or not isinstance(interval, (int, float)) or not 0 < interval < 1:
        raise ValidationError(
            f"interval must be a share between 0 and 1 (e.g. 0.8); got {interval!r}", field="interval"
        )
    return float(interval)


def _check_frame(frame: pd.DataFrame, grain: str, *, label: bool) -> None:
    if grain not in GRAINS:
        raise ValidationError(f"grain {grain!r} is unknown; use one of {', '.join(GRAINS)}", field="grain")
    if not isinstance(frame, pd.DataFrame):
        raise ValidationError(f"feature frame must be a DataFrame; got {type(frame).__name__}", field="frame")
    need = ["store_id", "ts", *feature_names(grain), "naive_value"] + (
        ["visitors", "robust_cap"] if label else []
    )
    missing = [c for c in need if c not in frame.columns]
    if missing:
        raise ValidationError(
            f"feature frame is missing {', '.join(missing[:5])}; build it with build_features()",
            field="frame",
        )
    if frame.empty:
        raise ValidationError("feature frame is empty; there is no row to fit or forecast", field="frame")
    if label:
        y = frame["visitors"].to_numpy(dtype="float64")
        if not np.isfinite(y).all():
            raise ValidationError(
                "visitors holds NaN or infinite labels; clean the history first", field="visitors"
            )


class Forecaster:
    """Shared fit/predict plumbing and the empirical interval; subclasses fit and predict a point."""

    name = "forecaster"

    def __init__(self, *, interval: float = 0.8) -> None:
        self.interval = _check_interval(interval)
        self.interval_ratios: tuple[float, float] | None = None
        self.hour_ratios: HourRatios | None = None
        self.grain: str | None = None
        self.train_rows = 0

    # -- the per-model part ---------------------------------------------------------------------
    def _fit_point(self, frame: pd.DataFrame, grain: str) -> None:
        raise NotImplementedError

    def _predict_point(self, frame: pd.DataFrame, grain: str) -> np.ndarray:
        raise NotImplementedError

    def use_threads(self, threads: int) -> None:
        """Cap the threads a fit may use (a fan-out worker's share of the cores); a no-op by default."""
        return None

    # -- public API -----------------------------------------------------------------------------
    @property
    def feature_names(self) -> list[str]:
        return feature_names(self._fitted_grain())

    def fit(
        self,
        history: pd.DataFrame,
        stores: pd.DataFrame,
        *,
        grain: str,
        hourly: pd.DataFrame | None = None,
    ) -> Forecaster:
        """Fit on every observed period of ``history`` (store_id, ts, visitors at any finer freq).

        ``hourly`` (the raw hourly visits, day grain only) calibrates the hourly intervals.
        """
        return self.fit_frame(training_frame(history, stores, grain=grain), grain=grain, hourly=hourly)

    def predict(
        self, history: pd.DataFrame, stores: pd.DataFrame, targets: pd.DataFrame, *, grain: str
    ) -> pd.DataFrame:
        """Point forecast and interval for each ``targets`` row (store_id, ts), in targets order."""
        self._check_grain_matches(grain)
        return self.predict_frame(build_features(history, stores, targets, grain=grain))

    def fit_frame(self, frame: pd.DataFrame, *, grain: str, hourly: pd.DataFrame | None = None) -> Forecaster:
        """Fit on a ``build_features`` frame with ``visitors`` (rows without recent history are skipped).

        ``hourly``: raw hourly visits (store_id, ts, visitors) covering at least the hold-out and the
        ``PROFILE_WEEKS`` before it; hours after the frame's last day are ignored. Without it the
        hourly intervals fall back to the day bounds spread by the profile (too narrow).
        """
        _check_frame(frame, grain, label=True)
        hours = self._check_hourly(hourly, grain, frame["ts"].max())
        rows = _trainable(frame, grain)
        if rows.empty:
            raise ValidationError(
                "no training row has recent history; give at least a few weeks of visits", field="history"
            )
        self.grain = grain
        ts = rows["ts"]
        cut = np.sort(ts.unique())
        holdout = ts >= cut[-VALIDATION_STEPS[grain]] if len(cut) > 2 * VALIDATION_STEPS[grain] else None
        if holdout is not None and (~holdout).sum() > 0 and holdout.sum() >= 20:
            self._fit_point(rows[~holdout], grain)
            val = rows[holdout]
            val_point = self._predict_point(val, grain)
            self.interval_ratios = self._ratios(val["visitors"].to_numpy(), val_point)
            self.hour_ratios = self._hour_ratios(val, val_point, hours)
            self._fit_point(rows, grain)
        else:  # too little data for a hold-out: in-sample ratios (narrower than they should be)
            self._fit_point(rows, grain)
            point = self._predict_point(rows, grain)
            self.interval_ratios = self._ratios(rows["visitors"].to_numpy(), point)
            recent = (rows["ts"] >= cut[-min(len(cut), VALIDATION_STEPS[grain])]).to_numpy()
            self.hour_ratios = self._hour_ratios(rows[recent], point[recent], hours)
        self.train_rows = len(rows)
        return self

    def predict_frame(self, frame: pd.DataFrame) -> pd.DataFrame:
        """Forecasts for the rows of a ``build_features`` frame (``OUTPUT_COLUMNS``)."""
        grain = self._fitted_grain()
        _check_frame(frame, grain, label=False)
        point = np.maximum(np.nan_to_num(self._predict_point(frame, grain), nan=0.0), 0.0)
        lo, hi = self.interval_ratios or (1.0, 1.0)
        return pd.DataFrame(
            {
                "store_id": frame["store_id"].to_numpy(dtype="int64"),
                "ts": frame["ts"].to_numpy(),
                "forecast": point,
                "lower": point * lo,
                "upper": point * hi,
            }
        )

    def to_hourly(self, daily: pd.DataFrame, profile: pd.DataFrame) -> pd.DataFrame:
        """This model's day forecasts spread over hours, with the hourly-calibrated interval.

        Without hourly ratios (no hourly data at fit time, or an older registered version) the
        day bounds are spread with the profile like the forecast.
        """
        out = to_hourly(daily, profile)
        if self.hour_ratios is not None and not out.empty:
            lo, hi = self.hour_ratios.bounds(out["ts"].dt.hour.to_numpy())
            point = out["forecast"].to_numpy(dtype="float64")
            out["lower"] = point * lo
            out["upper"] = point * hi
        return out

    # -- helpers --------------------------------------------------------------------------------
    def _ratios(self, actual: np.ndarray, forecast: np.ndarray) -> tuple[float, float]:
        ok = np.isfinite(forecast) & (forecast >= MIN_RATIO_FORECAST)
        if ok.sum() < 10:
            return (1.0, 1.0)
        ratio = actual[ok] / forecast[ok]
        tail = (1.0 - self.interval) / 2.0
        lo, hi = np.quantile(ratio, [tail, 1.0 - tail])
        return (float(min(lo, 1.0)), float(max(hi, 1.0)))

    @staticmethod
    def _check_hourly(hourly: pd.DataFrame | None, grain: str, last: pd.Timestamp) -> pd.DataFrame | None:
        if hourly is None:
            return None
        if grain != "day":
            raise ValidationError(
                f"hourly visits only calibrate day-grain models; this one is {grain!r}: pass hourly=None",
                field="hourly",
            )
        end = pd.Timestamp(last).normalize() + pd.Timedelta(days=1)
        if isinstance(hourly, pd.DataFrame) and pd.api.types.is_datetime64_any_dtype(hourly.get("ts")):
            # only the hold-out and the profile weeks before it are read: skip checking years of rows
            since = end - pd.Timedelta(days=VALIDATION_STEPS["day"] + 7 * (PROFILE_WEEKS + 1))
            hourly = hourly[(hourly["ts"] >= since) & (hourly["ts"] < end)]
        clean = check_visits(hourly, what="hourly")
        clean = clean[clean["ts"] < end]
        return clean if not clean.empty else None

    def _hour_ratios(
        self, val: pd.DataFrame, point: np.ndarray, hours: pd.DataFrame | None
    ) -> HourRatios | None:
        """Ratios actual / forecast at the hour for the day forecasts ``point`` of the rows ``val``."""
        if hours is None or val.empty:
            return None
        start, end = val["ts"].min(), val["ts"].max()
        day = hours["ts"].dt.normalize()
        before = hours[(day < start) & (day >= start - pd.Timedelta(weeks=PROFILE_WEEKS))]
        if before.empty:  # no hour shape known before the hold-out: use the hold-out's own (in-sample)
            before = hours[(day >= start) & (day <= end)]
        if before.empty:
            return None
        daily = pd.DataFrame(
            {
                "store_id": val["store_id"].to_numpy(dtype="int64"),
                "ts": val["ts"].to_numpy(),
                "forecast": np.maximum(np.nan_to_num(point, nan=0.0), 0.0),
            }
        )
        spread = to_hourly(daily, hourly_profile(before, weeks=PROFILE_WEEKS))
        actual = hours[(day >= start) & (day <= end)][["store_id", "ts", "visitors"]]
        joined = actual.merge(spread, on=["store_id", "ts"], how="inner")
        forecast = joined["forecast"].to_numpy(dtype="float64")
        ok = np.isfinite(forecast) & (forecast >= MIN_RATIO_FORECAST)
        if ok.sum() < MIN_HOUR_ROWS:
            return None
        ratio = joined["visitors"].to_numpy(dtype="float64")[ok] / forecast[ok]
        hour = joined["ts"].dt.hour.to_numpy()[ok]
        tail = (1.0 - self.interval) / 2.0

        def bounds(values: np.ndarray) -> tuple[float, float]:
            lo, hi = np.quantile(values, [tail, 1.0 - tail])
            return (float(min(lo, 1.0)), float(max(hi, 1.0)))

        by_hour = {
            int(h): bounds(ratio[hour == h]) for h in np.unique(hour) if (hour == h).sum() >= MIN_HOUR_ROWS
        }
        return HourRatios(bounds(ratio), by_hour)

    def _fitted_grain(self) -> str:
        if self.grain is None:
            raise ValidationError(f"{type(self).__name__} is not fitted; call fit() first", field="model")
        return self.grain

    def _check_grain_matches(self, grain: str) -> None:
        if self._fitted_grain() != grain:
            raise ValidationError(
                f"{type(self).__name__} was fitted at grain {self.grain!r}, not {grain!r}; refit it",
                field="grain",
            )


def _trainable(frame: pd.DataFrame, grain: str) -> pd.DataFrame:
    """Training rows: those with at least the shortest rolling window of history behind them."""
    first_window = next(c for c in feature_names(grain) if c.startswith("roll_mean_"))
    return frame[frame[first_window].notna()]


def clipped_target(frame: pd.DataFrame) -> np.ndarray:
    """The training label: visitors capped at the robust bound (CAP_FACTOR x trailing median)."""
    y = frame["visitors"].to_numpy(dtype="float64")
    cap = frame["robust_cap"].to_numpy(dtype="float64")
    return np.where(np.isnan(cap), y, np.minimum(y, cap))


class SeasonalNaive(Forecaster):
    """The value one season earlier, using the latest season the forecast horizon allows.

    Day grain (hourly or daily data): the same weekday 14 days before the target (the newest
    same-weekday value on the Sunday cut-off). Week grain: the same week 52 weeks before; month
    grain: 12 months before. A missing value falls back to the mean of the next three seasonal lags
    that exist, and a store with none of them forecasts 0. No training: ``fit`` only measures the
    interval ratios.
    """

    name = "seasonal_naive"

    def _fit_point(self, frame: pd.DataFrame, grain: str) -> None:
        return None

    def _predict_point(self, frame: pd.DataFrame, grain: str) -> np.ndarray:
        return frame["naive_value"].to_numpy(dtype="float64")

    @staticmethod
    def lag(grain: str) -> int:
        """The lag (in grain periods) the forecast repeats."""
        return SEASON[grain] * math.ceil(HORIZON[grain] / SEASON[grain])


class GlobalLightGBM(Forecaster):
    """One LightGBM regressor for all stores; store and region are categorical features.

    ``params`` are LGBMRegressor params merged over ``config.DEFAULT_LGB_PARAMS``; ``n_jobs`` sets
    the threads. Fits are deterministic (``deterministic``, ``force_row_wise`` and a fixed seed).
    """

    name = "lightgbm"

    def __init__(self, params: Mapping[str, Any] | None = None, *, interval: float = 0.8) -> None:
        super().__init__(interval=interval)
        if params is not None and not isinstance(params, Mapping):
            raise ValidationError(
                f"params must be a dict of LightGBM params; got {type(params).__name__}", field="params"
            )
        self.params: dict[str, Any] = {**DEFAULT_LGB_PARAMS, **dict(params or {}), **DETERMINISM}
        self.params.setdefault("random_state", 7)
        self.params.setdefault("verbose", -1)
        self.estimator: Any = None
        self._loaded_predict: Callable[[pd.DataFrame], np.ndarray] | None = None

    @property
    def booster(self) -> Any:
        """The fitted ``lightgbm.Booster``."""
        if self.estimator is None:
            raise ValidationError(
                "GlobalLightGBM is not fitted (or was loaded from the registry)", field="model"
            )
        return self.estimator.booster_

    def use_threads(self, threads: int) -> None:
        """Run fits on at most ``threads`` threads (a worker's share when origins fan out)."""
        if isinstance(threads, bool) or not isinstance(threads, (int, np.integer)) or threads < 1:
            raise ValidationError(f"threads must be a positive integer; got {threads!r}", field="threads")
        current = self._threads()
        self.params = {k: v for k, v in self.params.items() if k not in THREAD_ALIASES}
        self.params["n_jobs"] = int(threads) if current <= 0 else min(current, int(threads))

    def _threads(self) -> int:
        for key in ("n_jobs", *THREAD_ALIASES):
            value = self.params.get(key)
            if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
                return int(value)
        return 0

    def _fit_point(self, frame: pd.DataFrame, grain: str) -> None:
        import lightgbm

        names = feature_names(grain)
        params = self.params
        if len(frame) < SMALL_FIT_ROWS:  # a small fit is faster on one thread than waiting for a core
            params = {k: v for k, v in params.items() if k not in THREAD_ALIASES}
            params["n_jobs"] = 1
        try:
            est = lightgbm.LGBMRegressor(**params)
        except TypeError as exc:
            raise ValidationError(f"LightGBM params are invalid ({exc})", field="params") from None
        est.fit(frame[names], clipped_target(frame), categorical_feature=list(CATEGORICAL))
        self.estimator = est
        self._loaded_predict = None

    def _predict_point(self, frame: pd.DataFrame, grain: str) -> np.ndarray:
        X = frame[feature_names(grain)]
        if self._loaded_predict is not None:
            return np.asarray(self._loaded_predict(X), dtype="float64")
        return np.asarray(self.estimator.predict(X), dtype="float64")


class RidgeForecaster(Forecaster):
    """Ridge regression on the same features, relative to each row's level (a linear second opinion).

    Value features and the label are divided by the robust 28-period mean so one linear model fits
    small and large stores; missing values are filled with the level (ratio 1). Calendar columns are
    one-hot (weekday, month) or used as is.
    """

    name = "ridge"

    def __init__(self, alpha: float = 10.0, *, interval: float = 0.8) -> None:
        super().__init__(interval=interval)
        if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not alpha >= 0:
            raise ValidationError(f"alpha must be a number >= 0; got {alpha!r}", field="alpha")
        self.alpha = float(alpha)
        self.model: Any = None

    @staticmethod
    def _level(frame: pd.DataFrame, grain: str) -> np.ndarray:
        col = [c for c in feature_names(grain) if c.startswith("roll_mean_")][-2 if grain == "day" else 0]
        level = frame[col].to_numpy(dtype="float64")
        return np.where(np.isfinite(level), np.maximum(level, 1.0), 1.0)

    def _design(self, frame: pd.DataFrame, grain: str) -> np.ndarray:
        level = self._level(frame, grain)
        parts = []
        for col in feature_names(grain):
            v = frame[col].to_numpy(dtype="float64")
            if col.startswith(("lag_", "roll_", "same_wd")):
                parts.append(np.clip(np.nan_to_num(v / level, nan=1.0), 0.0, MAX_RATIO))
            elif col in ("dow", "month"):
                k = 7 if col == "dow" else 12
                base = 0 if col == "dow" else 1
                parts.extend((v == base + i).astype("float64") for i in range(k))
            elif col in ("is_weekend", "is_holiday", "is_bridge", "holiday_lag_h", "holiday_lag_364"):
                parts.append(np.nan_to_num(v))
            elif col in ("days_to_holiday", "days_since_holiday"):
                parts.append(np.exp(-np.nan_to_num(v, nan=30.0) / 3.0))
            elif col == "holidays_in_period":
                parts.append(np.nan_to_num(v))
        return np.column_stack(parts)

    def _fit_point(self, frame: pd.DataFrame, grain: str) -> None:
        from sklearn.linear_model import Ridge

        level = self._level(frame, grain)
        y = np.clip(clipped_target(frame) / level, 0.0, MAX_RATIO)
        self.model = Ridge(alpha=self.alpha).fit(self._design(frame, grain), y)

    def _predict_point(self, frame: pd.DataFrame, grain: str) -> np.ndarray:
        return self.model.predict(self._design(frame, grain)) * self._level(frame, grain)


#: Model factories by name, as the backtest and the pipeline take them.
MODELS: dict[str, Callable[..., Forecaster]] = {
    "seasonal_naive": SeasonalNaive,
    "lightgbm": GlobalLightGBM,
    "ridge": RidgeForecaster,
}


# -- registry --------------------------------------------------------------------------------------
def _signature(names: list[str]) -> list[dict[str, Any]]:
    return [
        {"name": n, "dtype": "int" if n == "store_id" else "float", "nullable": n != "store_id"}
        for n in names
    ]


def register_model(
    lm: Any,
    model: GlobalLightGBM,
    *,
    eval_frame: pd.DataFrame,
    metrics: Mapping[str, float],
    run_id: str | None = None,
    dataset_version_ids: Iterable[int] = (),
    description: str = "",
    actor: str = "system",
) -> Any:
    """Register the fitted LightGBM as the next version of model ``"demand"`` (lightgbm flavor).

    The interval ratios and the interval level travel as version metrics (``interval_lo_ratio``,
    ``interval_hi_ratio``, ``interval``, and the hourly ``hour_lo_ratio[_<h>]`` / ``hour_hi_ratio[_<h>]``)
    so ``model_from_registry`` restores the full forecaster.
    Every feature but ``store_id`` is registered nullable: new stores have no lags yet.
    """
    if not isinstance(model, GlobalLightGBM) or model.estimator is None:
        raise ValidationError("register_model needs a fitted GlobalLightGBM", field="model")
    names = model.feature_names
    if not isinstance(eval_frame, pd.DataFrame) or eval_frame.empty:
        raise ValidationError(
            "eval_frame must be a non-empty feature frame (gate_eval_frame())", field="eval_frame"
        )
    missing = [n for n in names if n not in eval_frame.columns]
    if missing:
        raise ValidationError(
            f"eval_frame is missing feature(s) {', '.join(missing[:5])}", field="eval_frame"
        )
    if not isinstance(metrics, Mapping):
        raise ValidationError("metrics must be a dict of name -> number", field="metrics")
    lo, hi = model.interval_ratios or (1.0, 1.0)
    all_metrics = {
        **{
            k: float(v) for k, v in metrics.items() if isinstance(v, (int, float)) and math.isfinite(float(v))
        },
        "interval_lo_ratio": lo,
        "interval_hi_ratio": hi,
        "interval": model.interval,
        **(model.hour_ratios.to_metrics() if model.hour_ratios is not None else {}),
    }
    example = eval_frame[names].head(20).copy()
    example["store_id"] = example["store_id"].astype("int64")
    return lm.registry.register(
        MODEL_NAME,
        model.estimator,
        flavor="lightgbm",
        input_example=example,
        signature=_signature(names),
        metrics=all_metrics,
        run_id=run_id,
        dataset_version_ids=list(dataset_version_ids),
        description=description or f"global LightGBM, {model.grain} grain, {model.train_rows} training rows",
        actor=actor,
    )


def model_from_registry(loaded: Any, version: Any = None) -> GlobalLightGBM:
    """A ``GlobalLightGBM`` that predicts through a ``LoadedModel`` (``lm.registry.load(...)``).

    The grain comes from the signature's feature names and the intervals (day and hourly) from the
    version metrics (``version`` defaults to ``loaded.version``).
    """
    if not hasattr(loaded, "predict") or not hasattr(loaded, "signature"):
        raise ValidationError("loaded must be what lm.registry.load() returns", field="loaded")
    version = version if version is not None else loaded.version
    names = list(loaded.signature.names)
    grain = next((g for g in GRAINS if feature_names(g) == names), None)
    if grain is None:
        raise NotFoundError(
            f"model {loaded.ref} does not take the demand features of any grain; is it a demand model?",
            field="model",
        )
    metrics = dict(getattr(version, "metrics", None) or {})
    if "interval_lo_ratio" not in metrics or "interval_hi_ratio" not in metrics:
        raise ValidationError(
            f"model {loaded.ref} has no interval_lo_ratio/interval_hi_ratio metrics; register it with "
            "register_model()",
            field="model",
        )
    model = GlobalLightGBM(interval=float(metrics.get("interval", 0.8)))
    model.grain = grain
    model.interval_ratios = (float(metrics["interval_lo_ratio"]), float(metrics["interval_hi_ratio"]))
    model.hour_ratios = HourRatios.from_metrics(metrics)
    model._loaded_predict = lambda X: loaded.predict(X, strict=True)
    return model
