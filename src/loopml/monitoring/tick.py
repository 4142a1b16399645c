"""``tick(lm)``: one turn of the monitoring loop, run by the ``monitoring.tick`` pipeline every 5 minutes.

Order matters: monitors compute the windows that just closed, SLOs measure, alert rules read both
and fire or resolve alerts, then the closed loop reacts to new alerts and moves running loops on.
Each part is guarded: a failing part is reported in the result (``ok: false`` with its error) and
the later parts still run, because a broken SLO must not stop a rollback that is due.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

import orjson

from loopml.monitoring.spec import parse_time
from loopml.storage.metadata.base import utcnow

log = logging.getLogger("loopml.monitoring")

#: (part name, the call on ``lm``) in the order a tick runs them.
#: ``inline`` says whether a loop's retraining may run in this process (CLI, demo) or must wait for a
#: worker (the scheduled pipeline already runs inside one and must not block it for a whole retrain).
PARTS: tuple[tuple[str, Callable[[Any, datetime, bool], Any]], ...] = (
    ("monitors", lambda lm, now, inline: lm.monitors.run_all(now=now)),
    ("slos", lambda lm, now, inline: lm.slos.evaluate_all(now=now)),
    ("alert_rules", lambda lm, now, inline: lm.alert_rules.evaluate(now=now)),
    ("loop_alerts", lambda lm, now, inline: lm.loop.process_alerts(now=now)),
    ("loop_advance", lambda lm, now, inline: lm.loop.advance_all(now=now, inline=inline)),
)


def _default(value: Any) -> Any:
    if hasattr(value, "to_dict") and callable(value.to_dict):
        return value.to_dict()
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return str(value)


def jsonable(value: Any) -> Any:
    """Plain JSON values (what a pipeline step stores as canonical JSON and the API returns)."""
    return orjson.loads(orjson.dumps(value, default=_default, option=orjson.OPT_NON_STR_KEYS))


def tick(lm: Any, *, now: datetime | str | None = None, inline: bool = True) -> dict[str, Any]:
    """Run every part once; returns ``{"at", "ok", "parts": {name: {"ok", "seconds", "result" | "error"}}}``.

    ``now`` (default: the clock) is passed to every part, so a replay or a test sees one instant.
    """
    moment = utcnow() if now is None else parse_time(now, "now")
    parts: dict[str, dict[str, Any]] = {}
    for name, call in PARTS:
        started = time.perf_counter()
        try:
            result = jsonable(call(lm, moment, inline))
            parts[name] = {"ok": _part_ok(result), "result": result}
        except Exception as exc:  # reported, not raised: the next part must still run
            log.exception("loopml: monitoring tick part %s failed", name)
            parts[name] = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
        parts[name]["seconds"] = round(time.perf_counter() - started, 4)
    return {"at": moment.isoformat(), "ok": all(p["ok"] for p in parts.values()), "parts": parts}


def _part_ok(result: Any) -> bool:
    """A part that returned per-item results with ``error`` set (a failing monitor) is not ok."""
    if isinstance(result, list):
        return not any(isinstance(item, dict) and item.get("error") for item in result)
    return True
