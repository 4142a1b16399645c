"""``ActionPolicy``: what the closed loop does when an alert says a model has gone stale.

A policy is declarative data (stored as one JSON document in ``action_policies.spec``): which alerts
trigger it (``on``), which endpoint and model it releases, which pipeline retrains the model
(``retrain``), how the candidate is released (``release``: gates -> shadow -> canary weights ->
promote) and whether a person must approve (``mode="approve"`` before retraining,
``release.approve_promotion`` before the alias moves). Validation here is structural and names the
field at fault; ``Loop.create_policy`` additionally resolves the pipeline, endpoint and model.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from loopml.checks import check_choice, check_keys, check_number
from loopml.errors import ValidationError
from loopml.serving.endpoints.definitions import RollbackRule

MODES = ("auto", "approve")
SEVERITY_RANK = {"info": 0, "warning": 1, "critical": 2}
NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_.:-]{0,99}$")
ALIAS_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,63}$")
MAX_TIMEOUT = 30 * 86400.0
MAX_COOLDOWN = 365 * 86400.0

ON_KEYS = ("alert_key_prefix", "rule", "min_severity")
RETRAIN_KEYS = ("pipeline", "params", "timeout_seconds")
RELEASE_KEYS = ("alias", "shadow", "canary", "skew", "approve_promotion")
SHADOW_KEYS = ("min_requests", "min_seconds", "max_error_rate", "min_agreement", "sample", "timeout_seconds")
CANARY_KEYS = ("weights", "min_requests", "rollback", "timeout_seconds")
SKEW_KEYS = ("eval_dataset", "label", "max_psi")
POLICY_KEYS = (
    "name",
    "on",
    "endpoint",
    "model",
    "retrain",
    "mode",
    "release",
    "cooldown_seconds",
    "enabled",
    "description",
)

DEFAULT_SHADOW: dict[str, Any] = {
    "min_requests": 200,
    "min_seconds": 0.0,
    "max_error_rate": 0.02,
    "min_agreement": None,
    "sample": 1.0,
    "timeout_seconds": 3600.0,
}
DEFAULT_CANARY: dict[str, Any] = {
    "weights": [0.1, 0.5],
    "min_requests": 200,
    "rollback": RollbackRule().to_dict(),
    "timeout_seconds": 3600.0,
}
#: Training/serving skew: PSI of the candidate's live scores against its own scores on its offline
#: evaluation data. 1.0 sits between what the fraud demo measured for an honest retrain (<= 0.35)
#: and for a retrain whose amounts were in cents (>= 2.5) at both demo sizes (docs/loop.md).
DEFAULT_SKEW: dict[str, Any] = {"eval_dataset": None, "label": None, "max_psi": 1.0}
DATASET_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]{0,99}(@[1-9][0-9]{0,9})?$")


def check_policy_name(name: Any, field_name: str = "name") -> str:
    """A policy name: letters, digits and ``_ . : -``, starting with a letter, at most 100 characters."""
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise ValidationError(
            f"{field_name}={name!r} is not a policy name: use 1-100 letters, digits or '_.:-', "
            "starting with a letter (e.g. 'fraud-retrain')",
            field=field_name,
        )
    return name


def _text(value: Any, field_name: str, *, max_len: int, allow_empty: bool = False) -> str:
    if not isinstance(value, str) or (not allow_empty and not value.strip()):
        raise ValidationError(f"{field_name} must be a non-empty string; got {value!r}", field=field_name)
    if len(value) > max_len:
        raise ValidationError(f"{field_name} is longer than {max_len} characters", field=field_name)
    return value.strip()


def _mapping(value: Any, field_name: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ValidationError(
            f"{field_name} must be an object (a dict); got {type(value).__name__}", field=field_name
        )
    return value


def _bool(value: Any, field_name: str) -> bool:
    if not isinstance(value, bool):
        raise ValidationError(f"{field_name} must be true or false; got {value!r}", field=field_name)
    return value


def _timeout(value: Any, field_name: str) -> float:
    return check_number(value, field_name, low=0, low_open=True, high=MAX_TIMEOUT, hint=" (seconds)")


def _on(data: Any) -> dict[str, Any]:
    data = _mapping(data, "on")
    check_keys(data, ON_KEYS, where="on", owner="the policy's trigger")
    prefix, rule = data.get("alert_key_prefix"), data.get("rule")
    if prefix is None and rule is None:
        raise ValidationError(
            "on needs alert_key_prefix (e.g. 'rule:') and/or rule (an alert rule name): "
            "a policy that matched every alert would retrain on its own rollback alerts",
            field="on",
        )
    out: dict[str, Any] = {
        "alert_key_prefix": None if prefix is None else _text(prefix, "on.alert_key_prefix", max_len=200),
        "rule": None if rule is None else _text(rule, "on.rule", max_len=100),
        "min_severity": check_choice(
            data.get("min_severity", "warning"), "on.min_severity", tuple(SEVERITY_RANK)
        ),
    }
    return out


def _retrain(data: Any) -> dict[str, Any]:
    data = _mapping(data, "retrain")
    check_keys(data, RETRAIN_KEYS, where="retrain", owner="the retrain settings", required=("pipeline",))
    params = data.get("params") or {}
    if not isinstance(params, Mapping):
        raise ValidationError("retrain.params must be an object of pipeline params", field="retrain.params")
    try:
        json.dumps(params, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ValidationError(f"retrain.params must be JSON values: {exc}", field="retrain.params") from None
    if "loop_run_id" in params:
        raise ValidationError(
            "retrain.params.loop_run_id is set by the loop itself (the run's id); remove it",
            field="retrain.params.loop_run_id",
        )
    return {
        "pipeline": _text(data["pipeline"], "retrain.pipeline", max_len=100),
        "params": dict(params),
        "timeout_seconds": _timeout(data.get("timeout_seconds", 6 * 3600.0), "retrain.timeout_seconds"),
    }


def _shadow(data: Any) -> dict[str, Any] | None:
    if data is None or data is False:
        return None
    data = _mapping(data, "release.shadow")
    check_keys(data, SHADOW_KEYS, where="release.shadow", owner="the shadow stage")
    merged = {**DEFAULT_SHADOW, **data}
    agreement = merged["min_agreement"]
    timeout = _timeout(merged["timeout_seconds"], "release.shadow.timeout_seconds")
    min_seconds = check_number(
        merged["min_seconds"], "release.shadow.min_seconds", low=0, high=MAX_TIMEOUT, hint=" (seconds)"
    )
    if min_seconds >= timeout:
        raise ValidationError(
            f"release.shadow.min_seconds={min_seconds:g} must be shorter than release.shadow.timeout_seconds "
            f"({timeout:g}): the shadow would time out before it may end",
            field="release.shadow.min_seconds",
        )
    return {
        "min_requests": check_number(
            merged["min_requests"], "release.shadow.min_requests", low=1, high=10_000_000, integer=True
        ),
        "min_seconds": min_seconds,
        "max_error_rate": check_number(
            merged["max_error_rate"], "release.shadow.max_error_rate", low=0, high=1
        ),
        "min_agreement": None
        if agreement is None
        else check_number(agreement, "release.shadow.min_agreement", low=0, high=1),
        "sample": check_number(merged["sample"], "release.shadow.sample", low=0, high=1, low_open=True),
        "timeout_seconds": timeout,
    }


def _canary(data: Any) -> dict[str, Any] | None:
    if data is None or data is False:
        return None
    data = _mapping(data, "release.canary")
    check_keys(data, CANARY_KEYS, where="release.canary", owner="the canary stage")
    merged = {**DEFAULT_CANARY, **data}
    weights = merged["weights"]
    if not isinstance(weights, list | tuple) or not weights or len(weights) > 10:
        raise ValidationError(
            "release.canary.weights must be a list of 1-10 traffic shares, e.g. [0.1, 0.5]",
            field="release.canary.weights",
        )
    checked = [
        check_number(w, f"release.canary.weights[{i}]", low=0, high=1, low_open=True, high_open=True)
        for i, w in enumerate(weights)
    ]
    for i in range(1, len(checked)):
        if checked[i] <= checked[i - 1]:
            raise ValidationError(
                f"release.canary.weights[{i}]={checked[i]} must be larger than the weight before it "
                f"({checked[i - 1]}): a canary ramps up",
                field=f"release.canary.weights[{i}]",
            )
    rule = merged["rollback"]
    if isinstance(rule, RollbackRule):
        rule = rule.to_dict()
    try:
        rule = RollbackRule.from_dict(rule if rule is not None else {}).to_dict()
    except ValidationError as exc:
        where = (exc.field or "policy.rollback").replace("policy.rollback", "release.canary.rollback")
        raise ValidationError(
            str(exc).replace("policy.rollback", "release.canary.rollback"), field=where
        ) from None
    return {
        "weights": checked,
        "min_requests": check_number(
            merged["min_requests"], "release.canary.min_requests", low=1, high=10_000_000, integer=True
        ),
        "rollback": rule,
        "timeout_seconds": _timeout(merged["timeout_seconds"], "release.canary.timeout_seconds"),
    }


def _skew(data: Any) -> dict[str, Any] | None:
    """``release.skew``: where the candidate's offline scores come from and how far live may drift."""
    if data is None or data is False:
        return None
    data = _mapping(data, "release.skew")
    check_keys(data, SKEW_KEYS, where="release.skew", owner="the training/serving skew check")
    merged = {**DEFAULT_SKEW, **data}
    source, label = merged["eval_dataset"], merged["label"]
    if source is not None and (not isinstance(source, str) or not DATASET_RE.match(source)):
        raise ValidationError(
            f"release.skew.eval_dataset={source!r} is not a dataset reference: use 'name' (latest "
            "version when the gates run) or 'name@N'; leave it out to use the alias's BeatsCurrent data",
            field="release.skew.eval_dataset",
        )
    if label is not None:
        label = _text(label, "release.skew.label", max_len=200)
    return {
        "eval_dataset": source,
        "label": label,
        "max_psi": check_number(
            merged["max_psi"],
            "release.skew.max_psi",
            low=0,
            low_open=True,
            high=100,
            hint=" (a PSI, e.g. 1.0)",
        ),
    }


def _release(data: Any) -> dict[str, Any]:
    data = _mapping({} if data is None else data, "release")
    check_keys(data, RELEASE_KEYS, where="release", owner="the release settings")
    alias = data.get("alias", "champion")
    if not isinstance(alias, str) or not ALIAS_RE.match(alias):
        raise ValidationError(
            f"release.alias={alias!r} is not an alias name (letters, digits, '_' or '-', e.g. 'champion')",
            field="release.alias",
        )
    return {
        "alias": alias,
        "shadow": _shadow(data.get("shadow", DEFAULT_SHADOW)),
        "canary": _canary(data.get("canary", DEFAULT_CANARY)),
        "skew": _skew(data.get("skew", DEFAULT_SKEW)),
        "approve_promotion": _bool(data.get("approve_promotion", False), "release.approve_promotion"),
    }


@dataclass(frozen=True)
class ActionPolicy:
    """Alert -> retrain -> gates -> shadow -> canary -> promote, as one validated, JSON-round-tripping spec.

    ``release.shadow`` / ``release.canary`` may be ``None`` to skip that stage (gates still apply,
    and promotion goes through the alias's gates again). ``cooldown_seconds`` is the quiet time after
    a run of this policy finishes before alerts may start another one.
    """

    name: str
    on: Mapping[str, Any] = field(default_factory=dict)
    endpoint: str = ""
    model: str = ""
    retrain: Mapping[str, Any] = field(default_factory=dict)
    mode: str = "auto"
    release: Mapping[str, Any] | None = None
    cooldown_seconds: float = 3600.0
    enabled: bool = True
    description: str = ""

    def __post_init__(self) -> None:
        check_policy_name(self.name)
        object.__setattr__(self, "on", _on(self.on))
        from loopml.serving.endpoints.definitions import check_endpoint_name

        if not isinstance(self.endpoint, str) or not self.endpoint:
            raise ValidationError(
                "endpoint is required: the endpoint this policy releases to", field="endpoint"
            )
        check_endpoint_name(self.endpoint, "endpoint")
        object.__setattr__(self, "model", _text(self.model, "model", max_len=100))
        object.__setattr__(self, "retrain", _retrain(self.retrain))
        object.__setattr__(self, "mode", check_choice(self.mode, "mode", MODES))
        object.__setattr__(self, "release", _release(self.release))
        object.__setattr__(
            self,
            "cooldown_seconds",
            check_number(
                self.cooldown_seconds, "cooldown_seconds", low=0, high=MAX_COOLDOWN, hint=" (seconds)"
            ),
        )
        object.__setattr__(self, "enabled", _bool(self.enabled, "enabled"))
        object.__setattr__(
            self, "description", _text(self.description, "description", max_len=2000, allow_empty=True)
        )

    # ------------------------------------------------------------------ matching
    def matches(self, key: str, severity: str, data: Mapping[str, Any] | None = None) -> bool:
        """Whether an alert (key, severity, data) triggers this policy."""
        on = self.on
        if SEVERITY_RANK.get(severity, -1) < SEVERITY_RANK[on["min_severity"]]:
            return False
        if on["alert_key_prefix"] is not None and not key.startswith(on["alert_key_prefix"]):
            return False
        if on["rule"] is not None:
            rule = (data or {}).get("rule")
            if key != f"rule:{on['rule']}" and rule != on["rule"]:
                return False
        return True

    # ------------------------------------------------------------------ serialisation
    def spec(self) -> dict[str, Any]:
        """Everything except name and enabled (those are columns): what ``action_policies.spec`` holds."""
        out = self.to_dict()
        out.pop("name")
        out.pop("enabled")
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "on": dict(self.on),
            "endpoint": self.endpoint,
            "model": self.model,
            "retrain": copy.deepcopy(dict(self.retrain)),
            "mode": self.mode,
            "release": copy.deepcopy(dict(self.release or {})),
            "cooldown_seconds": self.cooldown_seconds,
            "enabled": self.enabled,
            "description": self.description,
        }

    @classmethod
    def from_dict(cls, data: Any, *, name: str | None = None) -> ActionPolicy:
        """Build from JSON (a file, an HTTP body); unknown keys are refused by name."""
        data = dict(_mapping(data, "policy"))
        check_keys(data, POLICY_KEYS, owner="an action policy", required=() if name else ("name",))
        if name is not None:
            if "name" in data and data["name"] != name:
                raise ValidationError(
                    f"name: the spec is for policy {data['name']!r} but the call is for {name!r}",
                    field="name",
                )
            data["name"] = name
        for key in ("on", "endpoint", "model", "retrain"):
            if key not in data:
                raise ValidationError(f"{key} is required in an action policy", field=key)
        return cls(**data)

    def with_enabled(self, enabled: bool) -> ActionPolicy:
        return ActionPolicy.from_dict({**self.to_dict(), "enabled": enabled})
