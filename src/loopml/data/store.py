"""``DatasetStore``: define datasets with contracts, ingest with quarantine, read versions, diff, SQL.

Ingest is one pipeline: read -> coerce + validate (row-exact failures) -> either refuse (bad share
above the contract's limit) or write the good rows as a deterministic Parquet blob -> record the
version, the quarantined rows and an audit event in one transaction. Nothing is dropped silently:
a refused ingest still stores its bad rows and an ``ingest.refused`` event with the full report.

Versions are content-addressed: re-ingesting rows identical to the latest version (same bytes,
same contract) returns that version instead of creating a duplicate. Re-ingesting *older* content
creates a new version (sharing the stored blob), so ``latest`` always means "what was ingested last".

A dataset can instead be **partitioned** (daily or weekly deliveries): its first ingest with
``partition=`` or ``partition_by=`` makes it so, and each version is then a manifest of per-partition
Parquet blobs (``loopml.storage.partitions``). A new version is the previous manifest with the
delivered partitions replaced or added, written in one transaction however many partitions arrive.
"""

from __future__ import annotations

import json
import re
import tempfile
import uuid
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from loopml.context import Context
from loopml.data.contract import Contract
from loopml.data.models import (
    CheckSummary,
    DatasetInfo,
    DatasetVersion,
    Freshness,
    IngestRefusedError,
    IngestReport,
    IngestResult,
    PartitionInfo,
    jsonable,
)
from loopml.data.partitioning import RowKeys, check_key, check_keys, check_partition_by, row_keys
from loopml.data.stats import StatsDiff, column_stats, diff_stats
from loopml.data.validate import Validation, validate_frame
from loopml.errors import NotFoundError, ValidationError, did_you_mean
from loopml.storage import partitions as partition_files
from loopml.storage import tables
from loopml.storage.metadata import datasets as q
from loopml.storage.metadata.core import record_event

NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,127}$")
EXAMPLES_PER_CHECK = 3
#: parsed manifests kept in memory (they are immutable, addressed by digest)
MANIFEST_CACHE = 32

VersionRef = int | str


class DatasetStore:
    """Datasets with contracts, quarantine and immutable versions (``lm.datasets``)."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self._manifests: dict[str, partition_files.Manifest] = {}

    # -- definitions --------------------------------------------------------------------------
    def define(
        self, name: str, contract: Contract | dict[str, Any], description: str = "", *, actor: str = "system"
    ) -> DatasetInfo:
        """Create a dataset, or change its contract (recorded as a ``dataset.contract_changed`` event)."""
        _check_name(name)
        contract = _as_contract(contract)
        new = contract.to_dict()
        with self.ctx.db.session() as session:
            row = q.get_dataset(session, name, for_update=True)
            if row is None:
                row = q.create_dataset(session, name, new, description)
                record_event(session, "dataset.defined", "dataset", name, actor=actor, data={"contract": new})
            else:
                changed = row.contract != new
                if changed:
                    record_event(
                        session,
                        "dataset.contract_changed",
                        "dataset",
                        name,
                        actor=actor,
                        data={"before": row.contract, "after": new},
                    )
                    row.contract = new
                if description and description != row.description:
                    row.description = description
                    changed = True
                if changed:
                    row.updated_at = datetime.now(UTC)
                session.flush()
            return self._info(session, row)

    def list(self) -> list[DatasetInfo]:
        with self.ctx.db.session() as session:
            summaries = q.version_summaries(session)
            return [_info(row, summaries.get(row.id)) for row in q.list_datasets(session)]

    def get(self, name: str) -> DatasetInfo:
        with self.ctx.db.session() as session:
            return self._info(session, self._dataset(session, name))

    def contract(self, name: str) -> Contract:
        """The dataset's current contract."""
        return Contract.from_dict(self.get(name).contract)

    # -- ingest -------------------------------------------------------------------------------
    def ingest(
        self,
        name: str,
        source: pd.DataFrame | str | Path,
        *,
        contract: Contract | dict[str, Any] | None = None,
        partition: str | None = None,
        partition_by: str | None = None,
        actor: str = "system",
    ) -> IngestResult:
        """Validate ``source`` against the contract; store good rows as a version, bad rows in quarantine.

        Raises ``IngestRefusedError`` (a ``ValidationError`` with ``.report``) when the share of bad
        rows is above ``max_bad_share`` or no row passes; the bad rows are recorded even then.

        ``partition="2026-11-29"`` delivers all good rows as that partition; ``partition_by="ts"``
        splits them by a column (datetime -> ISO day, date -> ISO date, other kinds -> the value).
        The new version keeps every earlier partition that was not delivered again.
        """
        _check_name(name)
        if partition is not None and partition_by is not None:
            raise ValidationError(
                f"ingest into {name!r}: give partition= (one key for all rows) or partition_by= (a column), "
                "not both.",
                field="partition",
            )
        if partition is not None:
            check_key(partition, field="partition")
        if contract is not None:
            self.define(name, contract, actor=actor)
        active, is_partitioned, has_versions = self._ingest_target(name)
        partitioned = partition is not None or partition_by is not None
        _check_mode(name, is_partitioned, has_versions, partitioned, partition_by)
        if partition_by is not None:
            check_partition_by(partition_by, active)
        raw, source_label = _load_source(source, active)
        if len(raw) == 0:
            raise ValidationError(
                f"ingest into {name!r}: the input from {source_label} has no rows; nothing to version."
            )
        checked = validate_frame(raw, active)
        keys = None
        if partition_by is not None:
            keys = row_keys(checked.frame[partition_by], active.column(partition_by).dtype)
            _add_key_failures(checked, keys, partition_by)
        attempt = uuid.uuid4().hex
        bad_rows = checked.bad_rows
        rows_in = len(raw)
        rows_ok = rows_in - len(bad_rows)
        accepted = rows_ok > 0 and len(bad_rows) / rows_in <= active.max_bad_share
        good = checked.good_frame() if accepted else None
        warnings = _warnings(checked, active, rows_ok)
        newest, stale = (None, None)
        if good is not None and active.freshness_column:
            newest, stale = _freshness(good[active.freshness_column], active)
            if stale:
                warnings.append(
                    f"stale data: newest {active.freshness_column} is {newest}, older than max_age "
                    f"{active.to_dict()['max_age']}; check that the source is still being updated."
                )
        summary = dict(
            dataset=name,
            attempt=attempt,
            source=source_label,
            rows_in=rows_in,
            rows_ok=rows_ok,
            rows_quarantined=len(bad_rows),
            max_bad_share=active.max_bad_share,
            checks=_check_summaries(checked.failures),
            warnings=warnings,
            newest=newest,
            stale=stale,
        )
        quarantine = _quarantine_payload(raw, checked, bad_rows, attempt)
        if not accepted:
            if rows_ok == 0:
                summary["warnings"] = [*warnings, "no row passed the contract"]
            report = IngestReport(accepted=False, **summary)
            with self.ctx.db.session() as session:
                dataset = self._dataset(session, name, for_update=True)
                q.insert_quarantine(session, _with_ids(quarantine, dataset.id, None))
                record_event(session, "ingest.refused", "dataset", name, actor=actor, data=report.to_dict())
            raise IngestRefusedError(report)

        assert good is not None
        dtypes = {c.name: c.dtype for c in active.columns}
        stats = column_stats(good, dtypes)
        if partitioned:
            if keys is None:
                codes, key_list = np.zeros(len(good), dtype="int64"), [str(partition)]
            else:
                keep = np.ones(rows_in, dtype=bool)
                keep[bad_rows] = False
                codes, key_list = keys.codes[keep], keys.keys
            parts = partition_files.write_partitions(
                good, codes, key_list, dtypes, self.ctx.artifacts.put_bytes
            )
            return self._commit_partitions(
                name,
                parts,
                active,
                stats,
                summary,
                quarantine,
                rows_in=rows_in,
                rows_ok=rows_ok,
                rows_quarantined=len(bad_rows),
                source=source_label,
                actor=actor,
                partition_by=partition_by,
            )
        with tempfile.TemporaryDirectory(prefix="loopml-ingest-") as tmp:
            path = Path(tmp) / "version.parquet"
            size = tables.write_parquet(good, path, dtypes)
            digest = self.ctx.artifacts.put_file(path)
        contract_dict = active.to_dict()
        with self.ctx.db.session() as session:
            dataset = self._dataset(session, name, for_update=True)
            latest = q.latest_version(session, dataset.id)
            new_version = latest is None or latest.digest != digest or latest.contract != contract_dict
            if new_version:
                latest = q.add_version(
                    session,
                    dataset.id,
                    digest=digest,
                    row_count=len(good),
                    size_bytes=size,
                    rows_in=rows_in,
                    rows_quarantined=len(bad_rows),
                    stats=stats,
                    contract=contract_dict,
                    source=source_label,
                    actor=actor,
                )
            assert latest is not None
            report = IngestReport(accepted=True, version=latest.number, new_version=new_version, **summary)
            q.insert_quarantine(session, _with_ids(quarantine, dataset.id, latest.id))
            record_event(
                session,
                "dataset.version_created" if new_version else "ingest.unchanged",
                "dataset",
                name,
                actor=actor,
                data={k: v for k, v in report.to_dict().items() if k != "checks"}
                | {"checks": [c.to_dict() for c in report.checks[:50]]},
            )
            version = self._version(latest, name)
        return IngestResult(
            version=version, rows_in=rows_in, rows_ok=rows_ok, rows_quarantined=len(bad_rows), report=report
        )

    def _commit_partitions(
        self,
        name: str,
        parts: partition_files.Manifest,
        active: Contract,
        stats: dict[str, Any],
        summary: dict[str, Any],
        quarantine: list[dict],
        *,
        rows_in: int,
        rows_ok: int,
        rows_quarantined: int,
        source: str,
        actor: str,
        partition_by: str | None,
    ) -> IngestResult:
        """Merge the delivered partitions into the latest manifest and record the version: one transaction."""
        contract_dict = active.to_dict()
        delivered = sorted(parts)
        with self.ctx.db.session() as session:
            dataset = self._dataset(session, name, for_update=True)
            latest = q.latest_version(session, dataset.id)
            # Checked again under the lock: a concurrent plain ingest may have landed meanwhile.
            _check_mode(name, dataset.partitioned, latest is not None, True, partition_by)
            base = self._manifest(latest.digest) if latest is not None else {}
            merged = dict(sorted({**base, **parts}.items()))
            digest = self.ctx.artifacts.put_bytes(partition_files.manifest_bytes(merged))
            new_version = latest is None or latest.digest != digest or latest.contract != contract_dict
            if new_version:
                latest = q.add_version(
                    session,
                    dataset.id,
                    digest=digest,
                    row_count=sum(p.rows for p in merged.values()),
                    size_bytes=sum(p.size_bytes for p in merged.values()),
                    rows_in=rows_in,
                    rows_quarantined=rows_quarantined,
                    stats=stats,
                    contract=contract_dict,
                    source=source,
                    actor=actor,
                    partition_count=len(merged),
                    partitions_delivered=delivered,
                )
            if not dataset.partitioned:
                dataset.partitioned = True
                dataset.updated_at = datetime.now(UTC)
            assert latest is not None
            report = IngestReport(
                accepted=True,
                version=latest.number,
                new_version=new_version,
                partitions=delivered,
                partition_count=len(merged),
                **summary,
            )
            q.insert_quarantine(session, _with_ids(quarantine, dataset.id, latest.id))
            event = {k: v for k, v in report.to_dict().items() if k not in ("checks", "partitions")}
            record_event(
                session,
                "dataset.version_created" if new_version else "ingest.unchanged",
                "dataset",
                name,
                actor=actor,
                data=event
                | {
                    "checks": [c.to_dict() for c in report.checks[:50]],
                    "partitions": delivered[:100],
                    "partitions_delivered": len(delivered),
                },
            )
            version = self._version(latest, name)
        return IngestResult(
            version=version,
            rows_in=rows_in,
            rows_ok=rows_ok,
            rows_quarantined=rows_quarantined,
            report=report,
        )

    # -- versions -----------------------------------------------------------------------------
    def version(self, name: str, version: VersionRef = "latest") -> DatasetVersion:
        """A version by number (``3``, ``"3"``) or ``"latest"``."""
        number = _version_number(version)
        with self.ctx.db.session() as session:
            dataset = self._dataset(session, name)
            if number is None:
                row = q.latest_version(session, dataset.id)
                if row is None:
                    raise NotFoundError(
                        f"dataset {name!r} has no versions yet; ingest data first: loopml datasets ingest {name} FILE."
                    )
            else:
                row = q.get_version(session, dataset.id, number)
                if row is None:
                    known = q.version_numbers(session, dataset.id)
                    have = f"versions are {_ranges(known)}" if known else "it has no versions yet"
                    raise NotFoundError(
                        f"dataset {name!r} has no version {number}; {have} (or use 'latest')."
                    )
            return self._version(row, name)

    def versions(self, name: str) -> list[DatasetVersion]:
        with self.ctx.db.session() as session:
            dataset = self._dataset(session, name)
            return [self._version(row, name) for row in q.list_versions(session, dataset.id)]

    def parquet_uri(self, name: str, version: VersionRef = "latest") -> str:
        """A local Parquet path for the version (a verified cached copy when artifacts live on S3)."""
        v = self.version(name, version)
        if v.partitioned:
            raise ValidationError(
                f"dataset {name!r} is partitioned ({v.partition_count} partitions in {v.ref}), so it has no "
                f"single Parquet file; use parquet_uris({name!r}, {v.number}) for the list of files.",
                field="name",
            )
        return str(self.ctx.artifacts.local_path(v.digest))

    def parquet_uris(
        self, name: str, version: VersionRef = "latest", partitions: Sequence[str] | None = None
    ) -> list[str]:
        """Local Parquet paths of a version: one for a plain dataset, one per partition (in key order)."""
        v = self.version(name, version)
        if not v.partitioned:
            _no_partitions(v, partitions)
            return [str(self.ctx.artifacts.local_path(v.digest))]
        return [str(self.ctx.artifacts.local_path(p.digest)) for p in self._select(v, partitions).values()]

    def partitions(self, name: str, version: VersionRef = "latest") -> list[PartitionInfo]:
        """The partitions of a partitioned version, in key order (no data read: the manifest only)."""
        v = self.version(name, version)
        if not v.partitioned:
            raise ValidationError(
                f"dataset {name!r} is not partitioned; ingest with partition= or partition_by= to create "
                "a partitioned dataset (use versions() for a plain one).",
                field="name",
            )
        return [
            PartitionInfo(key=key, rows=p.rows, digest=p.digest, size_bytes=p.size_bytes)
            for key, p in self._manifest(v.digest).items()
        ]

    def read(
        self,
        name: str,
        version: VersionRef = "latest",
        columns: Sequence[str] | None = None,
        *,
        partitions: Sequence[str] | None = None,
    ) -> pd.DataFrame:
        """The rows of a version; for a partitioned one the union of ``partitions`` (default all) in key order."""
        if columns is not None and (isinstance(columns, str) or not all(isinstance(c, str) for c in columns)):
            raise ValidationError(
                f"columns={columns!r}: give a list of column names, e.g. ['store_id', 'visits']."
            )
        v = self.version(name, version)
        if not v.partitioned:
            _no_partitions(v, partitions)
            return tables.read_parquet(str(self.ctx.artifacts.local_path(v.digest)), columns)
        paths = [self.ctx.artifacts.local_path(p.digest) for p in self._select(v, partitions).values()]
        schema = [(c["name"], c["dtype"]) for c in v.contract["columns"]]
        return partition_files.read_union(paths, schema, columns)

    def quarantine(self, name: str, version: VersionRef | None = None, limit: int = 100) -> pd.DataFrame:
        """Quarantined rows, newest ingest first: ``row_index``, ``checks`` (names), ``failed_checks``, ``row``.

        ``version`` restricts to rows set aside while creating that version (refused ingests have
        no version, so they only show without it).
        """
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise ValidationError(f"quarantine limit={limit!r}: give a positive whole number of rows.")
        # Resolve the version first: a nested session would wait on SQLite's write lock.
        version_ids = None if version is None else [self.version(name, version).id]
        with self.ctx.db.session() as session:
            dataset = self._dataset(session, name)
            rows = q.list_quarantine(session, dataset.id, version_ids=version_ids, limit=limit)
            numbers = {v.id: v.number for v in q.list_versions(session, dataset.id)}
            records = [
                {
                    "attempt": r.attempt,
                    "version": numbers.get(r.version_id) if r.version_id else None,
                    "row_index": r.row_index,
                    "checks": ", ".join(f"{c['column']}: {c['check']}" for c in r.failed_checks),
                    "failed_checks": r.failed_checks,
                    "row": r.row,
                    "created_at": r.created_at,
                }
                for r in rows
            ]
        columns = ["attempt", "version", "row_index", "checks", "failed_checks", "row", "created_at"]
        frame = pd.DataFrame.from_records(records, columns=columns)
        frame["version"] = frame["version"].astype("Int64")
        return frame

    def diff(self, name: str, a: VersionRef, b: VersionRef = "latest") -> StatsDiff:
        """Per-column statistics change from version ``a`` to ``b`` (nulls, mean, min/max, categories, rows)."""
        va, vb = self.version(name, a), self.version(name, b)
        changes = None
        if va.partitioned and vb.partitioned:
            ma, mb = self._manifest(va.digest), self._manifest(vb.digest)
            changes = {
                "added": sorted(set(mb) - set(ma)),
                "removed": sorted(set(ma) - set(mb)),
                "changed": sorted(k for k in ma if k in mb and ma[k].digest != mb[k].digest),
            }
        return diff_stats(
            name, va.number, vb.number, va.stats, vb.stats, va.row_count, vb.row_count, partitions=changes
        )

    def freshness(self, name: str, *, now: datetime | None = None) -> Freshness:
        """How old the newest row of the latest version is (for monitors; uses stored stats, no data read)."""
        contract = self.contract(name)
        if not contract.freshness_column:
            raise ValidationError(
                f"dataset {name!r} has no freshness_column in its contract; add freshness_column and max_age with define()."
            )
        now = now or datetime.now(UTC)
        column = contract.freshness_column
        try:
            latest = self.version(name)
        except NotFoundError:
            latest = None
        newest = latest.stats.get(column, {}).get("max") if latest else None
        if latest is not None and latest.partitioned:
            # Stats cover only the last delivery; the newest row may sit in any partition.
            newest = self._newest(latest, column)
        age = None
        if newest is not None:
            stamp = pd.Timestamp(newest)
            stamp = stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp
            age = (pd.Timestamp(now) - stamp).total_seconds()
        max_age = contract.max_age.total_seconds() if contract.max_age else None  # type: ignore[union-attr]
        stale = newest is None or (max_age is not None and age is not None and age > max_age)
        return Freshness(
            dataset=name,
            version=latest.number if latest else None,
            column=column,
            newest=newest,
            age_seconds=age,
            max_age_seconds=max_age,
            stale=bool(stale),
            checked_at=now.isoformat(),
        )

    # -- SQL ----------------------------------------------------------------------------------
    def sql(self, query: str) -> pd.DataFrame:
        """Run DuckDB SQL; a dataset is a table by its name (latest) or ``"name@N"`` (quoted)."""
        if not isinstance(query, str) or not query.strip():
            raise ValidationError("sql: give a query, e.g. SELECT count(*) FROM my_dataset.")
        views: dict[str, str | list[str]] = {}
        with self.ctx.db.session() as session:
            names = q.dataset_names(session)
        for name, ref in _referenced(query, names):
            if ref is None:
                try:
                    views[name] = self._sql_source(name, "latest")
                except NotFoundError:
                    continue  # a dataset without versions: DuckDB reports the missing table itself
            else:
                views[f"{name}@{ref}"] = self._sql_source(name, ref)
        return tables.query(query, views)

    def _sql_source(self, name: str, ref: VersionRef) -> str | list[str]:
        """One Parquet path for a plain version, the list of partition files for a partitioned one."""
        v = self.version(name, ref)
        if v.partitioned:
            return self.parquet_uris(name, v.number)
        return str(self.ctx.artifacts.local_path(v.digest))

    # -- helpers ------------------------------------------------------------------------------
    def _dataset(self, session: Any, name: str, *, for_update: bool = False) -> q.Dataset:
        if not isinstance(name, str):
            raise ValidationError(f"dataset name must be a string, got {type(name).__name__}.")
        row = q.get_dataset(session, name, for_update=for_update)
        if row is None:
            raise NotFoundError(
                f"dataset {name!r} does not exist." + did_you_mean(name, q.dataset_names(session))
            )
        return row

    def _info(self, session: Any, row: q.Dataset) -> DatasetInfo:
        return _info(row, q.version_summaries(session).get(row.id))

    def _ingest_target(self, name: str) -> tuple[Contract, bool, bool]:
        """The contract to ingest under, whether the dataset is partitioned, whether it has versions."""
        with self.ctx.db.session() as session:
            row = q.get_dataset(session, name)
            if row is None:
                hint = did_you_mean(name, q.dataset_names(session))
                raise NotFoundError(
                    f"dataset {name!r} does not exist.{hint} Define it first (define(name, Contract(...)) or "
                    "`loopml datasets define NAME --contract file.json`), or pass contract= to ingest."
                )
            has_versions = q.latest_version(session, row.id) is not None
            return Contract.from_dict(row.contract), bool(row.partitioned), has_versions

    def _manifest(self, digest: str) -> partition_files.Manifest:
        cached = self._manifests.get(digest)
        if cached is None:
            cached = partition_files.parse_manifest(self.ctx.artifacts.get_bytes(digest), digest)
            if len(self._manifests) >= MANIFEST_CACHE:
                self._manifests.pop(next(iter(self._manifests)))
            self._manifests[digest] = cached
        return cached

    def _select(self, v: DatasetVersion, keys: Sequence[str] | None) -> partition_files.Manifest:
        """The manifest entries for ``keys`` (all when None), in partition key order."""
        manifest = self._manifest(v.digest)
        if keys is None:
            return manifest
        wanted = check_keys(keys, field="partitions")
        unknown = [k for k in wanted if k not in manifest]
        if unknown:
            raise NotFoundError(
                f"{v.ref} has no partition {unknown[0]!r}"
                + (f" (nor {len(unknown) - 1} more)" if len(unknown) > 1 else "")
                + f"; it has {len(manifest)} partitions ({min(manifest)} .. {max(manifest)})."
                + did_you_mean(unknown[0], list(manifest)),
                field="partitions",
            )
        return {k: manifest[k] for k in sorted(wanted)}

    def _newest(self, v: DatasetVersion, column: str) -> str | None:
        paths = [self.ctx.artifacts.local_path(p.digest) for p in self._manifest(v.digest).values()]
        value = partition_files.column_max(paths, column)
        if value is None:
            return None
        dtype = next((c["dtype"] for c in v.contract["columns"] if c["name"] == column), "")
        if dtype == "date":
            return pd.Timestamp(value).date().isoformat()
        if dtype == "datetime":
            stamp = pd.Timestamp(value)
            return (stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")).isoformat()
        return str(value)

    def _version(self, row: q.DatasetVersionRow, name: str) -> DatasetVersion:
        return DatasetVersion(
            id=row.id,
            dataset=name,
            number=row.number,
            digest=row.digest,
            row_count=row.row_count,
            stats=_ordered_stats(row.stats, row.contract),
            created_at=row.created_at,
            uri=self.ctx.artifacts.uri(row.digest),
            contract=row.contract,
            rows_in=row.rows_in,
            rows_quarantined=row.rows_quarantined,
            size_bytes=row.size_bytes,
            source=row.source,
            actor=row.actor,
            partition_count=row.partition_count,
            partitions_delivered=list(row.partitions_delivered)
            if row.partitions_delivered is not None
            else None,
        )


# -- module helpers ---------------------------------------------------------------------------
def _check_name(name: Any) -> None:
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise ValidationError(
            f"dataset name {name!r} is not valid: start with a letter, then letters, digits, '_' or '-' "
            "(at most 128 characters), e.g. 'store_visits'.",
            field="name",
        )


def _check_mode(
    name: str, is_partitioned: bool, has_versions: bool, partitioned: bool, partition_by: str | None
) -> None:
    """Plain and partitioned ingests cannot be mixed: a version is either one file or a manifest."""
    field = "partition_by" if partition_by is not None else "partition"
    if is_partitioned and not partitioned:
        raise ValidationError(
            f"dataset {name!r} is partitioned; ingest with partition='KEY' (e.g. '2026-11-29') or "
            "partition_by='COLUMN' so the delivery replaces or adds partitions.",
            field="partition",
        )
    if partitioned and not is_partitioned and has_versions:
        raise ValidationError(
            f"dataset {name!r} already has plain (unpartitioned) versions, so {field}= cannot be used; "
            "ingest without partition/partition_by, or put partitioned data in a new dataset.",
            field=field,
        )


def _no_partitions(v: DatasetVersion, partitions: Any) -> None:
    if partitions is not None:
        raise ValidationError(
            f"partitions={partitions!r}: dataset {v.dataset!r} is not partitioned; leave partitions=None.",
            field="partitions",
        )


def _add_key_failures(checked: Validation, keys: RowKeys, column: str) -> None:
    """Rows whose ``partition_by`` value gives no valid key are quarantined (unless already bad)."""
    if not keys.bad_values:
        return
    already = set(checked.bad_rows.tolist())
    rows = [r for r in keys.bad_values if r not in already]
    if not rows:
        return
    extra = pd.DataFrame(
        {
            "row": np.asarray(rows, dtype="int64"),
            "column": column,
            "check": "partition_key",
            "value": np.asarray([keys.bad_values[r] for r in rows], dtype=object),
        }
    )
    checked.failures = (
        pd.concat([checked.failures, extra], ignore_index=True)
        .sort_values(["row", "column"], kind="stable")
        .reset_index(drop=True)
    )


def _as_contract(contract: Any) -> Contract:
    if isinstance(contract, Contract):
        return contract
    if isinstance(contract, dict):
        return Contract.from_dict(contract)
    if isinstance(contract, (str, Path)):
        return Contract.from_file(contract)
    raise ValidationError(
        f"contract must be a Contract, a dict or a .json/.toml path, not {type(contract).__name__}."
    )


def _info(row: q.Dataset, summary: tuple[int, int] | None) -> DatasetInfo:
    latest, count = summary or (None, 0)
    return DatasetInfo(
        id=row.id,
        name=row.name,
        description=row.description,
        contract=row.contract,
        latest_version=latest,
        version_count=count,
        created_at=row.created_at,
        updated_at=row.updated_at,
        partitioned=bool(row.partitioned),
    )


def _load_source(source: Any, contract: Contract) -> tuple[pd.DataFrame, str]:
    if isinstance(source, pd.DataFrame):
        return source, f"a DataFrame ({len(source)} rows)"
    if isinstance(source, (str, Path)):
        # Text columns are read as text ("007" stays "007"); others are type-inferred for speed, and a
        # column with junk in it is inferred as text and converted value by value (junk -> quarantine).
        text = [c.name for c in contract.columns if c.dtype in ("str", "category")]
        return tables.read_source(source, text_columns=text), str(source)
    raise ValidationError(
        f"ingest source must be a pandas DataFrame or a path to a .csv/.parquet file, not {type(source).__name__}."
    )


def _ordered_stats(stats: dict[str, Any], contract: dict[str, Any]) -> dict[str, Any]:
    """Stats in contract column order (PostgreSQL's JSONB does not keep object key order)."""
    order = [c["name"] for c in contract.get("columns", [])]
    return {name: stats[name] for name in order if name in stats} | {
        k: v for k, v in stats.items() if k not in order
    }


def _version_number(version: Any) -> int | None:
    if version == "latest" or version is None:
        return None
    if isinstance(version, bool):
        raise ValidationError(f"version={version!r}: give a version number (1, 2, ...) or 'latest'.")
    if isinstance(version, (int, np.integer)):
        number = int(version)
    elif isinstance(version, str) and version.strip().isdigit():
        number = int(version.strip())
    else:
        raise ValidationError(f"version={version!r}: give a version number (1, 2, ...) or 'latest'.")
    if number < 1:
        raise ValidationError(f"version={version!r}: version numbers start at 1.")
    return number


def _ranges(numbers: list[int]) -> str:
    if len(numbers) <= 6:
        return ", ".join(map(str, numbers))
    return (
        f"1..{numbers[-1]}" if numbers == list(range(1, numbers[-1] + 1)) else f"{numbers[0]}..{numbers[-1]}"
    )


def _warnings(checked: Validation, contract: Contract, rows_ok: int) -> list[str]:
    warnings = []
    if checked.extra_columns:
        warnings.append(
            f"column(s) not in the contract were dropped: {', '.join(checked.extra_columns)} "
            "(declare them in the contract to keep them)"
        )
    dup_checks = sorted({c for c in checked.failures["check"].unique() if str(c).startswith("unique(")})
    if dup_checks:
        warnings.append(
            f"duplicate keys: kept the first valid row of each key, quarantined the repeats ({', '.join(dup_checks)})"
        )
    return warnings


def _freshness(values: pd.Series, contract: Contract) -> tuple[str | None, bool | None]:
    present = values.dropna()
    if present.empty:
        return None, True
    newest = pd.Timestamp(present.max())
    stamp = newest.tz_localize("UTC") if newest.tzinfo is None else newest
    age = pd.Timestamp.now(tz="UTC") - stamp
    stale = contract.max_age is not None and age.to_pytimedelta() > contract.max_age
    text = (
        newest.date().isoformat()
        if contract.column(contract.freshness_column or "").dtype == "date"
        else newest.isoformat()
    )
    return text, bool(stale)


def _check_summaries(failures: pd.DataFrame) -> list[CheckSummary]:
    if failures.empty:
        return []
    out = []
    for (column, check), group in failures.groupby(["column", "check"], sort=True):
        examples = [jsonable(v) for v in group["value"].head(EXAMPLES_PER_CHECK)]
        out.append(
            CheckSummary(
                column=str(column), check=str(check), rows=int(group["row"].nunique()), examples=examples
            )
        )
    return sorted(out, key=lambda c: (-c.rows, c.column, c.check))


def _quarantine_payload(
    raw: pd.DataFrame, checked: Validation, bad_rows: np.ndarray, attempt: str
) -> list[dict]:
    """One record per bad row: its original values and every check it failed (only bad rows are touched)."""
    if len(bad_rows) == 0:
        return []
    subset = raw.reset_index(drop=True).iloc[bad_rows]
    subset.columns = [str(c) for c in subset.columns]
    rows = json.loads(subset.to_json(orient="records", date_format="iso", default_handler=str))
    by_row: dict[int, list[dict[str, Any]]] = {}
    for row, column, check, value in checked.failures.itertuples(index=False, name=None):
        by_row.setdefault(int(row), []).append({"column": column, "check": check, "value": jsonable(value)})
    return [
        {"attempt": attempt, "row_index": int(index), "row": record, "failed_checks": by_row[int(index)]}
        for index, record in zip(bad_rows, rows, strict=True)
    ]


def _with_ids(records: list[dict], dataset_id: int, version_id: int | None) -> Iterator[dict]:
    for record in records:
        yield {**record, "dataset_id": dataset_id, "version_id": version_id}


def _referenced(query: str, names: list[str]) -> list[tuple[str, str | None]]:
    """Datasets a query mentions: ``(name, None)`` for the plain name, ``(name, "3")`` for ``name@3``."""
    found: list[tuple[str, str | None]] = []
    for name in names:
        escaped = re.escape(name)
        refs = set(re.findall(rf"(?<![\w@-]){escaped}@(\d+|latest)\b", query, flags=re.IGNORECASE))
        found.extend((name, ref.lower() if ref.lower() == "latest" else ref) for ref in sorted(refs))
        if re.search(rf"(?<![\w@-]){escaped}(?![\w@-])", query, flags=re.IGNORECASE):
            found.append((name, None))
    return found
