"""Registration and look-up of feature definitions (entities, views, versions) in the metadata store.

Also resolves feature references (``"view:feature"``, ``"view@2:feature"``, ``"view:*"``) into a
*plan*: which view versions to read and which output columns they produce. Training and serving use
the same plan builder, so they cannot disagree on which definition a name means.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from loopml.context import Context
from loopml.errors import ConfigError, ConflictError, NotFoundError, ValidationError, did_you_mean
from loopml.features.definitions import Entity, FeatureView, OnDemandFeature, fingerprint
from loopml.features.models import EntityInfo, FeatureViewInfo, FeatureViewVersion
from loopml.features.sources import frame_digests
from loopml.storage.metadata import features as q
from loopml.storage.metadata.base import utcnow
from loopml.storage.metadata.core import record_event


@dataclass(frozen=True)
class VersionRecord:
    """A registered version as the store uses it internally (ids and stored assets included)."""

    id: int
    view_id: int
    view: str
    kind: str
    number: int
    fingerprint: str
    spec: dict[str, Any]
    assets: dict[str, Any]
    created_at: Any
    created_by: str

    @property
    def table(self) -> str:
        return f"{self.view}@{self.number}"

    @property
    def features(self) -> dict[str, str]:
        # Stored as [name, dtype] pairs: JSONB (PostgreSQL) would reorder an object's keys.
        return {name: dtype for name, dtype in self.spec["features"]}

    @property
    def ttl_seconds(self) -> float | None:
        return self.spec.get("ttl_seconds")

    def public(self, *, created: bool = False) -> FeatureViewVersion:
        return FeatureViewVersion(
            view=self.view,
            kind=self.kind,
            number=self.number,
            fingerprint=self.fingerprint,
            entity=self.spec.get("entity"),
            features=self.features,
            spec=self.spec,
            created_at=self.created_at,
            created_by=self.created_by,
            created=created,
        )


def _record(view: q.FeatureViewRow, row: q.FeatureViewVersionRow) -> VersionRecord:
    return VersionRecord(
        id=row.id,
        view_id=view.id,
        view=view.name,
        kind=view.kind,
        number=row.number,
        fingerprint=row.fingerprint,
        spec=dict(row.spec),
        assets=dict(row.assets or {}),
        created_at=row.created_at,
        created_by=row.created_by,
    )


@dataclass(frozen=True)
class FeatureRef:
    view: str
    version: int | None
    feature: str


def parse_ref(ref: Any) -> FeatureRef:
    """``"view:feature"`` / ``"view@3:feature"`` / ``"view:*"`` -> FeatureRef."""
    if not isinstance(ref, str) or ref.count(":") != 1:
        raise ValidationError(
            f"feature reference {ref!r} is malformed: use 'view:feature', 'view@2:feature' or 'view:*'"
        )
    head, feature = ref.split(":")
    view, _, version = head.partition("@")
    number: int | None = None
    if version:
        if not version.isdigit():
            raise ValidationError(f"feature reference {ref!r}: the version after '@' must be a number")
        number = int(version)
    if not view or not feature:
        raise ValidationError(f"feature reference {ref!r}: both the view and the feature name are required")
    return FeatureRef(view, number, feature)


@dataclass
class ViewPlan:
    """One stored view version to read, and (feature column, output column) pairs."""

    record: VersionRecord
    outputs: list[tuple[str, str]] = field(default_factory=list)

    @property
    def join_key(self) -> str:
        return str(self.record.spec["join_key"])

    @property
    def key_dtype(self) -> str:
        return str(self.record.spec["key_dtype"])


@dataclass
class OnDemandPlan:
    record: VersionRecord
    fn: Callable[..., Any]
    inputs: list[tuple[str, str]]  # (name inside fn frame, output column carrying it)
    request: dict[str, str]
    outputs: list[tuple[str, str]]


@dataclass
class Plan:
    views: list[ViewPlan]
    on_demand: list[OnDemandPlan]
    #: Output columns the caller asked for, in order (helper inputs of on-demand features excluded).
    columns: list[str]


class Catalog:
    """Definitions in the metadata store plus the Python objects registered in this process."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        #: name -> definition object (transform functions and on-demand code live in Python, not in SQL).
        self.objects: dict[str, FeatureView | OnDemandFeature] = {}

    # -- registration ---------------------------------------------------------------------------
    def register_entity(self, entity: Entity, *, actor: str = "system") -> EntityInfo:
        with self.ctx.db.session() as s:
            row = q.get_entity(s, entity.name)
            if row is None:
                row = q.EntityRow(
                    name=entity.name, join_key=entity.key, dtype=entity.dtype, description=entity.description
                )
                s.add(row)
                s.flush()
                record_event(
                    s, "entity.registered", "entity", entity.name, actor=actor, data={"join_key": entity.key}
                )
            elif (row.join_key, row.dtype) != (entity.key, entity.dtype):
                raise ConflictError(
                    f"entity {entity.name!r} is registered with join_key={row.join_key!r}, dtype={row.dtype!r}; "
                    f"the new definition says {entity.key!r}, {entity.dtype!r}. Keys cannot change: "
                    "use a new entity name."
                )
            return EntityInfo(row.name, row.join_key, row.dtype, row.description, row.created_at)

    def register_view(
        self, view: FeatureView | OnDemandFeature, *, actor: str = "system"
    ) -> FeatureViewVersion:
        spec = view.spec()
        if isinstance(view, OnDemandFeature):
            self._check_on_demand_inputs(view)
        fp = fingerprint(spec)
        entity_id = None
        if isinstance(view, FeatureView):
            entity_id = self._entity_id(view.entity, actor)
        with self.ctx.db.session() as s:
            row = q.get_view_for_update(s, view.name)
            kind = spec["kind"]
            if row is None:
                row = q.FeatureViewRow(name=view.name, kind=kind, entity_id=entity_id, latest_version=0)
                s.add(row)
                s.flush()
            elif row.kind != kind:
                raise ConflictError(
                    f"{view.name!r} is registered as a {row.kind} view; it cannot become {kind}. Use another name."
                )
            existing = q.get_version_by_fingerprint(s, row.id, fp)
            if existing is not None:
                self.objects[view.name] = view
                return _record(row, existing).public()
            frames = frame_digests(self.ctx, getattr(view, "source", None))
            number = row.latest_version + 1
            version = q.FeatureViewVersionRow(
                view_id=row.id,
                number=number,
                fingerprint=fp,
                spec=spec,
                assets={"frames": frames} if frames else {},
                created_by=actor,
            )
            s.add(version)
            row.latest_version = number
            row.entity_id = entity_id
            row.updated_at = utcnow()
            s.flush()
            record_event(
                s,
                "feature_view.version_created",
                "feature_view",
                view.name,
                actor=actor,
                data={"version": number, "fingerprint": fp},
            )
            self.objects[view.name] = view
            return _record(row, version).public(created=True)

    def _entity_id(self, entity: Entity, actor: str) -> int:
        self.register_entity(entity, actor=actor)
        with self.ctx.db.session() as s:
            row = q.get_entity(s, entity.name)
            assert row is not None
            return row.id

    def _check_on_demand_inputs(self, odf: OnDemandFeature) -> None:
        names = [parse_ref(r).feature for r in odf.inputs]
        if len(set(names)) != len(names):
            raise ValidationError(f"on-demand feature {odf.name!r}: two inputs share a feature name: {names}")
        for ref in odf.inputs:
            parsed = parse_ref(ref)
            record = self.version(parsed.view, parsed.version)
            if record.kind != "batch":
                raise ValidationError(
                    f"on-demand feature {odf.name!r}: input {ref!r} must be a stored feature"
                )
            if parsed.feature not in record.features:
                raise NotFoundError(
                    f"on-demand feature {odf.name!r}: input {ref!r}: no feature {parsed.feature!r} in view "
                    f"{parsed.view!r}." + did_you_mean(parsed.feature, list(record.features))
                )

    def set_assets(self, record: VersionRecord, assets: dict[str, Any]) -> None:
        with self.ctx.db.session() as s:
            row = s.get(q.FeatureViewVersionRow, record.id)
            assert row is not None
            row.assets = assets

    # -- look-ups -------------------------------------------------------------------------------
    def view_names(self) -> list[str]:
        with self.ctx.db.session() as s:
            return [v.name for v in q.list_views(s)]

    def version(self, view: str, number: int | None = None) -> VersionRecord:
        with self.ctx.db.session() as s:
            row = q.get_view(s, view)
            if row is None:
                names = [v.name for v in q.list_views(s)]
                raise NotFoundError(f"unknown feature view {view!r}." + did_you_mean(view, names))
            n = row.latest_version if number is None else number
            version = q.get_version(s, row.id, n)
            if version is None:
                raise NotFoundError(
                    f"feature view {view!r} has no version {n}; versions are 1..{row.latest_version}"
                )
            return _record(row, version)

    def versions(self, view: str) -> list[VersionRecord]:
        with self.ctx.db.session() as s:
            row = q.get_view(s, view)
            if row is None:
                names = [v.name for v in q.list_views(s)]
                raise NotFoundError(f"unknown feature view {view!r}." + did_you_mean(view, names))
            return [_record(row, v) for v in q.list_versions(s, row.id)]

    def entities(self) -> list[EntityInfo]:
        with self.ctx.db.session() as s:
            return [
                EntityInfo(e.name, e.join_key, e.dtype, e.description, e.created_at)
                for e in q.list_entities(s)
            ]

    def views(self) -> list[FeatureViewInfo]:
        out = []
        with self.ctx.db.session() as s:
            entities = {e.id: e.name for e in q.list_entities(s)}
            for row in q.list_views(s):
                latest = q.get_version(s, row.id, row.latest_version)
                spec = latest.spec if latest is not None else {}
                out.append(
                    FeatureViewInfo(
                        name=row.name,
                        kind=row.kind,
                        entity=entities.get(row.entity_id) if row.entity_id else None,
                        latest_version=row.latest_version,
                        features={n: t for n, t in spec.get("features", [])},
                        ttl_seconds=spec.get("ttl_seconds"),
                        created_at=row.created_at,
                        updated_at=row.updated_at,
                    )
                )
        return out

    def definition_fn(self, record: VersionRecord) -> Callable[..., Any]:
        """The Python function of a transform / on-demand feature, from this process or by import."""
        obj = self.objects.get(record.view)
        if obj is not None and obj.spec() == record.spec:
            fn = obj.fn if isinstance(obj, OnDemandFeature) else obj.transform
            if fn is not None:
                return fn
        transform = record.spec.get("transform") or {}
        ref = str(transform.get("ref", ""))
        module, _, qualname = ref.partition(":")
        try:
            target: Any = importlib.import_module(module)
            for part in qualname.split("."):
                target = getattr(target, part)
        except (ImportError, AttributeError, ValueError):
            target = None
        if target is None or not callable(target) or "<" in qualname or module == "__main__":
            raise _code_missing(record, ref)
        if isinstance(target, OnDemandFeature):
            target = target.fn
        return target

    # -- plans ------------------------------------------------------------------------------------
    def plan(self, features: Sequence[str], *, full_names: bool = False) -> Plan:
        if isinstance(features, str) or not isinstance(features, Sequence) or not features:
            raise ValidationError(
                "features must be a non-empty list of references like ['user_stats:clicks_7d', 'user_stats:*']"
            )
        views: dict[tuple[str, int], ViewPlan] = {}
        odfs: dict[tuple[str, int], OnDemandPlan] = {}
        columns: list[str] = []
        records: dict[tuple[str, int | None], VersionRecord] = {}

        def record_for(ref: FeatureRef) -> VersionRecord:
            key = (ref.view, ref.version)
            if key not in records:
                records[key] = self.version(ref.view, ref.version)
            return records[key]

        def out_name(view: str, feature: str) -> str:
            return f"{view}__{feature}" if full_names else feature

        def add_stored(ref: FeatureRef, *, requested: bool) -> str:
            record = record_for(ref)
            names = list(record.features) if ref.feature == "*" else [ref.feature]
            plan = views.setdefault((record.view, record.number), ViewPlan(record))
            last = ""
            for name in names:
                if name not in record.features:
                    raise NotFoundError(
                        f"unknown feature {name!r} in view {record.view!r} (version {record.number})."
                        + did_you_mean(name, list(record.features))
                    )
                out = out_name(record.view, name)
                if (name, out) not in plan.outputs:
                    plan.outputs.append((name, out))
                if requested and out not in columns:
                    columns.append(out)
                last = out
            return last

        for raw in features:
            ref = parse_ref(raw)
            record = record_for(ref)
            if record.kind == "batch":
                add_stored(ref, requested=True)
                continue
            plan_key = (record.view, record.number)
            if plan_key not in odfs:
                inputs = []
                for input_ref in record.spec["inputs"]:
                    parsed = parse_ref(input_ref)
                    inputs.append((parsed.feature, add_stored(parsed, requested=False)))
                odfs[plan_key] = OnDemandPlan(
                    record=record,
                    fn=self.definition_fn(record),
                    inputs=inputs,
                    request=dict(record.spec.get("request", {})),
                    outputs=[],
                )
            odf = odfs[plan_key]
            names = list(record.features) if ref.feature == "*" else [ref.feature]
            for name in names:
                if name not in record.features:
                    raise NotFoundError(
                        f"unknown feature {name!r} in on-demand feature {record.view!r}."
                        + did_you_mean(name, list(record.features))
                    )
                out = out_name(record.view, name)
                if (name, out) not in odf.outputs:
                    odf.outputs.append((name, out))
                if out not in columns:
                    columns.append(out)
        all_outputs = [o for p in views.values() for _, o in p.outputs] + [
            o for p in odfs.values() for _, o in p.outputs
        ]
        dupes = sorted({o for o in all_outputs if all_outputs.count(o) > 1})
        if dupes:
            raise ValidationError(
                f"feature names {dupes} come from more than one view; pass full_names=True to get "
                "'view__feature' columns, or request only one of them"
            )
        return Plan(views=list(views.values()), on_demand=list(odfs.values()), columns=columns)


def _code_missing(record: VersionRecord, ref: str) -> ConfigError:
    return ConfigError(
        f"the code of {record.view!r} version {record.number} ({ref or 'unknown'}) is not available in this "
        "process: register the definition here (fs.register(...)) or define it in an importable module "
        "(not __main__, not a lambda)"
    )
