"""``/ui/moderation...``: the pages a moderation operator and the team lead open.

- ``/ui/moderation``: is screening keeping up? Uploads per hour by outcome, outcome counts, the age
  of the oldest upload waiting for a human, flagged volume per week against operator capacity and
  the model versions the endpoint serves.
- ``/ui/moderation/review``: the queue, oldest first, cleared with the keyboard (``a`` approve,
  ``r`` reject, ``j``/``k`` next/previous). Each decision is a ``POST /v1/moderation/review/{id}``
  sent by the page's script; the item leaves the page when the server accepted it.

Pages are rendered on the server with the dashboard layout (``loopml.web.render``); the data is
assembled in a worker thread because it reads the metadata database.
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.concurrency import run_in_threadpool

from loopml import Loopml
from loopml.errors import LoopmlError
from loopml.web import render

router = APIRouter(prefix="/ui/moderation", include_in_schema=False)
ACTIVE = "moderation"
HOURS = 48
OUTCOME_COLORS = {
    "published": "#2b8a3e",
    "review": "#f08c00",
    "rejected": "#c92a2a",
    "failed": "#868e96",
    "screening": "#3b5bdb",
}


def _lm(request: Request) -> Loopml:
    return request.app.state.lm


def _layout(title: str, **extra: Any) -> dict[str, Any]:
    return {
        "title": {"text": title, "font": {"size": 14}},
        "legend": {"orientation": "h", "y": -0.3},
        **extra,
    }


def uploads_figure(lm: Loopml, *, hours: int = HOURS, now: datetime | None = None) -> dict[str, Any] | None:
    """Stacked bars: uploads per hour over the last ``hours``, coloured by their current status."""
    from loopml.apps.moderation import review

    now = now or datetime.now(tz=UTC)
    since = (now - timedelta(hours=hours)).replace(minute=0, second=0, microsecond=0)
    counts: Counter[tuple[str, str]] = Counter()
    for req in review.iter_requests(lm, status=None, since=since):
        hour = req.created_at.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
        counts[(hour.strftime("%Y-%m-%d %H:00"), req.status)] += 1
    if not counts:
        return None
    hours_seen = sorted({h for h, _ in counts})
    statuses = [s for s in OUTCOME_COLORS if any(st == s for _, st in counts)]
    statuses += sorted({st for _, st in counts} - set(statuses))
    data = [
        {
            "type": "bar",
            "name": status,
            "x": hours_seen,
            "y": [counts[(h, status)] for h in hours_seen],
            "marker": {"color": OUTCOME_COLORS.get(status, "#495057")},
        }
        for status in statuses
    ]
    return {
        "data": data,
        "layout": _layout(
            f"Uploads per hour (UTC, last {hours} h) by status",
            barmode="stack",
            xaxis={"type": "category", "title": {"text": "hour"}},
            yaxis={"title": {"text": "uploads"}},
        ),
    }


def capacity_figure(report: Any) -> dict[str, Any]:
    """Flagged uploads per week (reviewed + waiting) against the operators' weekly capacity."""
    weeks = [w.week for w in report.weeks]
    return {
        "data": [
            {
                "type": "bar",
                "name": "reviewed",
                "x": weeks,
                "y": [w.reviewed for w in report.weeks],
                "marker": {"color": "#2b8a3e"},
            },
            {
                "type": "bar",
                "name": "waiting",
                "x": weeks,
                "y": [w.pending for w in report.weeks],
                "marker": {"color": "#f08c00"},
            },
            {
                "type": "scatter",
                "mode": "lines",
                "name": "operator capacity",
                "x": weeks,
                "y": [w.capacity for w in report.weeks],
                "line": {"color": "#c92a2a", "dash": "dash", "width": 2},
            },
        ],
        "layout": _layout(
            "Flagged for review per week vs operator capacity",
            barmode="stack",
            xaxis={"type": "category", "title": {"text": "week (Monday)"}},
            yaxis={"title": {"text": "uploads"}, "rangemode": "tozero"},
        ),
    }


def versions_in_use(lm: Loopml, endpoint: str, model: str) -> list[dict[str, Any]]:
    """Which model version answers on each arm of the endpoint, plus the model's aliases."""
    rows: list[dict[str, Any]] = []
    try:
        info = lm.endpoints.get(endpoint)
    except LoopmlError:
        info = None
    if info is not None:
        policy = info.spec.policy
        for arm, ref in policy.routes().items():
            try:
                number = lm.registry.get_version(ref).number
            except LoopmlError:
                number = None
            rows.append(
                {"where": f"endpoint {endpoint} ({policy.kind}): {arm}", "ref": ref, "version": number}
            )
    try:
        for alias in lm.registry.aliases(model):
            rows.append(
                {"where": f"alias {alias.alias}", "ref": f"{model}@{alias.alias}", "version": alias.version}
            )
    except LoopmlError:
        pass
    return rows


def overview_data(lm: Loopml) -> dict[str, Any]:
    from loopml.apps.moderation import review
    from loopml.apps.moderation.config import load_config

    cfg = load_config(lm)
    counts = lm.async_requests.counts(review.KIND)
    report = review.capacity_report(lm, cfg, weeks=4)
    figures = {"capacity": capacity_figure(report)}
    uploads = uploads_figure(lm)
    if uploads is not None:
        figures["uploads"] = uploads
    return {
        "counts": counts,
        "total": sum(counts.values()),
        "report": report,
        "figures": figures,
        "versions": versions_in_use(lm, cfg.endpoint, cfg.model_name),
        "endpoint": cfg.endpoint,
    }


def review_data(lm: Loopml, limit: int = 200) -> dict[str, Any]:
    from loopml.apps.moderation import review

    items = review.review_queue(lm, limit=limit)
    return {"items": items, "depth": review.queue_depth(lm)}


def age_text(seconds: float | None) -> str:
    """``3 h 12 min`` style; ``—`` when nothing waits."""
    if seconds is None:
        return "—"
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds} s"
    minutes = seconds // 60
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {minutes} min"
    return f"{hours // 24} d {hours % 24} h"


@router.get("")
@router.get("/")
async def overview(request: Request) -> Response:
    data = await run_in_threadpool(overview_data, _lm(request))
    return await render(
        request, "moderation/overview.html", ACTIVE, title="Moderation", age_text=age_text, **data
    )


@router.get("/review")
async def review_page(request: Request) -> Response:
    data = await run_in_threadpool(review_data, _lm(request))
    return await render(
        request,
        "moderation/review.html",
        ACTIVE,
        title="Review queue",
        age_text=age_text,
        needs_token=bool(getattr(request.app.state, "api_token", None)),
        **data,
    )
