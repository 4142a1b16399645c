"""``/v1/datasets``: list, inspect, partitions, quarantine, diff and ingest (upload) datasets."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from fastapi import APIRouter, Depends, File, Query, Request, UploadFile
from starlette.concurrency import run_in_threadpool

from loopml.client import Loopml
from loopml.errors import ValidationError
from loopml.serving.api.deps import MAX_INT, get_client, parse_version, service
from loopml.serving.api.responses import JSONResponse
from loopml.serving.auth import require_token

router = APIRouter(prefix="/v1/datasets", tags=["datasets"])
UPLOAD_SUFFIXES = (".csv", ".parquet", ".pq")


@router.get("", summary="All datasets with their latest version")
def list_datasets(lm: Loopml = Depends(get_client)) -> JSONResponse:
    return JSONResponse({"datasets": service(lm, "datasets").list()})


@router.get("/{name}", summary="One dataset: contract, description, latest version")
def get_dataset(name: str, lm: Loopml = Depends(get_client)) -> JSONResponse:
    return JSONResponse(service(lm, "datasets").get(name))


@router.get("/{name}/versions", summary="Every version of a dataset, oldest first")
def list_versions(name: str, lm: Loopml = Depends(get_client)) -> JSONResponse:
    return JSONResponse({"dataset": name, "versions": service(lm, "datasets").versions(name)})


@router.get("/{name}/versions/{version}", summary="One version (a number or 'latest') with column statistics")
def get_version(name: str, version: str, lm: Loopml = Depends(get_client)) -> JSONResponse:
    return JSONResponse(service(lm, "datasets").version(name, parse_version(version)))


@router.get("/{name}/partitions", summary="The partitions of a partitioned dataset's version, in key order")
def list_partitions(
    name: str,
    version: str = Query("latest", description="A version number or 'latest'."),
    lm: Loopml = Depends(get_client),
) -> JSONResponse:
    store = service(lm, "datasets")
    v = store.version(name, parse_version(version))
    parts = store.partitions(name, v.number)
    return JSONResponse(
        {
            "dataset": name,
            "version": v.number,
            "partition_count": len(parts),
            "rows": v.row_count,
            "partitions": parts,
        }
    )


@router.get("/{name}/quarantine", summary="Rows refused by the contract, with the checks they failed")
def quarantine(
    name: str,
    version: int | None = Query(
        None, ge=1, le=MAX_INT, description="Only rows quarantined by this version's ingest."
    ),
    limit: int = Query(100, ge=1, le=10_000, description="At most this many rows."),
    lm: Loopml = Depends(get_client),
) -> JSONResponse:
    frame = service(lm, "datasets").quarantine(name, version=version, limit=limit)
    return JSONResponse({"dataset": name, "version": version, "rows": frame})


@router.get("/{name}/diff", summary="Statistics diff between two versions")
def diff(
    name: str,
    a: int = Query(..., ge=1, le=MAX_INT, description="Older version number."),
    b: int = Query(..., ge=1, le=MAX_INT, description="Newer version number."),
    lm: Loopml = Depends(get_client),
) -> JSONResponse:
    return JSONResponse(service(lm, "datasets").diff(name, a, b))


@router.post("/{name}/ingest", status_code=201, summary="Upload a CSV or Parquet file as a new version")
async def ingest(
    name: str,
    request: Request,
    file: UploadFile = File(..., description="A .csv or .parquet file; bad rows are quarantined."),
    partition: str | None = Query(
        None, max_length=64, description="Deliver all rows as this partition key (e.g. 2026-11-29)."
    ),
    partition_by: str | None = Query(
        None, max_length=128, description="Split rows into partitions by this column (datetime: by day)."
    ),
    actor: str = Depends(require_token),
) -> JSONResponse:
    lm: Loopml = get_client(request)
    suffix = Path(file.filename or "").suffix.lower()
    if suffix not in UPLOAD_SUFFIXES:
        raise ValidationError(
            f"file={file.filename!r}: upload a .csv or .parquet file (the extension tells loopml how to read it)."
        )
    with tempfile.TemporaryDirectory(prefix="loopml-upload-") as tmp:
        path = Path(tmp) / f"upload{suffix}"
        with path.open("wb") as out:
            await run_in_threadpool(shutil.copyfileobj, file.file, out)
        store = service(lm, "datasets")
        if partition is None and partition_by is None:
            result = await run_in_threadpool(lambda: store.ingest(name, path, actor=actor))
        else:
            result = await run_in_threadpool(
                lambda: store.ingest(name, path, partition=partition, partition_by=partition_by, actor=actor)
            )
    return JSONResponse(result, status_code=201)
