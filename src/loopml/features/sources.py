"""Resolve a view's source to Parquet files DuckDB can read, with a fingerprint of the data behind them.

This is the one place that knows what a source *is*; everything downstream (point-in-time joins,
materialisation, statistics) only sees Parquet files. The data fingerprint changes when the data does
(a new dataset version, a rewritten file), which is what incremental materialisation and snapshot
caching key on.
"""

from __future__ import annotations

import glob
import hashlib
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from loopml.context import Context
from loopml.errors import ConfigError, NotFoundError, ValidationError
from loopml.features.definitions import FrameSource, Source, SqlSource
from loopml.storage.offline import write_parquet


@dataclass(frozen=True)
class ResolvedSource:
    """Parquet files (plain sources) or a query over named Parquet inputs (SQL sources)."""

    files: tuple[str, ...]
    fingerprint: str
    sql: str | None = None
    tables: dict[str, tuple[str, ...]] = field(default_factory=dict)
    dataset_version_id: int | None = None


def store_frame(ctx: Context, source: FrameSource) -> str:
    """Write a FrameSource's rows as a Parquet artifact; returns its digest."""
    with tempfile.TemporaryDirectory(prefix="loopml-frame-") as tmp:
        path = Path(tmp) / "frame.parquet"
        write_parquet(source.frame, path)
        return ctx.artifacts.put_file(path)


def frame_digests(ctx: Context, source: Source | None) -> dict[str, str]:
    """Store every FrameSource inside ``source``; returns ``{input name or "": artifact digest}``."""
    if isinstance(source, FrameSource):
        return {"": store_frame(ctx, source)}
    if isinstance(source, SqlSource):
        return {name: store_frame(ctx, s) for name, s in source.inputs.items() if isinstance(s, FrameSource)}
    return {}


def resolve(
    ctx: Context, spec: dict[str, Any], frames: dict[str, str], *, input_name: str = ""
) -> ResolvedSource:
    """Turn a stored source spec into Parquet files (or a SQL query over them)."""
    kind = spec.get("type")
    if kind == "frame":
        digest = frames.get(input_name)
        if not digest:
            raise NotFoundError("the frame source's stored data is missing; register the view again")
        path = str(ctx.artifacts.local_path(digest, verify=False))
        return ResolvedSource(files=(path,), fingerprint=digest)
    if kind == "parquet":
        files = _parquet_files(spec["path"])
        hasher = hashlib.sha256()
        for f in files:
            st = os.stat(f)
            hasher.update(f"{f}:{st.st_size}:{st.st_mtime_ns};".encode())
        return ResolvedSource(files=tuple(files), fingerprint=hasher.hexdigest())
    if kind == "dataset":
        return _dataset(ctx, spec["name"], spec.get("version", "latest"))
    if kind == "sql":
        tables: dict[str, tuple[str, ...]] = {}
        hasher = hashlib.sha256(spec["query"].encode())
        version_id = None
        for name, sub in spec.get("inputs", {}).items():
            resolved = resolve(ctx, sub, frames, input_name=name)
            tables[name] = resolved.files
            hasher.update(f"{name}={resolved.fingerprint};".encode())
            version_id = version_id or resolved.dataset_version_id
        return ResolvedSource(
            files=(),
            fingerprint=hasher.hexdigest(),
            sql=spec["query"],
            tables=tables,
            dataset_version_id=version_id,
        )
    raise ValidationError(f"unknown source type {kind!r} in a stored feature view spec")


def _parquet_files(path: str) -> list[str]:
    p = Path(path).expanduser()
    if p.is_dir():
        files = sorted(str(f) for f in p.rglob("*.parquet"))
    elif any(ch in path for ch in "*?["):
        files = sorted(glob.glob(str(p), recursive=True))
    elif p.is_file():
        files = [str(p)]
    else:
        raise NotFoundError(
            f"ParquetSource path {path!r} does not exist; give a Parquet file, a directory or a glob"
        )
    if not files:
        raise NotFoundError(f"ParquetSource path {path!r} matches no Parquet files")
    return [str(Path(f).resolve()) for f in files]


def _dataset(ctx: Context, name: str, version: int | str) -> ResolvedSource:
    try:
        from loopml.data import DatasetStore
    except ImportError:
        raise ConfigError(
            f"DatasetSource({name!r}) needs loopml.data, which is not available in this installation"
        ) from None
    store = DatasetStore(ctx)
    dv = store.version(name, version)
    files = store.parquet_uris(name, dv.number)  # one path for a plain dataset, one per partition otherwise
    return ResolvedSource(files=tuple(files), fingerprint=str(dv.digest), dataset_version_id=int(dv.id))


def describe(spec: dict[str, Any] | None) -> str:
    """One line for tables: what a source spec points at."""
    if not spec:
        return "push only"
    kind = spec.get("type")
    if kind == "dataset":
        return f"dataset {spec['name']}@{spec.get('version', 'latest')}"
    if kind == "parquet":
        return f"parquet {spec['path']}"
    if kind == "frame":
        return f"frame {spec['content'][:12]}"
    if kind == "sql":
        return "sql over " + ", ".join(spec.get("inputs", {})) if spec.get("inputs") else "sql"
    return str(kind)
