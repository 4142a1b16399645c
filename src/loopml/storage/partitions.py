"""Partitioned dataset versions: the manifest format, writing many partitions at once, reading their union.

A version of a partitioned dataset is a **manifest**: ``{partition key -> (Parquet digest, rows,
bytes)}`` serialised as canonical JSON (sorted keys, no whitespace) and stored as an artifact. Its
digest is the version's digest, so the same partitions always give the same digest and a re-run
that delivers identical rows creates no new version. Each partition's Parquet is written exactly
like a plain version (``tables.write_table``), so equal rows give equal bytes, and an unchanged
partition is never stored twice.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads
import pyarrow.parquet as pq

from loopml.errors import IntegrityError, ValidationError
from loopml.storage import tables

MANIFEST_FORMAT = "loopml.partitions/1"
#: partitions are encoded and stored concurrently (Parquet encoding, hashing and fsync release the GIL)
WRITE_THREADS = max(1, min(4, os.cpu_count() or 1))


@dataclass(frozen=True)
class Part:
    """One partition of a manifest: its Parquet blob, row count and size."""

    digest: str
    rows: int
    size_bytes: int


Manifest = dict[str, Part]


def manifest_bytes(manifest: Mapping[str, Part]) -> bytes:
    """Canonical JSON for a manifest: equal partitions -> equal bytes -> equal digest."""
    body = {
        "format": MANIFEST_FORMAT,
        "partitions": {
            key: {"digest": p.digest, "rows": p.rows, "bytes": p.size_bytes} for key, p in manifest.items()
        },
    }
    return json.dumps(body, sort_keys=True, separators=(",", ":")).encode()


def parse_manifest(data: bytes, digest: str) -> Manifest:
    """Read a stored manifest back, in partition key order."""
    try:
        body = json.loads(data)
        if body.get("format") != MANIFEST_FORMAT:
            raise ValueError(f"format {body.get('format')!r}")
        parts = body["partitions"]
        return {
            key: Part(digest=str(v["digest"]), rows=int(v["rows"]), size_bytes=int(v["bytes"]))
            for key, v in sorted(parts.items())
        }
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise IntegrityError(
            f"artifact {digest} is not a partition manifest ({exc}); the version row points at the "
            "wrong blob. Restore the manifest from a backup or re-ingest the dataset."
        ) from None


def write_partitions(
    frame: pd.DataFrame,
    codes: np.ndarray,
    keys: Sequence[str],
    dtypes: Mapping[str, str],
    put: Callable[[bytes], str],
) -> Manifest:
    """Split ``frame`` by ``codes`` (row -> index into ``keys``) and store one Parquet blob per key.

    The frame is converted to Arrow once and grouped with one stable sort, so rows keep their input
    order inside a partition and 1,100 partitions cost one conversion plus 1,100 small writes.
    ``put`` stores bytes and returns their digest (the artifact store's ``put_bytes``).
    """
    if len(frame) != len(codes):
        raise ValueError("write_partitions: one code per row is required")
    table = tables.to_arrow(frame, dtypes)
    order = np.argsort(codes, kind="stable")
    counts = np.bincount(codes, minlength=len(keys))
    if not np.array_equal(order, np.arange(len(order))):
        table = table.take(pa.array(order))
    table = table.combine_chunks()
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    jobs = [(keys[i], int(starts[i]), int(counts[i])) for i in range(len(keys)) if counts[i] > 0]

    def store(job: tuple[str, int, int]) -> tuple[str, Part]:
        key, start, rows = job
        sink = pa.BufferOutputStream()
        tables.write_table(table.slice(start, rows), sink, dtypes)
        data = sink.getvalue().to_pybytes()
        return key, Part(digest=put(data), rows=rows, size_bytes=len(data))

    if len(jobs) == 1 or WRITE_THREADS == 1:
        written = [store(job) for job in jobs]
    else:
        with ThreadPoolExecutor(max_workers=WRITE_THREADS, thread_name_prefix="loopml-partitions") as pool:
            written = list(pool.map(store, jobs))
    return dict(sorted(written))


def read_union(
    paths: Sequence[str | Path], schema_columns: Sequence[tuple[str, str]], columns: Sequence[str] | None
) -> pd.DataFrame:
    """Read the union of partition files in the given order, with the version's contract schema.

    Giving the schema explicitly makes partitions written under an older contract readable: a
    column they lack comes back as nulls.
    """
    schema = tables.arrow_schema(schema_columns)
    if columns is not None:
        unknown = [c for c in columns if c not in schema.names]
        if unknown:
            raise ValidationError(
                f"unknown column(s) {', '.join(unknown)}; this version has: {', '.join(schema.names)}."
            )
    selected = list(columns) if columns is not None else schema.names
    dataset = pads.dataset([str(p) for p in paths], schema=schema, format="parquet")
    try:
        table = dataset.to_table(columns=selected)
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError) as exc:
        raise ValidationError(
            f"the partitions of this version do not share one schema ({str(exc).splitlines()[0]}); a "
            "contract change altered a column's type. Re-ingest the older partitions under the new contract."
        ) from None
    return table.to_pandas()


def column_max(paths: Sequence[str | Path], column: str) -> Any:
    """The largest non-null value of ``column`` across files, from Parquet footers where possible."""
    best = None
    for path in paths:
        value = _file_max(Path(path), column)
        if value is not None and (best is None or value > best):
            best = value
    return best


def _file_max(path: Path, column: str) -> Any:
    meta = pq.ParquetFile(path).metadata
    names = [meta.schema.column(i).name for i in range(meta.num_columns)]
    if column not in names:
        return None
    index = names.index(column)
    best = None
    for rg in range(meta.num_row_groups):
        chunk = meta.row_group(rg).column(index)
        stats = chunk.statistics
        if stats is None or not stats.has_min_max:
            if chunk.num_values == 0:
                continue
            # No footer statistics (not written by loopml): read the column instead.
            return pc.max(pq.read_table(path, columns=[column]).column(column)).as_py()
        if stats.max is not None and (best is None or stats.max > best):
            best = stats.max
    return best
