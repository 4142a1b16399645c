"""``moderation.retrain``: labels -> split by week -> train v2 -> evaluate on the held-out week ->
register -> gate against the champion -> alias ``challenger``.

Every step is a pipeline step, so a run is resumable after a crash, each step's output is stored,
and a re-run with the same labels reuses the trained model and its registered version (the
``labels`` step always re-reads the data; when nothing changed, the downstream cache keys match).
The candidate is never promoted here: it becomes ``challenger`` once the release gate on the
held-out week passes in a dry run, and goes live through shadow and online A/B (``release.py``).
"""

from __future__ import annotations

import hashlib
import math
from datetime import UTC, date, datetime
from typing import Any

import numpy as np
import pandas as pd

import loopml
from loopml.apps.moderation import training
from loopml.apps.moderation.config import ModerationConfig
from loopml.errors import LoopmlError, NotFoundError, ValidationError
from loopml.pipelines import Pipeline, register, step
from loopml.registry import BeatsCurrent

RETRAIN = "moderation.retrain"
STEPS = ("labels", "split", "train", "evaluate", "register_model", "gate")
EXPERIMENT = "moderation"
CHAMPION = "champion"
CHALLENGER = "challenger"
ACTOR = "moderation.retrain"
#: the release gate: the candidate's precision on the held-out week must not drop below the champion's
GATE_METRIC = "precision"
DEFAULT_PARAMS: dict[str, Any] = {
    "config": ModerationConfig().to_dict(),
    "n": 600,
    "seed": 0,
    "as_of": "",
    "min_precision": 0.98,
    "weekly_uploads": 5000,
    "face_share": 0.05,
}

#: Share of the weekly review capacity the thresholds may use on validation data.
CAPACITY_HEADROOM = 0.8


def _cfg(config: dict) -> ModerationConfig:
    return ModerationConfig.from_dict(dict(config))


def parse_as_of(value: Any) -> date:
    """``""``/None -> today (UTC); else an ISO date such as ``2026-12-01``."""
    if value in (None, ""):
        return datetime.now(tz=UTC).date()
    if isinstance(value, date):
        return value
    try:
        return date.fromisoformat(str(value)[:10])
    except ValueError:
        raise ValidationError(
            f"as_of={value!r}: give an ISO date such as 2026-12-01", field="as_of"
        ) from None


def retrain_params(
    cfg: ModerationConfig | None = None,
    *,
    n: int = 600,
    seed: int = 0,
    as_of: Any = "",
    min_precision: float = 0.98,
    weekly_uploads: int = 5000,
    face_share: float = 0.05,
) -> dict[str, Any]:
    """Checked params of one run (bad values fail here, before anything is queued)."""
    from loopml.checks import check_number

    cfg = cfg or ModerationConfig()
    check_number(n, "n", low=60, high=100_000, integer=True)
    check_number(seed, "seed", low=0, integer=True)
    check_number(min_precision, "min_precision", low=0.5, high=1.0)
    check_number(weekly_uploads, "weekly_uploads", low=1, integer=True)
    check_number(face_share, "face_share", low=0.0, high=1.0)
    return {
        "config": cfg.to_dict(),
        "n": n,
        "seed": seed,
        "as_of": parse_as_of(as_of).isoformat(),
        "min_precision": float(min_precision),
        "weekly_uploads": weekly_uploads,
        "face_share": float(face_share),
    }


@step(cache=False, retries=1, backoff_seconds=0.2)
def labels(n: int, seed: int, as_of: str, lm: loopml.Loopml) -> dict:
    """Starting data (built once) plus every review label; the dataset versions are the lineage."""
    day = parse_as_of(as_of)
    start, start_version = training.starting_data(lm, n=int(n), seed=int(seed))
    frame, labels_version = training.labelled_frame(lm, start, day)
    ids = [start_version.id] + ([labels_version.id] if labels_version is not None else [])
    reviews = int((frame["source"] == "review").sum())
    print(f"{len(frame)} labelled images: {len(start)} starting rows + {reviews} review labels")
    return {"frame": frame, "as_of": day.isoformat(), "dataset_version_ids": ids, "reviews": reviews}


@step(retries=1, backoff_seconds=0.2)
def split(labels: dict, seed: int) -> dict:
    """Hold out the latest complete week; a seeded, stratified validation fold from the rest."""
    parts = training.split_by_week(labels["frame"], parse_as_of(labels["as_of"]), seed=int(seed))
    print(
        f"train {len(parts.train)}, validation {len(parts.validation)}, "
        f"held-out week {parts.held_out_week}: {len(parts.held_out)} rows"
    )
    return {
        "train": parts.train,
        "validation": parts.validation,
        "held_out": parts.held_out,
        "held_out_week": parts.held_out_week,
    }


@step(retries=1, backoff_seconds=0.2)
def train(split: dict, seed: int) -> object:
    """v2: ``HogFaceClassifier`` (sliding-window HOG + linear model, hard negatives) on the train fold."""
    model = training.train_v2(split["train"], seed=int(seed))
    print(f"trained HogFaceClassifier on {len(split['train'])} images")
    return model


def _champion(lm: loopml.Loopml, name: str) -> Any | None:
    try:
        return lm.registry.load(f"{name}@{CHAMPION}")
    except NotFoundError:
        return None


def _served_scores(model: Any, frame: pd.DataFrame) -> np.ndarray:
    return np.asarray(model.predict_proba(frame[training.INPUT_COLUMNS], strict=False)[:, 1], dtype=float)


@step(retries=1, backoff_seconds=0.2)
def evaluate(
    split: dict,
    train: object,
    config: dict,
    min_precision: float,
    weekly_uploads: int,
    face_share: float,
    lm: loopml.Loopml,
) -> dict:
    """Thresholds on validation (at least the champion's precision there, within operator capacity);
    decisions of v2 and of the champion on the held-out week, which chose nothing."""
    cfg = _cfg(config)
    val, held = split["validation"], split["held_out"]
    y_held = held["has_face"].to_numpy(dtype=int)
    volume = {
        "capacity_per_week": cfg.operator_capacity_per_week,
        "weekly_uploads": int(weekly_uploads),
        "face_share": float(face_share),
    }
    y_val = val["has_face"].to_numpy(dtype=int)
    ours = {"reject_at": cfg.reject_at, "review_at": cfg.review_at}
    current = _champion(lm, cfg.model_name)
    champion_val_precision = None
    if current is not None and len(val):  # the bar to clear, measured on validation rows only
        champ_val = training.screening_metrics(_served_scores(current, val), y_val, ours, **volume)
        champion_val_precision = champ_val["precision"]
    raw = training.fit_thresholds(
        training.face_scores(train, val),
        y_val,
        min_precision=float(min_precision),
        min_flag_precision=champion_val_precision,
        # aim at 80 % of the operators' week on validation: the split is small and next week's flagged
        # volume varies, so a cut that just fits here overflows the queue on the held-out week
        capacity_share=CAPACITY_HEADROOM,
        **volume,
    )
    scores = training.face_scores(train, held)
    candidate = training.screening_metrics(scores, y_held, raw, **volume)
    candidate["small_face_recall"] = training.small_face_recall(scores, held, raw)
    out: dict[str, Any] = {
        "held_out_week": split["held_out_week"],
        "raw_thresholds": raw,
        "thresholds": ours,
        "champion_validation_precision": champion_val_precision,
        "candidate": candidate,
        "champion": None,
    }
    if current is not None:  # served scores are on the config's scale (calibrated versions are)
        champ_scores = _served_scores(current, held)
        metrics = training.screening_metrics(champ_scores, y_held, ours, **volume)
        metrics["small_face_recall"] = training.small_face_recall(champ_scores, held, ours)
        out["champion"] = {"version": current.version.number, **metrics}
    c = out["candidate"]
    print(
        f"held-out week {split['held_out_week']}: candidate precision {c['precision']}, recall {c['recall']}, "
        f"flagged/week {c['flagged_per_week']} (capacity {c['capacity']}); raw thresholds {raw}"
    )
    return out


def _flat_metrics(evaluated: dict) -> dict[str, float]:
    out: dict[str, float] = {}
    for key, value in evaluated["candidate"].items():
        if isinstance(value, bool) or (isinstance(value, int | float) and math.isfinite(float(value))):
            out[key] = float(value)
    raw = evaluated["raw_thresholds"]
    out["raw_review_at"] = float(raw["review_at"])
    out["raw_reject_at"] = float(raw["reject_at"]) if raw["reject_at"] is not None else 2.0  # > 1: never
    return out


@step(retries=1, backoff_seconds=0.2)
def register_model(
    labels: dict,
    split: dict,
    train: object,
    evaluate: dict,
    config: dict,
    lm: loopml.Loopml,
    pipeline_run_id: str,
) -> dict:
    """A tracked run and a ``moderation-face`` version with the held-out metrics and data lineage."""
    cfg = _cfg(config)
    metrics = _flat_metrics(evaluate)
    key = hashlib.sha256(
        pd.util.hash_pandas_object(split["train"][["image_path", "has_face"]]).values.tobytes()
    ).hexdigest()[:16]
    params = {
        "model": "HogFaceClassifier",
        "train_rows": len(split["train"]),
        "held_out_week": split["held_out_week"],
    }
    with lm.tracking.start_run(
        EXPERIMENT, name=f"retrain {labels['as_of']}", params=params, pipeline_run_id=pipeline_run_id
    ) as run:
        for version_id in labels["dataset_version_ids"]:
            run.log_input(version_id)
        run.log_metrics({f"heldout_{k}": v for k, v in metrics.items()})
        champ = evaluate.get("champion") or {}
        run.log_metrics(
            {
                f"champion_{k}": float(v)
                for k, v in champ.items()
                if isinstance(v, int | float) and not isinstance(v, bool) and v is not None
            }
        )
        raw = evaluate["raw_thresholds"]
        model = training.CalibratedScreener(
            train,
            raw_review_at=raw["review_at"],
            raw_reject_at=raw["reject_at"],
            review_at=cfg.review_at,
            reject_at=cfg.reject_at,
        )
        version = lm.registry.register(
            cfg.model_name,
            model,
            flavor="python",
            input_example=split["held_out"][training.INPUT_COLUMNS].head(1),
            metrics=metrics,
            run_id=run.id,
            dataset_version_ids=labels["dataset_version_ids"],
            description=f"v2 HOG face classifier, held-out week {split['held_out_week']} (train key {key})",
            actor=ACTOR,
        )
    print(f"registered {cfg.model_name}/{version.number} (run {run.id[:8]})")
    return {"version": version.number, "run_id": run.id, "metrics": metrics}


def ensure_gate(lm: loopml.Loopml, cfg: ModerationConfig) -> None:
    """Protect ``champion`` with the precision gate on the stored held-out evaluation dataset."""
    gate = BeatsCurrent(GATE_METRIC, training.EVAL_DATASET, label="has_face", margin=0.0)
    current = lm.registry.protection(cfg.model_name, CHAMPION)
    if current is not None and [g.get("type") for g in current.gates] == [gate.kind]:
        return
    lm.registry.protect(
        cfg.model_name, CHAMPION, [gate], actor=ACTOR, reason="precision on the held-out week must not drop"
    )


@step(cache=False, retries=1, backoff_seconds=0.2)
def gate(split: dict, register_model: dict, config: dict, lm: loopml.Loopml) -> dict:
    """Dry-run the champion's gates for the candidate; when they pass, it becomes ``challenger``."""
    cfg = _cfg(config)
    held = split["held_out"][[*training.INPUT_COLUMNS, "has_face"]].astype(
        {"width": int, "height": int, "has_face": int}
    )
    lm.datasets.ingest(training.EVAL_DATASET, held, contract=training.EVAL_CONTRACT, actor=ACTOR)
    number = int(register_model["version"])
    try:
        lm.registry.get_model(cfg.model_name)
        has_champion = any(a.alias == CHAMPION for a in lm.registry.aliases(cfg.model_name))
    except NotFoundError:
        has_champion = False
    if not has_champion:
        lm.registry.set_alias(cfg.model_name, CHALLENGER, number, actor=ACTOR, reason="no champion yet")
        return {"version": number, "passed": True, "challenger": number, "gates": []}
    ensure_gate(lm, cfg)
    report = lm.registry.promote(
        cfg.model_name, number, CHAMPION, actor=ACTOR, reason="retrain gate (dry run)", dry_run=True
    )
    gates = [{"gate": r.gate, "passed": r.passed, "summary": r.summary} for r in report.results]
    out = {"version": number, "passed": bool(report.passed), "challenger": None, "gates": gates}
    if report.passed:
        try:
            lm.registry.set_alias(
                cfg.model_name, CHALLENGER, number, actor=ACTOR, reason="passed the retrain gate"
            )
        except LoopmlError as exc:
            raise LoopmlError(f"could not set {cfg.model_name}@{CHALLENGER}: {exc}") from exc
        out["challenger"] = number
    print(f"gate for {cfg.model_name}/{number}: {'passed' if report.passed else 'blocked'}: {gates}")
    return out


RETRAIN_PIPELINE = register(
    Pipeline(
        RETRAIN,
        steps=[labels, split, train, evaluate, register_model, gate],
        params=dict(DEFAULT_PARAMS),
        description=(
            "Retrain the face screener (v2 HOG) from starting data + review labels, evaluate on the "
            "held-out week, gate against the champion and set the challenger alias"
        ),
    ),
    module=__name__,
)
