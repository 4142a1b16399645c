"""``DatasetStore``: define datasets with contracts, ingest with quarantine, read versions, diff, SQL.

Ingest is one pipeline: read -> coerce + validate (row-exact failures) -> either refuse (bad share
above the contract's limit) or write the good rows as a deterministic Parquet blob -> record the
version, the quarantined rows and an audit event in one transaction. Nothing is dropped silently:
a refused ingest still stores its bad rows and an ``ingest.refused`` event with the full report.

Versions are content-addressed: re-ingesting rows identical to the latest version (same bytes,
same contract) returns that version instead of creating a duplicate. Re-ingesting *older* content
creates a new version (sharing the stored blob), so ``latest`` always means "what was ingested last".
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
    jsonable,
)
from loopml.data.stats import StatsDiff, column_stats, diff_stats
from loopml.data.validate import Validation, validate_frame
from loopml.errors import NotFoundError, ValidationError, did_you_mean
from loopml.storage import tables
from loopml.storage.metadata import datasets as q
from loopml.storage.metadata.core import record_event

NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,127}$")
EXAMPLES_PER_CHECK = 3

VersionRef = int | str


class DatasetStore:
    """Datasets with contracts, quarantine and immutable versions (``lm.datasets``)."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

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
        actor: str = "system",
    ) -> IngestResult:
        """Validate ``source`` against the contract; store good rows as a version, bad rows in quarantine.

        Raises ``IngestRefusedError`` (a ``ValidationError`` with ``.report``) when the share of bad
        rows is above ``max_bad_share`` or no row passes; the bad rows are recorded even then.
        """
        _check_name(name)
        if contract is not None:
            self.define(name, contract, actor=actor)
        active = self._contract_for_ingest(name)
        raw, source_label = _load_source(source, active)
        if len(raw) == 0:
            raise ValidationError(
                f"ingest into {name!r}: the input from {source_label} has no rows; nothing to version."
            )
        checked = validate_frame(raw, active)
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
        return str(self.ctx.artifacts.local_path(self.version(name, version).digest))

    def read(
        self, name: str, version: VersionRef = "latest", columns: Sequence[str] | None = None
    ) -> pd.DataFrame:
        if columns is not None and (isinstance(columns, str) or not all(isinstance(c, str) for c in columns)):
            raise ValidationError(
                f"columns={columns!r}: give a list of column names, e.g. ['store_id', 'visits']."
            )
        return tables.read_parquet(self.parquet_uri(name, version), columns)

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
        return diff_stats(name, va.number, vb.number, va.stats, vb.stats, va.row_count, vb.row_count)

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
        views: dict[str, str] = {}
        with self.ctx.db.session() as session:
            names = q.dataset_names(session)
        for name, ref in _referenced(query, names):
            if ref is None:
                try:
                    views[name] = self.parquet_uri(name)
                except NotFoundError:
                    continue  # a dataset without versions: DuckDB reports the missing table itself
            else:
                views[f"{name}@{ref}"] = self.parquet_uri(name, ref)
        return tables.query(query, views)

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

    def _contract_for_ingest(self, name: str) -> Contract:
        with self.ctx.db.session() as session:
            row = q.get_dataset(session, name)
            if row is None:
                hint = did_you_mean(name, q.dataset_names(session))
                raise NotFoundError(
                    f"dataset {name!r} does not exist.{hint} Define it first (define(name, Contract(...)) or "
                    "`loopml datasets define NAME --contract file.json`), or pass contract= to ingest."
                )
            return Contract.from_dict(row.contract)

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
        )


# -- module helpers ---------------------------------------------------------------------------
def _check_name(name: Any) -> None:
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise ValidationError(
            f"dataset name {name!r} is not valid: start with a letter, then letters, digits, '_' or '-' "
            "(at most 128 characters), e.g. 'store_visits'.",
            field="name",
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
