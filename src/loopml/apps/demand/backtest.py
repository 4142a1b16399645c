"""Rolling-origin backtest: replay the last N Tuesday runs and score each against what happened.

Each origin is a Tuesday run: train on the data the warehouse held (up to origin - 2 days), forecast
the shift week (origin + 6 .. origin + 12) and compare with the actuals, at the model grain and, for
hourly data, at the hour (daily forecast x the store's recent hour profile). Features are built once
for the whole history and sliced per origin; that is valid because no feature reads a value closer
than the horizon to its target (see ``features``), so a slice equals what that run would have built.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from loopml.apps.demand.features import (
    FREQ_GRAIN,
    HORIZON,
    check_stores,
    check_visits,
    feature_names,
    hourly_profile,
    infer_freq,
    period_start,
    to_grain,
    to_hourly,
    training_frame,
)
from loopml.errors import ValidationError

SCORE_COLUMNS = ["mae", "rmse", "wape"]
#: Weeks of hourly visits an origin hands its models: the interval hold-out, the profile and a margin.
HOURLY_WEEKS = 14
#: The default set of models a backtest compares.
Factory = Callable[[], Any]


def metrics(actual: Any, forecast: Any) -> dict[str, float]:
    """MAE, RMSE and WAPE (sum |error| / sum actual; NaN when every actual is 0)."""
    a = np.asarray(actual, dtype="float64").ravel()
    f = np.asarray(forecast, dtype="float64").ravel()
    if a.shape != f.shape:
        raise ValidationError(
            f"actual has {a.size} values but forecast {f.size}; pass aligned arrays", field="forecast"
        )
    if a.size == 0:
        raise ValidationError("metrics need at least one actual/forecast pair", field="actual")
    if not (np.isfinite(a).all() and np.isfinite(f).all()):
        raise ValidationError("actual and forecast must be finite numbers (no NaN/inf)", field="forecast")
    err = np.abs(a - f)
    total = np.abs(a).sum()
    return {
        "mae": float(err.mean()),
        "rmse": float(np.sqrt(np.mean((a - f) ** 2))),
        "wape": float(err.sum() / total) if total > 0 else float("nan"),
    }


@dataclass
class BacktestResult:
    """Scores per store, per week and overall (each with a ``grain`` column), and every prediction."""

    per_store: pd.DataFrame
    overall: pd.DataFrame
    per_week: pd.DataFrame
    predictions: pd.DataFrame
    origins: list[pd.Timestamp]
    grain: str
    seconds: dict[str, float] = field(default_factory=dict)

    def wape(self, model: str, grain: str | None = None) -> float:
        """Overall WAPE of ``model`` at ``grain`` (the model grain by default)."""
        g = grain or self.grain
        row = self.overall[(self.overall["model"] == model) & (self.overall["grain"] == g)]
        if row.empty:
            raise ValidationError(f"no backtest score for model {model!r} at grain {g!r}", field="model")
        return float(row["wape"].iloc[0])

    def improvement(self, model: str = "lightgbm", baseline: str = "seasonal_naive") -> float:
        """Relative WAPE reduction of ``model`` over ``baseline`` at the model grain (0.2 = 20 % lower)."""
        return 1.0 - self.wape(model) / self.wape(baseline)


def backtest_origins(last_day: pd.Timestamp, weeks: int, grain: str) -> list[pd.Timestamp]:
    """The ``weeks`` latest Tuesdays whose whole shift week (origin+6 .. origin+12) has data.

    For monthly data the origins are the ``weeks`` latest month starts (the forecast month).
    """
    last = pd.Timestamp(last_day).normalize()
    if grain == "month":
        first = last.to_period("M").to_timestamp()
        if (last + pd.Timedelta(days=1)).day != 1:  # an incomplete month is not scored
            first = first - pd.offsets.MonthBegin(1)
        return [first - pd.offsets.MonthBegin(i) for i in range(weeks)][::-1]
    newest = last - pd.Timedelta(days=12)
    newest = newest - pd.Timedelta(days=(newest.day_of_week - 1) % 7)  # back to a Tuesday
    return [newest - pd.Timedelta(days=7 * i) for i in range(weeks)][::-1]


def origin_window(origin: pd.Timestamp, grain: str) -> tuple[pd.Timestamp, pd.Timestamp, pd.Timestamp]:
    """(history cut-off, first target, last target) of the run at ``origin`` (all inclusive)."""
    if grain == "month":
        cutoff = origin - pd.offsets.MonthBegin(HORIZON["month"])
        return cutoff, origin, origin
    cutoff = origin - pd.Timedelta(days=2)
    first = origin + pd.Timedelta(days=6)
    if grain == "week":
        return cutoff - pd.Timedelta(days=6), first, first  # history keeps only complete weeks
    return cutoff, first, origin + pd.Timedelta(days=12)


@dataclass
class _OriginTask:
    """One origin's work. It holds the shared frames and slices them itself, so a serial or threaded
    backtest keeps one copy of the history in memory instead of one per origin."""

    origin: pd.Timestamp
    grain: str
    window: tuple[pd.Timestamp, pd.Timestamp, pd.Timestamp]
    frame: pd.DataFrame
    models: dict[str, Factory]
    hourly: pd.DataFrame | None
    #: Threads per model fit when origins run in parallel (cores // workers); None keeps the params.
    threads: int | None = None


def _run_origin(task: _OriginTask) -> tuple[pd.DataFrame, dict[str, float]]:
    """Fit every model on one origin's training rows and forecast its shift week (picklable)."""
    cutoff, first, last = task.window
    ts = task.frame["ts"]
    train = task.frame[ts <= cutoff].reset_index(drop=True)
    test = task.frame[(ts >= first) & (ts <= last)].reset_index(drop=True)
    profile = hourly_actual = hourly_train = None
    if task.hourly is not None:
        day = task.hourly["ts"].dt.normalize()
        hourly_train = task.hourly[(day <= cutoff) & (day > cutoff - pd.Timedelta(weeks=HOURLY_WEEKS))]
        profile = hourly_profile(hourly_train)
        hourly_actual = task.hourly[(day >= first) & (day <= last)]
    out, seconds = [], {}
    for name, factory in task.models.items():
        start = time.perf_counter()
        model = factory()
        if task.threads is not None and hasattr(model, "use_threads"):
            model.use_threads(task.threads)
        if hourly_train is not None and hasattr(model, "to_hourly"):  # calibrates its hourly interval
            model.fit_frame(train, grain=task.grain, hourly=hourly_train)
        else:
            model.fit_frame(train, grain=task.grain)
        pred = model.predict_frame(test)
        seconds[name] = time.perf_counter() - start
        pred["actual"] = test["visitors"].to_numpy()
        pred["grain"] = task.grain
        frames = [pred]
        if profile is not None and hourly_actual is not None:
            spread = getattr(model, "to_hourly", None) or to_hourly
            hourly = spread(pred.drop(columns=["actual", "grain"]), profile)
            act = hourly_actual[["store_id", "ts", "visitors"]].rename(columns={"visitors": "actual"})
            joined = act.merge(hourly, on=["store_id", "ts"], how="left")
            joined[["forecast", "lower", "upper"]] = joined[["forecast", "lower", "upper"]].fillna(0.0)
            joined["grain"] = "hour"
            frames.append(joined[pred.columns])
        for frame in frames:
            frame["model"] = name
            frame["origin"] = task.origin
            frame["week"] = first
        out.extend(frames)
    return pd.concat(out, ignore_index=True), seconds


def score_predictions(pred: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """MAE, RMSE, pooled WAPE and interval coverage per group: one definition for backtests and the pipeline."""
    err = pred["forecast"] - pred["actual"]
    work = pred.assign(
        _abs=err.abs(),
        _sq=err**2,
        _act=pred["actual"].abs(),
        _in=((pred["actual"] >= pred["lower"]) & (pred["actual"] <= pred["upper"])).astype("float64"),
    )
    g = work.groupby(keys, as_index=False).agg(
        n=("_abs", "size"),
        _abs=("_abs", "sum"),
        _sq=("_sq", "sum"),
        _act=("_act", "sum"),
        coverage=("_in", "mean"),
    )
    g["mae"] = g["_abs"] / g["n"]
    g["rmse"] = np.sqrt(g["_sq"] / g["n"])
    g["wape"] = np.where(g["_act"] > 0, g["_abs"] / g["_act"].where(g["_act"] > 0, 1.0), np.nan)
    return g[[*keys, *SCORE_COLUMNS, "coverage", "n"]]


def worker_threads(items: int, workers: int | None = None) -> int:
    """Threads each of the parallel workers may use: ``max(1, cores // workers)``.

    ``workers`` defaults to one per core (what fan_out's process and thread backends start), capped
    by the number of items.
    """
    cores = os.cpu_count() or 1
    running = min(workers or cores, max(1, items))
    return max(1, cores // running)


def default_models(
    lgb_params: Mapping[str, Any] | None = None, *, interval: float = 0.8
) -> dict[str, Factory]:
    """Seasonal naive and the global LightGBM (picklable factories, so any fan-out backend works)."""
    from functools import partial

    from loopml.apps.demand.models import GlobalLightGBM, SeasonalNaive

    return {
        "seasonal_naive": partial(SeasonalNaive, interval=interval),
        "lightgbm": partial(GlobalLightGBM, dict(lgb_params or {}), interval=interval),
    }


def rolling_origin(
    visits: pd.DataFrame,
    stores: pd.DataFrame,
    models: Mapping[str, Factory] | None = None,
    *,
    weeks: int = 8,
    grain: str | None = None,
    freq: str | None = None,
    fanout: Callable[[Callable[[Any], Any], Sequence[Any]], list[Any]] | None = None,
    hourly: bool = True,
    workers: int | None = None,
) -> BacktestResult:
    """Backtest ``models`` (name -> zero-argument factory) over the ``weeks`` latest Tuesday runs.

    ``visits`` are raw visits (store_id, ts, visitors) at ``freq`` (inferred when None); ``grain``,
    when given, must match the grain of that freq. Every origin retrains every model. ``fanout``
    (e.g. ``functools.partial(loopml.compute.fan_out, backend="process")``) runs origins in
    parallel; the default is serial. Hourly data is also scored per hour unless ``hourly=False``.

    With a ``fanout`` the origins run ``workers`` at a time (default: one per core, as the local
    process and thread backends do), and each fit gets ``max(1, cores // workers)`` threads so the
    workers do not oversubscribe the cores; serial runs keep the models' own ``n_jobs``.
    """
    if isinstance(weeks, bool) or not isinstance(weeks, (int, np.integer)) or weeks < 1:
        raise ValidationError(f"weeks must be a positive integer; got {weeks!r}", field="weeks")
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
        raise ValidationError(f"workers must be a positive integer or None; got {workers!r}", field="workers")
    models = dict(models) if models is not None else default_models()
    if not models or not all(isinstance(k, str) and callable(f) for k, f in models.items()):
        raise ValidationError("models must map names to model factories (callables)", field="models")
    raw = check_visits(visits)
    freq = freq or infer_freq(raw)
    if freq not in FREQ_GRAIN:
        raise ValidationError(f"freq {freq!r} is unknown; use one of {', '.join(FREQ_GRAIN)}", field="freq")
    if grain is not None and grain != FREQ_GRAIN[freq]:
        raise ValidationError(
            f"grain {grain!r} does not fit {freq!r} data; it is modelled at {FREQ_GRAIN[freq]!r}",
            field="grain",
        )
    check_stores(stores, raw["store_id"].unique())
    data, grain = to_grain(raw, freq)
    origins = backtest_origins(raw["ts"].max(), int(weeks), grain)
    first_cutoff = origin_window(origins[0], grain)[0]
    if data["ts"].min() > first_cutoff - pd.Timedelta(days=7 * 8):
        raise ValidationError(
            f"history starts {data['ts'].min().date()}: a {weeks}-week backtest needs data from at least "
            f"8 weeks before {first_cutoff.date()}; lower weeks or give more history",
            field="visits",
        )
    frame = training_frame(data, stores, grain=grain)
    hours = raw if hourly and freq == "h" else None
    windows = [(o, origin_window(o, grain)) for o in origins]
    windows = [(o, w) for o, w in windows if ((frame["ts"] >= w[1]) & (frame["ts"] <= w[2])).any()]
    if not windows:
        raise ValidationError(
            "no backtest week has actuals to score; give more recent visits", field="visits"
        )
    threads = worker_threads(len(windows), workers) if fanout is not None else None
    tasks = [_OriginTask(o, grain, w, frame, models, hours, threads) for o, w in windows]
    run = fanout or (lambda fn, items: [fn(item) for item in items])
    results = run(_run_origin, tasks)
    predictions = pd.concat([r[0] for r in results], ignore_index=True)
    seconds: dict[str, float] = {}
    for _, secs in results:
        for name, s in secs.items():
            seconds[name] = seconds.get(name, 0.0) + s
    per_week = score_predictions(predictions, ["model", "grain", "week"])
    per_week["week"] = period_start(per_week["week"], "week").dt.strftime("%Y-%m-%d").to_numpy()
    return BacktestResult(
        per_store=score_predictions(predictions, ["model", "grain", "store_id"]),
        overall=score_predictions(predictions, ["model", "grain"]),
        per_week=per_week,
        predictions=predictions,
        origins=[t.origin for t in tasks],
        grain=grain,
        seconds=seconds,
    )


def gate_eval_frame(
    visits: pd.DataFrame, stores: pd.DataFrame, *, freq: str | None = None, until: Any = None
) -> pd.DataFrame:
    """Features + the ``visitors`` label of the newest complete shift week (the release-gate data).

    ``until`` (a day, default the newest visit) limits the data, e.g. to the warehouse cut-off of a
    run. A fair gate compares models that did not train on these rows: fit the candidate on data up
    to ``origin_window(origin)[0]`` of that week, or accept that both were scored in-sample.
    """
    raw = check_visits(visits)
    if until is not None:
        raw = raw[raw["ts"].dt.normalize() <= pd.Timestamp(until).normalize()]
        if raw.empty:
            raise ValidationError(f"no visits on or before {until}", field="until")
    data, grain = to_grain(raw, freq)
    origin = backtest_origins(raw["ts"].max(), 1, grain)[0]
    _, first, last = origin_window(origin, grain)
    targets = data[(data["ts"] >= first) & (data["ts"] <= last)]
    if targets.empty:
        raise ValidationError("the newest shift week has no visits to evaluate on", field="visits")
    frame = training_frame(data, stores, grain=grain)
    frame = frame[(frame["ts"] >= first) & (frame["ts"] <= last)]
    return frame[[*feature_names(grain), "visitors"]].reset_index(drop=True)
