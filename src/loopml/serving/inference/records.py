"""What the inference log stores and returns: plain frozen records, JSON-ready through ``to_dict``."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any, NamedTuple

import numpy as np

from loopml.errors import ValidationError
from loopml.storage.metadata.inference import REQUEST_ID_MAX

STATUSES = ("ok", "fallback", "error")


@dataclass(frozen=True, slots=True)
class InferenceRecord:
    """One answered request, as the runtime hands it to a ``LogWriter``.

    Construction is on the request path, so only the request id (the key feedback uses later) is
    checked here; everything else is made safe when the writer serialises the batch off the path.
    ``at`` defaults to the moment the record is appended to a writer.
    """

    request_id: str
    endpoint: str
    model: str
    version: int | None
    arm: str | None
    inputs: list[dict[str, Any]]
    outputs: list[Any]
    latency_ms: float
    status: str
    error: str | None = None
    routing_key: str | None = None
    shadow: list[dict[str, Any]] | None = None
    at: datetime | None = None

    def __post_init__(self) -> None:
        rid = self.request_id
        if type(rid) is not str or not rid or len(rid) > REQUEST_ID_MAX:
            raise ValidationError(
                f"request_id={rid!r}: use a non-empty string of at most {REQUEST_ID_MAX} characters",
                field="request_id",
            )

    @property
    def group(self) -> str:
        return arm_key(self.arm, self.model, self.version)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["at"] = None if self.at is None else self.at.isoformat()
        return out


def arm_key(arm: str | None, model: str, version: int | None) -> str:
    """How analysis groups requests: by arm, or by model version for policies without arms."""
    if arm:
        return arm
    return model if version is None else f"{model.split('@')[0].split('/')[0]}/{version}"


@dataclass(frozen=True)
class Feedback:
    """A label and/or reward attached to a logged request (every one is kept; the newest counts)."""

    request_id: str
    endpoint: str
    label: Any
    reward: float | None
    at: datetime
    actor: str

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["at"] = self.at.isoformat()
        return out


@dataclass(frozen=True)
class ArmStats:
    """Recent health of one arm, for the canary watchdog: volume, errors, latency, output sample."""

    n: int
    errors: int
    p50: float | None
    p99: float | None
    outputs: np.ndarray = field(repr=False)
    models: tuple[str, ...] = ()

    @property
    def error_rate(self) -> float:
        return self.errors / self.n if self.n else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "n": self.n,
            "errors": self.errors,
            "error_rate": self.error_rate,
            "p50": self.p50,
            "p99": self.p99,
            "outputs_sampled": int(self.outputs.size),
            "models": list(self.models),
        }


class RewardStats(NamedTuple):
    """Per arm, for Thompson sampling: Beta(prior_alpha + successes, prior_beta + failures).

    ``successes`` is the sum of rewards clipped to [0, 1] and ``failures`` the rewarded requests
    minus that, so 0/1 rewards give the textbook counts and fractional rewards still work.
    """

    pulls: int
    reward_sum: float
    successes: float
    failures: float
    rewarded: int = 0


# -- input checks shared by the service -------------------------------------------------------
def check_text(name: str, value: Any, max_len: int) -> str:
    """A required one-line identifier (endpoint, actor, request_id)."""
    if not isinstance(value, str) or not value.strip():
        raise ValidationError(f"{name}={value!r}: use a non-empty string", field=name)
    if len(value) > max_len:
        raise ValidationError(f"{name} is {len(value)} characters long; the limit is {max_len}", field=name)
    if not value.isprintable():
        raise ValidationError(
            f"{name}={value!r} contains control characters; use one printable line", field=name
        )
    return value


def check_label(value: Any, name: str = "label") -> Any:
    """A JSON scalar: a class (int, bool, str) or a target value (finite float)."""
    if value is None or isinstance(value, (bool, str)):
        if isinstance(value, str) and len(value) > 1000:
            raise ValidationError(
                f"{name} is a {len(value)}-character string; labels are at most 1000", field=name
            )
        return value
    if isinstance(value, (np.generic,)):
        value = value.item()
    if isinstance(value, int) and not isinstance(value, bool):
        if abs(value) > 2**53:
            raise ValidationError(f"{name}={value}: integers beyond 2**53 do not survive JSON", field=name)
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValidationError(
                f"{name}={value}: NaN and infinity are not labels; send a number", field=name
            )
        return value
    raise ValidationError(
        f"{name} must be a JSON scalar (number, string, true/false), got {type(value).__name__}", field=name
    )


def check_reward(value: Any, name: str = "reward") -> float | None:
    if value is None:
        return None
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValidationError(f"{name} must be a number, got {type(value).__name__}", field=name)
    reward = float(value)
    if not math.isfinite(reward):
        raise ValidationError(
            f"{name}={value}: NaN and infinity are not rewards; send a finite number", field=name
        )
    return reward
