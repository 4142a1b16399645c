"""Data for the monitoring pages: health overview, monitors (drift + performance), SLOs, the loop.

Everything is read through the public services (``lm.monitors``, ``lm.slos``, ``lm.loop``,
``lm.alerts``, ``lm.jobs``, ``lm.pipelines``, ``lm.endpoints``, ``lm.inference``) with their
aggregate reads: a monitor page reads its stored windows once (drift and performance were computed
by the monitor, never here), the health page asks the inference log for per-bucket aggregates.
Plain synchronous functions returning dicts; the routes run them in a thread pool. A service
missing from the build gives its section an "unavailable" message instead of failing the page.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from loopml.client import Loopml
from loopml.errors import NotFoundError, ValidationError, did_you_mean
from loopml.serving.api.deps import service
from loopml.serving.errors import ModuleUnavailableError
from loopml.web import monitoring_figures as fig

#: Health page: headline numbers over the last hour, sparklines over the last day.
HEADLINE = timedelta(hours=1)
SPARK_SPAN = timedelta(hours=24)
SPARK_BUCKET = 1800
PIPELINE_RUNS = 200
#: The pipeline-run strip spans at least this much history.
PIPELINE_SPAN = timedelta(days=1)
#: A schedule whose next slot is this late has been missed (the scheduler is down or behind).
SCHEDULE_GRACE = timedelta(minutes=10)
ALERT_SCAN = 1000
LOOP_SCAN = 200
#: Windows a monitor page reads by default and at most.
DEFAULT_WINDOWS = 200
MAX_WINDOWS = 2000
SLO_HISTORY = 500
SLO_UNITS = {
    "latency": "ms",
    "error_rate": "share",
    "queue_age": "s",
    "freshness": "s",
    "schedule": "missed ticks",
}
#: Default metric for slice charts, by task.
PRIMARY_METRIC = {"classification": "auc", "regression": "mae"}


def _optional(load: Callable[[], Any]) -> tuple[Any, str | None]:
    """``(load(), None)`` or ``(None, message)`` when the module behind it is not installed."""
    try:
        return load(), None
    except ModuleUnavailableError as exc:
        return None, str(exc)
    except ImportError as exc:  # pragma: no cover - a half-installed build
        return None, f"not available in this build ({exc})"


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


# ================================================================================= health overview
def health(lm: Loopml) -> dict[str, Any]:
    """One screen for "is everything fine": endpoints, pipelines, queues, alerts, SLO budgets, loop."""
    now = datetime.now(UTC)
    slo_rows, slo_missing = _optional(lambda: service(lm, "slos").status())
    slo_rows = slo_rows or []
    endpoints, endpoints_missing = _optional(lambda: _endpoint_health(lm, slo_rows, now))
    pipelines, pipelines_missing = _optional(lambda: _pipeline_health(lm, slo_rows, now))
    queues, queues_missing = _optional(lambda: _queue_health(lm, slo_rows))
    alerts, alerts_missing = _optional(lambda: service(lm, "alerts").list(status="open", limit=ALERT_SCAN))
    runs, loop_missing = _optional(lambda: service(lm, "loop").list(limit=LOOP_SCAN))
    open_alerts = [a.to_dict() for a in alerts or []]
    counts: dict[str, int] = {}
    for a in open_alerts:
        counts[a["severity"]] = counts.get(a["severity"], 0) + 1
    severity_rank = {"critical": 0, "warning": 1, "info": 2}
    open_alerts.sort(key=lambda a: (severity_rank.get(a["severity"], 3), a["last_fired_at"]), reverse=False)
    active = [_run_row(r, now) for r in runs or [] if r.active]
    return {
        "endpoints": (endpoints or {}).get("rows", []),
        "pipelines": (pipelines or {}).get("rows", []),
        "queues": queues or [],
        "slos": slo_rows,
        "alerts": open_alerts[:20],
        "alert_counts": counts,
        "alert_total": len(open_alerts),
        "loop_active": active,
        "missing": {
            "endpoints": endpoints_missing,
            "pipelines": pipelines_missing,
            "queues": queues_missing,
            "slos": slo_missing,
            "alerts": alerts_missing,
            "loop": loop_missing,
        },
        "figures": {
            "budgets": fig.budget_bars(slo_rows),
            "alerts": fig.alert_bars(counts),
            "queues": fig.queue_bars(queues or []),
            "pipeline_runs": (pipelines or {}).get("figure"),
        },
    }


def _slo_for(slos: Sequence[dict[str, Any]], kind: str, key: str, value: str) -> dict[str, Any] | None:
    """The first SLO of ``kind`` whose target ``key`` is ``value`` (the page compares against it)."""
    for row in slos:
        if row["kind"] == kind and (row.get("target") or {}).get(key) == value:
            return row
    return None


def _endpoint_health(lm: Loopml, slos: Sequence[dict[str, Any]], now: datetime) -> dict[str, Any]:
    infos = service(lm, "endpoints").list()
    inference, _ = _optional(lambda: service(lm, "inference"))
    rows = []
    for info in infos:
        latency_slo = _slo_for(slos, "latency", "endpoint", info.name)
        error_slo = _slo_for(slos, "error_rate", "endpoint", info.name)
        row: dict[str, Any] = {
            "name": info.name,
            "kind": info.spec.policy.kind,
            "requests": None,
            "error_rate": None,
            "p99": None,
            "latency_slo": latency_slo,
            "error_slo": error_slo,
            "p99_over": False,
            "errors_over": False,
            "spark_requests": None,
            "spark_p99": None,
        }
        if inference is not None:
            stats = inference.window_stats(info.name, since=now - HEADLINE)
            requests = sum(s.n for s in stats.values())
            errors = sum(s.errors for s in stats.values())
            p99s = [s.p99 for s in stats.values() if s.p99 is not None]
            row.update(
                requests=requests,
                error_rate=errors / requests if requests else None,
                p99=max(p99s) if p99s else None,
            )
            if latency_slo is not None and row["p99"] is not None:
                row["p99_over"] = row["p99"] > float(latency_slo["objective"])
            if error_slo is not None and row["error_rate"] is not None:
                row["errors_over"] = row["error_rate"] > float(error_slo["objective"])
            timeline = inference.timeline(info.name, since=now - SPARK_SPAN, bucket_seconds=SPARK_BUCKET)
            if len(timeline):
                per_bucket = timeline.groupby("bucket").agg(
                    requests=("requests", "sum"), p99=("p99_ms", "max")
                )
                x = list(per_bucket.index)
                row["spark_requests"] = fig.sparkline(x, per_bucket["requests"], kind="bar", name="requests")
                row["spark_p99"] = fig.sparkline(
                    x, per_bucket["p99"], color=fig.BAD if row["p99_over"] else fig.OK, name="p99 ms"
                )
        rows.append(row)
    return {"rows": rows}


def _pipeline_health(lm: Loopml, slos: Sequence[dict[str, Any]], now: datetime) -> dict[str, Any]:
    svc = service(lm, "pipelines")
    schedules = {s.pipeline: s for s in svc.schedules()}
    recent = svc.runs(None, limit=PIPELINE_RUNS)
    names = sorted({p.name for p in svc.list()} | set(schedules) | {r.pipeline for r in recent})
    last: dict[str, Any] = {}
    for run in recent:  # newest first
        last.setdefault(run.pipeline, run)
    rows = []
    for name in names:
        schedule = schedules.get(name)
        slo = _slo_for(slos, "schedule", "pipeline", name)
        run = last.get(name)
        overdue = bool(
            schedule is not None and schedule.enabled and _utc(schedule.next_due) < now - SCHEDULE_GRACE
        )
        missed = None if slo is None else slo.get("value")
        rows.append(
            {
                "name": name,
                "last_status": None if run is None else run.status,
                "last_run_id": None if run is None else run.id,
                "last_run_at": None if run is None else _iso(run.created_at),
                "last_error": None if run is None else run.error,
                "cron": None if schedule is None else schedule.cron,
                "enabled": None if schedule is None else schedule.enabled,
                "next_due": None if schedule is None else _iso(schedule.next_due),
                "overdue": overdue,
                "missed": missed,
                "slo": slo,
            }
        )
    strip = fig.pipeline_runs_strip(
        [
            {
                "id": r.id,
                "pipeline": r.pipeline,
                "status": r.status,
                "created_at": _utc(r.created_at),
                "duration_seconds": r.duration_seconds,
            }
            for r in recent
        ],
        start=now - PIPELINE_SPAN,
        end=now,
    )
    return {"rows": rows, "figure": strip}


def _queue_health(lm: Loopml, slos: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    jobs = service(lm, "jobs")
    out = []
    for name in jobs.queues():
        counts = jobs.stats(name)
        oldest = jobs.oldest_age_seconds(name)
        slo = _slo_for(slos, "queue_age", "queue", name)
        objective = None if slo is None else float(slo["objective"])
        out.append(
            {
                "name": name,
                "queued": counts.get("queued", 0),
                "running": counts.get("running", 0),
                "dead": counts.get("dead", 0),
                "oldest_seconds": oldest,
                "objective": objective,
                "over_slo": objective is not None and oldest is not None and oldest > objective,
            }
        )
    return out


# ================================================================================= monitors
def monitors(lm: Loopml) -> dict[str, Any]:
    """Every monitor with its latest window's verdicts and a sparkline of the drifted share."""
    svc = service(lm, "monitors")
    rows = []
    for info in svc.list():
        windows = svc.windows(info.name, limit=48)
        drifts = [(w.window_start, w.drift) for w in windows if w.drift]
        perfs = [w.performance for w in windows if w.performance and w.performance.get("metrics")]
        drift: dict[str, Any] = drifts[-1][1] if drifts else {}
        perf: dict[str, Any] = perfs[-1] if perfs else {}
        metric = PRIMARY_METRIC.get(str(perf.get("task")))
        spark = fig.sparkline(
            [at for at, _ in drifts],
            [d.get("share_drifted") for _, d in drifts],
            color=fig.BAD if drift.get("dataset_drifted") else fig.INFO,
            kind="bar",
            name="share drifted",
        )
        rows.append(
            {
                "name": info.name,
                "endpoint": info.endpoint,
                "window_seconds": info.spec.window_seconds,
                "watermark": _iso(info.watermark),
                "last_run_at": _iso(info.last_run_at),
                "windows": len(windows),
                "dataset_drifted": drift.get("dataset_drifted"),
                "share_drifted": drift.get("share_drifted"),
                "drifted_features": list(drift.get("drifted_features", [])),
                "metric": metric,
                "metric_value": None if metric is None else perf.get("metrics", {}).get(metric),
                "spark": spark,
            }
        )
    return {"monitors": rows}


def _window_label(start: datetime, seconds: int) -> str:
    return f"{start.astimezone(UTC):%Y-%m-%d %H:%M} UTC (+{_duration(seconds)})"


def _duration(seconds: int) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def monitor(
    lm: Loopml,
    name: str,
    *,
    feature: str | None = None,
    window: str | None = None,
    metric: str | None = None,
    limit: int = DEFAULT_WINDOWS,
) -> dict[str, Any]:
    """One monitor: drift heatmap, a feature's drift line and distributions, the drifted share,
    performance with label coverage, and slice gaps, from its newest ``limit`` windows."""
    svc = service(lm, "monitors")
    info = svc.get(name)  # NotFoundError -> 404 page with "did you mean"
    windows = svc.windows(name, limit=limit)
    records = [w.to_dict() | {"window_start": w.window_start} for w in windows]
    features = _features(info, records)
    with_drift = [r for r in records if r["drift"]]
    chosen_feature = _choose_feature(feature, features, with_drift)
    chosen_window = _choose_window(window, with_drift)
    seconds = info.spec.window_seconds
    item = None
    window_label = None
    if chosen_window is not None:
        item = (chosen_window["drift"] or {}).get("features", {}).get(chosen_feature)
        window_label = _window_label(chosen_window["window_start"], seconds)
    with_perf = [r for r in records if r["performance"] and r["performance"].get("metrics")]
    latest_perf = with_perf[-1] if with_perf else None
    metrics = sorted({m for r in with_perf for m in r["performance"]["metrics"] if m != "n"})
    task = latest_perf["performance"].get("task") if latest_perf else None
    chosen_metric = _choose_metric(metric, metrics, task)
    perf_label = None if latest_perf is None else _window_label(latest_perf["window_start"], seconds)
    latest = records[-1] if records else None
    return {
        "monitor": info.to_dict(),
        "window_seconds": seconds,
        "window_count": len(records),
        "limit": limit,
        "features": features,
        "feature": chosen_feature,
        "window_options": [
            {
                "value": _iso(r["window_start"]),
                "label": _window_label(r["window_start"], seconds),
                "drifted": bool(r["drift"].get("dataset_drifted")),
            }
            for r in reversed(with_drift)
        ],
        "window": None if chosen_window is None else _iso(chosen_window["window_start"]),
        "window_label": window_label,
        "feature_item": item,
        "metrics": metrics,
        "metric": chosen_metric,
        "task": task,
        "latest": None
        if latest is None
        else {
            "window_start": _iso(latest["window_start"]),
            "rows": latest["rows"],
            "labelled": latest["labelled"],
            "dataset_drifted": (latest["drift"] or {}).get("dataset_drifted"),
            "share_drifted": (latest["drift"] or {}).get("share_drifted"),
            "drifted_features": (latest["drift"] or {}).get("drifted_features", []),
        },
        "latest_perf": None
        if latest_perf is None
        else {
            "window_label": perf_label,
            "labelled": latest_perf["performance"].get("labelled"),
            "metrics": latest_perf["performance"]["metrics"],
            "gaps": latest_perf["performance"].get("gaps") or {},
        },
        "figures": {
            "heatmap": fig.drift_heatmap(with_drift, features),
            "feature": None if chosen_feature is None else fig.feature_drift_line(chosen_feature, with_drift),
            "distribution": None
            if chosen_feature is None or window_label is None
            else fig.distribution(chosen_feature, item, window_label),
            "share": fig.share_drifted(with_drift),
            "performance": fig.performance(records),
            "slices": None
            if latest_perf is None or chosen_metric is None
            else fig.slice_bars(latest_perf["performance"], chosen_metric, perf_label or ""),
            "gaps": None if chosen_metric is None else fig.gaps(with_perf, chosen_metric),
        },
    }


def _features(info: Any, records: Sequence[dict[str, Any]]) -> list[str]:
    """Watched columns in the reference's order, plus any a stored window has that it lacks."""
    names = list((info.reference or {}).get("columns") or info.spec.features or [])
    for r in records:
        for name in (r["drift"] or {}).get("features", {}):
            if name not in names:
                names.append(name)
    return names


def _choose_feature(feature: str | None, features: list[str], with_drift: list[dict[str, Any]]) -> str | None:
    if feature:
        if feature not in features:
            raise ValidationError(
                f"feature={feature!r} is not watched by this monitor." + did_you_mean(feature, features),
                field="feature",
            )
        return feature
    if not features:
        return None
    if with_drift:  # the most drifted feature of the newest window is what the user came for
        newest = with_drift[-1]["drift"].get("features", {})
        scored = [(fig.drift_score(newest[f]) or 0.0, f) for f in features if f in newest]
        if scored:
            return max(scored, key=lambda s: (s[0], -features.index(s[1])))[1]
    return features[0]


def _choose_window(window: str | None, with_drift: list[dict[str, Any]]) -> dict[str, Any] | None:
    if not window:
        return with_drift[-1] if with_drift else None
    try:
        at = _utc(datetime.fromisoformat(window.strip().replace("Z", "+00:00")))
    except ValueError:
        raise ValidationError(
            f"window={window!r} is not an ISO time; pick a window from the list (its start time)",
            field="window",
        ) from None
    for r in with_drift:
        if _utc(r["window_start"]) == at:
            return r
    raise NotFoundError(
        f"window starting {at.isoformat()} has no drift result in the windows shown; pick one from the list",
        field="window",
    )


def _choose_metric(metric: str | None, metrics: list[str], task: str | None) -> str | None:
    if metric:
        if metric not in metrics:
            raise ValidationError(
                f"metric={metric!r} is not computed by this monitor." + did_you_mean(metric, metrics),
                field="metric",
            )
        return metric
    preferred = PRIMARY_METRIC.get(str(task))
    if preferred in metrics:
        return preferred
    return metrics[0] if metrics else None


# ================================================================================= SLOs
def slos(lm: Loopml) -> dict[str, Any]:
    """Each SLO's status and its readings over time against the objective, plus the budget bars."""
    svc = service(lm, "slos")
    status = svc.status()
    rows = []
    for row in status:
        readings = [
            {"at": r.at, "value": r.value, "ok": r.ok, "budget_remaining": r.budget_remaining}
            for r in svc.history(row["name"], limit=SLO_HISTORY)
        ]
        unit = SLO_UNITS.get(row["kind"], "")
        rows.append(
            {
                **row,
                "unit": unit,
                "readings": len(readings),
                "missed": sum(1 for r in readings if not r["ok"]),
                "figure": fig.slo_history(row["name"], float(row["objective"]), unit, readings),
            }
        )
    return {"slos": rows, "budgets": fig.budget_bars(status)}


# ================================================================================= loop
def _run_row(run: Any, now: datetime) -> dict[str, Any]:
    end = run.finished_at or (now if run.active else run.updated_at)
    return {
        "id": run.id,
        "policy": run.policy,
        "status": run.status,
        "stage": run.stage,
        "endpoint": run.endpoint,
        "model": run.model,
        "baseline": run.baseline,
        "candidate": run.candidate,
        "outcome": run.outcome,
        "alert_id": run.alert_id,
        "alert_key": run.alert_key,
        "created_at": run.created_at,
        "end": end,
        "finished_at": _iso(run.finished_at),
        "duration_seconds": max(0.0, (_utc(end) - _utc(run.created_at)).total_seconds()),
    }


def loop_runs(lm: Loopml, status: str | None = None, policy: str | None = None) -> dict[str, Any]:
    """The loop's history: every run (newest first) as a timeline per policy, and the policies."""
    svc = service(lm, "loop")
    now = datetime.now(UTC)
    runs = [_run_row(r, now) for r in svc.list(status=status, policy=policy, limit=LOOP_SCAN)]
    policies = [p.to_dict() for p in svc.list_policies()]
    counts: dict[str, int] = {}
    for r in runs:
        counts[r["status"]] = counts.get(r["status"], 0) + 1
    return {
        "runs": runs,
        "policies": policies,
        "counts": counts,
        "filters": {"status": status, "policy": policy},
        "history_figure": fig.loop_history(runs),
    }


def loop_run(lm: Loopml, run_id: int) -> dict[str, Any]:
    """One run as a story from the alert to the outcome, with links to what it touched."""
    svc = service(lm, "loop")
    run = svc.get(run_id)  # NotFoundError -> 404 page
    story = svc.story(run_id)
    for item in story:
        item["color"] = fig.status_color(item["status"])
    return {
        "run": run.to_dict() | {"active": run.active},
        "story": story,
        "story_figure": fig.story_timeline(story),
        "links": _run_links(run, story),
        "pipeline_run_id": run.pipeline_run_id,
    }


def _run_links(run: Any, story: Sequence[dict[str, Any]]) -> list[dict[str, str]]:
    """Endpoint, model versions (baseline, candidate), the alert (and the monitor behind it) and the
    retrain pipeline run."""
    links = []
    if run.endpoint:
        links.append({"label": f"endpoint {run.endpoint}", "href": f"/ui/endpoints/{run.endpoint}"})
    for role, ref in (("baseline", run.baseline), ("candidate", run.candidate)):
        if ref:
            model = ref.split("@")[0].split("/")[0]
            links.append({"label": f"{role} {ref}", "href": f"/ui/models/{model}"})
    if run.alert_id is not None:
        links.append({"label": f"alert {run.alert_key or run.alert_id}", "href": "/ui/alerts"})
        alert = next((item for item in story if item["step"] == "alert"), None)
        monitor = (alert or {}).get("data", {}).get("monitor")
        if isinstance(monitor, str) and monitor:
            links.append({"label": f"monitor {monitor}", "href": f"/ui/monitors/{monitor}"})
    if run.pipeline_run_id:
        links.append(
            {
                "label": f"retrain run {run.pipeline_run_id[:12]}",
                "href": f"/ui/pipelines/runs/{run.pipeline_run_id}",
            }
        )
    return links
