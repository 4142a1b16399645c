"""Feature definitions in Python: entities, sources, feature views and on-demand features.

Definitions are plain objects a project keeps in a module (like its pipelines). Registering one stores
a *spec* (JSON) and a fingerprint of it; a changed transformation, source, TTL or feature list gives a
new fingerprint and therefore a new version, so a model can always say which definition it used.
"""

from __future__ import annotations

import hashlib
import inspect
import re
import textwrap
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import orjson
import pandas as pd

from loopml.errors import ValidationError

FEATURE_DTYPES = ("int", "float", "str", "bool", "datetime")
KEY_DTYPES = ("int", "str")
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")

Transform = Callable[[pd.DataFrame], pd.DataFrame]


def check_name(kind: str, name: Any) -> str:
    """Names end up in SQL, Redis keys and column names: keep them to identifiers."""
    if not isinstance(name, str) or not _NAME.match(name):
        raise ValidationError(
            f"{kind} name {name!r} is not valid: use letters, digits and underscores, starting with a letter "
            "(at most 128 characters), e.g. 'user_stats'."
        )
    return name


def _check_dtypes(owner: str, columns: Any, allowed: Sequence[str] = FEATURE_DTYPES) -> dict[str, str]:
    if not isinstance(columns, Mapping) or not columns:
        raise ValidationError(
            f"{owner}: features must be a non-empty dict of name -> dtype, e.g. {{'clicks_7d': 'int'}}; got {columns!r}"
        )
    out: dict[str, str] = {}
    for name, dtype in columns.items():
        check_name(f"{owner} feature", name)
        if dtype not in allowed:
            raise ValidationError(
                f"{owner}: feature {name!r} has dtype {dtype!r}; use one of {', '.join(allowed)}."
            )
        out[name] = dtype
    return out


def _ttl_seconds(owner: str, ttl: timedelta | float | int | None) -> float | None:
    if ttl is None:
        return None
    if isinstance(ttl, timedelta):
        seconds = ttl.total_seconds()
    elif isinstance(ttl, int | float) and not isinstance(ttl, bool):
        seconds = float(ttl)
    else:
        raise ValidationError(
            f"{owner}: ttl must be a timedelta or seconds (number), got {type(ttl).__name__}"
        )
    if seconds <= 0:
        raise ValidationError(f"{owner}: ttl must be positive (or None for 'never expires'), got {seconds}s")
    return seconds


def _code_fingerprint(fn: Callable[..., Any]) -> tuple[str, str]:
    """(import reference, source text) of a function: the source text is what a change is detected by."""
    try:
        source = textwrap.dedent(inspect.getsource(fn))
    except (OSError, TypeError):
        code = getattr(fn, "__code__", None)
        source = repr(code.co_code) + repr(code.co_consts) if code is not None else repr(fn)
    ref = f"{getattr(fn, '__module__', '?')}:{getattr(fn, '__qualname__', repr(fn))}"
    return ref, source


# -- entities ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Entity:
    """What features are about (a user, a store): a name and the key column that identifies one."""

    name: str
    join_key: str | None = None
    dtype: str = "int"
    description: str = ""

    def __post_init__(self) -> None:
        check_name("entity", self.name)
        if self.join_key is None:
            object.__setattr__(self, "join_key", self.name)
        check_name(f"entity {self.name!r} join_key", self.join_key)
        if self.dtype not in KEY_DTYPES:
            raise ValidationError(
                f"entity {self.name!r}: dtype {self.dtype!r} is not a key type; use 'int' or 'str'."
            )

    @property
    def key(self) -> str:
        return str(self.join_key)


# -- sources ----------------------------------------------------------------------------------------


class Source:
    """Where a view's raw rows come from; ``spec()`` is what the definition fingerprint covers."""

    def spec(self) -> dict[str, Any]:
        raise NotImplementedError


@dataclass(frozen=True)
class DatasetSource(Source):
    """A loopml dataset (``version="latest"`` follows new ingests; a number pins one)."""

    name: str
    version: int | str = "latest"

    def spec(self) -> dict[str, Any]:
        return {"type": "dataset", "name": self.name, "version": self.version}


@dataclass(frozen=True)
class ParquetSource(Source):
    """Parquet file(s): a path, a directory or a glob. The data may change; the definition does not."""

    path: str

    def spec(self) -> dict[str, Any]:
        return {"type": "parquet", "path": str(self.path)}


@dataclass(frozen=True)
class SqlSource(Source):
    """A DuckDB query over named inputs, e.g. ``SqlSource("SELECT ... FROM orders", {"orders": DatasetSource("orders")})``."""

    query: str
    inputs: Mapping[str, Source] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.query, str) or not self.query.strip():
            raise ValidationError("SqlSource: query must be a non-empty SQL string")
        for name, src in self.inputs.items():
            check_name("SqlSource input", name)
            if not isinstance(src, Source) or isinstance(src, SqlSource):
                raise ValidationError(
                    f"SqlSource input {name!r} must be a DatasetSource, ParquetSource or FrameSource"
                )

    def spec(self) -> dict[str, Any]:
        return {
            "type": "sql",
            "query": self.query,
            "inputs": {k: v.spec() for k, v in sorted(self.inputs.items())},
        }


@dataclass(frozen=True, eq=False)
class FrameSource(Source):
    """An in-memory DataFrame, stored as a Parquet artifact at registration (its content is versioned)."""

    frame: pd.DataFrame

    def __post_init__(self) -> None:
        if not isinstance(self.frame, pd.DataFrame):
            raise ValidationError(f"FrameSource needs a pandas DataFrame, got {type(self.frame).__name__}")

    def content_digest(self) -> str:
        hashed = pd.util.hash_pandas_object(self.frame, index=False).values.tobytes()
        return hashlib.sha256(hashed + repr(list(self.frame.dtypes.astype(str).items())).encode()).hexdigest()

    def spec(self) -> dict[str, Any]:
        return {"type": "frame", "content": self.content_digest()}


def as_source(value: Any, owner: str) -> Source | None:
    """Accept a Source, a path (Parquet) or a DataFrame where a source is expected."""
    if value is None or isinstance(value, Source):
        return value
    if isinstance(value, pd.DataFrame):
        return FrameSource(value)
    if isinstance(value, str | Path):
        return ParquetSource(str(value))
    raise ValidationError(
        f"{owner}: source must be a DatasetSource, ParquetSource, SqlSource, a DataFrame or a Parquet path; "
        f"got {type(value).__name__}"
    )


# -- feature views ----------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class FeatureView:
    """Features of one entity over time: source -> optional transformation -> (key, event time, features).

    ``ttl``: a value older than this (relative to the row's / request's time) is treated as missing, in
    training and in serving alike. ``source=None`` makes a push-only view (streaming updates).
    """

    name: str
    entity: Entity
    features: Mapping[str, str]
    source: Any = None
    event_time: str = "event_ts"
    ttl: timedelta | float | None = None
    transform: Transform | None = None
    description: str = ""

    def __post_init__(self) -> None:
        check_name("feature view", self.name)
        if not isinstance(self.entity, Entity):
            raise ValidationError(
                f"feature view {self.name!r}: entity must be an Entity, got {type(self.entity).__name__}"
            )
        object.__setattr__(self, "features", _check_dtypes(f"feature view {self.name!r}", self.features))
        check_name(f"feature view {self.name!r} event_time", self.event_time)
        clash = {self.entity.key, self.event_time} & set(self.features)
        if clash:
            raise ValidationError(
                f"feature view {self.name!r}: {sorted(clash)} are the key/time columns, not features"
            )
        object.__setattr__(self, "source", as_source(self.source, f"feature view {self.name!r}"))
        if self.transform is not None and not callable(self.transform):
            raise ValidationError(
                f"feature view {self.name!r}: transform must be a function DataFrame -> DataFrame"
            )
        _ttl_seconds(f"feature view {self.name!r}", self.ttl)

    @property
    def ttl_seconds(self) -> float | None:
        return _ttl_seconds(self.name, self.ttl)

    def spec(self) -> dict[str, Any]:
        transform = None
        if self.transform is not None:
            ref, code = _code_fingerprint(self.transform)
            transform = {"ref": ref, "code": code}
        return {
            "kind": "batch",
            "entity": self.entity.name,
            "join_key": self.entity.key,
            "key_dtype": self.entity.dtype,
            "features": [[k, v] for k, v in self.features.items()],
            "event_time": self.event_time,
            "ttl_seconds": self.ttl_seconds,
            "source": self.source.spec() if self.source is not None else None,
            "transform": transform,
            "description": self.description,
        }


@dataclass(frozen=True, eq=False)
class OnDemandFeature:
    """Features computed at request time from request data plus stored features, with one vectorised function.

    ``fn`` receives a DataFrame with the ``inputs`` (as output names, e.g. ``amount_avg_7d``) and the
    ``request`` columns and returns a DataFrame with the ``outputs`` columns. The *same* function runs
    in ``training_frame`` and ``online_features``, which is what keeps them consistent.
    """

    name: str
    inputs: Sequence[str]
    request: Mapping[str, str]
    outputs: Mapping[str, str]
    fn: Transform
    description: str = ""

    def __post_init__(self) -> None:
        check_name("on-demand feature", self.name)
        if isinstance(self.inputs, str) or not all(isinstance(i, str) and ":" in i for i in self.inputs):
            raise ValidationError(
                f"on-demand feature {self.name!r}: inputs must be a list of 'view:feature' references"
            )
        object.__setattr__(self, "inputs", tuple(self.inputs))
        if self.request:
            object.__setattr__(
                self, "request", _check_dtypes(f"on-demand feature {self.name!r} request", self.request)
            )
        else:
            object.__setattr__(self, "request", {})
        object.__setattr__(self, "outputs", _check_dtypes(f"on-demand feature {self.name!r}", self.outputs))
        if not callable(self.fn):
            raise ValidationError(
                f"on-demand feature {self.name!r}: fn must be a function DataFrame -> DataFrame"
            )

    @property
    def features(self) -> dict[str, str]:
        return dict(self.outputs)

    def spec(self) -> dict[str, Any]:
        ref, code = _code_fingerprint(self.fn)
        return {
            "kind": "on_demand",
            "inputs": list(self.inputs),
            "request": dict(self.request),
            "features": [[k, v] for k, v in self.outputs.items()],
            "transform": {"ref": ref, "code": code},
            "description": self.description,
        }


def fingerprint(spec: dict[str, Any]) -> str:
    """A stable hash of a definition spec (sorted keys), the identity of a version."""
    return hashlib.sha256(orjson.dumps(spec, option=orjson.OPT_SORT_KEYS)).hexdigest()
