"""Model registry: versions with flavors and signatures, aliases, and release gates.

``Registry(ctx)`` (or ``lm.registry``) registers models, loads them by ``name@alias`` / ``name/N``,
and moves aliases; protected aliases move only through their gates (``promote``) or a forced,
audited ``set_alias``.
"""

from loopml.registry.flavors import FLAVORS, SklearnVersionWarning
from loopml.registry.gates import BeatsCurrent, Gate, LatencyBudget, SliceMetric, gate_from_spec
from loopml.registry.loaded import LoadedModel
from loopml.registry.metrics import METRICS
from loopml.registry.records import (
    AliasInfo,
    AliasMove,
    GateReport,
    GateResult,
    ModelInfo,
    ModelVersion,
    Protection,
)
from loopml.registry.refs import ModelRef, parse_ref
from loopml.registry.service import GateBlockedError, Registry
from loopml.registry.signature import ColumnSpec, Signature

__all__ = [
    "FLAVORS",
    "METRICS",
    "AliasInfo",
    "AliasMove",
    "BeatsCurrent",
    "ColumnSpec",
    "Gate",
    "GateBlockedError",
    "GateReport",
    "GateResult",
    "LatencyBudget",
    "LoadedModel",
    "ModelInfo",
    "ModelRef",
    "ModelVersion",
    "Protection",
    "Registry",
    "Signature",
    "SklearnVersionWarning",
    "SliceMetric",
    "gate_from_spec",
    "parse_ref",
]
