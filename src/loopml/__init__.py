"""loopml: the production ML system around the model.

``import loopml`` is cheap: the domain classes below are imported on first use, so a serving
process never pays for pandera or DuckDB it does not touch.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

from loopml.client import Loopml, connect
from loopml.config import Settings, load_settings
from loopml.errors import (
    BackendUnavailableError,
    ConfigError,
    ConflictError,
    IntegrityError,
    LoopmlError,
    NotFoundError,
    ValidationError,
)

__version__ = "0.1.0"

#: public name -> module that defines it (imported lazily by ``__getattr__``)
_LAZY = {
    **dict.fromkeys(
        [
            "DatasetStore",
            "Contract",
            "Column",
            "IngestResult",
            "DatasetVersion",
            "DatasetInfo",
            "IngestReport",
            "IngestRefusedError",
            "StatsDiff",
            "Freshness",
        ],
        "loopml.data",
    ),
    **dict.fromkeys(
        ["Pipeline", "pipeline", "step", "Pipelines", "PipelineRun", "StepRun", "PipelineInfo", "Schedule"],
        "loopml.pipelines",
    ),
    **dict.fromkeys(["Tracker", "ActiveRun", "Run", "RunComparison"], "loopml.tracking"),
    **dict.fromkeys(["Alerts", "Alert"], "loopml.alerts"),
    **dict.fromkeys(
        ["InferenceLog", "InferenceRecord", "analyse_ab", "score_dataset"], "loopml.serving.inference"
    ),
    **dict.fromkeys(["Endpoints", "EndpointSpec"], "loopml.serving.endpoints"),
    **dict.fromkeys(["AsyncRequests", "AsyncRequest"], "loopml.serving.asynchronous"),
    **dict.fromkeys(["Notifier", "Notification", "Webhook", "Delivery"], "loopml.notify"),
    **dict.fromkeys(
        [
            "Registry",
            "LoadedModel",
            "ModelVersion",
            "ModelInfo",
            "AliasInfo",
            "AliasMove",
            "Protection",
            "GateReport",
            "GateResult",
            "GateBlockedError",
            "BeatsCurrent",
            "LatencyBudget",
            "SliceMetric",
            "Gate",
            "Signature",
            "ColumnSpec",
            "SklearnVersionWarning",
        ],
        "loopml.registry",
    ),
    **dict.fromkeys(["FeatureStore", "Entity", "FeatureView", "OnDemandFeature"], "loopml.features"),
    **dict.fromkeys(["JobQueue", "Job"], "loopml.storage.queue"),
    **dict.fromkeys(["job_handler", "PermanentError", "Worker", "run_worker"], "loopml.worker"),
    "create_app": "loopml.serving.app",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'loopml' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])


__all__ = [
    "BackendUnavailableError",
    "ConfigError",
    "ConflictError",
    "IntegrityError",
    "Loopml",
    "LoopmlError",
    "NotFoundError",
    "Settings",
    "ValidationError",
    "connect",
    "load_settings",
    *_LAZY,
]
