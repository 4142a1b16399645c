"""Data for the endpoint and alert pages: policies, recent traffic, A/B analysis, shadows, alerts.

Everything is read through ``lm.endpoints``, ``lm.inference`` and ``lm.alerts`` with aggregate
queries (``window_stats``, ``timeline``, ``analyse_ab``), never by loading the raw log into the
page, so a busy endpoint renders as fast as a quiet one. Plain synchronous functions returning
dicts; the routes run them in a thread pool.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np

from loopml.client import Loopml
from loopml.errors import ValidationError
from loopml.serving.api.deps import service
from loopml.serving.errors import ModuleUnavailableError
from loopml.web import endpoint_figures as fig

#: Time windows a page can show: label -> (length, chart bucket). About 60-170 buckets each.
WINDOWS: dict[str, tuple[timedelta, int]] = {
    "1h": (timedelta(hours=1), 60),
    "6h": (timedelta(hours=6), 300),
    "24h": (timedelta(hours=24), 900),
    "7d": (timedelta(days=7), 3600),
    "30d": (timedelta(days=30), 6 * 3600),
}
#: A/B analysis windows (labels arrive days after the prediction, so the default is longer).
AB_WINDOWS = (*WINDOWS, "all")
DEFAULT_WINDOW = "1h"
DEFAULT_AB_WINDOW = "7d"
#: Bootstrap resamples on the page: enough for stable 95 % intervals and a quick page; the CLI
#: (``loopml endpoints ab``) uses 2000 for the decision itself.
PAGE_N_BOOT = 500
#: Newest requests scanned for shadow results (the shadow outputs live in the log rows).
SHADOW_SCAN = 2_000
ALERT_SCAN = 1_000
RECENT_ALERTS = 100
SEVERITY_ORDER = ("critical", "warning", "info")


@dataclass(frozen=True)
class Window:
    label: str
    since: datetime
    until: datetime
    bucket_seconds: int


def window(label: str, field: str = "window") -> Window:
    """A named window ending now; an unknown name is a 422 that lists the valid ones."""
    if label not in WINDOWS:
        raise ValidationError(f"{field}={label!r}: use one of {', '.join(WINDOWS)}", field=field)
    length, bucket = WINDOWS[label]
    now = datetime.now(UTC)
    return Window(label, now - length, now, bucket)


def ab_since(label: str) -> datetime | None:
    if label == "all":
        return None
    if label not in WINDOWS:
        raise ValidationError(f"ab={label!r}: use one of {', '.join(AB_WINDOWS)}", field="ab")
    return datetime.now(UTC) - WINDOWS[label][0]


# -- policies ---------------------------------------------------------------------------------
def policy_arms(policy: Any) -> list[dict[str, Any]]:
    """The policy as rows of ``arm, ref, share, role``: who answers, with which share of traffic."""
    data = policy.to_dict()
    kind = data["kind"]
    if kind == "single":
        return [{"arm": "primary", "ref": data["model"], "share": 1.0, "role": "answers"}]
    if kind == "canary":
        weight = float(data["weight"])
        return [
            {"arm": "baseline", "ref": data["baseline"], "share": 1.0 - weight, "role": "baseline"},
            {"arm": "canary", "ref": data["canary"], "share": weight, "role": "canary"},
        ]
    if kind == "ab":
        shares = policy.effective_weights()
        return [
            {"arm": arm, "ref": ref, "share": shares.get(arm), "role": f"sticky by {data['routing_key']}"}
            for arm, ref in data["arms"].items()
        ]
    if kind == "shadow":
        rows = [{"arm": "primary", "ref": data["primary"], "share": 1.0, "role": "answers"}]
        rows += [
            {
                "arm": f"shadow:{ref}",
                "ref": ref,
                "share": data["sample"],
                "role": "shadow (off the response path)",
            }
            for ref in data["shadows"]
        ]
        return rows
    if kind == "bandit":
        role = f"thompson, prior Beta({data['prior_alpha']:g}, {data['prior_beta']:g})"
        return [{"arm": arm, "ref": ref, "share": None, "role": role} for arm, ref in data["arms"].items()]
    return [{"arm": kind, "ref": str(data), "share": None, "role": ""}]  # pragma: no cover


def describe(policy: Any) -> str:
    """One line: ``canary: fraud@champion 90 % | fraud/2 10 %``."""
    parts = []
    for row in policy_arms(policy):
        share = "" if row["share"] is None else f" {row['share'] * 100:.0f} %"
        parts.append(f"{row['ref']}{share}")
    return f"{policy.kind}: " + " | ".join(parts)


# -- alerts -----------------------------------------------------------------------------------
def alert_endpoint(alert: Any) -> str | None:
    """The endpoint an alert is about: ``data.endpoint``, else the key's ``endpoint.*:<name>`` suffix."""
    data = alert.data if isinstance(alert.data, dict) else {}
    name = data.get("endpoint")
    if isinstance(name, str) and name:
        return name
    if alert.key.startswith("endpoint.") and ":" in alert.key:
        return alert.key.split(":", 1)[1] or None
    return None


def _alert_row(alert: Any) -> dict[str, Any]:
    row = alert.to_dict()
    row["endpoint"] = alert_endpoint(alert)
    return row


def open_alerts_by_endpoint(lm: Loopml) -> dict[str, list[dict[str, Any]]]:
    alerts = _optional(lambda: service(lm, "alerts").list(status="open", limit=ALERT_SCAN)) or []
    out: dict[str, list[dict[str, Any]]] = {}
    for alert in alerts:
        name = alert_endpoint(alert)
        if name is not None:
            out.setdefault(name, []).append(_alert_row(alert))
    return out


def _optional(load: Any) -> Any:
    try:
        return load()
    except (ModuleUnavailableError, ImportError):
        return None


# -- pages ------------------------------------------------------------------------------------
def endpoints(lm: Loopml) -> dict[str, Any]:
    """Every endpoint with its policy, revision, last hour's traffic and its open alerts."""
    infos = service(lm, "endpoints").list()
    inference = _optional(lambda: service(lm, "inference"))
    alerts = open_alerts_by_endpoint(lm)
    since = datetime.now(UTC) - timedelta(hours=1)
    rows = []
    for info in infos:
        stats = inference.window_stats(info.name, since=since) if inference is not None else {}
        requests = sum(s.n for s in stats.values())
        errors = sum(s.errors for s in stats.values())
        rows.append(
            {
                "name": info.name,
                "kind": info.spec.policy.kind,
                "arms": policy_arms(info.spec.policy),
                "revision": info.revision,
                "updated_at": info.updated_at,
                "updated_by": info.updated_by,
                "requests": requests,
                "errors": errors,
                "error_rate": errors / requests if requests else None,
                "latency": [
                    {"arm": arm, "n": stats[arm].n, "p50": stats[arm].p50, "p99": stats[arm].p99}
                    for arm in fig.arm_order(stats)
                ],
                "alerts": alerts.get(info.name, []),
            }
        )
    return {"endpoints": rows, "log_available": inference is not None}


def endpoint(lm: Loopml, name: str, window_label: str, ab_label: str) -> dict[str, Any]:
    """One endpoint: spec, history, traffic charts over ``window_label``, A/B analysis, shadows, alerts."""
    win = window(window_label)
    since_ab = ab_since(ab_label)
    endpoints_service = service(lm, "endpoints")
    info = endpoints_service.get(name)  # NotFoundError (404 page) for an unknown name
    spec = info.spec
    history = [
        {**r.to_dict(), "policy": describe(r.spec.policy), "kind": r.spec.policy.kind}
        for r in endpoints_service.history(name, limit=50)
    ]
    page: dict[str, Any] = {
        "endpoint": {
            "name": info.name,
            "revision": info.revision,
            "created_at": info.created_at,
            "updated_at": info.updated_at,
            "updated_by": info.updated_by,
            "description": spec.description,
            "kind": spec.policy.kind,
            "policy": spec.policy.to_dict(),
            "arms": policy_arms(spec.policy),
            "timeout_ms": spec.timeout_ms,
            "max_batch_rows": spec.max_batch_rows,
            "fallback": None if spec.fallback is None else spec.fallback.to_dict(),
            "cache": None if spec.cache is None else spec.cache.to_dict(),
            "features": None if spec.features is None else spec.features.to_dict(),
        },
        "history": history,
        "window": win.label,
        "windows": list(WINDOWS),
        "ab_window": ab_label,
        "ab_windows": list(AB_WINDOWS),
        "bucket_seconds": win.bucket_seconds,
        "alerts": _endpoint_alerts(lm, name),
        "log_unavailable": None,
    }
    try:
        inference = service(lm, "inference")
    except ModuleUnavailableError as exc:
        page.update(log_unavailable=str(exc), summary=[], figures={}, ab=None, shadows=[])
        return page
    page.update(_traffic(inference, name, win))
    page["ab"] = _ab(lm, name, since_ab)
    page["shadows"] = shadow_summary(inference, name, win.since)
    return page


def _traffic(inference: Any, name: str, win: Window) -> dict[str, Any]:
    timeline = inference.timeline(name, since=win.since, bucket_seconds=win.bucket_seconds)
    stats = inference.window_stats(name, since=win.since)
    summary = [
        {
            "arm": arm,
            "models": list(stats[arm].models),
            "requests": stats[arm].n,
            "errors": stats[arm].errors,
            "error_rate": stats[arm].errors / stats[arm].n if stats[arm].n else None,
            "p50": stats[arm].p50,
            "p99": stats[arm].p99,
        }
        for arm in fig.arm_order(stats)
    ]
    figures = {
        "requests": fig.requests_figure(
            timeline, start=win.since, end=win.until, bucket_seconds=win.bucket_seconds
        ),
        "latency": fig.latency_figure(timeline),
        "errors": fig.error_rate_figure(timeline),
        "distribution": fig.distribution_figure({arm: s.outputs for arm, s in stats.items()}),
    }
    return {"summary": summary, "figures": figures}


def _ab(lm: Loopml, name: str, since: datetime | None) -> dict[str, Any]:
    from loopml.serving.inference import analyse_ab

    result = analyse_ab(lm, name, since=since, n_boot=PAGE_N_BOOT)
    data = result.to_dict()
    data["figure"] = fig.ab_figure(data["arms"], result.metric, result.confidence)
    data["diff_figure"] = fig.diff_figure(data["arms"], result.metric, result.control)
    data["verdict_kind"] = (
        "ok" if result.winner else ("warn" if result.verdict == "not enough data" else "info")
    )
    return data


def shadow_summary(inference: Any, name: str, since: datetime) -> list[dict[str, Any]]:
    """Per shadow model over the newest ``SHADOW_SCAN`` requests: agreement, errors, latency vs primary."""
    frame = inference.records(name, since=since, limit=SHADOW_SCAN)
    if frame.empty:
        return []
    acc: dict[str, dict[str, list[float] | int]] = {}
    for entries, primary_ms in zip(frame["shadow"], frame["latency_ms"], strict=True):
        if not entries:
            continue
        for entry in entries:
            if not isinstance(entry, dict):
                continue
            label = str(entry.get("arm") or entry.get("model") or "shadow")
            slot = acc.setdefault(label, {"agreement": [], "latency": [], "primary": [], "errors": 0, "n": 0})
            slot["n"] += 1  # type: ignore[operator]
            if entry.get("error"):
                slot["errors"] += 1  # type: ignore[operator]
            if isinstance(entry.get("agreement"), (int, float)):
                slot["agreement"].append(float(entry["agreement"]))  # type: ignore[union-attr]
            if isinstance(entry.get("latency_ms"), (int, float)):
                slot["latency"].append(float(entry["latency_ms"]))  # type: ignore[union-attr]
                slot["primary"].append(float(primary_ms))  # type: ignore[union-attr]
    out = []
    for label, slot in sorted(acc.items()):
        agreement, latency, primary = slot["agreement"], slot["latency"], slot["primary"]
        out.append(
            {
                "shadow": label,
                "compared": slot["n"],
                "errors": slot["errors"],
                "agreement": float(np.mean(agreement)) if agreement else None,  # type: ignore[arg-type]
                "shadow_p50": _pct(latency, 50),
                "primary_p50": _pct(primary, 50),
                "shadow_p99": _pct(latency, 99),
                "primary_p99": _pct(primary, 99),
            }
        )
    return out


def _pct(values: Any, q: float) -> float | None:
    return float(np.percentile(values, q)) if len(values) else None


def _endpoint_alerts(lm: Loopml, name: str) -> list[dict[str, Any]]:
    """Open alerts about the endpoint first, then its recently resolved ones."""
    alerts = _optional(lambda: service(lm, "alerts").list(limit=ALERT_SCAN)) or []
    mine = [_alert_row(a) for a in alerts if alert_endpoint(a) == name]
    opened = [a for a in mine if a["status"] == "open"]
    closed = [a for a in mine if a["status"] != "open"]
    opened.sort(key=lambda a: a["last_fired_at"], reverse=True)
    closed.sort(key=lambda a: a["last_fired_at"], reverse=True)
    return opened + closed[:10]


def alerts(lm: Loopml, status: str | None, severity: str | None, source: str | None) -> dict[str, Any]:
    """Open alerts (all of them) and the most recently fired ones, optionally filtered."""
    svc = service(lm, "alerts")
    opened = [
        _alert_row(a) for a in svc.list(status="open", severity=severity, source=source, limit=ALERT_SCAN)
    ]
    recent = [
        _alert_row(a) for a in svc.list(status=status, severity=severity, source=source, limit=RECENT_ALERTS)
    ]
    counts = {sev: n for sev in SEVERITY_ORDER if (n := sum(1 for a in opened if a["severity"] == sev))}
    return {
        "open": opened if status in (None, "open") else [],
        "recent": recent,
        "counts": counts,
        "filters": {"status": status, "severity": severity, "source": source},
    }
