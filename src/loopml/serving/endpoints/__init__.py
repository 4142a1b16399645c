"""Named model endpoints: definitions, the metadata-backed service (``lm.endpoints``) and HTTP routes.

``router`` carries the admin routes and, when the runtime is installed, the data-plane routes
(predict, feedback, status); the app includes it automatically. It is built on first access, so
``lm.endpoints`` (definitions and service) does not import FastAPI or the runtime.
"""

import importlib
from typing import Any

from loopml.serving.endpoints.definitions import (
    AB,
    POLICY_KINDS,
    Bandit,
    CacheSpec,
    Canary,
    EndpointSpec,
    Fallback,
    FeatureLookup,
    Policy,
    RollbackRule,
    Shadow,
    Single,
    policy_from_dict,
)
from loopml.serving.endpoints.service import EndpointInfo, EndpointRevision, Endpoints


def _build_router() -> Any:
    from fastapi import APIRouter

    from loopml.serving.endpoints.admin_api import router as admin_router

    combined = APIRouter()
    combined.include_router(admin_router)
    try:
        predict_api = importlib.import_module("loopml.serving.endpoints.predict_api")
    except ModuleNotFoundError as exc:
        if exc.name != "loopml.serving.endpoints.predict_api":
            raise
    else:
        combined.include_router(predict_api.router)
    return combined


#: Exported on first access: the runtime pulls in numpy, pandas and the model loaders.
_LAZY = {
    "EndpointRuntime": "loopml.serving.endpoints.runtime",
    "PredictionResult": "loopml.serving.endpoints.runtime",
    "psi": "loopml.serving.endpoints.policies",
}


def __getattr__(name: str) -> Any:
    if name == "router":
        router = _build_router()
        globals()["router"] = router
        return router
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "AB",
    "POLICY_KINDS",
    "Bandit",
    "CacheSpec",
    "Canary",
    "EndpointInfo",
    "EndpointRevision",
    "EndpointRuntime",
    "EndpointSpec",
    "Endpoints",
    "Fallback",
    "FeatureLookup",
    "Policy",
    "PredictionResult",
    "RollbackRule",
    "Shadow",
    "Single",
    "policy_from_dict",
    "psi",
    "router",
]
