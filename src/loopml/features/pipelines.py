"""Materialisation as a pipeline, so the scheduler (``loopml up``) keeps the online store fresh.

``features.materialize`` is registered for every project (run it with ``loopml run
features.materialize``); ``materialization_pipeline`` builds a scheduled one for your own
``pipelines.py``, e.g. every 15 minutes for the views a model serves from.
"""

from __future__ import annotations

from typing import Any

from loopml.client import Loopml
from loopml.features.materialize import materialize_step
from loopml.pipelines import Pipeline, register, step

BUILTIN_NAME = "features.materialize"


def materialization_pipeline(
    name: str = BUILTIN_NAME, *, schedule: str | None = None, views: list[str] | None = None
) -> Pipeline:
    """Build and register a pipeline that materialises ``views`` (all when None) incrementally."""

    @step(name="materialize", cache=False, retries=2, backoff_seconds=5.0)
    def materialize(lm: Loopml, full: bool, chunk_rows: int) -> dict[str, Any]:
        return materialize_step(lm.ctx, views, full=full, chunk_rows=chunk_rows)

    pipe = Pipeline(
        name, steps=[materialize], schedule=schedule, params={"full": False, "chunk_rows": 50_000}
    )
    return register(pipe)


materialization_pipeline()
