"""Alerts: incidents that need a person, deduplicated by key while open (``lm.alerts``).

A check (a pipeline step, a monitor, a deadline watch) calls ``fire(key, ...)`` each time it sees
the problem and ``resolve(key)`` once it is gone; the same key fired again while open bumps one
alert instead of opening a pile of them. Rules, notifications and a dashboard build on this core.
"""

from loopml.alerts.records import SEVERITIES, STATUSES, Alert
from loopml.alerts.service import Alerts

__all__ = ["SEVERITIES", "STATUSES", "Alert", "Alerts"]
