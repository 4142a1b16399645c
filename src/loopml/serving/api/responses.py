"""JSON responses encoded with orjson, able to carry what loopml services return.

Services hand back frozen dataclasses (with ``to_dict()``), numpy scalars, pandas frames and
datetimes; ``to_jsonable`` turns all of these into plain JSON values in one place so every router
serialises the same way, and orjson keeps encoding off the latency budget.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from datetime import date, datetime
from enum import Enum
from pathlib import Path
from typing import Any

import orjson
from starlette.responses import Response

_OPTIONS = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS | orjson.OPT_UTC_Z


def to_jsonable(value: Any) -> Any:
    """Convert service results (dataclasses, frames, numpy, datetimes) to JSON-ready values.

    NaN and infinities become ``null``: JSON has no spelling for them and a dashboard would
    otherwise fail to parse the whole response because of one missing statistic.
    """
    if value is None or isinstance(value, (str, bool, int)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if hasattr(value, "to_dict") and not _is_frame(value) and callable(value.to_dict):
        return to_jsonable(value.to_dict())
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return to_jsonable(dataclasses.asdict(value))
    if isinstance(value, Mapping):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if _is_frame(value):
        return [to_jsonable(row) for row in value.to_dict(orient="records")]
    if isinstance(value, (list, tuple, set, frozenset)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, Enum):
        return to_jsonable(value.value)
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "item") and callable(value.item):  # numpy / pandas scalars
        try:
            return to_jsonable(value.item())
        except (ValueError, TypeError):
            pass
    if hasattr(value, "tolist"):
        return to_jsonable(value.tolist())
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return str(value)


def _is_frame(value: Any) -> bool:
    return type(value).__name__ == "DataFrame" and hasattr(value, "to_dict")


def _default(value: Any) -> Any:
    converted = to_jsonable(value)
    if converted is value:
        raise TypeError(f"cannot encode {type(value).__name__}")
    return converted


class JSONResponse(Response):
    """``application/json`` rendered by orjson after ``to_jsonable``."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(to_jsonable(content), default=_default, option=_OPTIONS)
