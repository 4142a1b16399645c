"""``ActiveRun``: the handle a training script logs through while a run is open.

Params, tags, artifacts and inputs are written immediately (they are few and a reader expects
them at once). Metric points go through the tracker's buffered writer (see ``writer.py``).
Steps: ``step=None`` means "the next step of this key" (0, 1, 2 ...), so a plain loop of
``log_metric("loss", v)`` yields an ordered history without the caller counting.
"""

from __future__ import annotations

import logging
import os
import threading
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from loopml.errors import ConflictError, NotFoundError, ValidationError
from loopml.storage.metadata import tracking as store
from loopml.tracking.models import ArtifactRef, Run
from loopml.tracking.validation import check_key, metric_step, metric_value, text_value

if TYPE_CHECKING:
    from loopml.tracking.tracker import Tracker

log = logging.getLogger(__name__)
MAX_ERROR_CHARS = 4000


class ActiveRun:
    """An open run. Use as a context manager: an exception marks it ``failed`` and still flushes."""

    def __init__(self, tracker: Tracker, run_id: str, experiment: str, name: str | None) -> None:
        self._tracker = tracker
        self.id = run_id
        self.experiment = experiment
        self.name = name
        self._writer = tracker._writer
        self._lock = threading.Lock()
        self._steps: dict[str, int] = {}
        self._checked_keys: set[str] = set()
        self.status = "running"

    def __repr__(self) -> str:
        return f"ActiveRun(id={self.id!r}, experiment={self.experiment!r}, status={self.status!r})"

    # -- params and tags ----------------------------------------------------------------------
    def log_param(self, key: str, value: Any) -> None:
        self.log_params({key: value})

    def log_params(self, params: dict[str, Any]) -> None:
        """Record inputs (hyper-parameters); re-logging a key with a different value is a ConflictError."""
        clean = _text_map(params, "param")
        self._check_open()
        with self._tracker._db.session() as session:
            store.add_params(session, self.id, clean)

    def set_tag(self, key: str, value: Any) -> None:
        self.set_tags({key: value})

    def set_tags(self, tags: dict[str, Any]) -> None:
        """Mutable labels (``stage=tuning``); tags may also be set after the run ended."""
        clean = _text_map(tags, "tag")
        with self._tracker._db.session() as session:
            store.set_tags(session, self.id, clean)

    # -- metrics ------------------------------------------------------------------------------
    def log_metric(self, key: str, value: Any, step: int | None = None) -> None:
        """Buffer one point; it reaches the database at the next flush (size, timer, run end, exit)."""
        if self.status != "running":
            self._check_open()
        if key not in self._checked_keys:
            check_key(key, "metric")
            self._checked_keys.add(key)
        kind = type(value)
        number = float(value) if (kind is float or kind is int) else metric_value(key, value)
        with self._lock:
            last = self._steps.get(key, -1)
            if step is None:
                step = last + 1
            elif type(step) is not int or step < 0:
                step = metric_step(key, step)
            if step > last:
                self._steps[key] = step
        self._writer.append(
            {
                "run_id": self.id,
                "key": key,
                "step": step,
                "value": None if number != number else number,
                "ts": datetime.now(UTC),
            }
        )

    def log_metrics(self, metrics: dict[str, Any], step: int | None = None) -> None:
        """Buffer several metrics at once (each key gets its own next step when ``step`` is None)."""
        if not isinstance(metrics, dict):
            raise ValidationError(f"metrics must be a dict of key -> number, got {type(metrics).__name__}.")
        self._check_open()
        rows = []
        now = datetime.now(UTC)
        checked_step = None if step is None else metric_step("(log_metrics)", step)
        values = {}
        for key, value in metrics.items():
            if key not in self._checked_keys:
                check_key(key, "metric")
                self._checked_keys.add(key)
            kind = type(value)
            values[key] = float(value) if (kind is float or kind is int) else metric_value(key, value)
        with self._lock:
            for key, number in values.items():
                last = self._steps.get(key, -1)
                point_step = last + 1 if checked_step is None else checked_step
                if point_step > last:
                    self._steps[key] = point_step
                rows.append(
                    {
                        "run_id": self.id,
                        "key": key,
                        "step": point_step,
                        "value": None if number != number else number,
                        "ts": now,
                    }
                )
        self._writer.extend(rows)

    # -- artifacts and lineage ----------------------------------------------------------------
    def log_artifact(self, source: str | os.PathLike[str] | bytes, name: str | None = None) -> ArtifactRef:
        """Store a file or bytes in the content-addressed artifact store and attach it to the run."""
        self._check_open()
        artifacts = self._tracker._ctx.artifacts
        if isinstance(source, bytes | bytearray | memoryview):
            if not name:
                raise ValidationError(
                    "log_artifact(bytes, name): bytes need a name, e.g. name='report.json'."
                )
            data = bytes(source)
            digest, size = artifacts.put_bytes(data), len(data)
        elif isinstance(source, str | os.PathLike):
            path = Path(source)
            if not path.exists():
                raise NotFoundError(f"log_artifact: file {str(path)!r} does not exist; check the path.")
            if not path.is_file():
                raise ValidationError(
                    f"log_artifact: {str(path)!r} is not a regular file; log files one by one (or archive the directory)."
                )
            try:
                digest, size = artifacts.put_file(path), path.stat().st_size
            except PermissionError as exc:
                raise ValidationError(
                    f"log_artifact: cannot read {str(path)!r} ({exc}); check permissions."
                ) from None
            name = name or path.name
        else:
            raise ValidationError(
                f"log_artifact: source must be a path or bytes, got {type(source).__name__}; "
                "serialise objects first (or register models with lm.registry)."
            )
        check_key(name, "artifact")
        with self._tracker._db.session() as session:
            store.add_artifact(session, self.id, name, digest, size)
        return ArtifactRef(name=name, digest=digest, size=size)

    def log_input(self, dataset_version: Any) -> None:
        """Record that this run read a dataset version (a ``DatasetVersion`` or its integer id)."""
        self._check_open()
        version_id = getattr(dataset_version, "id", dataset_version)
        if isinstance(version_id, bool) or not isinstance(version_id, int):
            raise ValidationError(
                f"log_input: expected a DatasetVersion (from lm.datasets.version(name)) or its int id, "
                f"got {type(dataset_version).__name__} {dataset_version!r}."
            )
        with self._tracker._db.session() as session:
            store.add_input(session, self.id, version_id)

    # -- lifecycle ----------------------------------------------------------------------------
    def end(self, status: str = "finished", error: str | None = None) -> None:
        """Flush this run's points, then close it as ``finished``, ``failed`` or ``killed`` (idempotent)."""
        if status not in store.RUN_STATUSES or status == "running":
            raise ValidationError(f"end(status={status!r}): use one of finished, failed, killed.")
        if self.status != "running":
            return
        self._writer.flush()
        with self._tracker._db.session() as session:
            store.end_run(
                session, self.id, status, datetime.now(UTC), error[:MAX_ERROR_CHARS] if error else None
            )
        self.status = status
        self._tracker._forget(self)

    def info(self) -> Run:
        """The run as stored (flushes buffered points first, so its metrics are current)."""
        return self._tracker.get_run(self.id)

    def __enter__(self) -> ActiveRun:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc is None:
            self.end("finished")
            return
        status = "killed" if isinstance(exc, KeyboardInterrupt) else "failed"
        try:
            self.end(status, f"{exc_type.__name__ if exc_type else 'Error'}: {exc}")
        except Exception as end_exc:  # never hide the user's exception behind a bookkeeping one
            log.error("loopml: could not close run %s after %r: %s", self.id, exc, end_exc)

    def _check_open(self) -> None:
        if self.status != "running":
            raise ConflictError(f"run {self.id} is already {self.status}; start a new run to log more.")


def _text_map(values: Any, what: str) -> dict[str, str]:
    if not isinstance(values, dict):
        raise ValidationError(f"{what}s must be a dict of key -> value, got {type(values).__name__}.")
    return {check_key(k, what): text_value(k, v, what) for k, v in values.items()}
