"""Monitoring and the closed loop: drift, delayed-label performance, SLOs, alert rules and actions.

Submodules are imported by name (``loopml.monitoring.drift``, ``.monitors``, ``.slo``, ``.rules``,
``.loop``) so that a process computing drift never imports the loop's pipeline machinery.
"""

from typing import Any

#: Public names, resolved on first access so ``import loopml.monitoring`` stays cheap.
_LAZY = {
    "compute_drift": "loopml.monitoring.drift",
    "DriftConfig": "loopml.monitoring.drift",
    "DriftReport": "loopml.monitoring.drift",
    "ReferenceProfile": "loopml.monitoring.drift",
    "MonitorSpec": "loopml.monitoring.spec",
    "SloSpec": "loopml.monitoring.slo",
    "RuleSpec": "loopml.monitoring.rules",
    "ActionPolicy": "loopml.monitoring.actions",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'loopml.monitoring' has no attribute {name!r}")


__all__ = sorted(_LAZY)
