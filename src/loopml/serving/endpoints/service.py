"""``Endpoints`` (``lm.endpoints``): create, change and inspect endpoints, each change a revision.

Every change writes the new spec, an append-only revision and an audit event in one transaction, so
the history always explains the live state. Model refs are resolved against the registry before
anything is written: an endpoint that names a model that does not exist is refused up front instead
of failing on the first request. Servers do not query this per request; they poll ``change_token()``
(one small query) and reload when it changes.
"""

from __future__ import annotations

import builtins
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from loopml.checks import check_actor, check_reason
from loopml.context import Context
from loopml.errors import ConflictError, LoopmlError, NotFoundError, ValidationError, did_you_mean
from loopml.registry.refs import parse_ref
from loopml.serving.endpoints.definitions import (
    Canary,
    EndpointSpec,
    Policy,
    Single,
    check_endpoint_name,
    policy_from_dict,
)
from loopml.storage.metadata import endpoints as q
from loopml.storage.metadata.base import utcnow
from loopml.storage.metadata.core import record_event

#: Audit events use the endpoint name as subject.
SUBJECT = "endpoint"
ACTOR_MAX = 255
REASON_MAX = 2000
HISTORY_MAX = 1000


@dataclass(frozen=True)
class EndpointInfo:
    """The live state of an endpoint: its spec and which revision produced it."""

    name: str
    spec: EndpointSpec
    revision: int
    created_at: datetime
    updated_at: datetime
    updated_by: str

    @property
    def policy(self) -> Policy:
        return self.spec.policy

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "spec": self.spec.to_dict(),
            "revision": self.revision,
            "created_at": self.created_at.isoformat(),
            "updated_at": self.updated_at.isoformat(),
            "updated_by": self.updated_by,
        }


@dataclass(frozen=True)
class EndpointRevision:
    """One change: the spec after it (for ``delete``: the spec that was removed), who and why."""

    endpoint: str
    revision: int
    action: str
    spec: EndpointSpec
    actor: str
    reason: str | None
    at: datetime

    def to_dict(self) -> dict[str, Any]:
        return {
            "endpoint": self.endpoint,
            "revision": self.revision,
            "action": self.action,
            "spec": self.spec.to_dict(),
            "actor": self.actor,
            "reason": self.reason,
            "at": self.at.isoformat(),
        }


_EVENTS = {
    "create": q.EVENT_CREATED,
    "update": q.EVENT_UPDATED,
    "policy": q.EVENT_POLICY_CHANGED,
    "rollback": q.EVENT_CANARY_ROLLED_BACK,
    "promote": q.EVENT_CANARY_PROMOTED,
    "delete": q.EVENT_DELETED,
}


def _spec(spec: Any, name: str | None = None) -> EndpointSpec:
    if isinstance(spec, EndpointSpec):
        if name is not None and spec.name != name:
            raise ValidationError(
                f"name: the spec is for endpoint {spec.name!r} but the call is for {name!r}; "
                "an endpoint cannot be renamed (create a new one)",
                field="name",
            )
        return spec
    if isinstance(spec, Mapping):
        return EndpointSpec.from_dict(spec, name=name)
    raise ValidationError(f"spec must be an EndpointSpec or a dict; got {type(spec).__name__}", field="spec")


#: Policy fields that hold model refs (a str, a list of refs, or the arm -> ref dict).
_REF_FIELDS = frozenset({"model", "baseline", "canary", "primary", "shadows", "arms"})


def ref_fields(policy: Policy) -> dict[str, str]:
    """Model ref -> the spec field that names it (first occurrence), for errors like ``policy.canary``."""
    out: dict[str, str] = {}
    for key, value in policy.to_dict().items():
        if key not in _REF_FIELDS:
            continue
        if isinstance(value, str):
            out.setdefault(value, f"policy.{key}")
        elif isinstance(value, list):
            for i, ref in enumerate(value):
                out.setdefault(ref, f"policy.{key}[{i}]")
        elif isinstance(value, dict) and key == "arms":
            for arm, ref in value.items():
                out.setdefault(ref, f"policy.arms.{arm}")
    return out


def _info(row: q.EndpointRow) -> EndpointInfo:
    return EndpointInfo(
        name=row.name,
        spec=EndpointSpec.from_dict(row.spec),
        revision=row.revision,
        created_at=row.created_at,
        updated_at=row.updated_at,
        updated_by=row.updated_by,
    )


def _revision(row: q.EndpointRevisionRow) -> EndpointRevision:
    return EndpointRevision(
        endpoint=row.endpoint,
        revision=row.revision,
        action=row.action,
        spec=EndpointSpec.from_dict(row.spec),
        actor=row.actor,
        reason=row.reason,
        at=row.created_at,
    )


class Endpoints:
    """The endpoint service. Stateless apart from the context, so one instance serves all threads."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self._registry: Any = None

    @property
    def registry(self) -> Any:
        if self._registry is None:
            from loopml.registry import Registry

            self._registry = Registry(self.ctx)
        return self._registry

    # ------------------------------------------------------------------ reads
    def get(self, name: str) -> EndpointInfo:
        check_endpoint_name(name)
        with self.ctx.db.session() as session:
            return _info(self._row(session, name))

    def list(self) -> list[EndpointInfo]:
        with self.ctx.db.session() as session:
            return [_info(row) for row in q.list_endpoints(session)]

    def history(self, name: str, limit: int = 50) -> builtins.list[EndpointRevision]:
        """Revisions newest first, including those of a deleted (or deleted and re-created) endpoint."""
        check_endpoint_name(name)
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= HISTORY_MAX:
            raise ValidationError(
                f"limit must be an integer in [1, {HISTORY_MAX}]; got {limit!r}", field="limit"
            )
        with self.ctx.db.session() as session:
            rows = q.list_revisions(session, name, limit)
            if not rows:
                raise NotFoundError(
                    f"endpoint {name!r} has no history: it was never created."
                    + did_you_mean(name, q.endpoint_names(session)),
                    field="name",
                )
            return [_revision(row) for row in rows]

    def change_token(self) -> str:
        """Changes whenever any endpoint changes or any model alias/version moves (poll it, ~1/s).

        One lock-free SELECT of a few index lookups on a pooled connection, no ORM session: every
        serving process runs it every second, next to the inference log's writes.
        """
        from loopml.storage.metadata.registry import read_change_markers

        self.ctx.db.ensure_schema()
        values = read_change_markers(self.ctx.db.engine, (q.EndpointRevisionRow.id,))
        return ":".join("" if v is None else str(v) for v in values)

    # ------------------------------------------------------------------ changes
    def create(
        self, spec: EndpointSpec | Mapping[str, Any], *, actor: str = "system", reason: str | None = None
    ) -> EndpointInfo:
        """A new endpoint (``ConflictError`` if the name exists); every model ref must resolve now."""
        spec = _spec(spec)
        actor, reason = check_actor(actor, max_len=ACTOR_MAX), check_reason(reason, max_len=REASON_MAX)
        self._check_models(spec)
        with self.ctx.db.session() as session:
            if q.get_endpoint(session, spec.name) is not None:
                raise ConflictError(
                    f"endpoint {spec.name!r} already exists; change it with update()/set_policy() "
                    "(or `loopml endpoints set-policy`), or delete it first",
                    field="name",
                )
            revision = q.last_revision(session, spec.name) + 1
            now = utcnow()
            row = q.add_endpoint(
                session, name=spec.name, spec=spec.to_dict(), revision=revision, actor=actor, at=now
            )
            self._record(session, spec, revision, "create", actor, reason, now)
            return _info(row)

    def update(
        self,
        name: str,
        spec: EndpointSpec | Mapping[str, Any],
        *,
        actor: str,
        reason: str | None = None,
        expected_revision: int | None = None,
    ) -> EndpointInfo:
        """Replace the whole spec (a new revision). ``expected_revision`` refuses a stale edit (409)."""
        check_endpoint_name(name)
        new = _spec(spec, name)
        self._check_models(new)
        return self._change(name, lambda _old: new, "update", actor, reason, expected_revision)

    def set_policy(
        self,
        name: str,
        policy: Policy | Mapping[str, Any],
        *,
        actor: str,
        reason: str | None = None,
        expected_revision: int | None = None,
    ) -> EndpointInfo:
        """Change only the traffic policy (e.g. start a canary); timeout, fallback and cache stay."""
        check_endpoint_name(name)
        policy = policy_from_dict(policy)
        self._check_refs(policy)
        return self._change(
            name, lambda old: old.with_policy(policy), "policy", actor, reason, expected_revision
        )

    def rollback_canary(
        self, name: str, *, actor: str, reason: str | None = None, canary: str | None = None
    ) -> EndpointInfo:
        """End a canary: all traffic back to the baseline (``Single(baseline)``).

        Idempotent, so several servers' watchdogs may call it at once: if the endpoint was already
        rolled back (its last revision is a rollback) the current state is returned unchanged.
        ``canary`` (a ref) rolls back only if that ref is still the canary, so a watchdog acting on
        old numbers cannot roll back a canary someone started since.
        """
        check_endpoint_name(name)
        actor, reason = check_actor(actor, max_len=ACTOR_MAX), check_reason(reason, max_len=REASON_MAX)
        try:
            wanted = None if canary is None else str(parse_ref(canary))
        except ValidationError as exc:
            raise ValidationError(f"canary: {exc}", field="canary") from None
        for attempt in range(2):
            try:
                with self.ctx.db.session() as session:
                    row = self._row(session, name, for_update=True)
                    current = EndpointSpec.from_dict(row.spec)
                    policy = current.policy
                    if not isinstance(policy, Canary) or (wanted is not None and policy.canary != wanted):
                        last = q.list_revisions(session, name, 1)
                        if not isinstance(policy, Canary) and last and last[0].action == "rollback":
                            return _info(row)
                        raise ConflictError(
                            f"endpoint {name!r} has no canary"
                            + (f" {wanted!r}" if wanted else "")
                            + f" to roll back (its policy is {policy.kind!r})",
                            field="policy",
                        )
                    return self._write(
                        session, row, current.with_policy(Single(policy.baseline)), "rollback", actor, reason
                    )
            except q.RevisionRace:
                if attempt:
                    raise
        raise AssertionError("unreachable")  # pragma: no cover

    def promote_canary(
        self,
        name: str,
        *,
        actor: str,
        reason: str | None = None,
        promote_to_alias: str | None = None,
    ) -> EndpointInfo:
        """Finish a canary: all traffic to the canary (``Single(canary)``).

        The registry is left alone unless ``promote_to_alias`` is given: then the canary's version is
        promoted to that alias through ``lm.registry.promote`` (its gates apply; a failing gate raises
        ``GateBlockedError`` and the endpoint keeps its canary) and the endpoint follows the alias
        (``Single("model@alias")``), so later alias moves reach it too.
        """
        check_endpoint_name(name)
        actor, reason = check_actor(actor, max_len=ACTOR_MAX), check_reason(reason, max_len=REASON_MAX)
        info = self.get(name)
        policy = info.spec.policy
        if not isinstance(policy, Canary):
            raise ConflictError(
                f"endpoint {name!r} has no canary to promote (its policy is {policy.kind!r})", field="policy"
            )
        target = policy.canary
        if promote_to_alias is not None:
            version = self._version(policy.canary, "policy.canary")
            holders = {a.alias: a.version for a in self.registry.aliases(version.model)}
            if holders.get(promote_to_alias) != version.number:
                self.registry.promote(
                    version.model,
                    version.number,
                    promote_to_alias,
                    actor=actor,
                    reason=reason or f"promoted from canary of endpoint {name!r}",
                )
            target = f"{version.model}@{promote_to_alias}"

        def promote(old: EndpointSpec) -> EndpointSpec:
            if not isinstance(old.policy, Canary) or old.policy.canary != policy.canary:
                raise ConflictError(
                    f"endpoint {name!r} changed while promoting: its canary is no longer {policy.canary!r}",
                    field="policy",
                )
            return old.with_policy(Single(target))

        return self._change(name, promote, "promote", actor, reason, None)

    def delete(self, name: str, *, actor: str, reason: str | None = None) -> None:
        """Remove the endpoint; its history stays (and continues if the name is created again)."""
        check_endpoint_name(name)
        actor, reason = check_actor(actor, max_len=ACTOR_MAX), check_reason(reason, max_len=REASON_MAX)
        with self.ctx.db.session() as session:
            row = self._row(session, name, for_update=True)
            spec = EndpointSpec.from_dict(row.spec)
            now = utcnow()
            self._record(session, spec, row.revision + 1, "delete", actor, reason, now)
            q.delete_endpoint(session, row)

    # ------------------------------------------------------------------ internals
    def _change(
        self,
        name: str,
        mutate: Callable[[EndpointSpec], EndpointSpec],
        action: str,
        actor: str,
        reason: str | None,
        expected_revision: int | None,
    ) -> EndpointInfo:
        actor, reason = check_actor(actor, max_len=ACTOR_MAX), check_reason(reason, max_len=REASON_MAX)
        if expected_revision is not None and (
            isinstance(expected_revision, bool) or not isinstance(expected_revision, int)
        ):
            raise ValidationError(
                f"expected_revision must be an integer; got {expected_revision!r}", field="expected_revision"
            )
        with self.ctx.db.session() as session:
            row = self._row(session, name, for_update=True)
            if expected_revision is not None and row.revision != expected_revision:
                raise ConflictError(
                    f"endpoint {name!r} is at revision {row.revision}, not {expected_revision}: someone changed "
                    "it meanwhile; reload it and apply your change again",
                    field="expected_revision",
                )
            new = mutate(EndpointSpec.from_dict(row.spec))
            return self._write(session, row, new, action, actor, reason)

    def _write(
        self,
        session: Any,
        row: q.EndpointRow,
        spec: EndpointSpec,
        action: str,
        actor: str,
        reason: str | None,
    ) -> EndpointInfo:
        now = utcnow()
        revision = row.revision + 1
        q.update_endpoint(session, row, spec=spec.to_dict(), revision=revision, actor=actor, at=now)
        self._record(session, spec, revision, action, actor, reason, now)
        return _info(row)

    def _record(
        self,
        session: Any,
        spec: EndpointSpec,
        revision: int,
        action: str,
        actor: str,
        reason: str | None,
        at: datetime,
    ) -> None:
        q.add_revision(
            session,
            name=spec.name,
            revision=revision,
            action=action,
            spec=spec.to_dict(),
            actor=actor,
            reason=reason,
            at=at,
        )
        record_event(
            session,
            _EVENTS[action],
            SUBJECT,
            spec.name,
            actor=actor,
            reason=reason,
            data={"revision": revision, "policy": spec.policy.to_dict(), "models": spec.models()},
        )

    def _row(self, session: Any, name: str, *, for_update: bool = False) -> q.EndpointRow:
        row = q.get_endpoint(session, name, for_update=for_update)
        if row is None:
            raise NotFoundError(
                f"endpoint {name!r} does not exist."
                + did_you_mean(name, q.endpoint_names(session))
                + " Create it with `loopml endpoints create NAME --model REF`.",
                field="name",
            )
        return row

    def _check_models(self, spec: EndpointSpec) -> None:
        self._check_refs(spec.policy)

    def _check_refs(self, policy: Policy) -> None:
        for ref, field_name in ref_fields(policy).items():
            self._version(ref, field_name)

    def _version(self, ref: str, field_name: str) -> Any:
        try:
            return self.registry.get_version(ref)
        except NotFoundError as exc:
            raise NotFoundError(
                f"{field_name}: model ref {ref!r} does not resolve: {exc}", field=field_name
            ) from None
        except LoopmlError as exc:
            if isinstance(exc, ValidationError):
                raise ValidationError(f"{field_name}: {exc}", field=field_name) from None
            raise
