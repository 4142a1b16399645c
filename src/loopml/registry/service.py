"""``Registry``: register model versions, load them by reference, and move aliases through release gates.

Writes follow one rule: the state change and its audit event commit in the same transaction
(version registered, alias moved, alias protected, gate results recorded). Gate evaluation itself
runs *outside* any transaction (it may take seconds) and the alias move re-checks, under a row
lock, that the holder it compared against is still the holder.
"""

from __future__ import annotations

import math
import threading
import uuid
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import pandas as pd

from loopml.context import Context
from loopml.errors import ConflictError, LoopmlError, NotFoundError, ValidationError, did_you_mean
from loopml.registry.flavors import detect_flavor, get_flavor
from loopml.registry.gates import (
    EvalData,
    EvalSource,
    Gate,
    GateContext,
    SliceMetric,
    dataset_store,
    default_eval_of,
    frame_to_parquet,
    gate_from_spec,
    parquet_to_frame,
)
from loopml.registry.loaded import LoadedModel
from loopml.registry.records import (
    AliasInfo,
    AliasMove,
    GateReport,
    GateResult,
    ModelInfo,
    ModelVersion,
    Protection,
    json_safe,
)
from loopml.registry.refs import check_alias, check_model_name, parse_ref, version_number
from loopml.registry.signature import ColumnSpec, Signature, to_frame
from loopml.storage.metadata import registry as q
from loopml.storage.metadata.core import record_event

EXAMPLE_ROWS = 100
LOAD_CACHE_SIZE = 16


class GateBlockedError(ConflictError):
    """A promotion failed its release gates; ``report`` holds every gate's result."""

    def __init__(self, report: GateReport) -> None:
        super().__init__(
            report.render() + "\nThe alias did not move. Improve the model, or move it anyway with "
            "set_alias(..., force=True, reason='...') (audited)."
        )
        self.report = report


class Registry:
    """Model versions, aliases and release gates on top of the metadata database and artifact store."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self._loaded: OrderedDict[int, LoadedModel] = OrderedDict()
        self._lock = threading.Lock()

    # -- register -----------------------------------------------------------------------------
    def register(
        self,
        name: str,
        model: Any,
        *,
        flavor: str | None = None,
        input_example: Any = None,
        signature: Signature | Mapping[str, Any] | Sequence[Mapping[str, Any]] | None = None,
        metrics: Mapping[str, float] | None = None,
        run_id: str | None = None,
        dataset_version_ids: Iterable[int] = (),
        description: str = "",
        actor: str = "system",
        git_sha: str | None = None,
    ) -> ModelVersion:
        """Store ``model`` as the next version of ``name`` (the model is created on first use).

        The model is saved, loaded back and run on its input example before anything is written, so
        a version that cannot be loaded or disagrees with its signature is refused at register time
        rather than discovered by the serving layer.
        """
        check_model_name(name)
        _check_text(description, "description")
        _check_text(actor, "actor", empty_ok=False)
        clean_metrics = _check_metrics(metrics)
        ds_ids = _check_ids(dataset_version_ids)
        if run_id is not None and (not isinstance(run_id, str) or not run_id):
            raise ValidationError(f"run_id must be a run id string (see `loopml runs list`); got {run_id!r}")
        chosen = get_flavor(flavor) if flavor is not None else detect_flavor(model)
        example = to_frame(input_example, what="input_example") if input_example is not None else None
        saved = chosen.save(model)  # first: it refuses unfitted or unpicklable models with the reason
        sig = self._signature(signature, example, chosen.default_signature_names(model))
        predictor = chosen.load(saved.data, saved.meta)
        problems = predictor.signature_problems(sig.names)
        if problems:
            raise ValidationError(
                f"model {name!r}: signature does not match the {chosen.name} model: {problems[0]}"
            )
        if example is not None:
            probe = LoadedModel(_placeholder_version(name, chosen.name), sig, predictor)
            try:
                probe.predict(example)
            except LoopmlError:
                raise
            except Exception as exc:  # the user's model can fail with any error class
                raise ValidationError(
                    f"model {name!r} fails on its own input_example ({type(exc).__name__}: {exc}); "
                    "pass an example shaped like the training features"
                ) from None
        digest = self.ctx.artifacts.put_bytes(saved.data)
        example_digest = (
            self.ctx.artifacts.put_bytes(frame_to_parquet(example.head(EXAMPLE_ROWS)))
            if example is not None
            else None
        )
        with self.ctx.db.session() as session:
            run_git, run_inputs = self._run_lineage(session, run_id)
            self._check_dataset_versions(session, ds_ids)
            input_ids = sorted(set(ds_ids) | set(run_inputs))
            lineage = {
                "dataset_version_ids": input_ids,
                "git_sha": git_sha or run_git or _detect_git_sha(),
            }
            model_row = q.get_or_create_model(session, name, description)
            number = q.next_version_number(session, model_row.id)
            row = q.add_version(
                session,
                model_id=model_row.id,
                number=number,
                flavor=chosen.name,
                artifact_digest=digest,
                flavor_meta=json_safe(saved.meta),
                signature=sig.to_dict(),
                example_digest=example_digest,
                metrics=clean_metrics,
                run_id=run_id,
                lineage=lineage,
                dataset_version_ids=input_ids,
                description=description,
                status="ready",
                created_by=actor,
            )
            record_event(
                session,
                q.EVENT_VERSION_REGISTERED,
                "model",
                name,
                actor=actor,
                data={"version": number, "flavor": chosen.name, "digest": digest, "run_id": run_id},
            )
            return _version(row, name)

    def _signature(self, signature: Any, example: pd.DataFrame | None, names: list[str] | None) -> Signature:
        if signature is not None:
            if isinstance(signature, Signature):
                return signature
            if isinstance(signature, Mapping | list | tuple):
                return Signature.from_dict(signature)
            raise ValidationError(
                f"signature must be a Signature or {{'columns': [...]}}; got {type(signature).__name__}"
            )
        if example is not None:
            return Signature.infer(example)
        if names:
            # The model knows its feature names but not their types: numeric and nullable is what
            # LightGBM and scikit-learn themselves accept.
            return Signature(tuple(ColumnSpec(n, "float", nullable=True) for n in names))
        raise ValidationError(
            "the model's input columns are unknown: pass input_example= (a few training rows) or signature="
        )

    def _run_lineage(self, session: Any, run_id: str | None) -> tuple[str | None, list[int]]:
        if run_id is None:
            return None, []
        from loopml.storage.metadata import tracking as tq

        run, _experiment = tq.get_run(session, run_id)
        if run.id != run_id:
            raise ValidationError(f"run_id {run_id!r} is a prefix; pass the full id {run.id!r}")
        return run.git_sha, tq.get_inputs(session, run_id)

    def _check_dataset_versions(self, session: Any, ids: list[int]) -> None:
        from loopml.storage.metadata import datasets as dq

        for vid in ids:
            if dq.get_version_by_id(session, vid) is None:
                raise NotFoundError(
                    f"dataset_version_ids lists {vid}, which is not a dataset version; "
                    "pass DatasetVersion.id values (lm.datasets.version(name).id)"
                )

    # -- read ---------------------------------------------------------------------------------
    def list_models(self) -> list[ModelInfo]:
        """Every model with its version count, latest version, aliases and protected aliases."""
        with self.ctx.db.session() as session:
            out = []
            for row, count, latest in q.list_models(session):
                aliases = {a.alias: number for a, number in q.list_aliases(session, row.id)}
                protected = tuple(p.alias for p in q.list_protections(session, row.id))
                out.append(
                    ModelInfo(
                        row.id, row.name, row.description, row.created_at, count, latest, aliases, protected
                    )
                )
            return out

    def get_model(self, name: str) -> ModelInfo:
        check_model_name(name)
        with self.ctx.db.session() as session:
            row = self._model(session, name)
            numbers = q.version_numbers(session, row.id)
            aliases = {a.alias: number for a, number in q.list_aliases(session, row.id)}
            protected = tuple(p.alias for p in q.list_protections(session, row.id))
            return ModelInfo(
                row.id,
                row.name,
                row.description,
                row.created_at,
                len(numbers),
                max(numbers, default=None),
                aliases,
                protected,
            )

    def versions(self, name: str, limit: int = 100) -> list[ModelVersion]:
        """Versions of a model, newest first."""
        check_model_name(name)
        with self.ctx.db.session() as session:
            row = self._model(session, name)
            by_version = _alias_map(session, row.id)
            return [
                _version(v, name, by_version.get(v.id, ())) for v in q.list_versions(session, row.id, limit)
            ]

    def trained_on(self, dataset_version_id: int) -> list[ModelVersion]:
        """Model versions whose lineage includes a dataset version: what a bad data version affects."""
        (checked,) = _check_ids([dataset_version_id])
        with self.ctx.db.session() as session:
            out = []
            for v in q.versions_trained_on(session, checked):
                model = session.get(q.ModelRow, v.model_id)
                out.append(_version(v, model.name, _alias_map(session, v.model_id).get(v.id, ())))
            return out

    def get_version(self, ref: str) -> ModelVersion:
        """Resolve ``name@alias``, ``name/N`` or ``name`` to the version it names right now."""
        parsed = parse_ref(ref)
        with self.ctx.db.session() as session:
            row = self._model(session, parsed.name)
            version = self._resolve(session, row, parsed.alias, parsed.number)
            return _version(version, parsed.name, _alias_map(session, row.id).get(version.id, ()))

    def aliases(self, name: str) -> list[AliasInfo]:
        """Current aliases (and protected aliases that no version holds yet, with version 0)."""
        check_model_name(name)
        with self.ctx.db.session() as session:
            row = self._model(session, name)
            protections = {p.alias: p for p in q.list_protections(session, row.id)}
            out = []
            for alias_row, number in q.list_aliases(session, row.id):
                p = protections.pop(alias_row.alias, None)
                out.append(
                    AliasInfo(
                        alias_row.alias,
                        number,
                        alias_row.updated_at,
                        alias_row.updated_by,
                        p is not None,
                        tuple(p.gates) if p else (),
                    )
                )
            for alias, p in protections.items():
                out.append(AliasInfo(alias, 0, p.created_at, p.created_by, True, tuple(p.gates)))
            return sorted(out, key=lambda a: a.alias)

    def protection(self, name: str, alias: str) -> Protection | None:
        check_model_name(name)
        check_alias(alias)
        with self.ctx.db.session() as session:
            row = self._model(session, name)
            p = q.get_protection(session, row.id, alias)
            return Protection(name, alias, tuple(p.gates), p.created_at, p.created_by) if p else None

    def history(self, name: str, alias: str | None = None, limit: int = 50) -> list[AliasMove]:
        """Alias moves and rollbacks, newest first, from the audit trail."""
        check_model_name(name)
        with self.ctx.db.session() as session:
            self._model(session, name)
            events = [
                e
                for e in q.model_events(session, name, limit=max(limit * 4, 200))
                if e.kind in (q.EVENT_ALIAS_MOVED, q.EVENT_ALIAS_ROLLED_BACK)
                and (alias is None or (e.data or {}).get("alias") == alias)
            ]
            return [_move(e, name) for e in events[:limit]]

    def gate_results(self, name: str, version: int | str, alias: str | None = None) -> list[GateResult]:
        """Every recorded gate result of a version (all evaluations, oldest first)."""
        number = version_number(version)
        with self.ctx.db.session() as session:
            row = self._model(session, name)
            v = self._version_row(session, row, number)
            return [
                GateResult(r.gate, r.passed, r.summary, dict(r.details), r.dataset_version_id)
                for r in q.gate_results_for(session, v.id, alias)
            ]

    # -- load ---------------------------------------------------------------------------------
    def load(self, ref: str) -> LoadedModel:
        """A ready-to-predict model for ``name@alias``, ``name/N`` or ``name`` (latest).

        The artifact's sha256 is verified and its signature checked against what the model declares.
        Versions are immutable, so loaded models are cached per version id; an alias is re-resolved on
        every call (cheap), which is how servers notice that ``champion`` moved.
        """
        version = self.get_version(ref)
        with self._lock:
            cached = self._loaded.get(version.id)
            if cached is not None:
                self._loaded.move_to_end(version.id)
                return cached if cached.version.aliases == version.aliases else _with_version(cached, version)
        flavor = get_flavor(version.flavor)
        data = self.ctx.artifacts.get_bytes(version.digest)  # raises IntegrityError on changed bytes
        predictor = flavor.load(data, version.flavor_meta)
        signature = Signature.from_dict(version.signature)
        problems = predictor.signature_problems(signature.names)
        if problems:
            raise ValidationError(f"{version.ref}: stored signature does not match the model: {problems[0]}")
        loaded = LoadedModel(version, signature, predictor)
        with self._lock:
            self._loaded[version.id] = loaded
            while len(self._loaded) > LOAD_CACHE_SIZE:
                self._loaded.popitem(last=False)
        return loaded

    def input_example(self, ref: str) -> pd.DataFrame | None:
        """The rows stored with the version at registration (up to 100), or None."""
        version = self.get_version(ref)
        with self.ctx.db.session() as session:
            row = q.get_version_by_id(session, version.id)
            digest = row.example_digest if row else None
        return parquet_to_frame(self.ctx.artifacts.get_bytes(digest)) if digest else None

    # -- aliases ------------------------------------------------------------------------------
    def set_alias(
        self, name: str, alias: str, version: int | str, *, actor: str, reason: str, force: bool = False
    ) -> AliasMove:
        """Point ``alias`` at ``version``. A protected alias refuses unless ``force`` with a reason (audited).

        Setting an alias to the version it already holds changes nothing and records nothing.
        """
        check_model_name(name)
        check_alias(alias)
        number = version_number(version)
        _check_text(actor, "actor", empty_ok=False)
        reason = _check_text(reason, "reason")
        if force and not reason.strip():
            raise ValidationError(
                "force=True bypasses the release gates and needs a non-empty reason for the audit trail"
            )
        with self.ctx.db.session() as session:
            row = self._model(session, name, for_update=True)
            target = self._version_row(session, row, number)
            protected = q.get_protection(session, row.id, alias) is not None
            if protected and not force:
                raise ConflictError(
                    f"alias {alias!r} of {name!r} is protected by release gates; use promote({name!r}, {number}, "
                    f"alias={alias!r}) to evaluate them, or force=True with a reason (audited)"
                )
            current = q.get_alias(session, row.id, alias, for_update=True)
            from_number = _number_of(session, current.version_id) if current else None
            if current is not None and current.version_id == target.id:
                return AliasMove(
                    name, alias, from_number, number, actor, reason, force, "unchanged", current.updated_at
                )
            event = _move_alias(
                session,
                q.EVENT_ALIAS_MOVED,
                row,
                name,
                alias,
                target.id,
                actor,
                reason,
                from_number,
                number,
                forced=bool(force and protected),
                gated=False,
            )
            session.flush()
            return _move(event, name)

    def protect(
        self,
        name: str,
        alias: str,
        gates: Sequence[Gate | Mapping[str, Any]],
        *,
        actor: str = "system",
        reason: str | None = None,
    ) -> Protection:
        """Declare the gates ``alias`` only moves through (replaces earlier gates of that alias).

        DataFrame evaluation sources are stored once as content-addressed Parquet, so every later
        evaluation uses exactly these rows.
        """
        check_model_name(name)
        check_alias(alias)
        _check_text(actor, "actor", empty_ok=False)
        if isinstance(gates, Gate | Mapping) or not isinstance(gates, Sequence) or not gates:
            raise ValidationError(
                "gates must be a non-empty list of gates (BeatsCurrent, LatencyBudget, SliceMetric)"
            )
        objects = [g if isinstance(g, Gate) else gate_from_spec(dict(g)) for g in gates]
        for g in objects:
            if not isinstance(g, Gate):
                raise ValidationError(f"gates must hold Gate objects or specs; got {type(g).__name__}")
        stored: dict[int, str] = {}

        def store_frame(frame: pd.DataFrame) -> str:
            if id(frame) not in stored:
                stored[id(frame)] = self.ctx.artifacts.put_bytes(frame_to_parquet(frame))
            return stored[id(frame)]

        specs = [g.spec(store_frame) for g in objects]
        if default_eval_of(objects) is None and any(_needs_eval(g) for g in objects):
            raise ValidationError(
                "a SliceMetric gate without eval_dataset/label needs a BeatsCurrent gate (or its own eval_dataset= "
                "and label=) on the same alias"
            )
        with self.ctx.db.session() as session:
            row = self._model(session, name, for_update=True)
            q.set_protection(session, row.id, alias, specs, actor)
            record_event(
                session,
                q.EVENT_ALIAS_PROTECTED,
                "model",
                name,
                actor=actor,
                reason=reason,
                data={"alias": alias, "gates": specs},
            )
            p = q.get_protection(session, row.id, alias)
            return Protection(name, alias, tuple(specs), p.created_at, p.created_by)

    def unprotect(self, name: str, alias: str, *, actor: str, reason: str) -> bool:
        """Remove an alias's gates (audited; needs a reason, since it opens the alias to direct moves)."""
        check_model_name(name)
        check_alias(alias)
        if not isinstance(reason, str) or not reason.strip():
            raise ValidationError("unprotect needs a non-empty reason for the audit trail", field="reason")
        with self.ctx.db.session() as session:
            row = self._model(session, name, for_update=True)
            removed = q.delete_protection(session, row.id, alias)
            if removed:
                record_event(
                    session,
                    "model.alias_unprotected",
                    "model",
                    name,
                    actor=actor,
                    reason=reason,
                    data={"alias": alias},
                )
            return removed

    def promote(
        self,
        name: str,
        version: int | str,
        alias: str = "champion",
        *,
        actor: str,
        reason: str,
        dry_run: bool = False,
    ) -> GateReport:
        """Evaluate every gate of ``alias`` for ``version``, record each result, and move the alias if all pass.

        Failing gates raise ``GateBlockedError`` (a ConflictError carrying the report) after the results
        are recorded. ``dry_run`` evaluates and records but never moves the alias and never raises for
        failing gates. An unprotected alias has no gates and simply moves (audited).
        """
        check_model_name(name)
        check_alias(alias)
        number = version_number(version)
        _check_text(actor, "actor", empty_ok=False)
        reason = _check_text(reason, "reason")
        with self.ctx.db.session() as session:
            row = self._model(session, name)
            candidate_row = self._version_row(session, row, number)
            current_alias = q.get_alias(session, row.id, alias)
            current_id = current_alias.version_id if current_alias else None
            if current_id == candidate_row.id:
                raise ConflictError(f"{name}/{number} already holds {alias!r}; nothing to promote")
            current_number = _number_of(session, current_id) if current_id else None
            protection = q.get_protection(session, row.id, alias)
            specs = list(protection.gates) if protection else []
            example_digest = candidate_row.example_digest
        gates = [gate_from_spec(s) for s in specs]
        results: list[GateResult] = []
        if gates:
            candidate = self.load(f"{name}/{number}")
            current = self.load(f"{name}/{current_number}") if current_number else None
            example = (
                parquet_to_frame(self.ctx.artifacts.get_bytes(example_digest)) if example_digest else None
            )
            gctx = GateContext(
                candidate=candidate,
                current=current,
                alias=alias,
                load_eval=self._load_eval,
                example=example,
                default_eval=default_eval_of(gates),
            )
            results = [g.run(gctx) for g in gates]
        passed = all(r.passed for r in results)
        evaluation_id = uuid.uuid4().hex
        moved = False
        with self.ctx.db.session() as session:
            row = self._model(session, name, for_update=True)
            q.add_gate_results(
                session,
                [
                    {
                        "evaluation_id": evaluation_id,
                        "version_id": candidate_row.id,
                        "alias": alias,
                        "gate": r.gate,
                        "passed": r.passed,
                        "summary": r.summary,
                        "details": json_safe(r.details),
                        "dataset_version_id": r.dataset_version_id,
                        "evaluated_by": actor,
                    }
                    for r in results
                ],
            )
            if passed and not dry_run:
                now = q.get_alias(session, row.id, alias, for_update=True)
                if (now.version_id if now else None) != current_id:
                    moved_to = _number_of(session, now.version_id) if now else None
                    raise ConflictError(
                        f"{alias!r} of {name!r} moved to version {moved_to} while the gates ran against "
                        f"version {current_number}; run promote again"
                    )
                _move_alias(
                    session,
                    q.EVENT_ALIAS_MOVED,
                    row,
                    name,
                    alias,
                    candidate_row.id,
                    actor,
                    reason,
                    current_number,
                    number,
                    forced=False,
                    gated=bool(gates),
                    evaluation_id=evaluation_id,
                    gates=[{"gate": r.gate, "passed": r.passed} for r in results],
                )
                moved = True
        report = GateReport(name, number, alias, passed, moved, evaluation_id, tuple(results), current_number)
        if not passed and not dry_run:
            raise GateBlockedError(report)
        return report

    def rollback(self, name: str, alias: str, *, actor: str, reason: str) -> AliasMove:
        """Move ``alias`` back to the version that held it before the current one (from the audit trail).

        Repeated rollbacks walk further back (move = push, rollback = pop). No gates are evaluated: the
        target already held the alias, and a rollback is the emergency exit, so a reason is required.
        """
        check_model_name(name)
        check_alias(alias)
        _check_text(actor, "actor", empty_ok=False)
        if not isinstance(reason, str) or not reason.strip():
            raise ValidationError(
                "rollback needs a non-empty reason for the audit trail (what went wrong?)", field="reason"
            )
        with self.ctx.db.session() as session:
            row = self._model(session, name, for_update=True)
            current = q.get_alias(session, row.id, alias, for_update=True)
            if current is None:
                raise NotFoundError(
                    f"alias {alias!r} of {name!r} is not set."
                    + did_you_mean(alias, [a.alias for a, _ in q.list_aliases(session, row.id)])
                )
            stack: list[int] = []
            for event in q.alias_events(session, name, alias):
                data = event.data or {}
                if event.kind == q.EVENT_ALIAS_MOVED:
                    stack.append(int(data["to_version"]))
                elif stack:
                    stack.pop()
            current_number = _number_of(session, current.version_id)
            if not stack or stack[-1] != current_number:
                stack.append(current_number)  # the trail predates this alias row; trust the row
            if len(stack) < 2:
                raise ConflictError(
                    f"{name}@{alias} has no previous holder to roll back to (history: {stack})"
                )
            target_number = stack[-2]
            target = self._version_row(session, row, target_number)
            event = _move_alias(
                session,
                q.EVENT_ALIAS_ROLLED_BACK,
                row,
                name,
                alias,
                target.id,
                actor,
                reason,
                current_number,
                target_number,
                forced=False,
            )
            session.flush()
            return _move(event, name)

    # -- helpers ------------------------------------------------------------------------------
    def _load_eval(self, source: EvalSource) -> EvalData:
        if isinstance(source, pd.DataFrame):
            return EvalData(source, None, f"in-memory frame ({len(source)} rows)")
        if source.startswith("sha256:"):
            frame = parquet_to_frame(self.ctx.artifacts.get_bytes(source))
            return EvalData(frame, None, f"stored frame {source[:19]}... ({len(frame)} rows)")
        name, _, ver = source.partition("@")
        store = dataset_store(self.ctx)
        dv = store.version(
            name, version_number(ver, f"version in eval_dataset {source!r}") if ver else "latest"
        )
        frame = store.read(name, dv.number)
        return EvalData(frame, dv.id, f"{name}@{dv.number}")

    def _model(self, session: Any, name: str, *, for_update: bool = False) -> q.ModelRow:
        row = q.get_model(session, name, for_update=for_update)
        if row is None:
            raise NotFoundError(
                f"model {name!r} does not exist; register it first (lm.registry.register)."
                + did_you_mean(name, q.model_names(session))
            )
        return row

    def _version_row(self, session: Any, model: q.ModelRow, number: int) -> q.ModelVersionRow:
        row = q.get_version(session, model.id, number)
        if row is None:
            numbers = q.version_numbers(session, model.id)
            known = f"versions are {_ranges(numbers)}" if numbers else "it has no versions"
            raise NotFoundError(f"model {model.name!r} has no version {number}; {known}.")
        return row

    def _resolve(
        self, session: Any, model: q.ModelRow, alias: str | None, number: int | None
    ) -> q.ModelVersionRow:
        if alias is not None:
            alias_row = q.get_alias(session, model.id, alias)
            if alias_row is None:
                known = [a.alias for a, _ in q.list_aliases(session, model.id)]
                raise NotFoundError(
                    f"model {model.name!r} has no alias {alias!r}." + did_you_mean(alias, known)
                )
            return q.get_version_by_id(session, alias_row.version_id)
        if number is not None:
            return self._version_row(session, model, number)
        latest = q.latest_version(session, model.id)
        if latest is None:
            raise NotFoundError(f"model {model.name!r} has no versions yet; register one")
        return latest


# -- module helpers ---------------------------------------------------------------------------
def _needs_eval(gate: Gate) -> bool:
    return isinstance(gate, SliceMetric) and (gate.eval_dataset is None or gate.label is None)


def _check_text(value: Any, field: str, *, empty_ok: bool = True) -> str:
    if not isinstance(value, str):
        raise ValidationError(f"{field} must be a string; got {type(value).__name__}", field=field)
    if not empty_ok and not value.strip():
        raise ValidationError(f"{field} must not be empty (it is recorded in the audit trail)", field=field)
    return value


def _check_metrics(metrics: Mapping[str, Any] | None) -> dict[str, float]:
    if metrics is None:
        return {}
    if not isinstance(metrics, Mapping):
        raise ValidationError(f"metrics must be a mapping of name -> number; got {type(metrics).__name__}")
    out = {}
    for key, value in metrics.items():
        if not isinstance(key, str) or not key:
            raise ValidationError(f"metric name {key!r} must be a non-empty string")
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(float(value)):
            raise ValidationError(f"metric {key!r} must be a finite number; got {value!r}")
        out[key] = float(value)
    return out


def _check_ids(ids: Iterable[Any]) -> list[int]:
    if isinstance(ids, str | bytes) or not isinstance(ids, Iterable):
        raise ValidationError("dataset_version_ids must be a list of dataset version ids (ints)")
    out = []
    for value in ids:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValidationError(f"dataset_version_ids holds {value!r}; pass DatasetVersion.id ints")
        out.append(value)
    return out


def _detect_git_sha() -> str | None:
    try:
        from loopml.tracking.git import detect_git
    except ImportError:
        return None
    state = detect_git()
    return state.sha if state else None


def _number_of(session: Any, version_id: int | None) -> int | None:
    if version_id is None:
        return None
    row = q.get_version_by_id(session, version_id)
    return row.number if row else None


def _alias_map(session: Any, model_id: int) -> dict[int, tuple[str, ...]]:
    out: dict[int, list[str]] = {}
    for alias_row, _number in q.list_aliases(session, model_id):
        out.setdefault(alias_row.version_id, []).append(alias_row.alias)
    return {k: tuple(v) for k, v in out.items()}


def _version(row: q.ModelVersionRow, name: str, aliases: tuple[str, ...] = ()) -> ModelVersion:
    return ModelVersion(
        id=row.id,
        model=name,
        number=row.number,
        flavor=row.flavor,
        digest=row.artifact_digest,
        signature=dict(row.signature),
        metrics=dict(row.metrics),
        lineage=dict(row.lineage),
        run_id=row.run_id,
        status=row.status,
        description=row.description,
        created_at=row.created_at,
        created_by=row.created_by,
        flavor_meta=dict(row.flavor_meta),
        aliases=aliases,
    )


def _placeholder_version(name: str, flavor: str) -> ModelVersion:
    from loopml.storage.metadata.base import utcnow

    return ModelVersion(0, name, 0, flavor, "", {}, {}, {}, None, "registering", "", utcnow(), "system")


def _with_version(loaded: LoadedModel, version: ModelVersion) -> LoadedModel:
    """Same predictor, fresher version record (aliases changed since it was cached)."""
    return LoadedModel(version, loaded.signature, loaded.predictor)


def _move(event: Any, name: str) -> AliasMove:
    data = event.data or {}
    kind = (
        "rollback"
        if event.kind == q.EVENT_ALIAS_ROLLED_BACK
        else ("forced" if data.get("forced") else "move")
    )
    return AliasMove(
        model=name,
        alias=data.get("alias", ""),
        from_version=data.get("from_version"),
        to_version=int(data.get("to_version", 0)),
        actor=event.actor,
        reason=event.reason,
        forced=bool(data.get("forced")),
        kind=kind,
        at=event.ts,
        evaluation_id=data.get("evaluation_id"),
    )


def _ranges(numbers: list[int]) -> str:
    if not numbers:
        return "none"
    return f"1..{numbers[-1]}" if numbers == list(range(1, numbers[-1] + 1)) else ", ".join(map(str, numbers))


def _move_alias(
    session: Any,
    kind: str,
    model_row: Any,
    name: str,
    alias: str,
    version_id: int,
    actor: str,
    reason: str | None,
    from_version: int | None,
    to_version: int,
    **details: Any,
) -> Any:
    """Point ``alias`` at a version and write the audit event in the same transaction."""
    q.set_alias_row(session, model_row.id, alias, version_id, actor)
    return record_event(
        session,
        kind,
        "model",
        name,
        actor=actor,
        reason=reason or None,
        data={"alias": alias, "from_version": from_version, "to_version": to_version, **details},
    )
