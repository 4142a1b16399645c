"""Admin JSON API under ``/v1/``: one router per domain, all calling the same Python services."""

from __future__ import annotations

from fastapi import APIRouter


def build_router() -> APIRouter:
    """All admin routers in one; imported lazily so ``loopml.serving`` stays cheap to import."""
    from loopml.serving.api import (
        alerts,
        datasets,
        jobs,
        loop,
        models,
        monitors,
        notify,
        pipelines,
        runs,
        slos,
    )

    router = APIRouter()
    for module in (datasets, jobs, pipelines, runs, models, alerts, notify, slos, monitors, loop):
        router.include_router(module.router)
    return router
