"""Release gates: declared checks a candidate version must pass before a protected alias moves to it.

Gates are plain declarations (stored as JSON on the alias protection) evaluated by
``Registry.promote``; each produces a ``GateResult`` with the figures behind the verdict, recorded
in ``gate_results`` whether the gate passed or not. Evaluation data is named, not embedded: a
dataset reference (``"sales"`` = latest at evaluation time, ``"sales@3"`` = pinned) read through the
dataset store, or an in-memory DataFrame that ``protect`` stores once as a content-addressed Parquet
blob (so a stored gate always evaluates on exactly the same rows).
"""

from __future__ import annotations

import io
import math
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from loopml.errors import ConfigError, LoopmlError, NotFoundError, ValidationError, did_you_mean
from loopml.registry.loaded import LoadedModel
from loopml.registry.metrics import CLASSIFICATION, NEEDS_PROBA, check_metric, compute, higher_is_better
from loopml.registry.records import GateResult

EvalSource = str | pd.DataFrame


@dataclass
class EvalData:
    frame: pd.DataFrame
    dataset_version_id: int | None
    description: str


@dataclass
class GateContext:
    """What a gate may look at: the candidate, the alias's current holder, and evaluation data."""

    candidate: LoadedModel
    current: LoadedModel | None
    alias: str
    load_eval: Callable[[EvalSource], EvalData]
    example: pd.DataFrame | None = None
    default_eval: tuple[EvalSource, str] | None = None
    _cache: dict[str, Any] = field(default_factory=dict)

    def eval_data(self, source: EvalSource | None, label: str | None, gate: str) -> tuple[EvalData, str]:
        if source is None or label is None:
            if self.default_eval is None:
                raise ValidationError(
                    f"gate {gate} has no evaluation data: give it eval_dataset= and label=, "
                    "or list a BeatsCurrent gate (whose data it then shares) on the same alias"
                )
            source = source if source is not None else self.default_eval[0]
            label = label or self.default_eval[1]
        key = source if isinstance(source, str) else f"frame:{id(source)}"
        if key not in self._cache:
            self._cache[key] = self.load_eval(source)
        data = self._cache[key]
        if label not in data.frame.columns:
            raise ValidationError(
                f"label column {label!r} is not in the evaluation data {data.description}; "
                f"columns are {', '.join(map(str, data.frame.columns))}"
            )
        return data, label

    def score(self, model: LoadedModel, frame: pd.DataFrame, label: str, metric: str) -> float:
        """Metric of ``model`` on ``frame`` (extra columns such as the label are dropped)."""
        features = frame.drop(columns=[label])
        if metric in CLASSIFICATION and not model.is_classifier and metric in NEEDS_PROBA:
            raise ValidationError(
                f"{metric} needs a classifier with predict_proba; {model.ref} is a regressor"
            )
        if metric in NEEDS_PROBA:
            return compute(
                metric, frame[label].to_numpy(), model.predict_proba(features, strict=False), model.classes
            )
        return compute(metric, frame[label].to_numpy(), model.predict(features, strict=False), model.classes)


class Gate(ABC):
    """One declared check. Subclasses are small dataclasses with a JSON ``spec`` round trip."""

    kind: ClassVar[str]

    @abstractmethod
    def evaluate(self, gctx: GateContext) -> GateResult:
        """Run the check; raise LoopmlError when it cannot be evaluated (recorded as a failure)."""

    @abstractmethod
    def spec(self, store_frame: Callable[[pd.DataFrame], str] | None = None) -> dict[str, Any]:
        """JSON form; DataFrame sources are turned into stored-frame digests by ``store_frame``."""

    @property
    def gate_name(self) -> str:
        """How results and reports name this gate (kind plus the metric it judges)."""
        return self.kind

    def run(self, gctx: GateContext) -> GateResult:
        """``evaluate`` with errors turned into a failed result, so one broken gate blocks, not crashes."""
        try:
            return self.evaluate(gctx)
        except LoopmlError as exc:
            details = {"error": str(exc), "metric": getattr(self, "metric", None)}
            return GateResult(self.gate_name, False, f"could not evaluate: {exc}", details)


def _source_spec(source: EvalSource | None, store_frame: Callable[[pd.DataFrame], str] | None) -> str | None:
    if source is None or isinstance(source, str):
        return source
    if store_frame is None:
        raise ValidationError(
            "a DataFrame evaluation source cannot be serialised here; name a dataset instead"
        )
    return store_frame(source)


def _check_source(source: Any, field_name: str) -> None:
    if source is not None and not isinstance(source, str | pd.DataFrame):
        raise ValidationError(
            f"{field_name} must be a dataset name ('sales' or 'sales@3') or a pandas DataFrame; "
            f"got {type(source).__name__}"
        )
    if isinstance(source, str) and not source.strip():
        raise ValidationError(f"{field_name} is empty; name a dataset ('sales' or 'sales@3')")


def _number(value: Any, field_name: str, *, minimum: float | None = None, allow_none: bool = False) -> Any:
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValidationError(f"{field_name} must be a finite number; got {value!r}")
    if minimum is not None and value < minimum:
        raise ValidationError(f"{field_name} must be >= {minimum}; got {value!r}")
    return value


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.4g}"


@dataclass(frozen=True)
class BeatsCurrent(Gate):
    """The candidate must beat the alias's current holder on ``metric`` by ``margin``.

    ``margin_type="relative"``: improvement as a share of the current value (0.02 = 2 % better);
    ``"absolute"``: in the metric's units. Whether higher or lower is better is known per metric.
    With no current holder the gate passes and says so (a first champion has nothing to beat).
    """

    metric: str
    eval_dataset: EvalSource
    label: str
    margin: float = 0.0
    margin_type: str = "relative"
    kind: ClassVar[str] = "beats_current"

    def __post_init__(self) -> None:
        check_metric(self.metric)
        _check_source(self.eval_dataset, "BeatsCurrent.eval_dataset")
        if self.eval_dataset is None:
            raise ValidationError("BeatsCurrent.eval_dataset is required; name a dataset or pass a DataFrame")
        if not isinstance(self.label, str) or not self.label:
            raise ValidationError("BeatsCurrent.label must name the label column of the evaluation data")
        _number(self.margin, "BeatsCurrent.margin", minimum=0)
        if self.margin_type not in ("relative", "absolute"):
            raise ValidationError(
                f"BeatsCurrent.margin_type {self.margin_type!r} is unknown; use 'relative' or 'absolute'"
            )

    @property
    def gate_name(self) -> str:
        return f"beats_current({self.metric})"

    def evaluate(self, gctx: GateContext) -> GateResult:
        data, label = gctx.eval_data(self.eval_dataset, self.label, self.gate_name)
        details: dict[str, Any] = {
            "metric": self.metric,
            "dataset": data.description,
            "rows": len(data.frame),
            "margin": self.margin,
            "margin_type": self.margin_type,
            "higher_is_better": higher_is_better(self.metric),
        }
        candidate = gctx.score(gctx.candidate, data.frame, label, self.metric)
        details["candidate"] = candidate
        if gctx.current is None:
            details["current"] = None
            return GateResult(
                self.gate_name,
                True,
                f"no current {gctx.alias}: passes as the first holder ({self.metric}={_fmt(candidate)})",
                details,
                data.dataset_version_id,
            )
        current = gctx.score(gctx.current, data.frame, label, self.metric)
        better = higher_is_better(self.metric)
        improvement = candidate - current if better else current - candidate
        required = self.margin * abs(current) if self.margin_type == "relative" else self.margin
        passed = bool(improvement >= required) and math.isfinite(candidate)
        details.update(
            current=current,
            current_version=gctx.current.version.number,
            improvement=improvement,
            required=required,
        )
        summary = (
            f"{self.metric} {_fmt(candidate)} vs {_fmt(current)} ({gctx.current.ref}); "
            f"improvement {_fmt(improvement)} {'>=' if passed else '<'} required {_fmt(required)}"
        )
        return GateResult(self.gate_name, passed, summary, details, data.dataset_version_id)

    def spec(self, store_frame: Callable[[pd.DataFrame], str] | None = None) -> dict[str, Any]:
        return {
            "type": self.kind,
            "metric": self.metric,
            "eval_dataset": _source_spec(self.eval_dataset, store_frame),
            "label": self.label,
            "margin": self.margin,
            "margin_type": self.margin_type,
        }


@dataclass(frozen=True)
class LatencyBudget(Gate):
    """p99 of ``predict`` on ``sample_rows`` rows, over ``n`` timed calls, must stay within ``p99_ms``.

    Measured in this process on the loaded candidate, signature check included (what serving pays).
    ``sample_rows=1`` sends one row as a dict, the online hot path. Rows come from ``eval_dataset``,
    else the alias's evaluation data, else the input example stored at registration.
    """

    p99_ms: float
    sample_rows: int = 1
    n: int = 200
    eval_dataset: EvalSource | None = None
    kind: ClassVar[str] = "latency_budget"

    def __post_init__(self) -> None:
        _number(self.p99_ms, "LatencyBudget.p99_ms", minimum=0.001)
        if (
            isinstance(self.sample_rows, bool)
            or not isinstance(self.sample_rows, int)
            or self.sample_rows < 1
        ):
            raise ValidationError(f"LatencyBudget.sample_rows must be an int >= 1; got {self.sample_rows!r}")
        if isinstance(self.n, bool) or not isinstance(self.n, int) or not 10 <= self.n <= 100_000:
            raise ValidationError(f"LatencyBudget.n must be an int between 10 and 100000; got {self.n!r}")
        _check_source(self.eval_dataset, "LatencyBudget.eval_dataset")

    def _rows(self, gctx: GateContext) -> tuple[pd.DataFrame, str]:
        if self.eval_dataset is not None:
            data = gctx.load_eval(self.eval_dataset)
            return data.frame, data.description
        if gctx.default_eval is not None:
            data, _ = gctx.eval_data(None, None, self.kind)
            return data.frame, data.description
        if gctx.example is not None:
            return gctx.example, "registered input example"
        raise ValidationError(
            "LatencyBudget has no rows to time: register the model with input_example=, "
            "or give the gate eval_dataset="
        )

    def evaluate(self, gctx: GateContext) -> GateResult:
        frame, source = self._rows(gctx)
        if frame.empty:
            raise ValidationError(f"LatencyBudget sample source {source} has no rows")
        names = gctx.candidate.signature.names
        sample = frame[[c for c in names if c in frame.columns]].head(self.sample_rows)
        batch: Any = sample.iloc[0].to_dict() if self.sample_rows == 1 else sample
        predict = gctx.candidate.predict
        for _ in range(min(10, self.n)):
            predict(batch, strict=False)
        timings = np.empty(self.n, dtype=np.float64)
        clock = time.perf_counter_ns
        for i in range(self.n):
            start = clock()
            predict(batch, strict=False)
            timings[i] = clock() - start
        ms = timings / 1e6
        p50, p95, p99 = (float(np.percentile(ms, q)) for q in (50, 95, 99))
        passed = p99 <= self.p99_ms
        details = {
            "metric": "p99_ms",
            "candidate": p99,
            "threshold": self.p99_ms,
            "p50_ms": p50,
            "p95_ms": p95,
            "rows_per_call": len(sample),
            "calls": self.n,
            "source": source,
        }
        summary = f"p99 {p99:.3f} ms {'<=' if passed else '>'} budget {self.p99_ms} ms (p50 {p50:.3f} ms, {len(sample)} row(s)/call)"
        return GateResult(self.gate_name, passed, summary, details)

    def spec(self, store_frame: Callable[[pd.DataFrame], str] | None = None) -> dict[str, Any]:
        return {
            "type": self.kind,
            "p99_ms": self.p99_ms,
            "sample_rows": self.sample_rows,
            "n": self.n,
            "eval_dataset": _source_spec(self.eval_dataset, store_frame),
        }


@dataclass(frozen=True)
class SliceMetric(Gate):
    """``metric`` must hold in every slice of ``column`` (each distinct value with >= ``min_rows`` rows).

    Bounds: ``minimum`` for higher-is-better metrics, ``maximum`` for lower-is-better ones, and/or
    ``max_gap``: how much worse than the overall value any slice may be. Slices smaller than
    ``min_rows`` are reported but not judged (their metric is noise).
    """

    column: str
    metric: str
    minimum: float | None = None
    maximum: float | None = None
    max_gap: float | None = None
    eval_dataset: EvalSource | None = None
    label: str | None = None
    min_rows: int = 20
    max_slices: int = 50
    kind: ClassVar[str] = "slice_metric"

    def __post_init__(self) -> None:
        if not isinstance(self.column, str) or not self.column:
            raise ValidationError("SliceMetric.column must name the column to slice by")
        check_metric(self.metric)
        _number(self.minimum, "SliceMetric.minimum", allow_none=True)
        _number(self.maximum, "SliceMetric.maximum", allow_none=True)
        _number(self.max_gap, "SliceMetric.max_gap", minimum=0, allow_none=True)
        better = higher_is_better(self.metric)
        if self.minimum is not None and not better:
            raise ValidationError(
                f"SliceMetric: {self.metric} is lower-is-better; bound it with maximum=, not minimum="
            )
        if self.maximum is not None and better:
            raise ValidationError(
                f"SliceMetric: {self.metric} is higher-is-better; bound it with minimum=, not maximum="
            )
        if self.minimum is None and self.maximum is None and self.max_gap is None:
            raise ValidationError("SliceMetric needs a bound: minimum= (or maximum=) and/or max_gap=")
        _check_source(self.eval_dataset, "SliceMetric.eval_dataset")
        if isinstance(self.min_rows, bool) or not isinstance(self.min_rows, int) or self.min_rows < 1:
            raise ValidationError(f"SliceMetric.min_rows must be an int >= 1; got {self.min_rows!r}")

    @property
    def gate_name(self) -> str:
        return f"slice_metric({self.metric} by {self.column})"

    def evaluate(self, gctx: GateContext) -> GateResult:
        data, label = gctx.eval_data(self.eval_dataset, self.label, self.gate_name)
        frame = data.frame
        if self.column not in frame.columns:
            raise NotFoundError(
                f"slice column {self.column!r} is not in the evaluation data {data.description}."
                + did_you_mean(self.column, [str(c) for c in frame.columns])
            )
        keys = frame[self.column]
        distinct = keys.nunique(dropna=False)
        if distinct > self.max_slices:
            raise ValidationError(
                f"slice column {self.column!r} has {distinct} distinct values (max_slices={self.max_slices}); "
                "slice by a coarser column or bin it first"
            )
        better = higher_is_better(self.metric)
        overall = gctx.score(gctx.candidate, frame, label, self.metric)
        slices: list[dict[str, Any]] = []
        failures: list[str] = []
        for key, part in frame.groupby(keys, dropna=False, sort=True, observed=True):
            entry: dict[str, Any] = {"slice": str(key), "rows": len(part)}
            if len(part) < self.min_rows:
                entry["skipped"] = f"fewer than {self.min_rows} rows"
                slices.append(entry)
                continue
            try:
                value = gctx.score(gctx.candidate, part, label, self.metric)
            except ValidationError as exc:  # e.g. auc on a one-class slice
                entry["skipped"] = str(exc)
                slices.append(entry)
                continue
            gap = overall - value if better else value - overall
            entry.update(value=value, gap=gap)
            ok = True
            if self.minimum is not None and value < self.minimum:
                ok = False
                failures.append(f"{self.column}={key}: {self.metric} {_fmt(value)} < minimum {self.minimum}")
            if self.maximum is not None and value > self.maximum:
                ok = False
                failures.append(f"{self.column}={key}: {self.metric} {_fmt(value)} > maximum {self.maximum}")
            if self.max_gap is not None and gap > self.max_gap:
                ok = False
                failures.append(
                    f"{self.column}={key}: {_fmt(gap)} worse than overall {_fmt(overall)} (max_gap {self.max_gap})"
                )
            entry["passed"] = ok
            slices.append(entry)
        judged = [s for s in slices if "value" in s]
        worst = (min if better else max)((s["value"] for s in judged), default=None)
        details = {
            "metric": self.metric,
            "column": self.column,
            "overall": overall,
            "candidate": worst,
            "threshold": self.minimum if self.minimum is not None else self.maximum,
            "max_gap": self.max_gap,
            "slices": slices,
            "dataset": data.description,
        }
        if not judged:
            return GateResult(
                self.gate_name,
                False,
                f"no slice of {self.column!r} has >= {self.min_rows} rows to judge",
                details,
                data.dataset_version_id,
            )
        passed = not failures
        summary = (
            f"{len(judged)} slices of {self.column!r}, worst {self.metric} {_fmt(worst)} (overall {_fmt(overall)})"
            if passed
            else "; ".join(failures[:5]) + (f" (+{len(failures) - 5} more)" if len(failures) > 5 else "")
        )
        return GateResult(self.gate_name, passed, summary, details, data.dataset_version_id)

    def spec(self, store_frame: Callable[[pd.DataFrame], str] | None = None) -> dict[str, Any]:
        return {
            "type": self.kind,
            "column": self.column,
            "metric": self.metric,
            "minimum": self.minimum,
            "maximum": self.maximum,
            "max_gap": self.max_gap,
            "eval_dataset": _source_spec(self.eval_dataset, store_frame),
            "label": self.label,
            "min_rows": self.min_rows,
            "max_slices": self.max_slices,
        }


GATE_TYPES: dict[str, type[Gate]] = {g.kind: g for g in (BeatsCurrent, LatencyBudget, SliceMetric)}


def gate_from_spec(spec: dict[str, Any]) -> Gate:
    """Rebuild a gate from its JSON spec (as stored on an alias protection or given on the CLI)."""
    if not isinstance(spec, dict) or "type" not in spec:
        raise ValidationError(
            f"a gate spec must be a mapping with a 'type' ({', '.join(GATE_TYPES)}); got {spec!r}"
        )
    kind = spec["type"]
    cls = GATE_TYPES.get(kind)
    if cls is None:
        raise ValidationError(
            f"gate type {kind!r} is unknown; use one of {', '.join(GATE_TYPES)}.{did_you_mean(str(kind), GATE_TYPES)}"
        )
    fields = {k: v for k, v in spec.items() if k != "type"}
    try:
        return cls(**fields)
    except TypeError as exc:
        raise ValidationError(
            f"gate {kind}: {exc}; see the fields of loopml.registry.{cls.__name__}"
        ) from None


def default_eval_of(gates: list[Gate]) -> tuple[EvalSource, str] | None:
    """The evaluation data other gates share when they name none: the first gate that names both."""
    for gate in gates:
        source = getattr(gate, "eval_dataset", None)
        label = getattr(gate, "label", None) if not isinstance(gate, LatencyBudget) else None
        if source is not None and isinstance(label, str):
            return source, label
    return None


def frame_to_parquet(frame: pd.DataFrame) -> bytes:
    buf = io.BytesIO()
    try:
        frame.to_parquet(buf, index=False)
    except (ValueError, TypeError, ImportError) as exc:
        raise ValidationError(
            f"the evaluation DataFrame cannot be stored as Parquet ({exc}); use plain column types"
        ) from None
    return buf.getvalue()


def parquet_to_frame(data: bytes) -> pd.DataFrame:
    return pd.read_parquet(io.BytesIO(data))


def dataset_store(ctx: Any) -> Any:
    """``loopml.data.DatasetStore(ctx)``, or a ConfigError explaining how to evaluate without it."""
    try:
        from loopml.data import DatasetStore
    except ImportError as exc:
        raise ConfigError(
            f"the dataset store is not available ({exc}); pass the evaluation data as a DataFrame instead"
        ) from None
    return DatasetStore(ctx)
