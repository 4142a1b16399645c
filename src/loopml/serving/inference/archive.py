"""Compact the inference log into one partitioned Parquet dataset, and read it back for monitors.

Why: ``inference_log`` grows by every prediction. Old whole UTC days move into the dataset
``inference_archive`` (partition key ``<endpoint>:<YYYY-MM-DD>``; ``/`` is not a valid partition-key
character) with each request's newest label and reward, as one ``lm.datasets.ingest`` per call, so
every archive run is one immutable, content-addressed version. With ``delete=True`` the archived
days leave the table only after that version is committed, day by day, each day only when the table
still holds exactly the rows the archive holds for it.

Idempotent: a day whose partition already holds as many rows as the table has for it is skipped;
a day whose table rows changed since (late rows) is merged with its partition by ``request_id``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pandas as pd

from loopml.context import Context
from loopml.data.partitioning import KEY_RE
from loopml.data.store import DatasetStore
from loopml.errors import NotFoundError, ValidationError
from loopml.storage import partitions as partition_files
from loopml.storage.metadata import datasets as dq
from loopml.storage.metadata import inference_archive as aq

DATASET = "inference_archive"
PARTITION = "partition"
#: Contract of the archive: the log's columns (JSON as text) plus the newest feedback.
CONTRACT: dict[str, Any] = {
    "columns": [
        {"name": PARTITION, "dtype": "str"},
        {"name": "request_id", "dtype": "str"},
        {"name": "endpoint", "dtype": "str"},
        {"name": "model", "dtype": "str"},
        {"name": "version", "dtype": "int", "nullable": True},
        {"name": "arm", "dtype": "str", "nullable": True},
        {"name": "inputs", "dtype": "str"},
        {"name": "outputs", "dtype": "str"},
        {"name": "latency_ms", "dtype": "float"},
        {"name": "status", "dtype": "str"},
        {"name": "error", "dtype": "str", "nullable": True},
        {"name": "routing_key", "dtype": "str", "nullable": True},
        {"name": "shadow", "dtype": "str", "nullable": True},
        {"name": "at", "dtype": "datetime"},
        {"name": "label", "dtype": "str", "nullable": True},
        {"name": "reward", "dtype": "float", "nullable": True},
        {"name": "label_at", "dtype": "datetime", "nullable": True},
        {"name": "reward_at", "dtype": "datetime", "nullable": True},
    ],
    "max_bad_share": 0.0,  # an archive that drops a row would lose it for good once deleted
}
DAY = timedelta(days=1)
#: What monitors read back: the tuple ``iter_log_rows`` yields.
READ_COLUMNS = ["at", "status", "inputs", "outputs", "label"]
Progress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class ArchiveResult:
    """What one ``archive`` call did (``days_*`` are partition keys ``<endpoint>:<YYYY-MM-DD>``)."""

    dataset: str
    version: int | None  # the dataset version holding every archived day (None: nothing archived yet)
    created: bool  # a new version was written
    cutoff: datetime  # days before this UTC midnight were considered
    days_archived: list[str] = field(default_factory=list)
    days_skipped: list[str] = field(default_factory=list)  # already archived with the same row count
    days_deleted: list[str] = field(default_factory=list)
    days_kept: list[str] = field(default_factory=list)  # delete=True but the table changed meanwhile
    rows_archived: int = 0
    rows_deleted: int = 0

    def to_dict(self) -> dict[str, Any]:
        out = dict(self.__dict__)
        out["cutoff"] = self.cutoff.isoformat()
        return out


def partition_key(endpoint: str, day: str) -> str:
    """``<endpoint>:<YYYY-MM-DD>``; a ValidationError naming ``endpoint`` when it cannot be a key."""
    key = f"{endpoint}:{day}"
    if not KEY_RE.match(key):
        raise ValidationError(
            f"endpoint {endpoint!r} cannot be archived: its partition key {key!r} must be 1-64 characters "
            "from letters, digits and _ . : = - (endpoint names of at most 53 such characters)",
            field="endpoint",
        )
    return key


def day_bounds(day: str) -> tuple[datetime, datetime]:
    start = datetime.combine(date.fromisoformat(day), datetime.min.time(), UTC)
    return start, start + DAY


def archive(
    ctx: Context,
    *,
    before: datetime,
    endpoint: str | None = None,
    delete: bool = False,
    progress: Progress | None = None,
) -> ArchiveResult:
    """Archive the whole UTC days before ``before`` (see the module docstring); ``before`` is checked."""
    cutoff = datetime.combine(before.astimezone(UTC).date(), datetime.min.time(), UTC)
    with ctx.db.session() as session:
        counts = aq.day_counts(session, before=cutoff, endpoint=endpoint)
    keys = {(e, d): partition_key(e, d) for e, d, _ in counts}
    store = DatasetStore(ctx)
    store.define(DATASET, CONTRACT, "Archived inference log: whole UTC days with their newest feedback")
    stored = _stored_rows(store)
    todo = [(e, d, n) for e, d, n in counts if stored.get(keys[(e, d)]) != n]
    skipped = [keys[(e, d)] for e, d, n in counts if stored.get(keys[(e, d)]) == n]
    frames = []
    #: table rows each day had when it was read: a day is deleted only if it still has exactly these
    in_table = {keys[(e, d)]: n for e, d, n in counts}
    for i, (e, d, _) in enumerate(todo):
        if progress:
            progress("read", i, len(todo))
        key = keys[(e, d)]
        frame, in_table[key] = _day_frame(ctx, store, e, d, key, merge=key in stored)
        frames.append(frame)
    version, created = _latest_version(store), False
    rows_archived = 0
    if frames:
        frame = pd.concat(frames, ignore_index=True)
        result = store.ingest(DATASET, frame, partition_by=PARTITION, actor="inference.archive")
        if result.rows_quarantined:  # max_bad_share=0 refuses this first; kept as a guard
            raise ValidationError(
                f"archive quarantined {result.rows_quarantined} rows; nothing was deleted "
                f"(see loopml datasets quarantine {DATASET})",
                field="before",
            )
        version, created, rows_archived = result.version.number, result.created, len(frame)
    if progress:
        progress("read", len(todo), len(todo))
    result_days = [keys[(e, d)] for e, d, _ in todo]
    deleted: list[str] = []
    kept: list[str] = []
    rows_deleted = 0
    if delete:
        for i, (e, d, _) in enumerate(counts):
            if progress:
                progress("delete", i, len(counts))
            key = keys[(e, d)]
            start, end = day_bounds(d)
            with ctx.db.session() as session:  # one transaction per day: a day is all in or all out
                if aq.count_range(session, e, start, end) != in_table[key]:
                    kept.append(key)  # rows arrived after reading: the next archive run merges them
                    continue
                rows_deleted += aq.delete_range(session, e, start, end)
            deleted.append(key)
        if progress:
            progress("delete", len(counts), len(counts))
    return ArchiveResult(
        dataset=DATASET,
        version=version,
        created=created,
        cutoff=cutoff,
        days_archived=result_days,
        days_skipped=skipped,
        days_deleted=deleted,
        days_kept=kept,
        rows_archived=rows_archived,
        rows_deleted=rows_deleted,
    )


def _latest_version(store: DatasetStore) -> int | None:
    return store.get(DATASET).latest_version


def _stored_rows(store: DatasetStore) -> dict[str, int]:
    """Partition key -> rows in the latest archive version ({} before the first archive)."""
    if _latest_version(store) is None:
        return {}
    return {p.key: p.rows for p in store.partitions(DATASET)}


def _day_frame(
    ctx: Context, store: DatasetStore, endpoint: str, day: str, key: str, *, merge: bool
) -> tuple[pd.DataFrame, int]:
    """The day's table rows as archive rows (merged into its partition if it has one), and their count."""
    start, end = day_bounds(day)
    rows: list[tuple[Any, ...]] = []
    with ctx.db.session() as session:
        for chunk in aq.iter_day_rows(session, endpoint, start, end):
            rows.extend(chunk)
    frame = pd.DataFrame(rows, columns=list(aq.ARCHIVE_COLUMNS))
    frame["version"] = frame["version"].astype("Int64")
    for column in ("latency_ms", "reward"):
        frame[column] = pd.to_numeric(frame[column], errors="coerce").astype(float)
    for column in ("at", "label_at", "reward_at"):
        frame[column] = pd.to_datetime(frame[column], utc=True)
    if merge:  # the day was archived before (and maybe deleted): keep its archived rows too
        old = store.read(DATASET, partitions=[key]).drop(columns=[PARTITION])
        frame = pd.concat([old[frame.columns], frame], ignore_index=True)
        frame = frame.drop_duplicates("request_id", keep="last").sort_values("at", kind="stable")
    frame.insert(0, PARTITION, key)
    return frame.reset_index(drop=True), len(rows)


# -- reading, for monitors ----------------------------------------------------------------------
class LogArchive:
    """Read access to ``inference_archive`` for monitors, on the caller's open session.

    Monitors read a window inside a metadata session; opening a second one would wait on SQLite's
    write lock, so the latest version is looked up with the caller's session and the partitions
    are read from the artifact store (manifests cached by digest, so a run reads each once).
    """

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self._manifests: dict[str, partition_files.Manifest] = {}
        self._frame: tuple[Any, pd.DataFrame] = (None, pd.DataFrame())

    def _latest(self, session: Any) -> tuple[partition_files.Manifest, list[tuple[str, str]]] | None:
        dataset = dq.get_dataset(session, DATASET)
        row = None if dataset is None else dq.latest_version(session, dataset.id)
        if row is None or not dataset.partitioned:
            return None
        manifest = self._manifests.get(row.digest)
        if manifest is None:
            manifest = partition_files.parse_manifest(self.ctx.artifacts.get_bytes(row.digest), row.digest)
            self._manifests = {row.digest: manifest}
        return manifest, [(c["name"], c["dtype"]) for c in row.contract["columns"]]

    def days(self, session: Any, endpoint: str) -> dict[str, int]:
        """``YYYY-MM-DD`` -> archived rows, for ``endpoint`` (from the manifest; no data read)."""
        latest = self._latest(session)
        if latest is None:
            return {}
        prefix = f"{endpoint}:"
        return {k[len(prefix) :]: p.rows for k, p in latest[0].items() if k.startswith(prefix)}

    def _read(self, session: Any, endpoint: str, days: Sequence[str]) -> pd.DataFrame:
        """``READ_COLUMNS`` of the partitions of ``days`` (the last read is kept: windows share days)."""
        latest = self._latest(session)
        keys = [f"{endpoint}:{d}" for d in days]
        if latest is None or any(k not in latest[0] for k in keys):
            raise NotFoundError(
                f"{DATASET} has no partition for {endpoint!r} on {', '.join(days)}", field="partitions"
            )
        manifest, schema = latest
        digests = tuple(manifest[k].digest for k in keys)
        if self._frame[0] != digests:  # hourly windows read the same day 24 times: read it once
            paths = [self.ctx.artifacts.local_path(d) for d in digests]
            self._frame = (digests, partition_files.read_union(paths, schema, READ_COLUMNS))
        return self._frame[1]

    def rows(
        self,
        session: Any,
        endpoint: str,
        days: Sequence[str],
        start: datetime,
        end: datetime,
        *,
        labels: bool = True,
    ) -> list[tuple[Any, ...]]:
        """``(at, status, inputs, outputs, label)`` of ``days`` in [start, end), oldest first.

        The same tuples as ``iter_log_rows`` yields, read only from the partitions of ``days``.
        """
        if not days:
            return []
        frame = self._read(session, endpoint, days)
        frame = frame[(frame["at"] >= start) & (frame["at"] < end)]
        out = []
        for at, status, inputs, outputs, label in frame.itertuples(index=False, name=None):
            kept = label if labels and isinstance(label, str) else None
            out.append((at.to_pydatetime(), status, inputs, outputs, kept))
        return out

    def first_time(self, session: Any, endpoint: str, *, since: datetime | None = None) -> datetime | None:
        """The oldest archived record of ``endpoint`` at or after ``since`` (reads one day's ``at``)."""
        for day in sorted(self.days(session, endpoint)):
            _, end = day_bounds(day)
            if since is not None and end <= since:
                continue
            times = self._read(session, endpoint, [day])["at"]
            if since is not None:
                times = times[times >= since]
            if len(times):
                return times.min().to_pydatetime()
        return None
