"""The data behind each ``/ui/demand`` page: plain dicts of numbers, rows and Plotly figures.

Kept apart from the routes so that mounting the app (``create_app``) imports nothing heavy: the
routes import this module on the first page view.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from loopml import Loopml
from loopml.apps.demand import results
from loopml.apps.demand.web import views
from loopml.errors import NotFoundError


def trust_data(lm: Loopml, *, store: int | None = None) -> dict[str, Any]:
    """Why a plan can be trusted: backtest WAPE vs naive, live WAPE vs naive, interval coverage."""
    evaluated = results.weeks(lm, "evaluation")
    evaluation = results.read_evaluation(lm)
    if store is not None and not evaluation.empty:
        evaluation = evaluation[evaluation["store_id"] == store]
    summary = views.evaluation_summary(evaluation, views.published_arms(lm, evaluation))
    return {
        "backtest": views.backtest_store(lm, store) if store is not None else views.backtest_overall(lm),
        "live": summary,
        "coverage": views.coverage(lm, evaluated, store=store),
        "evaluation": evaluation,
    }


def overview_data(lm: Loopml) -> dict[str, Any]:
    published = results.weeks(lm, "forecasts")
    if not published:
        return {"published": [], "hint": results.RUN_HINT}
    latest = published[-1]
    plan = views.plan_summary(results.read_staffing(lm, week=latest))
    trust = trust_data(lm)
    evaluation = trust.pop("evaluation")
    arms = views.published_arms(lm, evaluation)
    figures = {}
    if not evaluation.empty:
        figures["errors"] = views.error_figure(views.weekly_errors(evaluation, arms))
        figures["costs"] = views.cost_figure(views.weekly_costs(evaluation, arms))
    try:
        ab_latest = results.to_records(results.read_ab(lm))[-1]
    except NotFoundError:
        ab_latest = None
    return {
        "published": published,
        "latest": latest,
        "plan_total": {
            "stores": len(plan),
            "staff_hours": int(plan["staff_hours"].sum()),
            "visitors": float(plan["visitors"].sum()),
        },
        "top": results.to_records(plan.head(views.TOP_STORES)),
        "trust": trust,
        "figures": figures,
        "ab": ab_latest,
    }


def store_data(lm: Loopml, store_id: int, week: str | None) -> dict[str, Any]:
    published = results.weeks(lm, "forecasts")
    week_id = results.parse_week(week) if week else results.latest_week(lm, "forecasts")
    forecasts = results.read_forecasts(lm, store=store_id, week=week_id)
    frame = views.with_actuals(forecasts, views.actuals(lm, week_id, store=store_id))
    try:
        staffing = results.read_staffing(lm, store=store_id, week=week_id)
    except NotFoundError:
        staffing = pd.DataFrame(
            columns=["store_id", "ts", "staff", "visitors_forecast", "arm", "model_version"]
        )
    trust = trust_data(lm, store=store_id)
    evaluation = trust.pop("evaluation")
    figures = {}
    grains = [g for g in ("day", "hour", "week", "month") if (frame["grain"] == g).any()]
    for grain in grains:
        figures[grain] = views.forecast_figure(
            frame, grain, f"Store {store_id}: visitors per {grain}, week of {week_id}"
        )
    if not staffing.empty:
        figures["heatmap"] = views.staff_heatmap(
            staffing, f"Store {store_id}: staff per hour, week of {week_id}"
        )
    if not evaluation.empty:
        arms = views.published_arms(lm, evaluation)
        figures["errors"] = views.error_figure(
            views.weekly_errors(evaluation, arms), f"Store {store_id}: WAPE by week"
        )
    used = forecasts[forecasts["used"].astype(bool)] if "used" in forecasts else forecasts
    plan = views.plan_summary(staffing)
    return {
        "store": store_id,
        "week": week_id,
        "weeks": published,
        "grains": grains,
        "figures": figures,
        "model": used["model"].iloc[0] if not used.empty else None,
        "arm": used["arm"].iloc[0] if not used.empty else None,
        "plan": results.to_records(plan)[0] if not plan.empty else None,
        "observed": bool(frame["actual"].notna().any()),
        "trust": trust,
    }


def ab_data(lm: Loopml) -> dict[str, Any]:
    try:
        history = results.read_ab(lm)
    except NotFoundError as exc:
        history, missing = None, str(exc)
    else:
        missing = None
    evaluation = results.read_evaluation(lm)
    figures = {}
    if not evaluation.empty:
        per_arm = views.weekly_errors(evaluation, views.published_arms(lm, evaluation))
        per_arm = per_arm[per_arm["series"] != "published"]
        figures["arms"] = views.error_figure(per_arm, "WAPE by week and arm (every store, both models)")
    if history is not None:
        figures["ci"] = views.ab_figure(history)
    return {
        "latest": results.to_records(history)[-1] if history is not None else None,
        "history": results.to_records(history.iloc[::-1]) if history is not None else [],
        "missing": missing,
        "figures": figures,
        "summary": views.evaluation_summary(evaluation, views.published_arms(lm, evaluation)),
    }


def staffing_data(lm: Loopml, week: str | None) -> dict[str, Any]:
    published = results.weeks(lm, "staffing")
    week_id = results.parse_week(week) if week else results.latest_week(lm, "staffing")
    staffing = results.read_staffing(lm, week=week_id)
    plan = views.plan_summary(staffing)
    order = plan["store_id"].tolist()
    trust = trust_data(lm)
    trust.pop("evaluation")
    return {
        "week": week_id,
        "weeks": published,
        "plan": results.to_records(plan),
        "totals": {"stores": len(plan), "staff_hours": int(plan["staff_hours"].sum())},
        "figures": {
            "chain": views.staff_heatmap(staffing, f"All stores: staff per hour, week of {week_id}"),
            "stores": views.stores_heatmap(
                staffing, order, "Staff per store and hour (most staff-hours on top)"
            ),
        },
        "trust": trust,
    }
