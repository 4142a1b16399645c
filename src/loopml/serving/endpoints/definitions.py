"""What an endpoint is: a name, a traffic policy over registered model versions, a timeout, a fallback.

These are plain frozen values, validated when built, so a bad spec is refused at the API/CLI/Python
boundary with a message naming the field (``policy.weights.b``), never half-applied by a running
server. Every class round-trips through ``to_dict()`` / ``from_dict()``: that JSON is what the
metadata store keeps per revision and what the admin API speaks.

Model references are registry refs (``fraud@champion``, ``fraud/3``, ``fraud``); an alias ref follows
alias moves, a numbered ref pins a version.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar, Union

import orjson

from loopml.checks import check_keys, check_number
from loopml.errors import LoopmlError, ValidationError, did_you_mean
from loopml.registry.refs import parse_ref

#: Endpoint names appear in URLs, metric labels and cache keys: keep them simple.
ENDPOINT_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,63}$")
#: Arm names appear in metric labels and the inference log.
ARM_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
_WEIGHT_TOLERANCE = 1e-6
MAX_TIMEOUT_MS = 600_000.0
MAX_BATCH_ROWS = 1_000_000


# --------------------------------------------------------------------------- validation helpers


def check_endpoint_name(name: Any, field_name: str = "name") -> str:
    if not isinstance(name, str) or not ENDPOINT_NAME.match(name):
        raise ValidationError(
            f"{field_name}: endpoint name {name!r} is invalid: use 1-64 letters, digits, '_' or '-', "
            "starting with a letter (e.g. 'fraud', 'demand-eu')",
            field=field_name,
        )
    return name


def _ref(value: Any, field_name: str) -> str:
    """Validate a model ref and return it normalised (``fraud/latest`` -> ``fraud``)."""
    try:
        return str(parse_ref(value))
    except LoopmlError as exc:
        raise ValidationError(f"{field_name}: {exc}", field=field_name) from None


def _number(value: Any, field_name: str, **bounds: Any) -> Any:
    """A finite number within bounds; JSON clients may send ``3.0`` for an integer field."""
    return check_number(value, field_name, whole_floats=True, **bounds)


def _string(value: Any, field_name: str, *, allow_empty: bool = False, max_len: int = 2000) -> str:
    if not isinstance(value, str):
        raise ValidationError(f"{field_name} must be a string; got {value!r}", field=field_name)
    if not allow_empty and not value.strip():
        raise ValidationError(f"{field_name} must not be empty", field=field_name)
    if len(value) > max_len:
        raise ValidationError(f"{field_name} is longer than {max_len} characters", field=field_name)
    return value


def _mapping(value: Any, field_name: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ValidationError(f"{field_name} must be an object (dict); got {value!r}", field=field_name)
    return value


def _check_keys(
    data: Mapping[str, Any], allowed: tuple[str, ...], where: str, required: tuple[str, ...]
) -> None:
    check_keys(data, allowed, where=where, owner=where or "endpoint", root="spec", required=required)


def _arms(value: Any, field_name: str, *, minimum: int = 2) -> dict[str, str]:
    arms = _mapping(value, field_name)
    if len(arms) < minimum:
        raise ValidationError(
            f"{field_name} needs at least {minimum} arms (arm name -> model ref), "
            "e.g. {'control': 'fraud@champion', 'treatment': 'fraud/4'}",
            field=field_name,
        )
    out: dict[str, str] = {}
    for arm, ref in arms.items():
        if not isinstance(arm, str) or not ARM_NAME.match(arm):
            raise ValidationError(
                f"{field_name}: arm name {arm!r} is invalid: use 1-64 letters, digits, '_', '-' or '.'",
                field=f"{field_name}.{arm}",
            )
        out[arm] = _ref(ref, f"{field_name}.{arm}")
    return out


def _json_value(value: Any, field_name: str) -> Any:
    """The fallback answer goes into JSON responses and the log: refuse what JSON cannot carry."""
    try:
        return orjson.loads(orjson.dumps(value))
    except (TypeError, orjson.JSONEncodeError) as exc:
        raise ValidationError(f"{field_name} must be JSON-serialisable: {exc}", field=field_name) from None


def _finite_json(value: Any, field_name: str) -> None:
    if isinstance(value, float) and not math.isfinite(value):
        raise ValidationError(f"{field_name} must not contain NaN or infinity", field=field_name)
    if isinstance(value, Mapping):
        for key, item in value.items():
            _finite_json(item, f"{field_name}.{key}")
    elif isinstance(value, list | tuple):
        for i, item in enumerate(value):
            _finite_json(item, f"{field_name}[{i}]")


def _unique_models(refs: list[str]) -> list[str]:
    return list(dict.fromkeys(refs))


# --------------------------------------------------------------------------- policies


@dataclass(frozen=True)
class RollbackRule:
    """When a canary is worse than its baseline, by enough requests to be sure, it is rolled back."""

    min_requests: int = 200
    max_error_rate_delta: float = 0.02
    max_p99_ratio: float = 1.5
    max_psi: float = 0.25
    window_seconds: float = 300.0
    #: a canary p99 under this many ms is never "worse": sub-budget jitter is scheduling noise, not a regression
    latency_floor_ms: float = 10.0

    PREFIX: ClassVar[str] = "policy.rollback"

    def __post_init__(self) -> None:
        p = self.PREFIX
        object.__setattr__(
            self, "min_requests", _number(self.min_requests, f"{p}.min_requests", low=1, integer=True)
        )
        object.__setattr__(
            self,
            "max_error_rate_delta",
            _number(self.max_error_rate_delta, f"{p}.max_error_rate_delta", low=0, high=1),
        )
        object.__setattr__(self, "max_p99_ratio", _number(self.max_p99_ratio, f"{p}.max_p99_ratio", low=1.0))
        object.__setattr__(self, "max_psi", _number(self.max_psi, f"{p}.max_psi", low=0, low_open=True))
        object.__setattr__(
            self,
            "window_seconds",
            _number(self.window_seconds, f"{p}.window_seconds", low=0, low_open=True, high=7 * 86400),
        )
        object.__setattr__(
            self,
            "latency_floor_ms",
            _number(self.latency_floor_ms, f"{p}.latency_floor_ms", low=0, high=3_600_000),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "min_requests": self.min_requests,
            "max_error_rate_delta": self.max_error_rate_delta,
            "max_p99_ratio": self.max_p99_ratio,
            "max_psi": self.max_psi,
            "window_seconds": self.window_seconds,
            "latency_floor_ms": self.latency_floor_ms,
        }

    @classmethod
    def from_dict(cls, data: Any) -> RollbackRule:
        data = _mapping(data, cls.PREFIX)
        _check_keys(data, tuple(cls().to_dict()), cls.PREFIX, ())
        return cls(**data)


@dataclass(frozen=True)
class Single:
    """All traffic to one model ref."""

    model: str
    kind: ClassVar[str] = "single"

    def __post_init__(self) -> None:
        object.__setattr__(self, "model", _ref(self.model, "policy.model"))

    def models(self) -> list[str]:
        return [self.model]

    def routes(self) -> dict[str, str]:
        """Arm name -> model ref for the arms that answer requests (the names the log and metrics use)."""
        return {"primary": self.model}

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "model": self.model}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Single:
        _check_keys(data, ("kind", "model"), "policy", ("model",))
        return cls(model=data["model"])


@dataclass(frozen=True)
class Canary:
    """A share ``weight`` of traffic to ``canary``, the rest to ``baseline``; rolled back by ``rollback``."""

    baseline: str
    canary: str
    weight: float = 0.1
    rollback: RollbackRule = field(default_factory=RollbackRule)
    kind: ClassVar[str] = "canary"

    def __post_init__(self) -> None:
        object.__setattr__(self, "baseline", _ref(self.baseline, "policy.baseline"))
        object.__setattr__(self, "canary", _ref(self.canary, "policy.canary"))
        if self.baseline == self.canary:
            raise ValidationError(
                f"policy.canary: the canary and the baseline are the same ref {self.canary!r}; "
                "point the canary at the new version (e.g. 'fraud/4')",
                field="policy.canary",
            )
        object.__setattr__(
            self,
            "weight",
            _number(self.weight, "policy.weight", low=0, high=1, low_open=True, high_open=True),
        )
        rule = self.rollback
        if isinstance(rule, Mapping):
            rule = RollbackRule.from_dict(rule)
        if not isinstance(rule, RollbackRule):
            raise ValidationError(
                f"policy.rollback must be a RollbackRule or a dict; got {rule!r}", field="policy.rollback"
            )
        object.__setattr__(self, "rollback", rule)

    def models(self) -> list[str]:
        return [self.baseline, self.canary]

    def routes(self) -> dict[str, str]:
        return {"baseline": self.baseline, "canary": self.canary}

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "baseline": self.baseline,
            "canary": self.canary,
            "weight": self.weight,
            "rollback": self.rollback.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Canary:
        _check_keys(
            data, ("kind", "baseline", "canary", "weight", "rollback"), "policy", ("baseline", "canary")
        )
        rule = (
            RollbackRule.from_dict(data["rollback"]) if data.get("rollback") is not None else RollbackRule()
        )
        return cls(
            baseline=data["baseline"], canary=data["canary"], weight=data.get("weight", 0.1), rollback=rule
        )


@dataclass(frozen=True)
class AB:
    """Sticky split: the sha256 of the request's ``routing_key`` value picks the arm, so a user stays put.

    ``weights=None`` splits evenly. The first arm is the control the A/B analysis compares against.
    """

    arms: dict[str, str]
    weights: dict[str, float] | None = None
    routing_key: str = "user_id"
    kind: ClassVar[str] = "ab"

    def __post_init__(self) -> None:
        object.__setattr__(self, "arms", _arms(self.arms, "policy.arms"))
        object.__setattr__(self, "weights", _weights(self.weights, self.arms))
        if not isinstance(self.routing_key, str) or not _IDENT.match(self.routing_key):
            raise ValidationError(
                f"policy.routing_key must be a column/field name like 'user_id'; got {self.routing_key!r}",
                field="policy.routing_key",
            )

    def models(self) -> list[str]:
        return _unique_models(list(self.arms.values()))

    def routes(self) -> dict[str, str]:
        return dict(self.arms)

    def effective_weights(self) -> dict[str, float]:
        """The weights actually used: the given ones, or an even split."""
        if self.weights is not None:
            return dict(self.weights)
        return {arm: 1.0 / len(self.arms) for arm in self.arms}

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "arms": dict(self.arms),
            "weights": None if self.weights is None else dict(self.weights),
            "routing_key": self.routing_key,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> AB:
        _check_keys(data, ("kind", "arms", "weights", "routing_key"), "policy", ("arms",))
        return cls(
            arms=data["arms"], weights=data.get("weights"), routing_key=data.get("routing_key", "user_id")
        )


def _weights(value: Any, arms: dict[str, str]) -> dict[str, float] | None:
    if value is None:
        return None
    weights = _mapping(value, "policy.weights")
    out: dict[str, float] = {}
    for arm, weight in weights.items():
        if arm not in arms:
            raise ValidationError(
                f"policy.weights.{arm}: unknown arm {arm!r}; weights must name the arms in policy.arms."
                + did_you_mean(str(arm), list(arms)),
                field=f"policy.weights.{arm}",
            )
        out[arm] = _number(weight, f"policy.weights.{arm}", low=0, high=1)
    missing = [arm for arm in arms if arm not in out]
    if missing:
        raise ValidationError(
            f"policy.weights.{missing[0]}: no weight for arm {missing[0]!r}; give every arm a weight "
            "(or omit weights for an even split)",
            field=f"policy.weights.{missing[0]}",
        )
    total = sum(out.values())
    if abs(total - 1.0) > _WEIGHT_TOLERANCE:
        raise ValidationError(
            f"policy.weights must sum to 1; they sum to {total:g} ({out})", field="policy.weights"
        )
    return out


@dataclass(frozen=True)
class Shadow:
    """``primary`` answers; each shadow sees a ``sample`` share of requests off the response path."""

    primary: str
    shadows: list[str]
    sample: float = 1.0
    kind: ClassVar[str] = "shadow"

    def __post_init__(self) -> None:
        object.__setattr__(self, "primary", _ref(self.primary, "policy.primary"))
        shadows = self.shadows
        if isinstance(shadows, str):
            shadows = [shadows]
        if not isinstance(shadows, list | tuple) or not shadows:
            raise ValidationError(
                "policy.shadows must be a non-empty list of model refs, e.g. ['fraud/4']",
                field="policy.shadows",
            )
        refs = [_ref(ref, f"policy.shadows[{i}]") for i, ref in enumerate(shadows)]
        for i, ref in enumerate(refs):
            if ref == self.primary:
                raise ValidationError(
                    f"policy.shadows[{i}]: {ref!r} is the primary; a shadow must be a different model ref",
                    field=f"policy.shadows[{i}]",
                )
            if ref in refs[:i]:
                raise ValidationError(
                    f"policy.shadows[{i}]: {ref!r} is listed twice", field=f"policy.shadows[{i}]"
                )
        object.__setattr__(self, "shadows", refs)
        object.__setattr__(
            self, "sample", _number(self.sample, "policy.sample", low=0, high=1, low_open=True)
        )

    def models(self) -> list[str]:
        return [self.primary, *self.shadows]

    def routes(self) -> dict[str, str]:
        return {"primary": self.primary}

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "primary": self.primary,
            "shadows": list(self.shadows),
            "sample": self.sample,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Shadow:
        _check_keys(data, ("kind", "primary", "shadows", "sample"), "policy", ("primary", "shadows"))
        return cls(primary=data["primary"], shadows=data["shadows"], sample=data.get("sample", 1.0))


@dataclass(frozen=True)
class Bandit:
    """Thompson sampling over arms from a Beta(prior_alpha, prior_beta) prior and the logged rewards.

    Each arm is first pulled ``min_pulls`` times round-robin before sampling takes over.
    """

    arms: dict[str, str]
    prior_alpha: float = 1.0
    prior_beta: float = 1.0
    min_pulls: int = 0
    kind: ClassVar[str] = "bandit"

    def __post_init__(self) -> None:
        object.__setattr__(self, "arms", _arms(self.arms, "policy.arms"))
        object.__setattr__(
            self, "prior_alpha", _number(self.prior_alpha, "policy.prior_alpha", low=0, low_open=True)
        )
        object.__setattr__(
            self, "prior_beta", _number(self.prior_beta, "policy.prior_beta", low=0, low_open=True)
        )
        object.__setattr__(
            self,
            "min_pulls",
            _number(self.min_pulls, "policy.min_pulls", low=0, high=1_000_000, integer=True),
        )

    def models(self) -> list[str]:
        return _unique_models(list(self.arms.values()))

    def routes(self) -> dict[str, str]:
        return dict(self.arms)

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "arms": dict(self.arms),
            "prior_alpha": self.prior_alpha,
            "prior_beta": self.prior_beta,
            "min_pulls": self.min_pulls,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Bandit:
        _check_keys(data, ("kind", "arms", "prior_alpha", "prior_beta", "min_pulls"), "policy", ("arms",))
        return cls(
            arms=data["arms"],
            prior_alpha=data.get("prior_alpha", 1.0),
            prior_beta=data.get("prior_beta", 1.0),
            min_pulls=data.get("min_pulls", 0),
        )


Policy = Union[Single, Canary, AB, Shadow, Bandit]  # noqa: UP007 - a runtime alias used in isinstance checks
POLICY_KINDS: dict[str, type[Single] | type[Canary] | type[AB] | type[Shadow] | type[Bandit]] = {
    "single": Single,
    "canary": Canary,
    "ab": AB,
    "shadow": Shadow,
    "bandit": Bandit,
}
POLICY_TYPES = tuple(POLICY_KINDS.values())


def policy_from_dict(data: Any) -> Policy:
    """Build a policy from its JSON form; ``kind`` picks the class."""
    if isinstance(data, POLICY_TYPES):
        return data
    data = _mapping(data, "policy")
    kind = data.get("kind")
    if kind not in POLICY_KINDS:
        raise ValidationError(
            f"policy.kind {kind!r} is not a policy kind." + did_you_mean(str(kind), list(POLICY_KINDS)),
            field="policy.kind",
        )
    return POLICY_KINDS[kind].from_dict(data)


# --------------------------------------------------------------------------- resilience and features


@dataclass(frozen=True)
class Fallback:
    """The answer served when the model fails, times out or its circuit is open.

    An endpoint without a fallback (``EndpointSpec.fallback=None``) answers 503 with the error
    instead; ``Fallback(value=None)`` serves a null output marked with ``status``.
    """

    value: Any = None
    status: str = "fallback"

    def __post_init__(self) -> None:
        _finite_json(self.value, "fallback.value")
        object.__setattr__(self, "value", _json_value(self.value, "fallback.value"))
        status = _string(self.status, "fallback.status", max_len=32)
        if not _IDENT.match(status) or status == "ok":
            raise ValidationError(
                f"fallback.status must be an identifier other than 'ok' (e.g. 'fallback'); got {status!r}",
                field="fallback.status",
            )

    def to_dict(self) -> dict[str, Any]:
        return {"value": self.value, "status": self.status}

    @classmethod
    def from_dict(cls, data: Any) -> Fallback:
        data = _mapping(data, "fallback")
        _check_keys(data, ("value", "status"), "fallback", ())
        return cls(value=data.get("value"), status=data.get("status", "fallback"))


@dataclass(frozen=True)
class CacheSpec:
    """Prediction cache keyed by model version and input hash; ``url=""`` is SQLite under ``home``."""

    ttl_seconds: float = 60.0
    url: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(
            self,
            "ttl_seconds",
            _number(self.ttl_seconds, "cache.ttl_seconds", low=0, low_open=True, high=30 * 86400),
        )
        url = _string(self.url, "cache.url", allow_empty=True).strip()
        if url and not url.startswith(("sqlite:///", "redis://", "rediss://")):
            raise ValidationError(
                f"cache.url {url!r} is not supported: use '' (SQLite under home), 'sqlite:///path.db' or "
                "'redis://host:6379/0'",
                field="cache.url",
            )
        object.__setattr__(self, "url", url)

    def to_dict(self) -> dict[str, Any]:
        return {"ttl_seconds": self.ttl_seconds, "url": self.url}

    @classmethod
    def from_dict(cls, data: Any) -> CacheSpec:
        data = _mapping(data, "cache")
        _check_keys(data, ("ttl_seconds", "url"), "cache", ())
        return cls(ttl_seconds=data.get("ttl_seconds", 60.0), url=data.get("url", ""))


@dataclass(frozen=True)
class FeatureLookup:
    """Rows carry ``entity_key``; ``features`` come from the online store, ``request`` fields from the row.

    ``request`` names the request-time fields on-demand features need (they stay in the row).
    """

    entity_key: str
    features: list[str]
    request: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not isinstance(self.entity_key, str) or not _IDENT.match(self.entity_key):
            raise ValidationError(
                f"features.entity_key must be a field name like 'user_id'; got {self.entity_key!r}",
                field="features.entity_key",
            )
        feats = self.features
        if not isinstance(feats, list | tuple) or not feats:
            raise ValidationError(
                "features.features must be a non-empty list of feature refs like 'user_stats:spend_7d'",
                field="features.features",
            )
        for i, ref in enumerate(feats):
            if not isinstance(ref, str) or ":" not in ref or ref.startswith(":") or ref.endswith(":"):
                raise ValidationError(
                    f"features.features[{i}]: {ref!r} is not a feature ref; use 'view:feature' (or 'view:*')",
                    field=f"features.features[{i}]",
                )
        req = self.request
        if not isinstance(req, list | tuple):
            raise ValidationError(
                f"features.request must be a list of field names; got {req!r}", field="features.request"
            )
        for i, name in enumerate(req):
            if not isinstance(name, str) or not _IDENT.match(name):
                raise ValidationError(
                    f"features.request[{i}]: {name!r} is not a field name", field=f"features.request[{i}]"
                )
        object.__setattr__(self, "features", list(feats))
        object.__setattr__(self, "request", list(req))

    def to_dict(self) -> dict[str, Any]:
        return {"entity_key": self.entity_key, "features": list(self.features), "request": list(self.request)}

    @classmethod
    def from_dict(cls, data: Any) -> FeatureLookup:
        data = _mapping(data, "features")
        _check_keys(data, ("entity_key", "features", "request"), "features", ("entity_key", "features"))
        return cls(
            entity_key=data["entity_key"], features=data["features"], request=data.get("request") or []
        )


# --------------------------------------------------------------------------- the endpoint


def _coerce(value: Any, cls: Any, field_name: str) -> Any:
    if value is None or isinstance(value, cls):
        return value
    if isinstance(value, Mapping):
        return cls.from_dict(value)
    raise ValidationError(
        f"{field_name} must be a {cls.__name__}, a dict or None; got {type(value).__name__}", field=field_name
    )


@dataclass(frozen=True)
class EndpointSpec:
    """A named endpoint: a traffic policy, a timeout, an optional fallback, cache and feature lookup."""

    name: str
    policy: Policy
    timeout_ms: float = 100.0
    fallback: Fallback | None = None
    cache: CacheSpec | None = None
    max_batch_rows: int = 1000
    features: FeatureLookup | None = None
    description: str = ""

    FIELDS: ClassVar[tuple[str, ...]] = (
        "name",
        "policy",
        "timeout_ms",
        "fallback",
        "cache",
        "max_batch_rows",
        "features",
        "description",
    )

    def __init__(
        self,
        name: str,
        policy: Policy | Mapping[str, Any],
        *,
        timeout_ms: float = 100.0,
        fallback: Fallback | Mapping[str, Any] | None = None,
        cache: CacheSpec | Mapping[str, Any] | None = None,
        max_batch_rows: int = 1000,
        features: FeatureLookup | Mapping[str, Any] | None = None,
        description: str = "",
    ) -> None:
        set_ = object.__setattr__
        set_(self, "name", check_endpoint_name(name))
        if not isinstance(policy, POLICY_TYPES) and not isinstance(policy, Mapping):
            raise ValidationError(
                "policy must be Single, Canary, AB, Shadow, Bandit or a dict with 'kind'; "
                f"got {type(policy).__name__}",
                field="policy",
            )
        set_(self, "policy", policy_from_dict(policy))
        set_(self, "timeout_ms", _number(timeout_ms, "timeout_ms", low=0, low_open=True, high=MAX_TIMEOUT_MS))
        set_(self, "fallback", _coerce(fallback, Fallback, "fallback"))
        set_(self, "cache", _coerce(cache, CacheSpec, "cache"))
        set_(
            self,
            "max_batch_rows",
            _number(max_batch_rows, "max_batch_rows", low=1, high=MAX_BATCH_ROWS, integer=True),
        )
        set_(self, "features", _coerce(features, FeatureLookup, "features"))
        set_(self, "description", _string(description, "description", allow_empty=True))

    def models(self) -> list[str]:
        """Every model ref the endpoint uses (arms, canary, shadows), each once, in policy order."""
        return _unique_models(self.policy.models())

    def with_policy(self, policy: Policy | Mapping[str, Any]) -> EndpointSpec:
        """The same endpoint with another policy (validated)."""
        return replace(self, policy=policy)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "policy": self.policy.to_dict(),
            "timeout_ms": self.timeout_ms,
            "fallback": None if self.fallback is None else self.fallback.to_dict(),
            "cache": None if self.cache is None else self.cache.to_dict(),
            "max_batch_rows": self.max_batch_rows,
            "features": None if self.features is None else self.features.to_dict(),
            "description": self.description,
        }

    @classmethod
    def from_dict(cls, data: Any, *, name: str | None = None) -> EndpointSpec:
        """Parse the JSON form; ``name`` fills (or must match) the name, as in ``PUT /v1/endpoints/{name}``."""
        data = dict(_mapping(data, "spec"))
        if name is not None:
            given = data.get("name", name)
            if given != name:
                raise ValidationError(
                    f"name: the body names endpoint {given!r} but the request is for {name!r}; "
                    "an endpoint cannot be renamed (create a new one)",
                    field="name",
                )
            data["name"] = name
        _check_keys(data, cls.FIELDS, "", ("name", "policy"))
        kwargs = {key: data[key] for key in cls.FIELDS[2:] if key in data}
        return cls(data["name"], data["policy"], **kwargs)


__all__ = [
    "AB",
    "POLICY_KINDS",
    "Bandit",
    "CacheSpec",
    "Canary",
    "EndpointSpec",
    "Fallback",
    "FeatureLookup",
    "Policy",
    "RollbackRule",
    "Shadow",
    "Single",
    "check_endpoint_name",
    "policy_from_dict",
]
