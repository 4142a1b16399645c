"""The weekly demand batch (``demand.weekly``) and its deadline watch (``demand.deadline``).

Every Tuesday 06:00 in Seoul (cron ``0 21 * * 1`` in UTC, i.e. Monday 21:00 UTC) the chain plans the
shift week that starts the next Monday. The warehouse holds visits up to the Sunday before the run
(run_date - 2 days), so the first forecast day is 8 days after the last observed one. Steps:

ingest -> validate -> features -> train_or_reuse -> backtest -> evaluate -> release -> forecast ->
staffing -> publish

``evaluate`` (weeks whose actuals have landed, and the store A/B analysis) runs before ``release``
so that the promotion decision uses this week's evidence rather than last week's. Every step is
idempotent on its own (ingest adds only missing days, training reuses a candidate registered for
the same data and settings, publish replaces a week's partition with identical bytes), so a re-run
of the same run_date produces the same outputs and no new dataset or model versions. Steps retry
once: ``inject_failure="forecast"`` makes that step fail on its first attempt to show it.
"""

from __future__ import annotations

import hashlib
import json
import logging
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd

import loopml
from loopml.apps.demand import abtest, evaluation, results
from loopml.apps.demand.backtest import (
    HOURLY_WEEKS,
    backtest_origins,
    default_models,
    origin_window,
    rolling_origin,
    score_predictions,
)
from loopml.apps.demand.config import DemandConfig
from loopml.apps.demand.contracts import BACKTEST, DATASETS, STORES, VISITS
from loopml.apps.demand.features import build_features, feature_names, hourly_profile, to_grain
from loopml.apps.demand.models import GlobalLightGBM, SeasonalNaive, model_from_registry, register_model
from loopml.apps.demand.simulate import (
    Warehouse,
    default_stores_for,
    load_user_visits,
    simulate_stores,
    simulate_visits,
)
from loopml.apps.demand.staffing import plan_staff
from loopml.compute import fan_out
from loopml.data import Column, Contract
from loopml.errors import LoopmlError, NotFoundError, ValidationError
from loopml.pipelines import Pipeline, register, step
from loopml.registry import BeatsCurrent, GateBlockedError

log = logging.getLogger("loopml.apps.demand")

WEEKLY = "demand.weekly"
DEADLINE = "demand.deadline"
MODEL = "demand"
ACTOR = "pipeline:demand.weekly"
#: Monday 21:00 UTC = Tuesday 06:00 Asia/Seoul (KST has no daylight saving).
WEEKLY_CRON = "0 21 * * 1"
#: Thursday 09:00 UTC = Thursday 18:00 Asia/Seoul, the default ``publish_deadline``.
DEADLINE_CRON = "0 9 * * 4"
KST = ZoneInfo("Asia/Seoul")
STEPS = (
    "ingest",
    "validate",
    "features",
    "train_or_reuse",
    "backtest",
    "evaluate",
    "release",
    "forecast",
    "staffing",
    "publish",
)
BACKTEST_ORIGINS = "demand_backtest_origins"
BACKTEST_MODELS = ("seasonal_naive", "lightgbm")
_SUB_DAY = ("h", "D")


class InjectedFailure(LoopmlError):
    """Raised on purpose by ``inject_failure`` to show that the step's retry saves the run."""


# -- dates ------------------------------------------------------------------------------------------
def today_kst(now: datetime | None = None) -> date:
    """The store calendar's date now: a schedule fires in UTC, the chain lives in Seoul."""
    if now is not None and not isinstance(now, datetime):
        raise ValidationError(f"now must be a datetime, got {type(now).__name__}", field="now")
    moment = now or datetime.now(tz=KST)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=KST)
    return moment.astimezone(KST).date()


def parse_run_date(value: Any) -> pd.Timestamp:
    """The run's Tuesday (``None`` or ``""`` = today in Seoul); other weekdays are refused with the fix."""
    if value is None or (isinstance(value, str) and not value.strip()):
        day = pd.Timestamp(today_kst())
    else:
        try:
            day = pd.Timestamp(value)
        except (TypeError, ValueError):
            day = pd.NaT
        if not isinstance(value, str | date | datetime | pd.Timestamp) or pd.isna(day):
            raise ValidationError(
                f"run_date={value!r} is not a date; give an ISO date of a Tuesday, e.g. 2026-12-01",
                field="run_date",
            )
        if day != day.normalize():
            raise ValidationError(
                f"run_date={value!r} has a time of day; give the date only", field="run_date"
            )
    if day.weekday() != 1:
        tuesday = day - pd.Timedelta(days=(day.weekday() - 1) % 7)
        raise ValidationError(
            f"run_date={day.date().isoformat()} is a {day:%A}; the weekly run is on Tuesdays (data up to the "
            f"Sunday before, forecast from the next Monday): use {tuesday.date().isoformat()}",
            field="run_date",
        )
    return day.normalize()


def shift_week(run_date: Any) -> pd.Timestamp:
    """Monday of the week the run on ``run_date`` (a Tuesday) plans: six days later."""
    return parse_run_date(run_date) + pd.Timedelta(days=6)


def data_cutoff(run_date: Any) -> pd.Timestamp:
    """The last day the warehouse holds at the run: the Sunday two days before."""
    return parse_run_date(run_date) - pd.Timedelta(days=2)


def week_id(ts: Any) -> str:
    return pd.Timestamp(ts).normalize().date().isoformat()


# -- small helpers ----------------------------------------------------------------------------------
def _cfg(config: dict) -> DemandConfig:
    return DemandConfig.from_dict(config)


def _digest(value: Any) -> str:
    text = json.dumps(value, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _frame_digest(frame: pd.DataFrame) -> str:
    hashed = pd.util.hash_pandas_object(frame.reset_index(drop=True), index=False).to_numpy()
    return hashlib.sha256(hashed.tobytes() + ",".join(map(str, frame.columns)).encode()).hexdigest()[:16]


def _naive(ts: pd.Series) -> pd.Series:
    """Wall-clock timestamps: the platform stores datetimes UTC-labelled, the app works without a zone."""
    ts = pd.to_datetime(ts)
    return ts.dt.tz_localize(None) if getattr(ts.dt, "tz", None) is not None else ts


def _maybe_fail(lm: loopml.Loopml, run_id: str, name: str) -> None:
    """Fail the first attempt of step ``name`` when the run asked for it (param ``inject_failure``).

    The param is read from the run record rather than declared on every step, so it does not enter
    the steps' cache keys; the marker file makes the failure happen once per run and step.
    """
    try:
        wanted = str(lm.pipelines.get_run(run_id).params.get("inject_failure") or "")
    except NotFoundError:  # the step is being called directly, outside a run
        return
    if name not in {part.strip() for part in wanted.split(",")}:
        return
    marker = Path(lm.settings.home_dir) / "demand" / "injected" / f"{run_id}.{name}"
    if marker.exists():
        print(f"inject_failure={wanted!r}: step {name} already failed once in this run; running normally")
        return
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.write_text(datetime.now(tz=KST).isoformat())
    raise InjectedFailure(
        f"injected failure in step {name!r} (inject_failure={wanted!r}); the step's retry runs it normally"
    )


def _read_visits(lm: loopml.Loopml, version: int, cutoff: pd.Timestamp) -> pd.DataFrame:
    frame = lm.datasets.read(DATASETS["visits"], version)
    frame["ts"] = _naive(frame["ts"])
    frame = frame[frame["ts"] < cutoff + pd.Timedelta(days=1)]
    return frame.sort_values(["store_id", "ts"], kind="stable").reset_index(drop=True)


def _read_stores(lm: loopml.Loopml, version: int) -> pd.DataFrame:
    frame = lm.datasets.read(DATASETS["stores"], version)
    for column in ("opened_on", "closed_on"):
        if column in frame:
            frame[column] = _naive(frame[column])
    return frame.sort_values("store_id").reset_index(drop=True)


def _simulated(cfg: DemandConfig, run_date: pd.Timestamp) -> tuple[pd.DataFrame, pd.DataFrame]:
    """What the chain's warehouse holds at ``run_date``: periods complete by the Sunday before."""
    stores = simulate_stores(cfg)
    visits = simulate_visits(stores, cfg, until=run_date - pd.Timedelta(days=2))
    return stores, Warehouse(stores, visits, freq=cfg.freq).available(run_date)


def _source_data(
    source: str, cfg: DemandConfig, cutoff: pd.Timestamp
) -> tuple[pd.DataFrame, pd.DataFrame, str]:
    """(stores, visits up to the cutoff, frequency) from the simulator or the user's file/directory."""
    if source == "simulator":
        stores, visits = _simulated(cfg, cutoff + pd.Timedelta(days=2))
        freq = cfg.freq
    else:
        path = Path(source).expanduser()
        if not path.exists():
            raise ValidationError(
                f"source={source!r} does not exist; give 'simulator' or a CSV/Parquet file or directory "
                "with columns store_id, timestamp (or ts), visitors",
                field="source",
            )
        visits, freq = load_user_visits(path)
        stores = None
    visits = visits.copy()
    visits["ts"] = _naive(visits["ts"])
    visits = visits[visits["ts"] < cutoff + pd.Timedelta(days=1)]
    if not visits.empty and stores is None:
        stores = default_stores_for(visits)  # from what was known at the run, not from later rows
    if visits.empty:
        raise ValidationError(
            f"source={source!r} has no visits up to {cutoff.date()} (run_date - 2 days); check the dates in "
            "the data or pick a later run_date",
            field="source",
        )
    return stores, visits, freq


def _ensure_dataset(lm: loopml.Loopml, name: str, contract: Any, description: str) -> None:
    try:
        lm.datasets.get(name)
    except NotFoundError:
        lm.datasets.define(name, contract, description=description, actor=ACTOR)


def _partition_keys(lm: loopml.Loopml, name: str) -> list[str]:
    try:
        return sorted(str(p.key) for p in lm.datasets.partitions(name))
    except NotFoundError:
        return []


def _aliases(lm: loopml.Loopml) -> dict[str, int]:
    try:
        # A protected alias nobody holds yet is listed with version 0.
        return {a.alias: int(a.version) for a in lm.registry.aliases(MODEL) if a.version}
    except NotFoundError:
        return {}


# -- steps ----------------------------------------------------------------------------------------
@step(cache=False, retries=1, backoff_seconds=0.2)
def ingest(run_date: str | None, config: dict, source: str, lm: loopml.Loopml, pipeline_run_id: str) -> dict:
    """Land the days the warehouse delivered since the last run, one partition per day.

    Only missing days are ingested, so re-running a date adds nothing; the output describes the
    dataset state (not this run's delta), so a re-run hands identical bytes to the next steps and
    everything downstream is reused from the cache.
    """
    _maybe_fail(lm, pipeline_run_id, "ingest")
    day = parse_run_date(run_date)
    cfg = _cfg(config)
    cutoff = data_cutoff(day)
    if not isinstance(source, str) or not source.strip():
        raise ValidationError(
            "source is empty; give 'simulator' or a path to a CSV/Parquet file", field="source"
        )
    stores, visits, freq = _source_data(source.strip(), cfg, cutoff)
    name = DATASETS["visits"]
    _ensure_dataset(lm, name, VISITS, "Store visits per period (daily partitions, store wall-clock time)")
    _ensure_dataset(lm, DATASETS["stores"], STORES, "Stores: region, type, size, opening hours, lifetime")
    have = set(_partition_keys(lm, name))
    days = visits["ts"].dt.normalize().dt.strftime("%Y-%m-%d")
    new = visits[~days.isin(have)]
    if len(new):
        got = lm.datasets.ingest(name, new, partition_by="ts", actor=ACTOR)
        print(
            f"ingested {days[~days.isin(have)].nunique()} new day(s) up to {cutoff.date()}: "
            f"{got.rows_ok:,} rows kept, {got.rows_quarantined:,} quarantined -> {name} v{got.version.number}"
        )
    else:
        print(f"no new days up to {cutoff.date()}: {name} already holds them")
    stores_result = lm.datasets.ingest(DATASETS["stores"], stores, actor=ACTOR)
    version = lm.datasets.version(name)
    return {
        "run_date": day.date().isoformat(),
        "week": week_id(shift_week(day)),
        "cutoff": cutoff.date().isoformat(),
        "source": source.strip(),
        "freq": freq,
        "visits_version": version.number,
        "visits_version_id": version.id,
        "visits_digest": version.digest,
        "rows_in": int(version.rows_in or 0),
        "rows_quarantined": int(version.rows_quarantined or 0),
        "stores_version": stores_result.version.number,
        "stores_version_id": stores_result.version.id,
    }


@step(retries=1, backoff_seconds=0.2)
def validate(ingest: dict, config: dict, lm: loopml.Loopml, pipeline_run_id: str) -> dict:
    """Refuse stale data loudly; report quarantined rows and store-days that never arrived."""
    _maybe_fail(lm, pipeline_run_id, "validate")
    cutoff = pd.Timestamp(ingest["cutoff"])
    visits = _read_visits(lm, ingest["visits_version"], cutoff)
    stores = _read_stores(lm, ingest["stores_version"])
    if visits.empty:
        raise ValidationError(
            f"{DATASETS['visits']} has no rows up to {cutoff.date()}; nothing to forecast from"
        )
    newest = visits["ts"].max().normalize()
    expected = _expected_newest(cutoff, ingest["freq"])
    if newest < expected:
        late = (expected - newest).days
        raise ValidationError(
            f"{DATASETS['visits']} is stale: the newest day is {newest.date()}, the run of {ingest['run_date']} "
            f"needs data up to {expected.date()} ({late} day(s) missing). Check the warehouse delivery "
            f"(source={ingest['source']!r}) and re-run; nothing was published"
        )
    share = ingest["rows_quarantined"] / ingest["rows_in"] if ingest["rows_in"] else 0.0
    missing = _missing_store_days(visits, stores, cutoff, ingest["freq"])
    report = {
        "newest": newest.date().isoformat(),
        "expected": expected.date().isoformat(),
        "stores": int(visits["store_id"].nunique()),
        "rows": len(visits),
        "quarantine_share": round(share, 6),
        "missing_store_days": int(sum(missing.values())),
        "missing_by_store": dict(sorted(missing.items(), key=lambda kv: (-kv[1], kv[0]))[:10]),
    }
    print(
        f"fresh up to {report['newest']}; {report['stores']} stores; quarantine share {share:.2%}; "
        f"{report['missing_store_days']} missing store-day(s) in the last 4 weeks"
    )
    return report


def _expected_newest(cutoff: pd.Timestamp, freq: str) -> pd.Timestamp:
    """The newest period start a complete delivery must contain, per data frequency."""
    if freq in _SUB_DAY:
        return cutoff
    if freq == "W":
        return cutoff - pd.Timedelta(days=cutoff.weekday())  # the week (Mon..Sun) ending at the cutoff
    month = cutoff.replace(day=1)
    last_day = month + pd.offsets.MonthEnd(0)
    full = month if cutoff >= last_day else month - pd.offsets.MonthBegin(1)
    return full - pd.offsets.MonthBegin(1)  # monthly data may lag one more month


def _missing_store_days(
    visits: pd.DataFrame, stores: pd.DataFrame, cutoff: pd.Timestamp, freq: str
) -> dict[int, int]:
    """Days in the last four weeks on which an open store delivered nothing (sub-daily data only)."""
    if freq not in _SUB_DAY:
        return {}
    start = cutoff - pd.Timedelta(days=27)
    days = pd.date_range(start, cutoff, freq="D")
    seen = visits[visits["ts"] >= start]
    seen = set(zip(seen["store_id"].astype(int), seen["ts"].dt.normalize(), strict=False))
    missing: dict[int, int] = {}
    first_seen = visits.groupby("store_id")["ts"].min().dt.normalize()
    for row in stores.itertuples():
        store = int(row.store_id)
        if store not in first_seen.index:
            continue
        opened = (
            max(pd.Timestamp(row.opened_on), first_seen[store])
            if "opened_on" in stores
            else first_seen[store]
        )
        closed = getattr(row, "closed_on", pd.NaT)
        count = sum(
            1
            for day in days
            if day >= opened and (pd.isna(closed) or day < pd.Timestamp(closed)) and (store, day) not in seen
        )
        if count:
            missing[store] = count
    return missing


@step(retries=1, backoff_seconds=0.2)
def features(ingest: dict, validate: dict, config: dict, lm: loopml.Loopml, pipeline_run_id: str) -> dict:
    """History at the model grain, the shift week's targets, the gate's evaluation frame, hour profiles.

    All feature rows come from ``features.build_features``: the same function builds training,
    gate-evaluation and forecast rows, so they cannot drift apart.
    """
    _maybe_fail(lm, pipeline_run_id, "features")
    cutoff = pd.Timestamp(ingest["cutoff"])
    visits = _read_visits(lm, ingest["visits_version"], cutoff)
    stores = _read_stores(lm, ingest["stores_version"])
    history, grain = to_grain(visits, ingest["freq"])
    history = history.sort_values(["store_id", "ts"], kind="stable").reset_index(drop=True)
    monday = pd.Timestamp(ingest["week"])
    targets = _targets(history, stores, monday, grain)
    # The gate compares candidate and champion on the last observed week, which neither trained on.
    # (For monthly data: the last observed month.)
    holdout_start = min(cutoff - pd.Timedelta(days=6), history["ts"].max())
    observed = history[history["ts"] >= holdout_start][["store_id", "ts", "visitors"]]
    gate = build_features(history, stores, observed[["store_id", "ts"]], grain=grain)
    gate = gate.merge(observed, on=["store_id", "ts"], how="inner")
    names = feature_names(grain)
    eval_frame = gate[[*names, "visitors"]].reset_index(drop=True)
    got = lm.datasets.ingest(DATASETS["eval_frame"], eval_frame, contract=_gate_contract(names), actor=ACTOR)
    profile = hourly_profile(visits) if ingest["freq"] == "h" else None
    # The recent hours calibrate the models' hourly intervals (hold-out + profile weeks before it).
    recent_hours = (
        visits[visits["ts"] >= cutoff - pd.Timedelta(weeks=HOURLY_WEEKS)] if profile is not None else None
    )
    print(
        f"{len(history):,} {grain} rows of history, {len(targets):,} targets in week {ingest['week']}, "
        f"{len(eval_frame):,} gate rows -> {DATASETS['eval_frame']} v{got.version.number}"
    )
    return {
        "grain": grain,
        "history": history,
        "stores": stores,
        "targets": targets,
        "profile": profile,
        "recent_hours": recent_hours,
        "train_until": (holdout_start - pd.Timedelta(days=1)).date().isoformat(),
        "gate_version": got.version.number,
        "gate_version_id": got.version.id,
        "history_digest": _frame_digest(history),
    }


def _gate_contract(names: list[str]) -> Contract:
    """The release gate's data: the model's features (lags are empty for new stores) and the label."""
    columns = [
        Column(n, "int", min=1) if n == "store_id" else Column(n, "float", nullable=True) for n in names
    ]
    return Contract(columns=[*columns, Column("visitors", "float", min=0.0)], max_bad_share=0.0)


def _targets(history: pd.DataFrame, stores: pd.DataFrame, monday: pd.Timestamp, grain: str) -> pd.DataFrame:
    """(store_id, ts) of the shift week at the model grain, for stores open then and seen recently."""
    end = monday + pd.Timedelta(days=7)
    if grain in ("hour", "day"):
        periods = pd.date_range(monday, end - pd.Timedelta(days=1), freq="D")
    elif grain == "week":
        periods = pd.DatetimeIndex([monday])
    else:
        periods = pd.DatetimeIndex(
            sorted({monday.replace(day=1), (end - pd.Timedelta(days=1)).replace(day=1)})
        )
    recent = history["ts"].max() - pd.Timedelta(days=62)
    active = set(history.loc[history["ts"] >= recent, "store_id"].astype(int))
    rows = []
    info = stores.set_index("store_id")
    for store in sorted(active):
        closed = info["closed_on"].get(store, pd.NaT) if "closed_on" in info else pd.NaT
        for ts in periods:
            if pd.isna(closed) or ts < pd.Timestamp(closed):
                rows.append((store, ts))
    return pd.DataFrame(rows, columns=["store_id", "ts"]).astype({"store_id": "int64"})


@step(retries=1, backoff_seconds=0.2)
def train_or_reuse(
    ingest: dict, features: dict, config: dict, lm: loopml.Loopml, pipeline_run_id: str
) -> dict:
    """A weekly candidate as a tracked run registered as ``demand`` (or the champion, with retrain=keep).

    A candidate already registered for the same data, cut-off and settings is reused, so a re-run
    never registers a duplicate version.
    """
    _maybe_fail(lm, pipeline_run_id, "train_or_reuse")
    cfg = _cfg(config)
    aliases = _aliases(lm)
    if cfg.retrain == "keep" and "champion" in aliases:
        print(f"retrain=keep: reusing {MODEL}/{aliases['champion']} (the champion)")
        return {"action": "kept", "version": aliases["champion"], "key": ""}
    history, stores, grain = features["history"], features["stores"], features["grain"]
    train_until = pd.Timestamp(features["train_until"])
    train = history[history["ts"] <= train_until + pd.Timedelta(days=1) - pd.Timedelta(microseconds=1)]
    key = _digest(
        {
            "data": features["history_digest"],
            "until": features["train_until"],
            "lgb": cfg.lgb_params,
            "g": grain,
        }
    )
    description = f"weekly candidate for {ingest['week']} (key {key})"
    existing = _version_with_description(lm, description)
    if existing is not None:
        print(f"{MODEL}/{existing} was already trained for this data and settings; reusing it")
        return {"action": "reused", "version": existing, "key": key}
    eval_frame = lm.datasets.read(DATASETS["eval_frame"], features["gate_version"])
    params = {
        "week": ingest["week"],
        "train_until": features["train_until"],
        "grain": grain,
        **cfg.lgb_params,
    }
    with lm.tracking.start_run(
        "demand", name=f"weekly {ingest['week']}", params=params, pipeline_run_id=pipeline_run_id
    ) as run:
        run.log_input(ingest["visits_version_id"])
        model = GlobalLightGBM(params=cfg.lgb_params).fit(
            train, stores, grain=grain, hourly=features.get("recent_hours")
        )
        predicted = model.booster.predict(eval_frame[model.feature_names])
        actual = eval_frame["visitors"].to_numpy(dtype=float)
        metrics = _metrics(actual, np.asarray(predicted, dtype=float))
        run.log_metrics({f"holdout_{k}": v for k, v in metrics.items()})
        version = register_model(
            lm,
            model,
            eval_frame=eval_frame,
            metrics={f"holdout_{k}": v for k, v in metrics.items()},
            run_id=run.id,
            dataset_version_ids=[ingest["visits_version_id"], features["gate_version_id"]],
            description=description,
        )
    print(f"trained {MODEL}/{version.number} on {len(train):,} rows: holdout WAPE {metrics['wape']:.3f}")
    return {"action": "trained", "version": version.number, "key": key, "holdout": metrics, "run_id": run.id}


def _version_with_description(lm: loopml.Loopml, description: str) -> int | None:
    try:
        versions = lm.registry.versions(MODEL, limit=1000)
    except NotFoundError:
        return None
    return next((v.number for v in versions if v.description == description), None)


def _metrics(actual: np.ndarray, forecast: np.ndarray) -> dict[str, float]:
    err = forecast - actual
    total = float(np.abs(actual).sum())
    return {
        "mae": float(np.mean(np.abs(err))),
        "rmse": float(np.sqrt(np.mean(err**2))),
        "wape": float(np.abs(err).sum() / total) if total else float("nan"),
    }


@step(retries=1, backoff_seconds=0.2)
def backtest(ingest: dict, features: dict, config: dict, lm: loopml.Loopml, pipeline_run_id: str) -> dict:
    """Rolling-origin backtest, seasonal-naive vs LightGBM, stored per store and overall for the run week.

    Origins already scored with the same data and settings are read back from
    ``demand_backtest_origins`` instead of being retrained: a weekly run trains one new origin, not
    ``backtest_weeks`` of them.
    """
    _maybe_fail(lm, pipeline_run_id, "backtest")
    cfg = _cfg(config)
    cutoff = pd.Timestamp(ingest["cutoff"])
    visits = _read_visits(lm, ingest["visits_version"], cutoff)
    predictions, computed = _backtest_predictions(lm, visits, features, cfg, ingest["freq"])
    overall = score_predictions(predictions, ["model", "grain"])
    per_store = score_predictions(
        predictions[predictions["grain"] == features["grain"]], ["model", "store_id"]
    )
    per_week = score_predictions(predictions, ["model", "grain", "week"])
    table = pd.concat(
        [
            per_store[["model", "store_id", "mae", "rmse", "wape"]],
            _at(overall, features["grain"]).assign(store_id=0),
        ],
        ignore_index=True,
    )[["model", "store_id", "mae", "rmse", "wape"]]
    table = table.astype({"store_id": "int64"}).sort_values(["model", "store_id"]).reset_index(drop=True)
    stored = lm.datasets.ingest(
        DATASETS["backtest"], table, contract=BACKTEST, partition=ingest["week"], actor=ACTOR
    )
    scores = {
        f"{r['model']}@{r['grain']}": {k: _finite(r[k]) for k in ("mae", "rmse", "wape", "coverage")}
        for r in overall.to_dict("records")
    }
    grain = features["grain"]
    base = scores.get(f"seasonal_naive@{grain}", {}).get("wape")
    lgbm = scores.get(f"lightgbm@{grain}", {}).get("wape")
    gain = (1 - lgbm / base) if base and lgbm is not None else None
    print(
        f"backtest over {predictions['origin'].nunique()} origins ({computed} trained now): "
        + ", ".join(f"{k} WAPE {v['wape']:.3f}" for k, v in scores.items() if v.get("wape") is not None)
        + (f"; LightGBM {gain:.0%} below seasonal-naive" if gain is not None else "")
    )
    return {
        "grain": grain,
        "scores": scores,
        "improvement": gain,
        "origins": sorted(str(o)[:10] for o in predictions["origin"].unique()),
        "trained_origins": computed,
        "per_week": _jsonable(per_week.assign(week=per_week["week"].astype(str)).to_dict("records")),
        "version": stored.version.number,
    }


def _at(overall: pd.DataFrame, grain: str) -> pd.DataFrame:
    return overall[overall["grain"] == grain].drop(columns="grain")


def _finite(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if np.isfinite(number) else None


def _backtest_predictions(
    lm: loopml.Loopml, visits: pd.DataFrame, features: dict, cfg: DemandConfig, freq: str
) -> tuple[pd.DataFrame, int]:
    """Predictions of the latest ``cfg.backtest_weeks`` origins; (predictions, origins trained now)."""
    grain = features["grain"]
    origins = backtest_origins(visits["ts"].max(), cfg.backtest_weeks, grain)
    settings = _digest(
        {
            "lgb": cfg.lgb_params,
            "interval": cfg.interval,
            "freq": freq,
            "models": BACKTEST_MODELS,
            "hour_interval": "calibrated",
        }
    )
    parts = {p.key: p.digest for p in _partitions(lm, DATASETS["visits"])}
    keys = {o: f"{o.date().isoformat()}.{_origin_key(o, grain, parts, settings)}" for o in origins}
    cached = set(_partition_keys(lm, BACKTEST_ORIGINS))
    missing = [o for o in origins if keys[o] not in cached]
    frames = []
    if missing:
        # One backtest call covers the oldest missing origin through the newest; features are built once.
        first = origins.index(missing[0])
        result = rolling_origin(
            visits,
            features["stores"],
            default_models(cfg.lgb_params, interval=cfg.interval),
            weeks=len(origins) - first,
            grain=grain,
            freq=freq,
            fanout=_fanout(lm.settings),
        )
        fresh = result.predictions
        for origin, rows in fresh.groupby("origin"):
            key = keys.get(pd.Timestamp(origin))
            if key is not None:
                lm.datasets.ingest(
                    BACKTEST_ORIGINS, _stored(rows), contract=ORIGINS_CONTRACT, partition=key, actor=ACTOR
                )
        frames.append(fresh)
    have = [keys[o] for o in origins if o not in set(missing) and keys[o] in cached]
    if have:
        old = lm.datasets.read(BACKTEST_ORIGINS, partitions=have)
        for column in ("ts", "origin", "week"):
            old[column] = _naive(old[column])
        frames.append(old)
    predictions = pd.concat(frames, ignore_index=True)
    predictions = predictions[predictions["origin"].isin(origins)]
    return predictions.reset_index(drop=True), len(missing)


ORIGINS_CONTRACT = Contract(
    columns=[
        Column("model", "str"),
        Column("grain", "str"),
        Column("store_id", "int", min=1),
        Column("ts", "datetime"),
        Column("forecast", "float", min=0.0),
        Column("lower", "float", min=0.0),
        Column("upper", "float", min=0.0),
        Column("actual", "float", min=0.0),
        Column("origin", "datetime", description="the Tuesday run the backtest replayed"),
        Column("week", "datetime"),
    ],
    max_bad_share=0.0,
)


def _stored(rows: pd.DataFrame) -> pd.DataFrame:
    columns = ["model", "grain", "store_id", "ts", "forecast", "lower", "upper", "actual", "origin", "week"]
    out = rows[columns].copy()
    out["store_id"] = out["store_id"].astype("int64")
    for column in ("ts", "origin", "week"):
        out[column] = pd.to_datetime(out[column])
    return out.sort_values(["model", "grain", "store_id", "ts"], kind="stable").reset_index(drop=True)


def _origin_key(origin: pd.Timestamp, grain: str, parts: dict[str, str], settings: str) -> str:
    """Digest of everything an origin's scores depend on: the visit partitions up to its last target."""
    last = origin_window(origin, grain)[2]
    if grain == "month":
        last = last + pd.offsets.MonthEnd(0)
    upto = last.date().isoformat()
    return _digest({"parts": sorted((k, d) for k, d in parts.items() if k <= upto), "settings": settings})[
        :12
    ]


def _partitions(lm: loopml.Loopml, name: str) -> list[Any]:
    try:
        return list(lm.datasets.partitions(name))
    except NotFoundError:
        return []


def _fanout(settings: Any) -> Any:
    """Backtest origins on the executor the settings name (``LOOPML_EXECUTOR``: process, ray ...).

    Left on automatic (or set to ``serial``), this returns None: origins run one after the other
    and LightGBM keeps its ``n_jobs`` (two processes each running a multi-threaded LightGBM on a
    small machine are slower than one). A cluster (``ray``) or an explicit ``process``/``thread``
    setting fans out as asked, and ``rolling_origin`` then gives each worker ``cores // workers``
    LightGBM threads.
    """
    backend = getattr(settings, "executor", "") or "serial"
    if backend == "serial":
        return None

    def run(fn: Any, items: list[Any]) -> list[Any]:
        return fan_out(fn, items, backend=None, settings=settings)

    return run


@step(retries=1, backoff_seconds=0.2)
def evaluate(ingest: dict, validate: dict, config: dict, lm: loopml.Loopml, pipeline_run_id: str) -> dict:
    """Score every published week whose actuals have landed; then the store A/B on the current challenger."""
    _maybe_fail(lm, pipeline_run_id, "evaluate")
    cfg = _cfg(config)
    cutoff = pd.Timestamp(ingest["cutoff"])
    published = results.weeks(lm, "forecasts")
    done = set(results.weeks(lm, "evaluation"))
    landed = [w for w in published if pd.Timestamp(w) + pd.Timedelta(days=6) <= cutoff and w not in done]
    evaluated: list[str] = []
    if landed:
        visits = _read_visits(lm, ingest["visits_version"], cutoff)
        stores = _read_stores(lm, ingest["stores_version"])
        for week in landed:
            frame = _evaluate_week(lm, visits, stores, week, cfg, ingest["freq"])
            if frame is not None and len(frame):
                results.publish_evaluation(lm, week, frame, actor=ACTOR)
                evaluated.append(week)
    all_eval = results.read_evaluation(lm)  # `used` is stored: the rows each store's arm published
    summary = evaluation.summary(all_eval, challenger_share=cfg.challenger_share) if len(all_eval) else {}
    ab = _ab_analysis(lm, all_eval, cfg)
    if ab is not None and ab.get("last_week"):
        results.publish_ab(lm, ab["last_week"], ab, actor=ACTOR)
    print(
        f"evaluated {', '.join(evaluated) or 'no new week'}; "
        + (f"A/B: {ab['verdict']} ({ab['explanation']})" if ab else "no A/B running")
    )
    return {"evaluated": evaluated, "summary": _jsonable(summary), "ab": ab}


def _evaluate_week(
    lm: loopml.Loopml, visits: pd.DataFrame, stores: pd.DataFrame, week: str, cfg: DemandConfig, freq: str
) -> pd.DataFrame | None:
    start = pd.Timestamp(week)
    end = start + pd.Timedelta(days=7)
    actuals = visits[(visits["ts"] >= start) & (visits["ts"] < end)]
    if actuals.empty:
        return None
    history = visits[visits["ts"] < start]
    forecasts = results.read_forecasts(lm, week=week)
    staffing = results.read_staffing(lm, week=week)
    forecasts["ts"] = _naive(forecasts["ts"])
    staffing["ts"] = _naive(staffing["ts"])
    grain = {"h": "hour", "D": "day", "W": "week", "MS": "month"}[freq]
    return evaluation.evaluate_week(
        forecasts, staffing, actuals, history, cfg, week=week, stores=stores, grain=grain
    )


def _ab_analysis(lm: loopml.Loopml, all_eval: pd.DataFrame, cfg: DemandConfig) -> dict | None:
    """Analyse the weeks the current challenger was live; None when no challenger is live."""
    aliases = _aliases(lm)
    challenger = aliases.get("challenger")
    if challenger is None or challenger == aliases.get("champion") or all_eval.empty:
        return None
    live = all_eval[(all_eval["arm"] == "challenger") & (all_eval["model_version"] == challenger)]
    weeks_live = sorted(pd.to_datetime(live["week"]).dt.date.astype(str).unique())
    if not weeks_live:
        return {
            "champion": aliases.get("champion"),
            "challenger": challenger,
            "weeks": 0,
            "verdict": "not enough data",
            "last_week": None,
            "explanation": f"{MODEL}/{challenger} has no evaluated week yet",
        }
    rows = all_eval[pd.to_datetime(all_eval["week"]).dt.date.astype(str).isin(weeks_live)]
    result = abtest.analyse(rows, min_weeks=cfg.ab_min_weeks, challenger_share=cfg.challenger_share)
    out = _jsonable(result.to_dict() if hasattr(result, "to_dict") else dict(vars(result)))
    out.update(challenger=challenger, champion=aliases.get("champion"), last_week=weeks_live[-1])
    return out


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        return _finite(value)
    if isinstance(value, pd.Timestamp | date):
        return value.isoformat()
    return value


@step(retries=1, backoff_seconds=0.2)
def release(
    ingest: dict,
    train_or_reuse: dict,
    backtest: dict,
    evaluate: dict,
    config: dict,
    lm: loopml.Loopml,
    pipeline_run_id: str,
) -> dict:
    """Champion is protected by a WAPE gate; a candidate that passes it becomes the A/B challenger.

    The first model becomes champion. A live challenger is promoted when the A/B over at least
    ``ab_min_weeks`` says so, and retired (the alias points back at the champion) when it says keep,
    or when ``2 x ab_min_weeks`` weeks showed no clear difference.
    A new candidate only becomes challenger when no A/B is running, so an A/B compares one model.
    """
    _maybe_fail(lm, pipeline_run_id, "release")
    cfg = _cfg(config)
    candidate = int(train_or_reuse["version"])
    week = ingest["week"]
    reason = f"weekly run {ingest['run_date']} (shift week {week})"
    if lm.registry.protection(MODEL, "champion") is None:
        lm.registry.protect(
            MODEL,
            "champion",
            [BeatsCurrent("wape", DATASETS["eval_frame"], label="visitors")],
            actor=ACTOR,
            reason="the champion plans staff for every store: it moves only when a model beats it",
        )
    aliases = _aliases(lm)
    events: list[str] = []
    champion = aliases.get("champion")
    if champion is None:
        report = lm.registry.promote(
            MODEL, candidate, "champion", actor=ACTOR, reason=f"first model: {reason}"
        )
        events.append(f"{MODEL}/{candidate} is the first champion ({_gate_text(report)})")
        champion = candidate
    challenger = aliases.get("challenger")
    live = challenger is not None and challenger != champion
    ab = evaluate.get("ab") or {}
    if live and ab.get("challenger") == challenger and ab.get("weeks", 0) >= cfg.ab_min_weeks:
        verdict = ab.get("verdict")
        if verdict == "promote challenger":
            try:
                report = lm.registry.promote(
                    MODEL,
                    challenger,
                    "champion",
                    actor=ACTOR,
                    reason=f"A/B verdict after {ab['weeks']} weeks",
                )
                events.append(f"A/B: {MODEL}/{challenger} promoted to champion ({_gate_text(report)})")
                champion = challenger
            except GateBlockedError as blocked:
                events.append(
                    f"A/B favours {MODEL}/{challenger} but the gate blocked it ({_gate_text(blocked.report)})"
                )
        if verdict == "no clear difference" and ab.get("weeks", 0) >= 2 * cfg.ab_min_weeks:
            verdict = "keep champion"  # twice the planned length without a difference: stop paying for it
        if verdict in ("promote challenger", "keep champion"):
            lm.registry.set_alias(MODEL, "challenger", champion, actor=ACTOR, reason=f"A/B ended: {verdict}")
            events.append(f"A/B on {MODEL}/{challenger} ended: {verdict}")
            live = False
    gate: dict[str, Any] = {}
    if candidate != champion and not live and train_or_reuse["action"] != "kept":
        report = lm.registry.promote(MODEL, candidate, "champion", actor=ACTOR, reason=reason, dry_run=True)
        gate = {"passed": bool(report.passed), "summary": _gate_text(report)}
        if report.passed:
            lm.registry.set_alias(
                MODEL, "challenger", candidate, actor=ACTOR, reason=f"passed the gate: {reason}"
            )
            events.append(f"{MODEL}/{candidate} passed the gate and is the challenger for the store A/B")
            live = True
        else:
            events.append(f"{MODEL}/{candidate} did not pass the gate ({gate['summary']})")
    elif candidate != champion and live:
        events.append(
            f"A/B on {MODEL}/{_aliases(lm).get('challenger')} still running; {MODEL}/{candidate} waits"
        )
    aliases = _aliases(lm)
    if "challenger" not in aliases:
        lm.registry.set_alias(MODEL, "challenger", aliases["champion"], actor=ACTOR, reason="no A/B running")
        aliases = _aliases(lm)
    for line in events:
        print(line)
    return {
        "champion": aliases["champion"],
        "challenger": aliases["challenger"] if aliases["challenger"] != aliases["champion"] else None,
        "candidate": candidate,
        "backtest_improvement": backtest.get("improvement"),
        "gate": gate,
        "events": events,
    }


def _gate_text(report: Any) -> str:
    return "; ".join(f"{r.gate}: {r.summary}" for r in report.results) or "no gates"


@step(retries=1, backoff_seconds=0.2)
def forecast(
    ingest: dict, features: dict, release: dict, config: dict, lm: loopml.Loopml, pipeline_run_id: str
) -> pd.DataFrame:
    """Daily (and hourly) forecasts with intervals from the champion, the challenger and seasonal-naive.

    Both models forecast every store so the A/B can pair them; ``used`` marks the rows the store's
    arm publishes to staffing. Seasonal-naive rows are the baseline the evaluation prices.
    """
    _maybe_fail(lm, pipeline_run_id, "forecast")
    cfg = _cfg(config)
    history, stores, targets, grain = (
        features["history"],
        features["stores"],
        features["targets"],
        features["grain"],
    )
    models = {"champion": release["champion"]}
    if release.get("challenger"):
        models["challenger"] = release["challenger"]
    arms = _store_arms(targets["store_id"].unique(), cfg, bool(release.get("challenger")))
    frames, fitted = [], []
    for arm, number in models.items():
        loaded = lm.registry.load(f"{MODEL}/{number}")
        model = model_from_registry(loaded, loaded.version)
        out = model.predict(history, stores, targets, grain=grain)
        frames.append(out.assign(model=f"{MODEL}/{number}", model_version=int(number), arm=arm))
        fitted.append(model)
    naive = SeasonalNaive().fit(history, stores, grain=grain, hourly=features.get("recent_hours"))
    baseline = naive.predict(history, stores, targets, grain=grain)
    frames.append(baseline.assign(model="seasonal_naive", model_version=0, arm="baseline"))
    fitted.append(naive)
    daily = pd.concat(frames, ignore_index=True)
    daily["grain"] = grain
    if features.get("profile") is not None and grain == "day":
        # each model spreads its own days, with its own hourly interval ratios
        hourly = pd.concat(
            [m.to_hourly(f, features["profile"]) for m, f in zip(fitted, frames, strict=True)],
            ignore_index=True,
        ).assign(grain="hour")
        daily = pd.concat([daily, hourly[daily.columns]], ignore_index=True)
    daily["used"] = daily["arm"] == daily["store_id"].map(arms)
    daily["week"] = pd.Timestamp(ingest["week"])
    daily["run_id"] = pipeline_run_id
    for column in ("forecast", "lower", "upper"):
        daily[column] = daily[column].astype(float).clip(lower=0.0)
    order = [
        "store_id",
        "ts",
        "grain",
        "forecast",
        "lower",
        "upper",
        "model",
        "model_version",
        "arm",
        "used",
        "week",
        "run_id",
    ]
    daily = daily[order].sort_values(["store_id", "grain", "ts", "arm"], kind="stable").reset_index(drop=True)
    print(
        f"forecast {daily['store_id'].nunique()} stores for week {ingest['week']}: "
        + ", ".join(f"{arm} {MODEL}/{v}" for arm, v in models.items())
        + f" + seasonal-naive; {len(daily):,} rows ({int((arms == 'challenger').sum())} stores on the challenger)"
    )
    return daily


def _store_arms(store_ids: Any, cfg: DemandConfig, challenger_live: bool) -> pd.Series:
    ids = sorted(int(s) for s in store_ids)
    if not challenger_live:
        return pd.Series("champion", index=ids)
    arms = abtest.assign_arms(ids, challenger_share=cfg.challenger_share)
    return pd.Series(list(arms), index=ids)


@step(retries=1, backoff_seconds=0.2)
def staffing(
    forecast: pd.DataFrame,
    ingest: dict,
    features: dict,
    config: dict,
    lm: loopml.Loopml,
    pipeline_run_id: str,
) -> pd.DataFrame:
    """Staff per opening hour from the rows each store's arm uses: never fewer than ``min_staff``."""
    _maybe_fail(lm, pipeline_run_id, "staffing")
    cfg = _cfg(config)
    used = forecast[forecast["used"]]
    grain = "hour" if (used["grain"] == "hour").any() else features["grain"]
    rows = used[used["grain"] == grain]
    plan = plan_staff(rows[["store_id", "ts", "forecast"]], cfg, grain=grain, stores=features["stores"])
    meta = rows.drop_duplicates("store_id").set_index("store_id")[["arm", "model_version"]]
    plan = plan.join(meta, on="store_id")
    plan["week"] = pd.Timestamp(ingest["week"])
    print(
        f"staffing plan: {plan['store_id'].nunique()} stores, {int(plan['staff'].sum()):,} staff-hours "
        f"(min {cfg.min_staff} per open hour, {cfg.visitors_per_staff:g} visitors per staff member)"
    )
    return plan.sort_values(["store_id", "ts"]).reset_index(drop=True)


@step(retries=1, backoff_seconds=0.2)
def publish(
    ingest: dict, forecast: pd.DataFrame, staffing: pd.DataFrame, lm: loopml.Loopml, pipeline_run_id: str
) -> dict:
    """Publish the week's forecasts and plan (idempotent: the week's partition, same bytes = no version)."""
    _maybe_fail(lm, pipeline_run_id, "publish")
    out = results.publish(lm, ingest["week"], forecast, staffing, actor=ACTOR)
    print(f"published week {ingest['week']}: {out}")
    return _jsonable(out)


WEEKLY_PIPELINE = register(
    Pipeline(
        WEEKLY,
        steps=[
            ingest,
            validate,
            features,
            train_or_reuse,
            backtest,
            evaluate,
            release,
            forecast,
            staffing,
            publish,
        ],
        schedule=WEEKLY_CRON,
        params={
            "run_date": None,
            "config": DemandConfig().to_dict(),
            "source": "simulator",
            "inject_failure": "",
        },
        description=(
            "Weekly store-demand forecast and staffing plan: Tuesdays 06:00 Asia/Seoul (Mon 21:00 UTC) "
            "for the shift week starting the next Monday"
        ),
    ),
    module=__name__,
)


# -- the deadline watch -------------------------------------------------------------------------------
def _in_kst(now: datetime | None) -> datetime:
    """``now`` as Seoul time; a naive datetime is read as Seoul wall clock."""
    if now is None:
        return datetime.now(tz=KST)
    return now.replace(tzinfo=KST) if now.tzinfo is None else now.astimezone(KST)


def coming_week(now: datetime | None = None) -> str:
    """The shift week being planned at ``now`` (Seoul): the next Monday strictly after today."""
    today = today_kst(now)
    return (today + timedelta(days=7 - today.weekday())).isoformat()


def check_deadline(
    lm: loopml.Loopml, *, now: datetime | None = None, config: DemandConfig | None = None
) -> dict:
    """Fire a critical alert when the coming week's forecast is not published by the deadline; resolve it once it is.

    The deadline (``publish_deadline``, default Thursday 18:00 Seoul) falls in the week before the shift
    week: the stores need their plan a few days ahead to tell their staff.
    """
    cfg = config or DemandConfig()
    if now is not None and not isinstance(now, datetime):
        raise ValidationError(f"now must be a datetime, got {type(now).__name__}", field="now")
    moment = _in_kst(now)
    week = coming_week(moment)
    deadline = cfg.deadline(pd.Timestamp(week) - pd.Timedelta(days=7))
    key = f"demand.forecast_missing:{week}"
    published = week in results.weeks(lm, "forecasts")
    wall = pd.Timestamp(moment.replace(tzinfo=None))
    if published:
        resolved = lm.alerts.resolve(key, reason=f"forecast for {week} is published")
        return {
            "week": week,
            "published": True,
            "deadline": deadline.isoformat(),
            "alert": "resolved" if resolved else None,
        }
    if wall < deadline:
        return {"week": week, "published": False, "deadline": deadline.isoformat(), "alert": None}
    alert = lm.alerts.fire(
        key,
        severity="critical",
        title=f"Demand forecast for the week of {week} is not published",
        detail=(
            f"Stores plan staff from it; the deadline was {deadline:%a %Y-%m-%d %H:%M} (Asia/Seoul). "
            f"Check `loopml pipelines runs {WEEKLY}` and re-run: `loopml demand run --date "
            f"{(pd.Timestamp(week) - pd.Timedelta(days=6)).date()}`"
        ),
        source=DEADLINE,
        data={"week": week, "deadline": deadline.isoformat()},
    )
    return {
        "week": week,
        "published": False,
        "deadline": deadline.isoformat(),
        "alert": "fired",
        "alert_id": alert.id,
    }


@step(cache=False)
def deadline_check(now: str, config: dict, lm: loopml.Loopml) -> dict:
    """The scheduled check; ``now`` (ISO, Seoul wall clock) overrides the clock for tests and replays."""
    try:
        moment = datetime.fromisoformat(now) if now else None
    except ValueError:
        raise ValidationError(
            f"now={now!r} is not an ISO datetime, e.g. 2026-12-03T18:30", field="now"
        ) from None
    result = check_deadline(lm, now=moment, config=_cfg(config))
    print(result)
    return result


DEADLINE_PIPELINE = register(
    Pipeline(
        DEADLINE,
        steps=[deadline_check],
        schedule=DEADLINE_CRON,
        params={"now": "", "config": DemandConfig().to_dict()},
        description="Alert (critical) when the coming week's demand forecast is not published by Thu 18:00 Seoul",
    ),
    module=__name__,
)


def weekly_params(
    run_date: Any, cfg: DemandConfig, *, source: str = "simulator", inject_failure: str = ""
) -> dict[str, Any]:
    """The params of one weekly run, checked (the Tuesday rule, the config) before anything is queued."""
    day = parse_run_date(run_date)
    if not isinstance(cfg, DemandConfig):
        raise ValidationError(f"cfg must be a DemandConfig, got {type(cfg).__name__}", field="cfg")
    if not isinstance(inject_failure, str):
        raise ValidationError(
            "inject_failure must be a step name (or several, comma-separated)", field="inject_failure"
        )
    unknown = [p.strip() for p in inject_failure.split(",") if p.strip() and p.strip() not in STEPS]
    if unknown:
        raise ValidationError(
            f"inject_failure={inject_failure!r}: {', '.join(unknown)} is not a step; use one of "
            f"{', '.join(STEPS)} (comma-separated for several)",
            field="inject_failure",
        )
    if not isinstance(source, str) or not source.strip():
        raise ValidationError(
            "source is empty; give 'simulator' or a path to a CSV/Parquet file", field="source"
        )
    return {
        "run_date": day.date().isoformat(),
        "config": cfg.to_dict(),
        "source": source,
        "inject_failure": inject_failure,
    }
