"""The moderation app's settings in one frozen object, validated on construction.

Upload limits, screening thresholds, the serial (heavy check) and parallel (several models) patterns,
duplicate detection and operator capacity all live here, so a run records exactly what screened an
upload. ``to_dict()``/``from_dict()`` round-trip it (unknown keys are refused, so a typo never falls
back to a default silently); ``load_config(lm)`` reads ``<home>/moderation.json`` when present.

Thresholds are on the face score (probability that a human face is in the photo): at or above
``reject_at`` the upload is rejected, at or above ``review_at`` it waits for a person, below it is
published. ``reject_at=None`` never rejects without a person. ``reject_at`` is set high on purpose: the seeds rank wrongly blocking a user as the
costlier error, so only confident detections block and the uncertain middle goes to review.
"""

from __future__ import annotations

import dataclasses
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from loopml.checks import check_choice, check_keys, check_number
from loopml.errors import ValidationError

MiB = 1024 * 1024
AGGREGATE_MODES = ("max", "mean", "vote")
KNOWN_FORMATS = ("JPEG", "PNG", "WEBP")
_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,63}$")
_QUEUE = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")
CONFIG_FILE = "moderation.json"


@dataclass(frozen=True)
class ModerationConfig:
    """Settings of the moderation app (see the module docstring for the threshold semantics).

    - ``heavy_endpoint``: serial pattern; when set, a score inside ``heavy_band`` is checked again
      by this (slower, better) endpoint and the heavy score decides. ``""`` turns it off.
    - ``parallel_endpoints``: parallel pattern; every listed endpoint scores the upload too and
      the scores are combined with ``aggregate`` (max / mean / vote).
    - ``allow_blurred``: the operator's switch for the face mosaic; when False an upload asking
      for ``blur_faces`` is refused (422) instead of being published with people in it.
    """

    max_upload_bytes: int = 10 * MiB
    max_pixels: int = 40_000_000
    max_side: int = 12_000
    formats: tuple[str, ...] = KNOWN_FORMATS
    reject_at: float | None = 0.8
    review_at: float = 0.4
    heavy_band: tuple[float, float] = (0.3, 0.8)
    heavy_endpoint: str = ""
    parallel_endpoints: tuple[str, ...] = ()
    aggregate: str = "max"
    duplicate_distance: int = 6
    operator_capacity_per_week: int = 500
    queue: str = "moderation"
    endpoint: str = "moderation"
    model_name: str = "moderation-face"
    endpoint_timeout_ms: float = 10_000.0
    max_attempts: int = 5
    allow_blurred: bool = False
    blur_strength: float = 0.12

    def __post_init__(self) -> None:
        object.__setattr__(self, "formats", tuple(self.formats))
        object.__setattr__(self, "heavy_band", tuple(self.heavy_band))
        object.__setattr__(self, "parallel_endpoints", tuple(self.parallel_endpoints))
        self.validate()

    def validate(self) -> ModerationConfig:
        """Raise ``ValidationError`` naming the first bad setting; return self."""
        check_number(self.max_upload_bytes, "max_upload_bytes", low=1024, high=100 * MiB, integer=True)
        check_number(self.max_pixels, "max_pixels", low=1, high=500_000_000, integer=True)
        check_number(self.max_side, "max_side", low=16, high=65_535, integer=True)
        if not self.formats:
            raise ValidationError("formats is empty; allow at least one of JPEG, PNG, WEBP", field="formats")
        for fmt in self.formats:
            check_choice(fmt, "formats", KNOWN_FORMATS)
        if self.reject_at is not None:
            check_number(
                self.reject_at, "reject_at", low=0, high=1, hint="or null: never reject without a person"
            )
        check_number(self.review_at, "review_at", low=0, high=1)
        if self.reject_at is not None and self.review_at > self.reject_at:
            raise ValidationError(
                f"review_at ({self.review_at}) must be <= reject_at ({self.reject_at}): uploads are "
                "reviewed below the reject threshold, not above it",
                field="review_at",
            )
        if len(self.heavy_band) != 2:
            raise ValidationError(
                f"heavy_band must be (low, high); got {self.heavy_band!r}", field="heavy_band"
            )
        lo, hi = (check_number(v, "heavy_band", low=0, high=1) for v in self.heavy_band)
        if lo > hi:
            raise ValidationError(f"heavy_band low {lo} is above high {hi}", field="heavy_band")
        if self.heavy_endpoint:
            _name("heavy_endpoint", self.heavy_endpoint)
        for name in self.parallel_endpoints:
            _name("parallel_endpoints", name)
            if name == self.endpoint:
                raise ValidationError(
                    f"parallel_endpoints repeats the primary endpoint {name!r}; list only the extra ones",
                    field="parallel_endpoints",
                )
        check_choice(self.aggregate, "aggregate", AGGREGATE_MODES)
        check_number(self.duplicate_distance, "duplicate_distance", low=0, high=64, integer=True)
        check_number(self.operator_capacity_per_week, "operator_capacity_per_week", low=0, integer=True)
        if not isinstance(self.queue, str) or not _QUEUE.match(self.queue):
            raise ValidationError(
                f"queue must be a queue name like 'moderation'; got {self.queue!r}", field="queue"
            )
        _name("endpoint", self.endpoint)
        if not isinstance(self.model_name, str) or not _NAME.match(self.model_name):
            raise ValidationError(
                f"model_name must be a model name like 'moderation-face'; got {self.model_name!r}",
                field="model_name",
            )
        check_number(self.endpoint_timeout_ms, "endpoint_timeout_ms", low=1, high=600_000)
        check_number(self.max_attempts, "max_attempts", low=1, high=100, integer=True)
        if not isinstance(self.allow_blurred, bool):
            raise ValidationError(
                f"allow_blurred must be true or false; got {self.allow_blurred!r}", field="allow_blurred"
            )
        check_number(self.blur_strength, "blur_strength", low=0, high=1, low_open=True)
        return self

    @property
    def endpoints(self) -> tuple[str, ...]:
        """Every endpoint that scores an upload on the first pass (primary first)."""
        return (self.endpoint, *self.parallel_endpoints)

    def replace(self, **changes: Any) -> ModerationConfig:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        for key in ("formats", "heavy_band", "parallel_endpoints"):
            out[key] = list(out[key])
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModerationConfig:
        if not isinstance(data, dict):
            raise ValidationError(
                f"a moderation config must be a JSON object; got {type(data).__name__}", field="config"
            )
        names = [f.name for f in dataclasses.fields(cls)]
        check_keys(data, names, owner="the moderation config", root="config")
        return cls(**data)


def _name(field: str, value: Any) -> str:
    if not isinstance(value, str) or not _NAME.match(value):
        raise ValidationError(
            f"{field} must be an endpoint name like 'moderation'; got {value!r}", field=field
        )
    return value


def config_path(lm: Any) -> Path:
    return Path(lm.settings.home) / CONFIG_FILE


def load_config(lm: Any) -> ModerationConfig:
    """``<home>/moderation.json`` when it exists (written by ``save_config``), else the defaults.

    A file that does not parse is an error, not a silent fallback: a typo must not reopen uploads
    with default limits."""
    path = config_path(lm)
    if not path.exists():
        return ModerationConfig()
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ValidationError(f"{path} is not valid JSON ({exc}); fix or delete it", field="config") from None
    return ModerationConfig.from_dict(data)


def save_config(lm: Any, cfg: ModerationConfig) -> Path:
    """Write ``cfg`` where ``load_config`` (API server and workers alike) finds it."""
    path = config_path(lm)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(cfg.to_dict(), indent=2))
    tmp.replace(path)
    return path
