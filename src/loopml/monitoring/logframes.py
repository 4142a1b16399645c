"""Turn inference-log rows into the two frames a monitor needs: inputs for drift, labels for performance.

The log stores ``inputs`` as a list of row dicts (one request may carry many rows) or one dict, and
``outputs`` as one output per row (a number, or a dict such as ``{"label": 1, "probability": 0.8}``).
Drift looks at every row; performance looks at the request's first row, because feedback labels a
request (as ``lm.inference.joined`` does). Only requests answered ``ok`` count: a fallback answer
is not the model's output, and its inputs are counted by the error-rate checks instead.

Rows arrive in chunks (``iter_log_rows``); each chunk is parsed with one orjson call and reduced
to the columns the monitor watches before the next is read, so memory holds the window's values,
never its JSON or ORM rows.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
import pandas as pd

from loopml.monitoring.spec import PREDICTION
from loopml.serving.inference import outputs as out
from loopml.serving.inference.archive import LogArchive, day_bounds
from loopml.storage.metadata import inference as q
from loopml.storage.metadata import inference_archive as aq

LABEL = "__label__"
SCORE = "__score__"


@dataclass
class WindowData:
    """A window's rows reduced to what the monitor computes on."""

    rows: int  # requests read (any status)
    drift: pd.DataFrame  # one row per input row of an ok request: features (+ prediction)
    performance: pd.DataFrame  # one row per ok request: LABEL, SCORE, slice columns


def _parse(texts: Sequence[str | None]) -> list[Any]:
    return orjson.loads("[" + ",".join(t if t is not None else "null" for t in texts) + "]")


def _rows(inputs: Any) -> list[dict[str, Any]]:
    if isinstance(inputs, dict):
        return [inputs]
    if isinstance(inputs, list):
        return [r if isinstance(r, dict) else {} for r in inputs]
    return []


def _outputs(outputs: Any, n: int) -> list[Any]:
    if isinstance(outputs, list):
        return outputs if len(outputs) == n else (outputs + [None] * n)[:n]
    return [outputs] + [None] * (n - 1)


def reduce_chunk(
    chunk: Sequence[tuple[Any, ...]],
    *,
    features: Sequence[str] | None,
    prediction: bool,
    slices: Sequence[str],
    labels: bool,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """One chunk of ``(at, status, inputs, outputs, label)`` rows -> (drift rows, performance rows)."""
    ok = [r for r in chunk if r[1] == "ok"]
    inputs = _parse([r[2] for r in ok])
    outputs = _parse([r[3] for r in ok])
    drift_rows: list[dict[str, Any]] = []
    perf_rows: list[dict[str, Any]] = []
    label_values = _parse([r[4] for r in ok]) if labels else [None] * len(ok)
    for request_inputs, request_outputs, label in zip(inputs, outputs, label_values, strict=True):
        rows = _rows(request_inputs)
        if not rows:
            continue
        outs = _outputs(request_outputs, len(rows))
        for row, output in zip(rows, outs, strict=True):
            values = row if features is None else {f: row.get(f) for f in features}
            if prediction:
                values = {**values, PREDICTION: out.score_of(output)}
            drift_rows.append(values)
        if labels:
            first = rows[0]
            perf = {s: first.get(s) for s in slices}
            perf[LABEL] = label
            perf[SCORE] = out.score_of(outs[0])
            perf_rows.append(perf)
    drift = pd.DataFrame.from_records(drift_rows) if drift_rows else pd.DataFrame()
    perf = (
        pd.DataFrame.from_records(perf_rows) if perf_rows else pd.DataFrame(columns=[*slices, LABEL, SCORE])
    )
    return drift, perf


def read_window(
    session: Any,
    endpoint: str,
    start: datetime,
    end: datetime,
    *,
    features: Sequence[str] | None,
    prediction: bool = True,
    slices: Sequence[str] = (),
    drift: bool = True,
    labels: bool = True,
    chunk_rows: int = 5000,
    archive: LogArchive | None = None,
) -> WindowData:
    """Read [start, end) of ``endpoint``'s log once, chunk by chunk (by the ``(endpoint, at)`` index).

    With ``archive``, the part of the window on days that were archived *and deleted* from the
    table comes from those days' archive partitions only (see ``window_sources``).
    """
    rows = 0
    drift_parts: list[pd.DataFrame] = []
    perf_parts: list[pd.DataFrame] = []
    for chunk in _window_chunks(session, endpoint, start, end, labels, chunk_rows, archive):
        rows += len(chunk)
        d, p = reduce_chunk(
            chunk,
            features=features if drift else (),
            prediction=prediction and drift,
            slices=slices,
            labels=labels,
        )
        if drift and len(d):
            drift_parts.append(d)
        if labels and len(p):
            perf_parts.append(p)
    return WindowData(
        rows=rows,
        drift=_concat(drift_parts),
        performance=_concat(perf_parts, columns=[*slices, LABEL, SCORE]),
    )


# -- the boundary between the table and the archive ----------------------------------------------
def window_sources(
    session: Any, endpoint: str, start: datetime, end: datetime, archive: LogArchive | None
) -> list[tuple[str, datetime, datetime, str | None]]:
    """``("table" | "archive", lo, hi, day)`` spans covering [start, end), in time order.

    The boundary: a span is read from the archive when it lies on a day the archive holds for
    ``endpoint`` and the table has no rows of that span (the day was archived and deleted). Every
    other span, including archived days still in the table, is read from the table.
    """
    spans: list[tuple[str, datetime, datetime, str | None]] = []
    cursor = start
    days = archive.days(session, endpoint) if archive is not None else {}
    for day in sorted(days):
        day_start, day_end = day_bounds(day)
        lo, hi = max(start, day_start), min(end, day_end)
        if lo >= hi or aq.count_range(session, endpoint, lo, hi):
            continue
        if cursor < lo:
            spans.append(("table", cursor, lo, None))
        spans.append(("archive", lo, hi, day))
        cursor = hi
    if cursor < end:
        spans.append(("table", cursor, end, None))
    return spans


def first_log_time(
    session: Any, endpoint: str, *, since: datetime | None = None, archive: LogArchive | None = None
) -> datetime | None:
    """The oldest record of ``endpoint`` at or after ``since``, in the table or the archive."""
    times = [q.first_log_time(session, endpoint, since=since)]
    if archive is not None:
        times.append(archive.first_time(session, endpoint, since=since))
    found = [t for t in times if t is not None]
    return min(found) if found else None


def _window_chunks(
    session: Any,
    endpoint: str,
    start: datetime,
    end: datetime,
    labels: bool,
    chunk_rows: int,
    archive: LogArchive | None,
) -> Iterator[Sequence[tuple[Any, ...]]]:
    for source, lo, hi, day in window_sources(session, endpoint, start, end, archive):
        if source == "archive" and archive is not None and day is not None:
            rows = archive.rows(session, endpoint, [day], lo, hi, labels=labels)
            for i in range(0, len(rows), chunk_rows):
                yield rows[i : i + chunk_rows]
        else:
            yield from q.iter_log_rows(
                session, endpoint, start=lo, end=hi, labels=labels, chunk_rows=chunk_rows
            )


def _concat(parts: Iterable[pd.DataFrame], columns: Sequence[str] | None = None) -> pd.DataFrame:
    parts = [p for p in parts if len(p)]
    if not parts:
        return pd.DataFrame(columns=list(columns or []))
    return pd.concat(parts, ignore_index=True, sort=False)
