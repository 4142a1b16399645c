"""Step outputs as content-addressed artifacts: the format follows the value, and is recorded.

- pandas DataFrame -> Parquet (columnar, readable by DuckDB and every other tool);
- numpy array (non-object dtype) -> ``.npy`` (loaded without pickle);
- JSON values that round-trip exactly -> canonical JSON (sorted keys, so equal values hash equally);
- anything else -> pickle (models, tuples, custom objects).

The artifact digest doubles as the output's content hash, which is what downstream steps' cache
keys are built from: identical outputs give identical keys, so a re-run upstream step that produced
the same bytes does not invalidate anything below it.
"""

from __future__ import annotations

import io
import json
import pickle
from dataclasses import dataclass
from typing import Any

from loopml.errors import ValidationError
from loopml.storage.artifacts import ArtifactStore

FORMATS = ("parquet", "npy", "json", "pickle")


@dataclass(frozen=True)
class StoredOutput:
    digest: str
    format: str
    type_name: str


def type_name(value: Any) -> str:
    kind = type(value)
    return f"{kind.__module__}.{kind.__qualname__}" if kind.__module__ != "builtins" else kind.__qualname__


def encode(value: Any) -> tuple[bytes, str]:
    """Serialise ``value``; returns ``(bytes, format)``."""
    try:
        import pandas as pd

        if isinstance(value, pd.DataFrame):
            buf = io.BytesIO()
            value.to_parquet(buf, index=True)
            return buf.getvalue(), "parquet"
    except ImportError:  # pragma: no cover - pandas is a core dependency
        pass
    except (ValueError, TypeError):  # frames Parquet cannot hold (mixed object columns) are pickled
        return _pickle(value), "pickle"
    try:
        import numpy as np

        if isinstance(value, np.ndarray) and value.dtype != object:
            buf = io.BytesIO()
            np.save(buf, value, allow_pickle=False)
            return buf.getvalue(), "npy"
    except ImportError:  # pragma: no cover
        pass
    text = _json_exact(value)
    if text is not None:
        return text.encode(), "json"
    return _pickle(value), "pickle"


def decode(data: bytes, fmt: str) -> Any:
    if fmt == "parquet":
        import pandas as pd

        return pd.read_parquet(io.BytesIO(data))
    if fmt == "npy":
        import numpy as np

        return np.load(io.BytesIO(data), allow_pickle=False)
    if fmt == "json":
        return json.loads(data)
    if fmt == "pickle":
        return pickle.loads(data)  # our own artifacts, addressed by hash
    raise ValidationError(f"output format {fmt!r} is unknown; known: {', '.join(FORMATS)}")


def store(artifacts: ArtifactStore, value: Any) -> StoredOutput:
    data, fmt = encode(value)
    return StoredOutput(artifacts.put_bytes(data), fmt, type_name(value))


def load(artifacts: ArtifactStore, digest: str, fmt: str) -> Any:
    return decode(artifacts.get_bytes(digest), fmt)


def _json_exact(value: Any) -> str | None:
    """Canonical JSON when it decodes back to an equal value of the same types, else None."""
    if not _json_types(value):
        return None
    try:
        text = json.dumps(value, sort_keys=True, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError):
        return None
    return text if json.loads(text) == value else None


def _json_types(value: Any, depth: int = 0) -> bool:
    if depth > 100:
        return False
    if value is None or type(value) in (bool, int, float, str):
        return True
    if type(value) is list:
        return all(_json_types(v, depth + 1) for v in value)
    if type(value) is dict:
        return all(type(k) is str and _json_types(v, depth + 1) for k, v in value.items())
    return False


def _pickle(value: Any) -> bytes:
    try:
        return pickle.dumps(value, protocol=5)
    except Exception as exc:  # any pickling failure becomes one clear error
        raise ValidationError(
            f"step output of type {type_name(value)} cannot be stored: it is not a DataFrame, numpy array, "
            f"JSON value or picklable object ({exc}); return data, not open handles or locks"
        ) from None
