"""``/v1/demand/...``: the published forecasts, staffing plans, evaluation and A/B verdict as JSON or CSV.

Every route reads through ``loopml.apps.demand.results`` (one week partition per request when a week
is given). Errors are loopml errors, so they leave in the server's one error shape: a bad ``week``
is a 422 naming the field with an example, an unknown week or store a 404 naming what exists.
"""

from __future__ import annotations

from types import ModuleType
from typing import TYPE_CHECKING, Any, Literal

from fastapi import APIRouter, Query, Request, Response

from loopml import Loopml

if TYPE_CHECKING:
    import pandas as pd

router = APIRouter(prefix="/v1/demand", tags=["demand"])

DEFAULT_LIMIT = 10_000
MAX_LIMIT = 100_000
MAX_STORE = 2**63 - 1  # what a BIGINT holds: a bigger id cannot name a stored store

StoreQuery = Query(None, ge=1, le=MAX_STORE, description="store id (positive integer); omit for all stores")
WeekQuery = Query(None, description="shift week id: the ISO date of its Monday, e.g. 2026-12-07")
LimitQuery = Query(DEFAULT_LIMIT, ge=1, le=MAX_LIMIT, description="at most this many rows (max 100,000)")
FormatQuery = Query("json", description="json, or csv for a spreadsheet download")


def _lm(request: Request) -> Loopml:
    return request.app.state.lm


def _results() -> ModuleType:
    """Imported on first use, so mounting the app does not load the data layer (pandera)."""
    from loopml.apps.demand import results

    return results


def _views() -> ModuleType:
    from loopml.apps.demand.web import views

    return views


@router.get("/weeks", summary="Weeks with published forecasts, staffing plans and evaluations")
def list_weeks(request: Request) -> dict[str, Any]:
    lm = _lm(request)
    published = _results().weeks(lm, "forecasts")
    return {
        "forecasts": published,
        "staffing": _results().weeks(lm, "staffing"),
        "evaluation": _results().weeks(lm, "evaluation"),
        "latest": published[-1] if published else None,
    }


@router.get(
    "/forecasts",
    response_model=None,
    summary="Visitor forecasts with intervals for one shift week (JSON or CSV)",
)
def forecasts(
    request: Request,
    store: int | None = StoreQuery,
    week: str | None = WeekQuery,
    grain: Literal["hour", "day", "week", "month"] | None = Query(
        None, description="hour or day (default: day when the week has daily rows)"
    ),
    include_shadow: bool = Query(
        False, description="also return the other arm's (shadow) forecasts, not only the published ones"
    ),
    format: Literal["json", "csv"] = FormatQuery,
    limit: int = LimitQuery,
) -> Response | dict[str, Any]:
    lm = _lm(request)
    week_id = _week(lm, week, "forecasts")
    frame = _results().read_forecasts(lm, store=store, week=week_id, used_only=not include_shadow)
    if grain is None:
        grain = "day" if (frame["grain"] == "day").any() else None
    if grain is not None:
        frame = frame[frame["grain"] == grain]
    return _respond("demand_forecasts", frame, week_id, store, format, limit, grain=grain)


@router.get(
    "/staffing", response_model=None, summary="Staff per store and hour for one shift week (JSON or CSV)"
)
def staffing(
    request: Request,
    store: int | None = StoreQuery,
    week: str | None = WeekQuery,
    format: Literal["json", "csv"] = FormatQuery,
    limit: int = LimitQuery,
) -> Response | dict[str, Any]:
    lm = _lm(request)
    week_id = _week(lm, week, "staffing")
    frame = _results().read_staffing(lm, store=store, week=week_id)
    return _respond("demand_staffing", frame, week_id, store, format, limit)


@router.get(
    "/evaluation",
    response_model=None,
    summary="Error and staffing cost per store and week, once actuals have landed",
)
def evaluation(
    request: Request,
    week: str | None = Query(None, description="one evaluated week (Monday ISO date); omit for all"),
    store: int | None = StoreQuery,
    format: Literal["json", "csv"] = FormatQuery,
    limit: int = LimitQuery,
) -> Response | dict[str, Any]:
    lm = _lm(request)
    week_id = _results().parse_week(week) if week is not None else None
    if week_id is None and not _results().weeks(lm, "evaluation"):
        _results().latest_week(lm, "evaluation")  # raises the 404 with the hint
    frame = _results().read_evaluation(lm, week=week_id, store=store)
    body = _respond("demand_evaluation", frame, week_id, store, format, limit)
    if isinstance(body, dict):
        body["summary"] = _views().evaluation_summary(frame, _views().published_arms(lm, frame))
    return body


@router.get("/ab", summary="The latest A/B analysis (champion vs challenger by store): verdict and CI")
def ab(request: Request) -> dict[str, Any]:
    history = _results().read_ab(_lm(request))
    rows = _results().to_records(history)
    return {"latest": rows[-1], "analyses": len(rows), "history": rows}


def _week(lm: Loopml, week: str | None, table: str) -> str:
    return _results().parse_week(week) if week is not None else _results().latest_week(lm, table)


def _respond(
    dataset: str,
    frame: pd.DataFrame,
    week: str | None,
    store: int | None,
    fmt: str,
    limit: int,
    **extra: Any,
) -> Response | dict[str, Any]:
    total = len(frame)
    page = frame.iloc[:limit]
    truncated = total > len(page)
    if fmt == "csv":
        name = "_".join(p for p in (dataset, week or "all-weeks", f"store-{store}" if store else "") if p)
        headers = {
            "Content-Disposition": f'attachment; filename="{name}.csv"',
            "X-Total-Count": str(total),
            "X-Truncated": "true" if truncated else "false",
        }
        return Response(_results().to_csv(page), media_type="text/csv; charset=utf-8", headers=headers)
    return {
        "dataset": dataset,
        "week": week,
        "store": store,
        **extra,
        "total": total,
        "count": len(page),
        "limit": limit,
        "truncated": truncated,
        "rows": _results().to_records(page),
    }
