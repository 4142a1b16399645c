"""loopml: the production ML system around the model."""

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
]
