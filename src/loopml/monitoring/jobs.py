"""The ``monitoring.tick`` pipeline (cron ``*/5 * * * *``): one ``tick`` every five minutes.

Imported by the worker (``BUILTIN_HANDLER_MODULES``) and by the pipelines service, so the scheduler
knows the schedule and any worker can run it. Importing it registers the pipeline and nothing else:
the monitors, SLOs, rules and the loop are imported when the step runs.
"""

from __future__ import annotations

from typing import Any

from loopml.pipelines import Pipeline, register, step

TICK = "monitoring.tick"
TICK_CRON = "*/5 * * * *"


@step(name="tick", cache=False)
def tick_step(now: str, lm: Any) -> dict[str, Any]:
    """Run one monitoring tick; ``now`` (ISO, empty = the clock) replays a moment."""
    from loopml.monitoring.tick import tick

    return tick(lm, now=now or None, inline=False)


TICK_PIPELINE = register(
    Pipeline(
        TICK,
        steps=[tick_step],
        schedule=TICK_CRON,
        params={"now": ""},
        description="Monitors -> SLOs -> alert rules -> closed loop, every 5 minutes",
    ),
    module=__name__,
)
