"""Experiment tracking: runs with params, step-indexed metrics (buffered, batched), tags, artifacts
and lineage to dataset versions and the git commit. Entry point: ``lm.tracking`` (a ``Tracker``).
"""

from loopml.tracking.compare import infer_goal
from loopml.tracking.models import (
    ArtifactRef,
    Experiment,
    MetricComparison,
    MetricPoint,
    MetricSummary,
    Run,
    RunComparison,
)
from loopml.tracking.run import ActiveRun
from loopml.tracking.tracker import Tracker

__all__ = [
    "ActiveRun",
    "ArtifactRef",
    "Experiment",
    "MetricComparison",
    "MetricPoint",
    "MetricSummary",
    "Run",
    "RunComparison",
    "Tracker",
    "infer_goal",
]
