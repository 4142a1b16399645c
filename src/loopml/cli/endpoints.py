"""``loopml endpoints``: create endpoints, change their traffic policy, end canaries, read the history.

The same validation as the Python and HTTP APIs applies (``EndpointSpec``), so an error names the
field to fix (``policy.weights.b``). Running servers pick every change up within about a second.
"""

from __future__ import annotations

import getpass
import json
import os
import re
import urllib.error
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import typer

from loopml.cli.common import client, console, parse_params, table
from loopml.errors import LoopmlError, ValidationError
from loopml.serving.endpoints.definitions import (
    AB,
    POLICY_KINDS,
    Bandit,
    Canary,
    EndpointSpec,
    Policy,
    RollbackRule,
    Shadow,
    Single,
    policy_from_dict,
)
from loopml.serving.endpoints.service import EndpointInfo, Endpoints

endpoints_app = typer.Typer(
    help="Model endpoints: traffic policies (single, canary, ab, shadow, bandit), history, canary release.",
    no_args_is_help=True,
)

ACTOR_HELP = "Who is acting (recorded in the audit trail; default: $LOOPML_ACTOR or your login)."
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)([smhdw])$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
#: Policy field -> the set-policy option that fills it, where the names differ.
_OPTION_OF = {"arms": "--arm", "weights": "--arm-weight", "shadows": "--shadow"}


def register(app: typer.Typer) -> None:
    """Add the ``endpoints`` group to the root app."""
    app.add_typer(endpoints_app, name="endpoints")


def _actor(actor: str | None) -> str:
    if actor:
        return actor
    try:
        return os.environ.get("LOOPML_ACTOR") or getpass.getuser()
    except (KeyError, OSError):  # no login name in some containers
        return "cli"


def _service() -> tuple[Any, Endpoints]:
    lm = client()
    existing = getattr(lm, "endpoints", None)
    return lm, existing if isinstance(existing, Endpoints) else Endpoints(lm.ctx)


def _json_arg(value: str, option: str) -> Any:
    """A JSON literal, or ``@path`` / a path to a JSON file."""
    text = value
    path = Path(value[1:] if value.startswith("@") else value)
    if value.startswith("@") or (value.endswith(".json") and path.exists()):
        if not path.exists():
            raise ValidationError(f"{option}: file {str(path)!r} does not exist", field=option)
        text = path.read_text()
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValidationError(
            f"{option}: not valid JSON ({exc.msg} at line {exc.lineno})", field=option
        ) from None


def _pairs(items: list[str] | None, option: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise ValidationError(
                f"{option}: {item!r} is not NAME=VALUE (e.g. {option} control=fraud@champion)"
            )
        out[key.strip()] = value.strip()
    return out


def _floats(items: list[str] | None, option: str) -> dict[str, float] | None:
    if not items:
        return None
    out: dict[str, float] = {}
    for key, value in _pairs(items, option).items():
        try:
            out[key] = float(value)
        except ValueError:
            raise ValidationError(f"{option}: {value!r} for {key!r} is not a number", field=option) from None
    return out


def _since(value: str | None) -> datetime | None:
    """``7d`` / ``24h`` / ``30m`` ago, or an ISO timestamp (UTC when it has no zone)."""
    if value is None:
        return None
    match = _DURATION.match(value.strip())
    if match:
        return datetime.now(UTC) - timedelta(seconds=float(match.group(1)) * _UNITS[match.group(2)])
    try:
        at = datetime.fromisoformat(value)
    except ValueError:
        raise ValidationError(
            f"--since {value!r}: use a duration like 7d, 24h, 30m or an ISO time like 2024-05-01T00:00",
            field="since",
        ) from None
    return at if at.tzinfo else at.replace(tzinfo=UTC)


def describe_policy(policy: Policy) -> str:
    """One line a person can read in a table."""
    if isinstance(policy, Single):
        return policy.model
    if isinstance(policy, Canary):
        return f"{policy.baseline} | canary {policy.canary} @ {policy.weight:.0%}"
    if isinstance(policy, AB):
        weights = policy.effective_weights()
        return ", ".join(f"{arm}={ref} ({weights[arm]:.0%})" for arm, ref in policy.arms.items()) + (
            f" by {policy.routing_key}"
        )
    if isinstance(policy, Shadow):
        return f"{policy.primary} | shadows {', '.join(policy.shadows)} @ {policy.sample:.0%}"
    if isinstance(policy, Bandit):
        return "thompson over " + ", ".join(f"{arm}={ref}" for arm, ref in policy.arms.items())
    return str(policy)  # pragma: no cover - every kind is listed above


def _print_info(info: EndpointInfo, verb: str) -> None:
    console.print(
        f"{verb} endpoint [bold]{info.name}[/bold] revision {info.revision}: "
        f"{info.spec.policy.kind} {describe_policy(info.spec.policy)}"
    )


@endpoints_app.command("create")
def create(
    name: str = typer.Argument(..., help="Endpoint name (letters, digits, '_', '-')."),
    model: str | None = typer.Option(None, help="Serve one model ref (policy single), e.g. fraud@champion."),
    spec: str | None = typer.Option(None, "--spec", help="A JSON spec file (EndpointSpec.to_dict form)."),
    timeout_ms: float | None = typer.Option(None, help="Per-request model timeout (default 100)."),
    fallback: str | None = typer.Option(
        None, help="JSON value served when the model fails or times out (default: answer 503)."
    ),
    cache_ttl: float | None = typer.Option(None, help="Cache predictions for this many seconds."),
    max_batch_rows: int | None = typer.Option(
        None, help="Largest batch one request may send (default 1000)."
    ),
    description: str | None = typer.Option(None, help="What the endpoint is for."),
    reason: str | None = typer.Option(None, help="Why (recorded in the audit trail)."),
    actor: str | None = typer.Option(None, help=ACTOR_HELP),
) -> None:
    """Create an endpoint from one model ref (--model) or a spec file (--spec)."""
    if (model is None) == (spec is None):
        raise ValidationError("give exactly one of --model REF or --spec FILE.json", field="model")
    data: dict[str, Any]
    if spec is not None:
        loaded = _json_arg(spec if spec.startswith("@") else "@" + spec, "--spec")
        if not isinstance(loaded, dict):
            raise ValidationError("--spec: the file must hold a JSON object", field="spec")
        data = dict(loaded)
    else:
        data = {"name": name, "policy": {"kind": "single", "model": model}}
    overrides = {
        "timeout_ms": timeout_ms,
        "fallback": None if fallback is None else {"value": _json_arg(fallback, "--fallback")},
        "cache": None if cache_ttl is None else {"ttl_seconds": cache_ttl},
        "max_batch_rows": max_batch_rows,
        "description": description,
    }
    data.update({key: value for key, value in overrides.items() if value is not None})
    endpoint_spec = EndpointSpec.from_dict(data, name=name)
    lm, service = _service()
    try:
        info = service.create(endpoint_spec, actor=_actor(actor), reason=reason)
    finally:
        lm.close()
    _print_info(info, "created")


@endpoints_app.command("list")
def list_endpoints(
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """List endpoints with their policy and revision."""
    lm, service = _service()
    try:
        infos = service.list()
    finally:
        lm.close()
    if as_json:
        console.print_json(json.dumps([info.to_dict() for info in infos]))
        return
    if not infos:
        console.print("no endpoints yet; create one with `loopml endpoints create NAME --model REF`")
        return
    rows = [
        [
            i.name,
            i.spec.policy.kind,
            describe_policy(i.spec.policy),
            i.revision,
            f"{i.spec.timeout_ms:g} ms",
            "yes" if i.spec.fallback else "-",
            i.updated_by,
            i.updated_at.strftime("%Y-%m-%d %H:%M"),
        ]
        for i in infos
    ]
    columns = ["endpoint", "policy", "routes", "rev", "timeout", "fallback", "by", "updated"]
    console.print(table(f"endpoints ({len(infos)})", columns, rows))


@endpoints_app.command("show")
def show(
    name: str = typer.Argument(..., help="Endpoint name."),
    as_json: bool = typer.Option(False, "--json", help="Print the spec as JSON."),
) -> None:
    """Show an endpoint's spec and what each model ref resolves to now."""
    lm, service = _service()
    try:
        info = service.get(name)
        resolved = {}
        for ref in info.spec.models():
            try:
                resolved[ref] = f"v{lm.registry.get_version(ref).number}"
            except LoopmlError as exc:  # a since-deleted alias must not hide the rest
                resolved[ref] = f"unresolved: {exc}"
    finally:
        lm.close()
    if as_json:
        console.print_json(json.dumps({**info.to_dict(), "resolved": resolved}))
        return
    spec = info.spec.to_dict()
    rows = [
        ["revision", info.revision],
        ["updated", f"{info.updated_at:%Y-%m-%d %H:%M:%S} by {info.updated_by}"],
    ]
    rows += [
        [key, json.dumps(value) if isinstance(value, dict | list) else value] for key, value in spec.items()
    ]
    rows += [[f"resolves {ref}", version] for ref, version in resolved.items()]
    console.print(table(f"endpoint {name}", ["field", "value"], rows))


def build_policy(
    kind: str,
    *,
    model: str | None = None,
    baseline: str | None = None,
    canary: str | None = None,
    weight: float | None = None,
    rollback: dict[str, Any] | None = None,
    arms: dict[str, str] | None = None,
    arm_weights: dict[str, float] | None = None,
    routing_key: str | None = None,
    primary: str | None = None,
    shadows: list[str] | None = None,
    sample: float | None = None,
    prior_alpha: float | None = None,
    prior_beta: float | None = None,
    min_pulls: int | None = None,
) -> Policy:
    """Turn the ``set-policy`` options into a policy; options of another kind are refused, not ignored."""
    given = {
        "model": model,
        "baseline": baseline,
        "canary": canary,
        "weight": weight,
        "rollback": rollback or None,
        "arms": arms or None,
        "weights": arm_weights,
        "routing_key": routing_key,
        "primary": primary,
        "shadows": shadows or None,
        "sample": sample,
        "prior_alpha": prior_alpha,
        "prior_beta": prior_beta,
        "min_pulls": min_pulls,
    }
    allowed = {
        "single": ("model",),
        "canary": ("baseline", "canary", "weight", "rollback"),
        "ab": ("arms", "weights", "routing_key"),
        "shadow": ("primary", "shadows", "sample"),
        "bandit": ("arms", "prior_alpha", "prior_beta", "min_pulls"),
    }
    if kind not in allowed:
        raise ValidationError(f"--kind {kind!r}: use one of {', '.join(POLICY_KINDS)}", field="policy.kind")
    stray = [key for key, value in given.items() if value is not None and key not in allowed[kind]]
    if stray:
        option = _OPTION_OF.get(stray[0], "--" + stray[0].replace("_", "-"))
        raise ValidationError(f"{option} does not apply to a {kind} policy", field=f"policy.{stray[0]}")
    data = {"kind": kind, **{key: given[key] for key in allowed[kind] if given[key] is not None}}
    if kind == "canary" and rollback:
        data["rollback"] = RollbackRule.from_dict(rollback).to_dict()
    return policy_from_dict(data)


@endpoints_app.command("set-policy")
def set_policy(
    name: str = typer.Argument(..., help="Endpoint name."),
    kind: str | None = typer.Option(None, help="single, canary, ab, shadow or bandit."),
    policy_json: str | None = typer.Option(
        None, "--policy", help="The whole policy as JSON (or @file.json)."
    ),
    model: str | None = typer.Option(None, help="single: the model ref."),
    baseline: str | None = typer.Option(None, help="canary: the current model ref."),
    canary: str | None = typer.Option(None, help="canary: the new model ref."),
    weight: float | None = typer.Option(None, help="canary: share of traffic to the canary, in (0, 1)."),
    rollback: list[str] | None = typer.Option(
        None, help="canary: rollback rule field, e.g. min_requests=500 (repeatable)."
    ),
    arm: list[str] | None = typer.Option(None, help="ab/bandit: NAME=REF (repeat for each arm)."),
    arm_weight: list[str] | None = typer.Option(
        None, help="ab: NAME=SHARE (repeatable; default even split)."
    ),
    routing_key: str | None = typer.Option(None, help="ab: the row field hashed for sticky assignment."),
    primary: str | None = typer.Option(None, help="shadow: the model ref that answers."),
    shadow: list[str] | None = typer.Option(None, help="shadow: a model ref run off the response path."),
    sample: float | None = typer.Option(None, help="shadow: share of requests mirrored, in (0, 1]."),
    prior_alpha: float | None = typer.Option(None, help="bandit: Beta prior alpha."),
    prior_beta: float | None = typer.Option(None, help="bandit: Beta prior beta."),
    min_pulls: int | None = typer.Option(None, help="bandit: round-robin pulls per arm before sampling."),
    expected_revision: int | None = typer.Option(
        None, help="Refuse if the endpoint is not at this revision."
    ),
    reason: str | None = typer.Option(None, help="Why (recorded in the audit trail)."),
    actor: str | None = typer.Option(None, help=ACTOR_HELP),
) -> None:
    """Change an endpoint's traffic policy, e.g. start a canary:

    loopml endpoints set-policy fraud --kind canary --baseline fraud@champion --canary fraud/4 --weight 0.1
    """
    if (kind is None) == (policy_json is None):
        raise ValidationError("give --kind KIND with its options, or --policy JSON", field="policy.kind")
    if policy_json is not None:
        policy = policy_from_dict(_json_arg(policy_json, "--policy"))
    else:
        assert kind is not None
        policy = build_policy(
            kind,
            model=model,
            baseline=baseline,
            canary=canary,
            weight=weight,
            rollback=parse_params(rollback),
            arms=_pairs(arm, "--arm"),
            arm_weights=_floats(arm_weight, "--arm-weight"),
            routing_key=routing_key,
            primary=primary,
            shadows=shadow,
            sample=sample,
            prior_alpha=prior_alpha,
            prior_beta=prior_beta,
            min_pulls=min_pulls,
        )
    lm, service = _service()
    try:
        info = service.set_policy(
            name, policy, actor=_actor(actor), reason=reason, expected_revision=expected_revision
        )
    finally:
        lm.close()
    _print_info(info, "updated")


@endpoints_app.command("rollback")
def rollback(
    name: str = typer.Argument(..., help="Endpoint name."),
    reason: str | None = typer.Option(None, help="Why (recorded in the audit trail)."),
    actor: str | None = typer.Option(None, help=ACTOR_HELP),
) -> None:
    """End a canary: all traffic back to the baseline."""
    lm, service = _service()
    try:
        info = service.rollback_canary(name, actor=_actor(actor), reason=reason)
    finally:
        lm.close()
    _print_info(info, "rolled back")


@endpoints_app.command("promote")
def promote(
    name: str = typer.Argument(..., help="Endpoint name."),
    to_alias: str | None = typer.Option(
        None, "--to-alias", help="Also promote the canary's version to this registry alias (gates apply)."
    ),
    reason: str | None = typer.Option(None, help="Why (recorded in the audit trail)."),
    actor: str | None = typer.Option(None, help=ACTOR_HELP),
) -> None:
    """Finish a canary: all traffic to the canary (optionally move a registry alias to it)."""
    lm, service = _service()
    try:
        info = service.promote_canary(name, actor=_actor(actor), reason=reason, promote_to_alias=to_alias)
    finally:
        lm.close()
    _print_info(info, "promoted")


@endpoints_app.command("delete")
def delete(
    name: str = typer.Argument(..., help="Endpoint name."),
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation."),
    reason: str | None = typer.Option(None, help="Why (recorded in the audit trail)."),
    actor: str | None = typer.Option(None, help=ACTOR_HELP),
) -> None:
    """Delete an endpoint; its history stays."""
    if not yes and not typer.confirm(f"Delete endpoint {name!r}? Servers stop answering it within a second."):
        raise typer.Exit(1)
    lm, service = _service()
    try:
        service.delete(name, actor=_actor(actor), reason=reason)
    finally:
        lm.close()
    console.print(f"deleted endpoint [bold]{name}[/bold]")


@endpoints_app.command("history")
def history(
    name: str = typer.Argument(..., help="Endpoint name."),
    limit: int = typer.Option(50, min=1, max=1000, help="Newest N revisions."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """Show revisions, newest first: who changed what, when and why."""
    lm, service = _service()
    try:
        revisions = service.history(name, limit)
    finally:
        lm.close()
    if as_json:
        console.print_json(json.dumps([r.to_dict() for r in revisions]))
        return
    rows = [
        [
            r.revision,
            r.action,
            r.spec.policy.kind,
            describe_policy(r.spec.policy),
            r.actor,
            r.reason or "",
            r.at.strftime("%Y-%m-%d %H:%M:%S"),
        ]
        for r in revisions
    ]
    console.print(
        table(f"history of {name}", ["rev", "action", "policy", "routes", "by", "reason", "at"], rows)
    )


@endpoints_app.command("ab")
def ab(
    name: str = typer.Argument(..., help="Endpoint name."),
    metric: str = typer.Option("auto", help="auto, or a metric such as auc, precision, recall, reward."),
    since: str | None = typer.Option(None, help="Only requests since: 7d, 24h, or an ISO time."),
    n_boot: int = typer.Option(2000, min=100, max=100_000, help="Bootstrap resamples for the intervals."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Compare the arms of an endpoint from logged feedback: metric per arm with 95% CI and a verdict."""
    try:
        from loopml.serving.inference import analyse_ab
    except ImportError as exc:
        raise LoopmlError(
            f"A/B analysis needs the inference log module, which failed to import: {exc}"
        ) from None
    lm = client()
    try:
        result = analyse_ab(lm, name, metric=metric, since=_since(since), n_boot=n_boot)
    finally:
        lm.close()
    if as_json:
        console.print_json(json.dumps(result.to_dict(), default=str))
    else:
        console.print(result.to_text(), highlight=False, markup=False)


@endpoints_app.command("status")
def status(
    name: str = typer.Argument(..., help="Endpoint name."),
    url: str | None = typer.Option(
        None,
        help="A running server (e.g. http://127.0.0.1:8000): show its loaded versions and circuit state.",
    ),
    timeout: float = typer.Option(5.0, min=0.1, max=120, help="HTTP timeout in seconds."),
) -> None:
    """Runtime status from a server (--url), else the stored spec and what its refs resolve to now."""
    if url is None:
        show(name, as_json=False)
        return
    target = f"{url.rstrip('/')}/v1/endpoints/{name}/status"
    if not target.startswith(("http://", "https://")):
        raise ValidationError(f"--url {url!r} must start with http:// or https://", field="url")
    try:
        with urllib.request.urlopen(target, timeout=timeout) as response:
            body = response.read().decode()
    except urllib.error.HTTPError as exc:
        detail = exc.read().decode(errors="replace")
        raise LoopmlError(f"{target} answered {exc.code}: {detail}") from None
    except (urllib.error.URLError, OSError) as exc:
        raise LoopmlError(f"cannot reach {target}: {exc}; is `loopml serve` running there?") from None
    console.print_json(body)
