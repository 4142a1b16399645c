"""Data for each dashboard page, gathered from the services and shaped as plain dicts for templates.

Kept apart from the routes so the page logic is plain synchronous Python (run in a thread pool by
the routes) and can be tested without HTTP. Templates only format; they never call services.
"""

from __future__ import annotations

from typing import Any

from loopml.client import Loopml
from loopml.errors import NotFoundError
from loopml.serving.api.deps import service
from loopml.serving.api.responses import to_jsonable
from loopml.serving.errors import ModuleUnavailableError
from loopml.storage.metadata.core import list_events

RECENT_EVENTS = 30
#: Where an audit event's subject lives in the dashboard (subject_type -> URL pattern).
SUBJECT_LINKS = {
    "dataset": "/ui/datasets/{id}",
    "run": "/ui/runs/{id}",
    "pipeline_run": "/ui/pipelines/runs/{id}",
    "model": "/ui/models/{id}",
    "job": "/ui/jobs",
    "endpoint": "/ui/endpoints/{id}",
    "alert": "/ui/alerts",
}
STAT_COLUMNS = ("dtype", "count", "nulls", "distinct", "min", "max", "mean", "std")


def _try(load: Any) -> Any:
    """``load()`` or ``None`` when its module is missing (an overview card shows "not available")."""
    try:
        return load()
    except (ModuleUnavailableError, ImportError):
        return None


def overview(lm: Loopml) -> dict[str, Any]:
    """Counts per domain and the most recent audit events."""
    datasets = _try(lambda: service(lm, "datasets").list())
    experiments = _try(lambda: service(lm, "tracking").list_experiments())
    models = _try(lambda: model_list(service(lm, "registry")))
    pipeline_runs = _try(lambda: service(lm, "pipelines").runs(None, limit=1000))
    job_counts = _try(lambda: service(lm, "jobs").stats())
    endpoints = _try(lambda: service(lm, "endpoints").list())
    open_alerts = _try(lambda: service(lm, "alerts").list(status="open", limit=1000))
    cards = [
        _card(
            "datasets",
            "Datasets",
            "/ui/datasets",
            datasets,
            lambda v: sum(d.version_count for d in v),
            "versions",
        ),
        _card("pipeline-runs", "Pipeline runs", "/ui/pipelines", pipeline_runs, None, None),
        _card("runs", "Runs", "/ui/runs", experiments, None, None),
        _card(
            "models",
            "Models",
            "/ui/models",
            models,
            lambda v: sum(m.get("version_count", 0) for m in v),
            "versions",
        ),
        _card("jobs", "Jobs queued", "/ui/jobs", job_counts, None, None),
        _card("endpoints", "Endpoints", "/ui/endpoints", endpoints, None, None),
        _card("alerts", "Open alerts", "/ui/alerts", open_alerts, None, None),
    ]
    if open_alerts is not None:
        critical = sum(1 for a in open_alerts if a.severity == "critical")
        cards[-1]["hint"] = f"{critical} critical" if open_alerts else "all clear"
    if experiments is not None:
        cards[2]["value"] = sum(e.run_count for e in experiments)
        cards[2]["hint"] = f"in {len(experiments)} experiment(s)"
    if pipeline_runs is not None and len(pipeline_runs) >= 1000:
        cards[1]["value"] = "1000+"
    if job_counts is not None:
        cards[4]["value"] = job_counts.get("queued", 0)
        cards[4]["hint"] = f"{job_counts.get('running', 0)} running, {job_counts.get('dead', 0)} dead"
    with lm.ctx.db.session() as session:
        events = [
            {
                "ts": e.ts,
                "kind": e.kind,
                "subject_type": e.subject_type,
                "subject_id": e.subject_id,
                "actor": e.actor,
                "reason": e.reason,
                "href": SUBJECT_LINKS[e.subject_type].format(id=e.subject_id)
                if e.subject_type in SUBJECT_LINKS
                else None,
            }
            for e in list_events(session, limit=RECENT_EVENTS)
        ]
    return {"cards": cards, "events": events}


def _card(key: str, label: str, href: str, items: Any, extra: Any, extra_label: str | None) -> dict[str, Any]:
    card: dict[str, Any] = {"key": key, "label": label, "href": href, "value": None, "hint": None}
    if items is None:
        return card
    card["value"] = len(items) if not isinstance(items, dict) else None
    if extra is not None and extra_label:
        card["hint"] = f"{extra(items)} {extra_label}"
    return card


def dataset(lm: Loopml, name: str, version: int | None, limit: int) -> dict[str, Any]:
    """Versions, the chosen version's column statistics and its quarantined rows."""
    store = service(lm, "datasets")
    info = to_jsonable(store.get(name))
    versions = to_jsonable(store.versions(name))
    current = None
    if versions:
        current = to_jsonable(store.version(name, version if version is not None else "latest"))
    elif version is not None:
        raise NotFoundError(f"dataset {name!r} has no versions yet, so version {version} does not exist.")
    quarantine = to_jsonable(store.quarantine(name, version=version, limit=limit))
    stats_rows = []
    for column, stats in (current or {}).get("stats", {}).items():
        row = {"column": column, **{k: stats.get(k) for k in STAT_COLUMNS}}
        row["top"] = ", ".join(f"{v} ({c})" for v, c in stats.get("top", [])[:5])
        stats_rows.append(row)
    return {
        "dataset": info,
        "versions": list(reversed(versions)),
        "current": current,
        "stats_rows": stats_rows,
        "quarantine": quarantine,
        "quarantine_version": version,
        "limit": limit,
    }


def pipelines(lm: Loopml, pipeline: str | None) -> dict[str, Any]:
    """Registered pipelines and recent runs (optionally of one pipeline)."""
    try:
        svc = service(lm, "pipelines")
    except ModuleUnavailableError as exc:
        return {"pipelines": [], "runs": [], "unavailable_msg": str(exc), "pipeline": pipeline}
    return {
        "pipelines": to_jsonable(svc.list()),
        "runs": to_jsonable(svc.runs(pipeline, limit=100)),
        "unavailable_msg": None,
        "pipeline": pipeline,
    }


def steps_of(run: dict[str, Any]) -> list[dict[str, Any]]:
    """The run's step records in execution (DAG) order."""
    return sorted(run.get("steps") or [], key=lambda s: s.get("position", 0))


def run(lm: Loopml, run_id: str) -> dict[str, Any]:
    """A tracked run plus one chart series per metric and links to its input dataset versions."""
    tracker = service(lm, "tracking")
    record = tracker.get_run(run_id)
    series = []
    for key in sorted(record.metrics):
        points = tracker.metric_history(run_id, key)
        series.append(
            {"key": key, "steps": [p.step for p in points], "values": to_jsonable([p.value for p in points])}
        )
    inputs = [_dataset_version_link(lm, vid) for vid in record.inputs]
    return {"run": to_jsonable(record), "series": series, "inputs": inputs}


def _dataset_version_link(lm: Loopml, version_id: int) -> dict[str, Any]:
    """``{"label": "sales@3", "href": ...}`` for a dataset version id (ids are what lineage stores)."""
    ref = dataset_version_ref(lm, version_id)
    if ref is None:
        return {"label": f"dataset version #{version_id}", "href": None}
    name, number = ref
    return {"label": f"{name}@{number}", "href": f"/ui/datasets/{name}?version={number}"}


def dataset_version_ref(lm: Loopml, version_id: int) -> tuple[str, int] | None:
    """Find ``(dataset, number)`` for a version id by scanning the (small) dataset catalogue."""
    store = _try(lambda: service(lm, "datasets"))
    if store is None:
        return None
    for info in store.list():
        for version in store.versions(info.name):
            if version.id == version_id:
                return info.name, version.number
    return None


def features(store: Any) -> dict[str, Any]:
    """Feature views with versions, freshness and statistics, from ``FeatureStore.summary()``."""
    return {"views": to_jsonable(store.summary())}


def jobs(queue: Any) -> dict[str, Any]:
    """Counts per status, dead letters and recent jobs."""
    return {
        "counts": queue.stats(),
        "oldest": queue.oldest_age_seconds(),
        "dead": to_jsonable(queue.list(status="dead", limit=100)),
        "recent": to_jsonable(queue.list(limit=50)),
    }


def model_list(registry: Any) -> list[dict[str, Any]]:
    """Registered models with version counts and current aliases."""
    return to_jsonable(registry.list_models())


def model(lm: Loopml, name: str) -> dict[str, Any]:
    """A model's versions, aliases, gate results and lineage (runs and dataset versions)."""
    registry = service(lm, "registry")
    info = to_jsonable(registry.get_model(name))
    versions = to_jsonable(registry.versions(name))
    aliases = to_jsonable(registry.aliases(name))
    gates = []
    for version in versions:
        lineage = version.get("lineage") or {}
        version["inputs"] = [
            _dataset_version_link(lm, int(i)) for i in lineage.get("dataset_version_ids") or []
        ]
        for result in to_jsonable(registry.gate_results(name, version["number"])):
            if result.get("dataset_version_id") is not None:
                result["dataset"] = _dataset_version_link(lm, int(result["dataset_version_id"]))
            gates.append({"version": version["number"], **result})
    moves = to_jsonable(registry.history(name, limit=20))
    versions.sort(key=lambda v: v["number"], reverse=True)
    return {"model": info, "versions": versions, "aliases": aliases, "gates": gates, "moves": moves}
