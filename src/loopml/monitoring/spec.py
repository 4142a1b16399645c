"""``MonitorSpec``: what a monitor watches, against which reference, in which windows.

A spec is stored as JSON (``monitors.spec``) and arrives from Python, HTTP bodies and CLI flags, so
it is checked field by field here, once, and every error names the field and the fix. Times in a
log-window reference are normalised to UTC ISO text so the stored spec compares and prints the same
everywhere.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from loopml.checks import check_choice, check_keys, check_number
from loopml.errors import ValidationError

NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]{0,99}$")
ENDPOINT_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,63}$")
#: The column name the model's output gets in drift reports (and must not be an input's name).
PREDICTION = "prediction"
WINDOW_MIN = 60
WINDOW_MAX = 31 * 86400
FEATURES_MAX = 500
TASKS = ("auto", "classification", "regression")
PERFORMANCE_DEFAULTS: dict[str, Any] = {
    "task": "auto",
    "threshold": 0.5,
    "slices": [],
    "label_horizon_seconds": 14 * 86400,
    "min_slice_rows": 30,
}
SPEC_KEYS = (
    "name",
    "endpoint",
    "features",
    "prediction",
    "reference",
    "window_seconds",
    "drift",
    "performance",
    "min_rows",
)


def parse_time(value: Any, field: str) -> datetime:
    """A UTC datetime from a datetime (naive = UTC) or ISO text; anything else names ``field``."""
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            raise ValidationError(
                f"{field}={value!r} is not an ISO 8601 time; use e.g. 2026-01-31T12:00:00+00:00", field=field
            ) from None
    if not isinstance(value, datetime):
        raise ValidationError(
            f"{field} must be an ISO time or a datetime, got {type(value).__name__}", field=field
        )
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _name(value: Any, field: str, pattern: re.Pattern[str], hint: str) -> str:
    if not isinstance(value, str) or not pattern.match(value):
        raise ValidationError(f"{field}={value!r} is not a valid name; {hint}", field=field)
    return value


def _features(value: Any, prediction: bool) -> tuple[str, ...] | None:
    if value is None:
        return None
    if isinstance(value, str) or not isinstance(value, (list, tuple)):
        raise ValidationError(
            "features must be a list of input field names (or None for every field the log holds)",
            field="features",
        )
    if not value:
        raise ValidationError("features is empty; list input fields or pass None for all", field="features")
    if len(value) > FEATURES_MAX:
        raise ValidationError(f"features has {len(value)} names; at most {FEATURES_MAX}", field="features")
    out: list[str] = []
    for i, name in enumerate(value):
        if not isinstance(name, str) or not name.strip() or len(name) > 200:
            raise ValidationError(
                f"features[{i}]={name!r}: use a non-empty field name", field=f"features[{i}]"
            )
        if name in out:
            raise ValidationError(f"features[{i}]={name!r} is listed twice", field=f"features[{i}]")
        if prediction and name == PREDICTION:
            raise ValidationError(
                f"features[{i}]={name!r} clashes with the model output's column; rename the input "
                "or set prediction=False",
                field=f"features[{i}]",
            )
        out.append(name)
    return tuple(out)


def _reference(value: Any) -> dict[str, Any]:
    if value is None:
        raise ValidationError(
            'reference is required: {"dataset": NAME, "version": "latest"} or {"since": ISO, "until": ISO} '
            "(a window of the endpoint's own log)",
            field="reference",
        )
    if not isinstance(value, Mapping):
        raise ValidationError(f"reference must be an object, got {type(value).__name__}", field="reference")
    if "dataset" in value:
        check_keys(value, ("dataset", "version"), where="reference", owner="a dataset reference")
        dataset = value["dataset"]
        if not isinstance(dataset, str) or not dataset.strip():
            raise ValidationError("reference.dataset must be a dataset name", field="reference.dataset")
        version = value.get("version", "latest")
        if version != "latest":
            version = check_number(version, "reference.version", low=1, integer=True, hint="or 'latest'")
        return {"dataset": dataset, "version": version}
    if "frame" in value:  # set by Monitors.set_reference(name, frame): the stored profile's manifest
        check_keys(value, ("frame",), where="reference", owner="a frame reference")
        digest = value["frame"]
        if not isinstance(digest, str) or not digest.startswith("sha256:"):
            raise ValidationError(
                "reference.frame must be the sha256 digest set_reference() stored", field="reference.frame"
            )
        return {"frame": digest}
    check_keys(
        value,
        ("since", "until"),
        where="reference",
        owner="a log-window reference",
        required=("since", "until"),
    )
    since = parse_time(value["since"], "reference.since")
    until = parse_time(value["until"], "reference.until")
    if until <= since:
        raise ValidationError("reference.until must be after reference.since", field="reference.until")
    return {"since": since.isoformat(), "until": until.isoformat()}


def _drift(value: Any) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ValidationError("drift must be an object of DriftConfig settings", field="drift")
    config = dict(value)
    try:
        from loopml.monitoring.drift import DriftConfig
    except ImportError:  # the drift engine is optional at spec time; run() needs it
        return config
    try:
        DriftConfig(**config)
    except TypeError as exc:
        raise ValidationError(f"drift: {exc}; see docs/drift.md for the settings", field="drift") from None
    except ValidationError as exc:
        raise ValidationError(f"drift: {exc}", field=f"drift.{exc.field}" if exc.field else "drift") from None
    return config


def _performance(value: Any) -> dict[str, Any]:
    if value is None:
        value = {}
    if not isinstance(value, Mapping):
        raise ValidationError("performance must be an object", field="performance")
    check_keys(value, tuple(PERFORMANCE_DEFAULTS), where="performance", owner="performance settings")
    out = {**PERFORMANCE_DEFAULTS, **value}
    check_choice(out["task"], "performance.task", TASKS)
    out["threshold"] = check_number(out["threshold"], "performance.threshold")
    out["label_horizon_seconds"] = check_number(
        out["label_horizon_seconds"],
        "performance.label_horizon_seconds",
        low=0,
        high=366 * 86400,
        integer=True,
    )
    out["min_slice_rows"] = check_number(
        out["min_slice_rows"], "performance.min_slice_rows", low=1, integer=True
    )
    slices = out["slices"]
    if isinstance(slices, str) or not isinstance(slices, (list, tuple)):
        raise ValidationError(
            "performance.slices must be a list of input field names", field="performance.slices"
        )
    for i, s in enumerate(slices):
        if not isinstance(s, str) or not s.strip():
            raise ValidationError(
                f"performance.slices[{i}]={s!r}: use an input field name", field=f"performance.slices[{i}]"
            )
    out["slices"] = list(dict.fromkeys(slices))
    return out


@dataclass(frozen=True)
class MonitorSpec:
    """A monitor over one endpoint's inference log.

    ``features=None`` watches every input field the reference holds; ``prediction`` adds the model
    output as the ``prediction`` column. ``reference`` is ``{"dataset": NAME, "version": "latest"}``
    or ``{"since": ISO, "until": ISO}`` (a window of the endpoint's own log). Windows are
    ``window_seconds`` long and aligned to the epoch (hourly windows start on the hour). ``drift``
    holds ``DriftConfig`` settings; ``performance`` holds ``task``, ``threshold``, ``slices``,
    ``label_horizon_seconds`` (how long labels keep arriving) and ``min_slice_rows``. A window
    with fewer than ``min_rows`` rows (labelled rows, for performance) is stored without a result.
    """

    name: str
    endpoint: str
    features: tuple[str, ...] | None = None
    prediction: bool = True
    reference: dict[str, Any] | None = None
    window_seconds: int = 3600
    drift: dict[str, Any] = field(default_factory=dict)
    performance: dict[str, Any] = field(default_factory=dict)
    min_rows: int = 30

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        set_(
            self,
            "name",
            _name(
                self.name, "name", NAME_RE, "use 1-100 letters, digits, '_', '.', '-', starting with a letter"
            ),
        )
        set_(self, "endpoint", _name(self.endpoint, "endpoint", ENDPOINT_RE, "use the endpoint's name"))
        if not isinstance(self.prediction, bool):
            raise ValidationError(
                f"prediction must be true or false, got {self.prediction!r}", field="prediction"
            )
        set_(self, "features", _features(self.features, self.prediction))
        set_(self, "reference", _reference(self.reference))
        set_(
            self,
            "window_seconds",
            check_number(
                self.window_seconds,
                "window_seconds",
                low=WINDOW_MIN,
                high=WINDOW_MAX,
                integer=True,
                whole_floats=True,
            ),
        )
        set_(self, "drift", _drift(self.drift))
        set_(self, "performance", _performance(self.performance))
        set_(
            self,
            "min_rows",
            check_number(self.min_rows, "min_rows", low=1, high=10_000_000, integer=True, whole_floats=True),
        )

    @property
    def reference_kind(self) -> str:
        """``dataset``, ``log`` or ``frame``."""
        ref = self.reference or {}
        return "dataset" if "dataset" in ref else "frame" if "frame" in ref else "log"

    def with_changes(self, **changes: Any) -> MonitorSpec:
        return replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "endpoint": self.endpoint,
            "features": None if self.features is None else list(self.features),
            "prediction": self.prediction,
            "reference": dict(self.reference or {}),
            "window_seconds": self.window_seconds,
            "drift": dict(self.drift),
            "performance": dict(self.performance),
            "min_rows": self.min_rows,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, name: str | None = None) -> MonitorSpec:
        """Build from JSON (unknown keys refused by name); ``name`` fills or must match ``data["name"]``."""
        if not isinstance(data, Mapping):
            raise ValidationError(
                f"a monitor spec must be an object, got {type(data).__name__}", field="spec"
            )
        check_keys(data, SPEC_KEYS, owner="a monitor spec", root="spec")
        values = dict(data)
        if name is not None:
            if values.get("name", name) != name:
                raise ValidationError(
                    f"name {values['name']!r} in the body differs from {name!r} in the path", field="name"
                )
            values["name"] = name
        for key in ("name", "endpoint"):
            if key not in values:
                raise ValidationError(f"{key} is required", field=key)
        return cls(**values)
